//! `--format delta`: tables read back with the deltalake crate and
//! DataFusion's Parquet reader equal the CSV outputs; a batch run replaces
//! a table in one commit, incremental runs append once each, with their
//! checkpoint in the commit; late events rewrite their rows; a run killed
//! before or between its commits, or racing another writer, loses and
//! repeats nothing. Locally, and in a bucket of a real S3 server over
//! Kafka on the test broker.

use std::io::Write;
use std::process::{Child, Stdio};

use crate::common::broker::Broker;
use crate::common::delta::{self, DeltaRead};
use crate::common::s3::S3Server;
use crate::common::tools::wait_for_line;
use crate::common::{CHANGE_HEADER, Workdir, summary};
use crate::incremental::{append_late, assert_late_run, data_dir, deliver, late_setup, six_days};
use crate::postgres::{WITHIN, generate, sorted};

/// The tables of a local run.
const LOCAL: [&str; 4] = ["--out", "lake/enriched", "--current-out", "lake/current"];

/// Asserts that the tables equal the full run's `e.csv` and `c.csv`.
fn assert_tables_equal(work: &Workdir, enriched: &DeltaRead, current: &DeltaRead) {
    assert_eq!(enriched.csv, sorted(&work.read("e.csv")), "enriched");
    assert_eq!(current.csv, sorted(&work.read("c.csv")), "current_inventory");
}

/// The `pos_etl` field of the newest commit of `table`.
fn last_commit(table: &DeltaRead) -> serde_json::Value {
    table.history()[0].clone()
}

#[test]
fn a_batch_run_replaces_each_table_in_one_commit_and_a_failed_run_leaves_it() {
    let work = Workdir::new();
    generate(&work, "20", "3");
    work.run(&["enrich", "--out", "e.csv", "--current-out", "c.csv"]).expect_code(0);
    let delta_run = ["enrich", "--format", "delta", "--out", "lake/enriched", "--current-out", "lake/current"];
    work.run(&delta_run).expect_code(0);
    let (enriched, current) = (delta::read(work.path(), "lake/enriched", &[]), delta::read(work.path(), "lake/current", &[]));
    assert_tables_equal(&work, &enriched, &current);
    assert_eq!((enriched.version(), current.version()), (0, 0));
    let schema = enriched.table.snapshot().unwrap().schema();
    let date_time = schema.fields().find(|field| field.name() == "date_time").unwrap();
    assert_eq!(date_time.data_type().to_string(), "timestamp_ntz", "SPEC 2: a timestamp without time zone");

    // Again: one more version, the same rows (replaced, not appended).
    work.run(&delta_run).expect_code(0);
    let again = delta::read(work.path(), "lake/enriched", &[]);
    assert_eq!(again.version(), 1);
    assert_eq!(again.csv, enriched.csv);
    let commit = last_commit(&again);
    assert_eq!((commit["operation"].as_str(), commit["operationParameters"]["mode"].as_str()), (Some("WRITE"), Some("Overwrite")), "{commit}");
    assert_eq!(commit["pos_etl"]["mode"], "full", "{commit}");

    // Broken SQL, and a run over --max-rejects: no new version.
    work.write("bad-sql/10_broken.sql", "CREATE VIEW enriched AS SELECT no_such_column FROM inventory_change;");
    let mut broken = delta_run.to_vec();
    broken.extend(["--sql-dir", "bad-sql"]);
    work.run(&broken).expect_code(1);
    work.write("data/inventory_change_zz_bad.csv", format!("{CHANGE_HEADER}T-bad,1,1,not a date,-1,1\n"));
    let mut strict = delta_run.to_vec();
    strict.extend(["--max-rejects", "0"]);
    work.run(&strict).expect_code(2);
    for table in ["lake/enriched", "lake/current"] {
        let now = delta::read(work.path(), table, &[]);
        assert_eq!(now.version(), 1, "{table}: a failed run committed");
    }
    assert_eq!(delta::read(work.path(), "lake/enriched", &[]).csv, enriched.csv);

    // A table of other columns is not written over.
    let run = work.run(&["enrich", "--format", "delta", "--out", "lake/current", "--max-rejects", "5"]);
    run.expect_code(1);
    assert!(run.stderr().contains("lake/current: writing to it failed: the table has other columns"), "{}", run.stderr());
    assert_eq!(delta::read(work.path(), "lake/current", &[]).version(), 1);

    let run = work.run(&["enrich", "--format", "delta", "--out", "-"]);
    run.expect_code(2);
    assert!(run.stderr().contains("--format parquet or delta needs a path or URL"), "{}", run.stderr());
}

