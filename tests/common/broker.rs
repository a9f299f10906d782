//! A real Kafka-compatible broker for the tests: Tansu on a free 127.0.0.1
//! port, storing its topics in memory or, to survive a restart, in a bucket
//! of a real S3 server; or the cluster in POS_ETL_TEST_BROKERS. Readiness is
//! polled with a deadline; the broker is killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::s3::S3Server;
use super::tools::{TANSU, free_port};

/// How long a broker may take to answer its first metadata request.
const READY_WITHIN: Duration = Duration::from_secs(30);

pub struct Broker {
    pub address: String,
    /// `memory://tansu/` or `s3://BUCKET/`.
    storage: String,
    /// The S3 server's variables, for S3 storage.
    env: Vec<(&'static str, String)>,
    child: Option<Child>,
    log_dir: tempfile::TempDir,
}

impl Broker {
    /// A broker keeping its topics in memory.
    pub fn start() -> Broker {
        if let Ok(address) = std::env::var("POS_ETL_TEST_BROKERS") {
            return Broker {
                address,
                storage: String::new(),
                env: Vec::new(),
                child: None,
                log_dir: tempfile::tempdir().unwrap(),
            };
        }
        Broker::launch("memory://tansu/".to_string(), Vec::new())
    }

    /// A broker keeping its topics in a bucket of `s3`, so that they
    /// survive [`Broker::restart`].
    pub fn start_on(s3: &S3Server) -> Broker {
        let bucket = s3.bucket("tansu");
        Broker::launch(format!("s3://{bucket}/"), s3.env())
    }

    fn launch(storage: String, env: Vec<(&'static str, String)>) -> Broker {
        let address = format!("127.0.0.1:{}", free_port());
        let mut broker = Broker { address, storage, env, child: None, log_dir: tempfile::tempdir().unwrap() };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let log = self.log_dir.path().join("tansu.log");
        let output = std::fs::File::options().create(true).append(true).open(&log).unwrap();
        let binary = TANSU.path();
        let child = Command::new(&binary)
            .args(["broker", "--listener-url", &format!("tcp://{}", self.address)])
            .args(["--advertised-listener-url", &format!("tcp://{}", self.address)])
            .args(["--storage-engine", &self.storage])
            .envs(self.env.iter().map(|(key, value)| (*key, value)))
            .stdout(Stdio::from(output.try_clone().unwrap()))
            .stderr(Stdio::from(output))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the Tansu broker {}: {e}", binary.display()));
        self.child = Some(child);
        self.wait_until_ready();
    }

    /// Kills the broker with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the broker and starts it again on the same address and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn wait_until_ready(&mut self) {
        let consumer: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", &self.address).create().unwrap();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if consumer.fetch_metadata(None, Duration::from_millis(500)).is_ok() {
                return;
            }
            let exited = self.child.as_mut().and_then(|c| c.try_wait().unwrap());
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "Tansu on {} is not ready ({}):\n{}",
                    self.address,
                    exited.map_or("timed out".to_string(), |s| s.to_string()),
                    std::fs::read_to_string(self.log_dir.path().join("tansu.log")).unwrap_or_default()
                );
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}
