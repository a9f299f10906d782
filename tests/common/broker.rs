//! A real Kafka-compatible broker for the tests: Tansu with in-memory
//! storage on a free 127.0.0.1 port, or the cluster in POS_ETL_TEST_BROKERS.
//! Readiness is polled with a deadline; the broker is killed on drop.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// How long a broker may take to answer its first metadata request.
const READY_WITHIN: Duration = Duration::from_secs(30);

pub struct Broker {
    pub address: String,
    child: Option<Child>,
    _log_dir: tempfile::TempDir,
}

/// The Tansu version the tests run against.
const TANSU_VERSION: &str = "0.6.0";

/// The Tansu binary: `TANSU` if set, else the copy cached under
/// `~/.cache/pos-etl/tools`, installed with cargo on first use (about ten
/// minutes, once per machine; concurrent tests wait on a file lock).
fn tansu_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TANSU") {
        return PathBuf::from(path);
    }
    let root = PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/pos-etl/tools");
    let binary = root.join("bin/tansu");
    std::fs::create_dir_all(&root).unwrap();
    let lock = std::fs::File::create(root.join(".install.lock")).unwrap();
    lock.lock().unwrap();
    if !binary.exists() {
        eprintln!("installing Tansu {TANSU_VERSION} into {} (once; about ten minutes)", root.display());
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["install", "tansu", "--version", TANSU_VERSION, "--features", "dynostore", "--locked", "--root"])
            .arg(&root)
            .status()
            .expect("run cargo install");
        assert!(status.success(), "cargo install tansu failed ({status}); see its output above");
    }
    binary
}

impl Broker {
    pub fn start() -> Broker {
        let log_dir = tempfile::tempdir().unwrap();
        if let Ok(address) = std::env::var("POS_ETL_TEST_BROKERS") {
            return Broker { address, child: None, _log_dir: log_dir };
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let address = format!("127.0.0.1:{port}");
        let log = log_dir.path().join("tansu.log");
        let binary = tansu_binary();
        let child = Command::new(&binary)
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://{address}"),
                "--advertised-listener-url",
                &format!("tcp://{address}"),
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(std::fs::File::options().append(true).open(&log).unwrap()))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the Tansu broker {}: {e}", binary.display()));
        let mut broker = Broker { address, child: Some(child), _log_dir: log_dir };
        broker.wait_until_ready(&log);
        broker
    }

    fn wait_until_ready(&mut self, log: &std::path::Path) {
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
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