/// `pos-etl enrich --format delta --incremental --summary-json JSON ARGS` on the local tables, expected to succeed.
fn incremental(work: &Workdir, json: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["enrich", "--format", "delta", "--incremental", "--summary-json", json];
    all.extend_from_slice(&LOCAL);
    all.extend_from_slice(args);
    work.run(&all).expect_code(0);
    summary(work, json)["incremental"].clone()
}

fn local_tables(work: &Workdir) -> (DeltaRead, DeltaRead) {
    (delta::read(work.path(), "lake/enriched", &[]), delta::read(work.path(), "lake/current", &[]))
}

/// Six days in six runs (files growing, then new files), one commit each;
/// nothing new commits nothing; a day sent again adds no row; a full run
/// starts the runs over.
#[test]
fn incremental_runs_append_once_each_with_their_positions_in_the_commit() {
    let (work, files, days) = six_days();
    let live = data_dir(&work, "live");
    for (index, day) in days.iter().enumerate() {
        let part = format!("part{index}");
        let rows = deliver(&files, std::slice::from_ref(day), &live, (index >= 3).then_some(part.as_str()));
        let run = incremental(&work, &format!("s{index}.json"), &["--data", "live"]);
        assert_eq!(run["first_run"], index == 0, "{run}");
        assert_eq!(run["records_read"], rows, "only the new rows are read: {run}");
        let (enriched, current) = local_tables(&work);
        assert_eq!((enriched.version(), current.version()), (index as i64, index as i64), "one commit per run and table");
    }
    let (enriched, current) = local_tables(&work);
    assert_tables_equal(&work, &enriched, &current);
    assert_eq!(enriched.transaction("pos-etl"), Some(6), "the run's number");
    let name = &files[0].name;
    let loaded = std::fs::metadata(live.join(name)).unwrap().len() as i64;
    assert_eq!(enriched.transaction(&format!("pos-etl:{name}")), Some(loaded), "the bytes of {name} loaded");
    let commit = last_commit(&enriched);
    assert_eq!(commit["operation"], "STREAMING UPDATE", "{commit}");
    assert_eq!(commit["pos_etl"]["run"], 6, "{commit}");
    assert!(commit["pos_etl"]["state"].as_str().unwrap().starts_with("_pos_etl/0000000006-"), "{commit}");

    let again = work.run(&["enrich", "--format", "delta", "--incremental", "--data", "live", LOCAL[0], LOCAL[1], LOCAL[2], LOCAL[3]]);
    again.expect_code(0);
    assert!(again.stderr().contains("nothing new since the checkpoint; nothing committed"), "{}", again.stderr());
    assert_eq!(local_tables(&work).0.version(), 5);

    // Day 5 again, in new files: every record is one already applied.
    let sent = deliver(&files, &days[4..5], &live, Some("again"));
    let run = incremental(&work, "again.json", &["--data", "live"]);
    assert_eq!((run["duplicates"].as_u64(), run["rows_appended"].as_u64()), (Some(sent), Some(0)), "{run}");
    let (enriched, current) = local_tables(&work);
    assert_tables_equal(&work, &enriched, &current);

    // A full run starts over: the next incremental run is a first one.
    work.run(&["enrich", "--format", "delta", "--data", "live", LOCAL[0], LOCAL[1], LOCAL[2], LOCAL[3]]).expect_code(0);
    assert_eq!(incremental(&work, "over.json", &["--data", "live"])["first_run"], true);
    let (enriched, current) = local_tables(&work);
    assert_tables_equal(&work, &enriched, &current);
}

