//! `enrich --cluster`: the rules on a real Ballista cluster (`pos-etl
//! cluster` scheduler and executors as separate processes) give the bytes
//! of a local run, and a cluster that fails leaves the outputs as they were.

use std::time::Duration;

use crate::common::cluster::Cluster;
use crate::common::{CHANGE_HEADER, SNAPSHOT_HEADER, Workdir, summary};

/// Generated exports, plus what the rules must get right on a cluster as
/// well: records sent twice, a snapshot that comes late (in a file of its
/// own, earlier than changes already exported), online BOPIS orders, and
/// a bad record.
fn fixture(items: &str, days: &str) -> Workdir {
    let work = Workdir::new();
    work.run(&["generate", "--out-dir", "data", "--items", items, "--days", days, "--seed", "11"]).expect_code(0);
    let changes = work.read("data/inventory_change_store_001.csv");
    let sent_twice: String = changes.lines().skip(1).take(5).map(|line| format!("{line}\n")).collect();
    work.write(
        "data/inventory_change_resent.csv",
        format!("{CHANGE_HEADER}{sent_twice}t-bopis,100001,0,2021-01-02 10:00:00,-2,4\nt-bad,100001,1,not a time,-1,1\n"),
    );
    work.write("data/inventory_snapshot_late.csv", format!("{SNAPSHOT_HEADER}100001,9,1,2021-01-02 12:30:00,40\n100002,9,0,2021-01-02 12:30:00,7\n"));
    work
}

/// The summary of a run without what differs between two runs of the same
/// inputs: the time taken and the names of the files written.
fn counts(work: &Workdir, name: &str) -> serde_json::Value {
    let mut summary = summary(work, name);
    let object = summary.as_object_mut().unwrap();
    object.remove("elapsed_seconds");
    object.remove("rejects_file");
    for output in object["outputs"].as_array_mut().unwrap() {
        output.as_object_mut().unwrap().remove("path");
    }
    summary
}

#[test]
fn enrich_on_a_cluster_writes_the_bytes_of_a_local_run() {
    let work = fixture("40", "4");
    let cluster = Cluster::start(2);
    std::fs::create_dir(work.path().join("staging")).unwrap();
    for extension in ["csv", "parquet"] {
        let (enriched, current) = (format!("enriched.{extension}"), format!("current.{extension}"));
        work.run(&["enrich", "--out", &format!("local-{enriched}"), "--current-out", &format!("local-{current}"), "--summary-json", "local.json"])
            .expect_code(0);
        let run = work.run(&[
            "enrich", "--cluster", &cluster.url(), "--cluster-staging", "staging", "--out", &enriched,
            "--current-out", &current, "--summary-json", "cluster.json",
        ]);
        run.expect_code(0);
        for (name, what) in [(&enriched, "enriched"), (&current, "current_inventory")] {
            let bytes = |path: &str| std::fs::read(work.path().join(path)).unwrap();
            assert!(bytes(name) == bytes(&format!("local-{name}")), "{what} as {extension} differs from the local run's");
        }
        assert_eq!(
            work.read(&format!("{enriched}.rejects.csv")),
            work.read(&format!("local-{enriched}.rejects.csv")),
            "the rejects, with their file and line"
        );
        let cluster_counts = counts(&work, "cluster.json");
        assert_eq!(cluster_counts, counts(&work, "local.json"), "the summary's counts");
        assert!(cluster_counts["duplicates"].as_u64() >= Some(5), "the records sent twice: {cluster_counts}");
        assert_eq!(cluster_counts["rejected"], 1, "the bad record");
    }
    let enriched = work.read("enriched.csv");
    assert!(enriched.lines().any(|line| line.contains("t-bopis") && line.contains(",online,bopis,")), "the online BOPIS order");
    assert!(enriched.contains("2021-01-02 12:30:00,40,snapshot_only"), "the late snapshot");
    let tasks = (0..2).map(|index| cluster.log(&format!("executor-{index}.log")).matches("Execute task").count()).sum::<usize>();
    assert!(tasks > 0, "the executors ran no task:\n{}", cluster.log("scheduler.log"));
    let left: Vec<_> = std::fs::read_dir(work.path().join("staging")).unwrap().collect();
    assert!(left.is_empty(), "the staged inputs are removed after the run: {left:?}");
}

