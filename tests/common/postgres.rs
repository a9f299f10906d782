//! A real PostgreSQL server for the tests: Debian's `postgresql` package,
//! `initdb` and `postgres` in a temporary directory on a free 127.0.0.1
//! port (run as the `postgres` user when the tests run as root, since the
//! server refuses root). Readiness is polled with `pg_isready` and a
//! deadline; the server is stopped on drop. `POS_ETL_TEST_POSTGRES` may name
//! a running server instead: each test then gets a fresh database in it.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tools::free_port;

/// How long the server may take to accept connections.
const READY_WITHIN: Duration = Duration::from_secs(60);

pub struct PgServer {
    /// A libpq URI of the test's database, with user and password.
    pub url: String,
    bin: PathBuf,
    server: Option<(Child, tempfile::TempDir)>,
}

impl PgServer {
    pub fn start() -> PgServer {
        let bin = bin_dir();
        if let Ok(url) = std::env::var("POS_ETL_TEST_POSTGRES") {
            let mut server = PgServer { url: url.clone(), bin, server: None };
            let name = format!("pos_etl_test_{}", free_port());
            server.psql(&format!("CREATE DATABASE {name}"));
            server.url = format!("{}/{name}", url.trim_end_matches('/').rsplit_once('/').map_or(url.as_str(), |(base, _)| base));
            return server;
        }
        let dir = tempfile::Builder::new().prefix("pos-etl-pg").tempdir().unwrap();
        let owner = server_user();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("data");
        let log = dir.path().join("server.log");
        let status = as_server_user(Command::new(bin.join("initdb")), owner)
            .args(["-U", "pos", "-A", "trust", "--no-sync", "-E", "UTF8", "--no-instructions", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .status()
            .expect("run initdb (apt-get install postgresql)");
        assert!(status.success(), "initdb failed: {status}");
        let port = free_port();
        let child = as_server_user(Command::new(bin.join("postgres")), owner)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .arg("-k")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start postgres");
        let server = PgServer {
            url: format!("postgresql://pos@127.0.0.1:{port}/postgres"),
            bin,
            server: Some((child, dir)),
        };
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let ready = Command::new(server.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL on port {port} not ready within {READY_WITHIN:?}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `sql` with psql and returns its unaligned output (`|` between columns).
    pub fn psql(&self, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", &self.url, "-c", sql])
            .output()
            .expect("run psql");
        assert!(output.status.success(), "psql -c {sql:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }

    /// The rows of `query` as CSV with a header, as pos-etl writes files.
    pub fn csv(&self, query: &str) -> String {
        self.psql(&format!("COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER)"))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some((child, _dir)) = &mut self.server {
            // A fast shutdown: open sessions are rolled back, then it exits.
            let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }
}

/// The directory of the newest installed server's programs.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (apt-get install postgresql)")
        .map(|entry| entry.unwrap().path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort_by_key(|bin| bin.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()));
    versions.pop().expect("a PostgreSQL server under /usr/lib/postgresql/*/bin")
}

/// The `postgres` user's ids when the tests run as root (the server refuses root).
fn server_user() -> Option<(u32, u32)> {
    let id = |flag: &str| -> u32 {
        let output = Command::new("id").args([flag]).output().unwrap();
        String::from_utf8_lossy(&output.stdout).trim().parse().unwrap()
    };
    if id("-u") != 0 {
        return None;
    }
    let of_postgres = |flag: &str| -> u32 {
        let output = Command::new("id").args([flag, "postgres"]).output().expect("id postgres");
        assert!(output.status.success(), "no postgres user: apt-get install postgresql");
        String::from_utf8_lossy(&output.stdout).trim().parse().unwrap()
    };
    Some((of_postgres("-u"), of_postgres("-g")))
}

fn as_server_user(mut command: Command, owner: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid).env("HOME", "/tmp");
    }
    command
}
