//! A real Ballista cluster for the tests: `pos-etl cluster scheduler` and
//! executors as separate processes on free 127.0.0.1 ports. Each is ready
//! when its stderr says so (waited for with a deadline); all are killed on
//! drop.

use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::tools::{follow_each, follow_lines, free_port};

/// How long a process may take to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(60);

pub struct Cluster {
    /// `127.0.0.1:PORT` of the scheduler.
    pub scheduler: String,
    scheduler_child: Option<Child>,
    executors: Vec<Executor>,
    dir: tempfile::TempDir,
}

pub struct Executor {
    child: Option<Child>,
    /// A message for each task the executor starts.
    pub tasks: mpsc::Receiver<()>,
}

impl Cluster {
    /// A scheduler and `executors` executors of two task slots each.
    pub fn start(executors: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let scheduler = format!("127.0.0.1:{}", free_port());
        // Executors beat every second and are taken for dead after 5 s
        // without, so that a killed one's tasks run again soon.
        let mut child = node(&["cluster", "scheduler", "--bind", &scheduler, "--executor-timeout", "5s"]);
        let ready = follow_lines(child.stderr.take().unwrap(), "scheduler listening on", dir.path().join("scheduler.log"));
        let mut cluster = Cluster { scheduler, scheduler_child: Some(child), executors: Vec::new(), dir };
        cluster.wait(&ready, "scheduler.log");
        for index in 0..executors {
            let (port, grpc_port) = (free_port(), free_port());
            let work_dir = cluster.dir.path().join(format!("executor-{index}"));
            std::fs::create_dir(&work_dir).unwrap();
            let mut child = node(&[
                "cluster", "executor", "--scheduler", &cluster.scheduler,
                "--bind", &format!("127.0.0.1:{port}"), "--grpc-port", &grpc_port.to_string(),
                "--concurrent-tasks", "2", "--heartbeat", "1s", "--memory-limit", "512MiB",
                "--work-dir", work_dir.to_str().unwrap(),
            ]);
            let log = format!("executor-{index}.log");
            let stderr = child.stderr.take().unwrap();
            let [registered, tasks]: [_; 2] = follow_each(stderr, &["registered with the scheduler", "Execute task"], cluster.dir.path().join(&log))
                .try_into()
                .expect("two receivers");
            cluster.executors.push(Executor { child: Some(child), tasks });
            cluster.wait(&registered, &log);
        }
        cluster
    }

    /// `df://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("df://{}", self.scheduler)
    }

    /// The executor `index`.
    pub fn executor(&mut self, index: usize) -> &mut Executor {
        &mut self.executors[index]
    }

    /// Kills the scheduler with SIGKILL.
    pub fn kill_scheduler(&mut self) {
        if let Some(mut child) = self.scheduler_child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What the process wrote to stderr so far (`scheduler.log`, `executor-N.log`).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    fn wait(&mut self, ready: &mpsc::Receiver<()>, log: &str) {
        if ready.recv_timeout(READY_WITHIN).is_err() {
            panic!("{log}: not ready within {READY_WITHIN:?}:\n{}", self.log(log));
        }
    }
}

impl Executor {
    /// Kills the executor with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for executor in &mut self.executors {
            executor.kill();
        }
        self.kill_scheduler();
    }
}

/// `pos-etl ARGS`, its stderr piped.
fn node(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pos-etl"))
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start pos-etl {}: {e}", args.join(" ")))
}