/// A late change within the window rewrites the data files that hold its
/// store and item from its time on; one beyond it is rejected.
#[test]
fn late_events_rewrite_the_files_they_reach_back_into() {
    let work = Workdir::new();
    let (files, within, beyond) = late_setup(&work);
    incremental(&work, "first.json", &["--data", "live"]);
    append_late(&work, &files, &within, &beyond);
    let run = incremental(&work, "late.json", &["--data", "live", "--rejects", "late.csv"]);
    assert_late_run(&work, &run, &beyond);
    let (enriched, current) = local_tables(&work);
    assert_tables_equal(&work, &enriched, &current);
    let commit = last_commit(&enriched);
    assert_eq!(commit["operationParameters"]["outputMode"], "Update", "files removed: {commit}");
}

/// Starts `pos-etl ARGS` held at the failpoint `point`; returns once it is there.
fn hold_at(work: &Workdir, args: &[&str], env: &[(&str, String)], point: &str) -> Child {
    let mut env = env.to_vec();
    env.push(("POS_ETL_FAILPOINT", point.to_string()));
    let mut child = work.command(args, &env).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let log = work.path().join(format!("{point}.log"));
    if let Err(error) = wait_for_line(child.stderr.take().unwrap(), &format!("failpoint {point} reached"), WITHIN, log.clone()) {
        let _ = child.kill();
        panic!("{error}\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    }
    child
}

/// The text of `log` once it holds `wanted` (its lines are written by a
/// thread that follows the run's output), polled with a deadline.
fn logged(log: &std::path::Path, wanted: &str) -> String {
    let deadline = std::time::Instant::now() + WITHIN;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(wanted) || std::time::Instant::now() > deadline {
            return text;
        }
        std::thread::yield_now();
    }
}

fn kill(mut child: Child) {
    use std::os::unix::process::ExitStatusExt;
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9));
}

