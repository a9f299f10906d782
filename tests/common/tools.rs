//! The services the tests start are real programs from crates.io, installed
//! once per machine with `cargo install` into `~/.cache/pos-etl/tools` (CI's
//! `.ci/run` does it first; a test that finds one missing installs it,
//! concurrent tests waiting on a file lock).

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

/// A tool of the tests: its binary name, the variable that may name another
/// binary, and how `cargo install` builds it.
pub struct Tool {
    pub binary: &'static str,
    pub env: &'static str,
    pub install: &'static [&'static str],
}

/// The Kafka-compatible broker.
pub const TANSU: Tool = Tool {
    binary: "tansu",
    env: "TANSU",
    install: &["tansu", "--version", "0.6.0", "--features", "dynostore"],
};

/// The S3-compatible object store.
pub const S3S_FS: Tool = Tool {
    binary: "s3s-fs",
    env: "S3S_FS",
    install: &["s3s-fs", "--version", "0.14.1", "--features", "binary"],
};

impl Tool {
    /// The tool's binary: the one its variable names, else the cached copy,
    /// installed first if missing.
    pub fn path(&self) -> PathBuf {
        if let Some(path) = std::env::var_os(self.env) {
            return PathBuf::from(path);
        }
        let root = PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/pos-etl/tools");
        let binary = root.join("bin").join(self.binary);
        std::fs::create_dir_all(&root).unwrap();
        let lock = std::fs::File::create(root.join(".install.lock")).unwrap();
        lock.lock().unwrap();
        if !binary.exists() {
            eprintln!("installing {} into {} (once per machine; minutes)", self.binary, root.display());
            let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .arg("install")
                .args(self.install)
                .args(["--locked", "--root"])
                .arg(&root)
                .status()
                .expect("run cargo install");
            assert!(status.success(), "cargo install {} failed ({status}); see its output above", self.binary);
        }
        binary
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Reads `output` (a child's stdout or stderr) line by line on a thread of
/// its own, appending every line to `log`, and waits up to `within` for a
/// line containing `ready`. Returns the lines read so far if it never comes.
pub fn wait_for_line(output: impl Read + Send + 'static, ready: &str, within: Duration, log: PathBuf) -> Result<(), String> {
    follow_lines(output, ready, log)
        .recv_timeout(within)
        .map_err(|_| format!("no line with {ready:?} within {within:?}"))
}

/// Reads `output` line by line on a thread of its own, appending every line
/// to `log`; the returned receiver gets a message for each line containing `wanted`.
pub fn follow_lines(output: impl Read + Send + 'static, wanted: &str, log: PathBuf) -> mpsc::Receiver<()> {
    follow_each(output, &[wanted], log).pop().expect("one receiver per text")
}

/// As [`follow_lines`], with a receiver per text of `wanted`, in its order.
pub fn follow_each(output: impl Read + Send + 'static, wanted: &[&str], log: PathBuf) -> Vec<mpsc::Receiver<()>> {
    let (senders, receivers): (Vec<_>, Vec<_>) = wanted.iter().map(|_| mpsc::channel()).unzip();
    let wanted: Vec<String> = wanted.iter().map(|text| text.to_string()).collect();
    std::thread::spawn(move || {
        let mut log = std::fs::File::create(log).expect("create the log");
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { break };
            use std::io::Write;
            let _ = writeln!(log, "{line}");
            for (text, seen) in wanted.iter().zip(&senders) {
                if line.contains(text.as_str()) {
                    let _ = seen.send(());
                }
            }
        }
    });
    receivers
}
