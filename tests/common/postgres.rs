//! A real PostgreSQL server for the tests: Debian's `postgresql` package,
//! `initdb` and `postgres` in a temporary directory on a free 127.0.0.1
//! port (run as the `postgres` user when the tests run as root, since the
//! server refuses root). The tests wait on the server's log, which names
//! each line's application: the line saying it is ready, a statement a run
//! sent, a lock a run waits for, a session that ended. Each wait has a
//! deadline; the server is stopped on drop.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::tools::free_port;

/// How long the server may take to accept connections.
const READY_WITHIN: Duration = Duration::from_secs(60);

pub struct PgServer {
    /// A libpq URI of the test's database.
    pub url: String,
    bin: PathBuf,
    log: Arc<(Mutex<Vec<String>>, Condvar)>,
    child: Child,
    port: u16,
    owner: Option<(u32, u32)>,
    dir: tempfile::TempDir,
}

impl PgServer {
    pub fn start() -> PgServer {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("pos-etl-pg").tempdir().unwrap();
        let owner = server_user();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("data");
        let status = as_server_user(Command::new(bin.join("initdb")), owner)
            .args(["-U", "pos", "-A", "trust", "--no-sync", "-E", "UTF8", "--no-instructions", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .status()
            .expect("run initdb (apt-get install postgresql)");
        assert!(status.success(), "initdb failed: {status}");
        let port = free_port();
        let log = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let child = launch(&bin, dir.path(), port, owner, &log);
        let url = format!("postgresql://pos@127.0.0.1:{port}/postgres");
        let server = PgServer { url, bin, log, child, port, owner, dir };
        server.wait_for_log(0, "database system is ready to accept connections", READY_WITHIN);
        server
    }

    /// Stops the server (a fast shutdown: sessions are cut) and starts it
    /// again on the same data and port, once `down` has run.
    pub fn restart(&mut self, down: impl FnOnce()) {
        self.stop();
        down();
        let mark = self.log_mark();
        self.child = launch(&self.bin, self.dir.path(), self.port, self.owner, &self.log);
        self.wait_for_log(mark, "database system is ready to accept connections", READY_WITHIN);
    }

    fn stop(&mut self) {
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }

    /// Lines of the server's log so far: a mark for [`PgServer::wait_for_log`].
    pub fn log_mark(&self) -> usize {
        self.log.0.lock().unwrap().len()
    }

    /// Waits up to `within` for a line of the server's log after `mark`
    /// that contains `text` (lines start with the application name, such as
    /// `pos-etl LOG:  statement: COPY`).
    pub fn wait_for_log(&self, mark: usize, text: &str, within: Duration) {
        if !self.wait_for_line(mark, Instant::now() + within, |line| line.contains(text)) {
            let log = self.log.0.lock().unwrap().join("\n");
            panic!("no {text:?} in the server log within {within:?}:\n{log}");
        }
    }

    /// Waits up to `within` for `done` to hold: checked now, then after each
    /// line the server logs for pos-etl (a statement, a disconnection), so
    /// that what pos-etl committed is seen by the line after its COMMIT.
    /// The test's own queries (psql) do not wake it.
    pub fn wait_until(&self, what: &str, within: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        loop {
            let mark = self.log_mark();
            if done() {
                return;
            }
            let logged = self.wait_for_line(mark, deadline, |line| line.starts_with("pos-etl "));
            assert!(logged, "{what}: not within {within:?}");
        }
    }

    /// Waits until a line of the log after `mark` is `wanted`; false if
    /// `deadline` comes first.
    fn wait_for_line(&self, mark: usize, deadline: Instant, wanted: impl Fn(&str) -> bool) -> bool {
        let (lines, changed) = &*self.log;
        let mut lines = lines.lock().unwrap();
        while !lines[mark.min(lines.len())..].iter().any(|line| wanted(line)) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            lines = changed.wait_timeout(lines, left).unwrap().0;
        }
        true
    }

    /// A connection of the test's own.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client
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
        // A fast shutdown: open sessions are rolled back, then it exits.
        self.stop();
    }
}

/// Starts the server of the data directory in `dir` on `port`, its log
/// followed into `log`.
fn launch(bin: &Path, dir: &Path, port: u16, owner: Option<(u32, u32)>, log: &Arc<(Mutex<Vec<String>>, Condvar)>) -> Child {
    let mut child = as_server_user(Command::new(bin.join("postgres")), owner)
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
        // What the tests wait for, each line prefixed with the session's application.
        .args(["-c", "log_line_prefix=%a ", "-c", "log_statement=all", "-c", "log_disconnections=on"])
        .args(["-c", "log_lock_waits=on", "-c", "deadlock_timeout=100ms"])
        .arg("-k")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start postgres");
    follow(child.stderr.take().unwrap(), dir.join("server.log"), log.clone());
    child
}

/// Reads the server's log on a thread of its own into `file` and into
/// `log`'s lines, waking whoever waits on them at each line.
fn follow(output: impl std::io::Read + Send + 'static, file: PathBuf, log: Arc<(Mutex<Vec<String>>, Condvar)>) {
    let shared = log;
    std::thread::spawn(move || {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(file).expect("open the server log");
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(file, "{line}");
            let (lines, changed) = &*shared;
            lines.lock().unwrap().push(line);
            changed.notify_all();
        }
    });
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