/// Over Kafka into a bucket: killed before its commits, and between them,
/// a run loses and repeats nothing; a writer that commits the same `txn`
/// application first makes the run fail; the positions committed are the
/// topics' ends; the secret is never shown.
#[test]
fn in_a_bucket_over_kafka_a_crash_or_a_race_loses_and_repeats_nothing() {
    let s3 = S3Server::start();
    let broker = Broker::start();
    let (work, files, days) = six_days();
    s3.bucket("lake");
    let options = s3.options();
    let option_values: Vec<String> = options.iter().filter(|option| *option != "--storage-option").cloned().collect();
    let (e, c) = ("s3://lake/pos/enriched", "s3://lake/pos/current");
    let tables = || (delta::read(work.path(), e, &option_values), delta::read(work.path(), c, &option_values));
    let chunks = [&days[0..2], &days[2..3], &days[3..4], &days[4..6]];
    let mut produced = 0;
    let mut args_of = |index: usize| {
        let data = format!("chunk{index}");
        let dir = data_dir(&work, &data);
        produced += deliver(&files, chunks[index], &dir, None);
        work.run(&["produce", "--brokers", &broker.address, "--data", &data, "--partitions", "2"]).expect_code(0);
        let mut args: Vec<String> = ["enrich", "--format", "delta", "--incremental", "--brokers", &broker.address, "--data", &data]
            .map(str::to_string)
            .to_vec();
        args.extend(["--out", e, "--current-out", c, "--summary-json", &format!("k{index}.json")].map(str::to_string));
        args.extend(options.iter().cloned());
        args
    };
    let no_env: [(&str, String); 0] = [];
    // The locks a killed run leaves, aged as if it died minutes ago (the
    // next run takes them over; see the object-store tests).
    let age_locks = || {
        let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(600);
        for key in ["pos/enriched.lock", "pos/current.lock"] {
            std::fs::File::options().write(true).open(s3.object("lake", key)).unwrap().set_modified(long_ago).unwrap();
        }
    };
    let run = |args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = work.run(&args);
        assert!(!run.stderr().contains(s3.secret_key), "the secret is shown: {}", run.stderr());
        run
    };

    let first = args_of(0);
    run(&first).expect_code(0);
    let before = tables();

    // Killed before its commits: nothing changes; the next run commits the chunk once.
    let second = args_of(1);
    let borrowed: Vec<&str> = second.iter().map(String::as_str).collect();
    kill(hold_at(&work, &borrowed, &no_env, "before-delta-commits"));
    age_locks();
    let after_kill = tables();
    assert_eq!((after_kill.0.version(), after_kill.1.version()), (before.0.version(), before.1.version()));
    assert_eq!(after_kill.0.csv, before.0.csv);
    run(&second).expect_code(0);

    // Killed between them: current_inventory is new, enriched not; the next run replaces the former's rows.
    let third = args_of(2);
    let before = tables();
    let borrowed: Vec<&str> = third.iter().map(String::as_str).collect();
    kill(hold_at(&work, &borrowed, &no_env, "between-delta-commits"));
    age_locks();
    let after_kill = tables();
    assert_eq!((after_kill.0.version(), after_kill.1.version()), (before.0.version(), before.1.version() + 1));
    run(&third).expect_code(0);

    // Another writer commits the same txn application while the run holds:
    // the run's commit is refused, and the next run applies the chunk.
    let fourth = args_of(3);
    let borrowed: Vec<&str> = fourth.iter().map(String::as_str).collect();
    let mut child = hold_at(&work, &borrowed, &no_env, "before-delta-commits");
    let (enriched, _) = tables();
    let next_run = enriched.transaction("pos-etl").unwrap() + 1;
    commit_transaction(&enriched, next_run);
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let status = child.wait().unwrap();
    let stderr = logged(&work.path().join("before-delta-commits.log"), "committing to it failed");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("Delta table {e}")) && stderr.contains("Concurrent transaction failed"), "{stderr}");
    run(&fourth).expect_code(0);

    let (enriched, current) = tables();
    assert_tables_equal(&work, &enriched, &current);
    // The positions: each partition's next offset, all the records produced.
    let mut positions = 0;
    for topic in ["InventorySnapshotOnline", "InventorySnapshotStore001", "InventoryChangeOnline", "InventoryChangeStore001"] {
        for partition in 0..2 {
            positions += enriched.transaction(&format!("pos-etl:{topic}/{partition}")).unwrap_or(0);
        }
    }
    assert_eq!(positions as u64, produced, "the offsets committed account for every record produced");
    for index in 0..4 {
        let json = work.read(&format!("k{index}.json"));
        assert!(!json.contains(s3.secret_key), "the secret is in k{index}.json");
    }
    assert_eq!(summary(&work, "k3.json")["incremental"]["first_run"], false);
}

/// Commits to `table` a version with nothing but the `txn` action
/// `pos-etl` at `version`: a writer racing a run on the same checkpoint.
fn commit_transaction(table: &DeltaRead, version: i64) {
    use deltalake::kernel::transaction::CommitBuilder;
    use deltalake::kernel::{Action, Transaction};
    use deltalake::protocol::{DeltaOperation, OutputMode};
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let operation = DeltaOperation::StreamingUpdate { output_mode: OutputMode::Append, query_id: "racer".into(), epoch_id: version };
        CommitBuilder::default()
            .with_actions(vec![Action::Txn(Transaction::new("pos-etl", version))])
            .build(Some(table.table.snapshot().unwrap()), table.table.log_store(), operation)
            .await
            .unwrap();
    });
}