#[test]
fn an_executor_killed_mid_job_gives_the_full_output_or_leaves_the_previous_one() {
    let work = fixture("20000", "10");
    work.run(&["enrich", "--out", "local.csv"]).expect_code(0);
    std::fs::create_dir(work.path().join("staging")).unwrap();
    work.write("enriched.csv", "the previous output\n");
    let mut cluster = Cluster::start(2);
    let url = cluster.url();
    let mut run = work.command::<&str, &str>(
        &["enrich", "--cluster", &url, "--cluster-staging", "staging", "--out", "enriched.csv"],
        &[],
    );
    let mut child = run.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let executor = cluster.executor(0);
    if executor.tasks.recv_timeout(Duration::from_secs(120)).is_err() {
        let _ = child.kill();
        panic!("executor 0 started no task within 120 s:\n{}", cluster.log("scheduler.log"));
    }
    executor.kill();
    // Ballista takes the executor for dead after 5 s without a heartbeat.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output().unwrap()));
    let output = finished.recv_timeout(Duration::from_secs(120)).expect("the run ends within 120 s of the kill");
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        // Ballista ran the lost tasks again on the other executor.
        Some(0) => {
            let (got, want) = (work.read("enriched.csv"), work.read("local.csv"));
            assert!(got == want, "a completed job gives the local run's rows: {} lines, not {}: {stderr}", got.lines().count(), want.lines().count());
            let log = cluster.log("scheduler.log");
            assert!(log.contains("Removing executor") || log.contains("FetchPartitionError"), "the scheduler handled the loss:\n{log}");
        }
        Some(1) => {
            assert_eq!(work.read("enriched.csv"), "the previous output\n", "a failed job leaves the output");
            assert!(stderr.contains(&url), "the error names the cluster: {stderr}");
        }
        other => panic!("exit {other:?}: {stderr}"),
    }
    // The cluster goes on with one executor.
    work.run(&["enrich", "--cluster", &url, "--cluster-staging", "staging", "--out", "enriched.csv"]).expect_code(0);
    assert!(work.read("enriched.csv") == work.read("local.csv"));
}

#[test]
fn a_stopped_scheduler_fails_the_run_naming_it_and_leaves_the_output() {
    let work = fixture("20", "2");
    std::fs::create_dir(work.path().join("staging")).unwrap();
    work.write("enriched.csv", "the previous output\n");
    let mut cluster = Cluster::start(1);
    let url = cluster.url();
    cluster.kill_scheduler();
    let run = work.run(&["enrich", "--cluster", &url, "--cluster-staging", "staging", "--out", "enriched.csv"]);
    run.expect_code(1);
    assert!(run.stderr().contains(&format!("cannot reach the Ballista scheduler at {url}")), "{}", run.stderr());
    assert_eq!(work.read("enriched.csv"), "the previous output\n");
    assert_eq!(std::fs::read_dir(work.path().join("staging")).unwrap().count(), 0, "nothing staged");
    let run = work.run(&["enrich", "--cluster", &url, "--cluster-staging", "no-such-dir", "--out", "enriched.csv"]);
    run.expect_code(1);
    assert!(run.stderr().contains("--cluster-staging no-such-dir is not a directory"), "{}", run.stderr());
}

#[test]
fn cluster_flags_that_make_no_sense_are_usage_errors() {
    let work = fixture("20", "2");
    let cases: [&[&str]; 4] = [
        &["enrich", "--out", "e.csv", "--cluster", "http://sched:50050", "--cluster-staging", "staging"],
        &["enrich", "--out", "e.csv", "--cluster", "df://sched:50050"],
        &["enrich", "--format", "delta", "--incremental", "--out", "t", "--cluster", "df://sched", "--cluster-staging", "s"],
        &["stream", "--brokers", "127.0.0.1:1", "--postgres", "postgresql://x@127.0.0.1:1/x", "--cluster", "df://sched", "--cluster-staging", "s"],
    ];
    for args in cases {
        let run = work.run(args);
        run.expect_code(2);
        assert!(run.stderr().contains("--cluster"), "{}", run.stderr());
    }
}
