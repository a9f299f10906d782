//! A real S3 API server for the tests: s3s-fs on a free 127.0.0.1 port,
//! storing its buckets as directories of a temporary directory. Readiness
//! is polled with a deadline; the server is killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::tools::{S3S_FS, free_port, wait_for_line};

/// How long the server may take to accept a connection.
const READY_WITHIN: Duration = Duration::from_secs(30);

pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub access_key: &'static str,
    pub secret_key: &'static str,
    root: tempfile::TempDir,
    child: Child,
}

impl S3Server {
    pub fn start() -> S3Server {
        let root = tempfile::tempdir().unwrap();
        let port = free_port();
        let (access_key, secret_key) = ("pos-etl-test", "pos-etl-test-secret");
        let binary = S3S_FS.path();
        let log = root.path().join("s3s-fs.log");
        std::fs::create_dir(root.path().join("buckets")).unwrap();
        let mut child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", access_key, "--secret-key", secret_key])
            .arg(root.path().join("buckets"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let ready = wait_for_line(child.stdout.take().unwrap(), "server is running at", READY_WITHIN, log.clone());
        let server = S3Server { endpoint: format!("http://127.0.0.1:{port}"), access_key, secret_key, root, child };
        if let Err(error) = ready {
            panic!("s3s-fs on port {port} is not ready: {error}\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        server
    }

    /// Creates a bucket (a directory of the server's root).
    pub fn bucket(&self, name: &str) -> String {
        std::fs::create_dir_all(self.root.path().join("buckets").join(name)).unwrap();
        name.to_string()
    }

    /// The file that holds the object `key` of `bucket` (s3s-fs keeps each
    /// object as a file): for fixtures written straight in, and for
    /// checks of what is stored.
    pub fn object(&self, bucket: &str, key: &str) -> std::path::PathBuf {
        self.root.path().join("buckets").join(bucket).join(key)
    }

    /// Every key stored in `bucket`, sorted.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        fn walk(dir: &std::path::Path, prefix: &str, keys: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let entry = entry.unwrap();
                let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
                if entry.file_type().unwrap().is_dir() {
                    walk(&entry.path(), &format!("{name}/"), keys);
                } else {
                    keys.push(name);
                }
            }
        }
        let mut keys = Vec::new();
        walk(&self.root.path().join("buckets").join(bucket), "", &mut keys);
        keys.sort();
        keys
    }

    /// Whether a multipart upload has a part stored and is not completed.
    pub fn has_uploaded_part(&self) -> bool {
        std::fs::read_dir(self.root.path().join("buckets"))
            .unwrap()
            .any(|entry| entry.unwrap().file_name().to_string_lossy().starts_with(".upload_id-"))
    }

    /// `--storage-option`s that reach this server, for a run given no environment.
    pub fn options(&self) -> Vec<String> {
        [
            format!("aws_endpoint={}", self.endpoint),
            format!("aws_access_key_id={}", self.access_key),
            format!("aws_secret_access_key={}", self.secret_key),
            "aws_region=us-east-1".to_string(),
            "aws_allow_http=true".to_string(),
        ]
        .into_iter()
        .flat_map(|option| ["--storage-option".to_string(), option])
        .collect()
    }

    /// The variables an S3 client (object_store, Tansu) reads to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key.to_string()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
