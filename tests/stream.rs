//! `pos-etl stream` on the test broker and a real PostgreSQL server: what
//! arrives while it runs is applied batch by batch with the full run's
//! result; SIGTERM ends it cleanly, a restart goes on where it stopped and
//! stops when idle; current_inventory alone is kept without enriched;
//! PostgreSQL or the broker going away mid-stream is waited out, and a
//! stream killed before a commit is restarted, without a record lost or
//! applied twice; a poison message becomes a reject.

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::common::broker::Broker;
use crate::common::postgres::PgServer;
use crate::common::s3::S3Server;
use crate::common::tools::follow_lines;
use crate::common::{Workdir, summary};
use crate::incremental::{EventFile, assert_tables_equal, data_dir, deliver, six_days};
use crate::postgres::{CURRENT_INVENTORY, sorted};

/// How long a stream may take to get where a test waits for it.
const WITHIN: Duration = Duration::from_secs(60);

/// The six days of [`six_days`] (with the full run's outputs), sent in two halves.
struct Exports {
    work: Workdir,
    files: Vec<EventFile>,
    days: Vec<String>,
}

impl Exports {
    fn new() -> Exports {
        let (work, files, days) = six_days();
        Exports { work, files, days }
    }

    /// Produces the first three days; returns their records.
    fn first_half(&self, broker: &Broker) -> u64 {
        self.produce(broker, 0..3, "first")
    }

    /// Produces the last three days; returns their records.
    fn second_half(&self, broker: &Broker) -> u64 {
        self.produce(broker, 3..6, "second")
    }

    /// Writes the events of `days` into the data directory `name` and produces them.
    fn produce(&self, broker: &Broker, days: std::ops::Range<usize>, name: &str) -> u64 {
        let rows = deliver(&self.files, &self.days[days], &data_dir(&self.work, name), None);
        self.work.run(&["produce", "--brokers", &broker.address, "--data", name, "--partitions", "2"]).expect_code(0);
        rows
    }
}

/// Produces the first half of `exports` and starts a stream (with `extra`
/// flags) that has applied it; returns its records and the stream.
fn streaming_first_half(exports: &Exports, pg: &PgServer, broker: &Broker, extra: &[&str]) -> (u64, Stream) {
    let first = exports.first_half(broker);
    let stream = spawn_stream(&exports.work, pg, broker, extra);
    wait_for_records(pg, first);
    (first, stream)
}

/// A running `pos-etl stream`.
struct Stream {
    child: Child,
    /// A message for each line of its stderr saying it tries a batch again.
    retried: mpsc::Receiver<()>,
}

/// Starts `pos-etl stream` into `pg` with `extra` flags; its stderr goes to `stream.err`.
fn spawn_stream(work: &Workdir, pg: &PgServer, broker: &Broker, extra: &[&str]) -> Stream {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pos-etl"))
        .args(["stream", "--brokers", &broker.address, "--postgres", &pg.url, "--metrics", "m.jsonl"])
        .args(["--summary-json", "s.json", "--progress", "never"])
        // Partitions are read at their own pace, so a batch may hold a
        // change of day 3 and the next the snapshot of day 1 before it:
        // late, but within this window, and applied exactly.
        .args(["--late-window", "30d"])
        .args(extra)
        .current_dir(work.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let retried = follow_lines(stderr, "trying the batch again", work.path().join("stream.err"));
    Stream { child, retried }
}

/// The lines of `--metrics` so far.
fn metrics(work: &Workdir) -> Vec<serde_json::Value> {
    std::fs::read_to_string(work.path().join("m.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a metrics line is JSON"))
        .collect()
}

fn records_committed(work: &Workdir) -> u64 {
    metrics(work).iter().map(|line| line["records"].as_u64().unwrap()).sum()
}

/// Records committed so far by the checkpoint in the database: the offsets
/// stored, each topic new to the test.
fn offsets_committed(pg: &PgServer) -> u64 {
    if pg.psql("SELECT to_regclass('pos_etl_checkpoint') IS NULL") == "t\n" {
        return 0;
    }
    pg.psql("SELECT coalesce(sum(next), 0) FROM pos_etl_checkpoint WHERE source = 'kafka'").trim().parse().unwrap()
}

/// Waits until the stream has committed `records` in all.
fn wait_for_records(pg: &PgServer, records: u64) {
    pg.wait_until(&format!("{records} records committed"), WITHIN, || offsets_committed(pg) == records);
}

/// Waits for `stream` to exit, within `within`, and returns its exit code;
/// kills it if it does not.
fn exit_code(stream: &mut Stream, within: Duration) -> Option<i32> {
    let id = stream.child.id().to_string();
    std::thread::scope(|scope| {
        let (exited, wait) = mpsc::channel();
        let child = &mut stream.child;
        scope.spawn(move || exited.send(child.wait().unwrap()));
        match wait.recv_timeout(within) {
            Ok(status) => status.code(),
            Err(_) => {
                Command::new("kill").args(["-KILL", &id]).status().unwrap();
                panic!("the stream did not exit within {within:?}");
            }
        }
    })
}

/// Stops `stream` with SIGTERM once `records` are committed; expects exit 0 within a few seconds.
fn stop_after(work: &Workdir, pg: &PgServer, stream: &mut Stream, records: u64) {
    wait_for_records(pg, records);
    Command::new("kill").args(["-TERM", &stream.child.id().to_string()]).status().unwrap();
    assert_eq!(exit_code(stream, Duration::from_secs(10)), Some(0), "{}", work.read("stream.err"));
}

#[test]
fn what_arrives_is_applied_batch_by_batch() {
    let pg = PgServer::start();
    let broker = Broker::start();
    let exports = Exports::new();
    let work = &exports.work;
    let (first, mut stream) = streaming_first_half(&exports, &pg, &broker, &["--max-batch-records", "100"]);
    let second = exports.second_half(&broker);
    stop_after(work, &pg, &mut stream, first + second);
    assert_tables_equal(&pg, work, "e.csv", "c.csv");

    let lines = metrics(work);
    assert_eq!(records_committed(work), first + second);
    assert!(lines.len() as u64 >= (first + second).div_ceil(100), "batches of at most 100 records: {}", lines.len());
    for (index, line) in lines.iter().enumerate() {
        assert_eq!(line["batch"], index as u64 + 1);
        assert!(line["records"].as_u64().unwrap() <= 100, "{line}");
        for field in ["rows_written", "decode_ms", "rules_ms", "write_ms", "commit_ms"] {
            assert!(line[field].is_number(), "{field} in {line}");
        }
        let (mean, max) = (line["latency_ms"].as_f64().unwrap(), line["max_latency_ms"].as_f64().unwrap());
        assert!(0.0 < mean && mean <= max, "{line}");
        assert!(line["lag"].as_object().unwrap().keys().any(|key| key.starts_with("InventoryChangeStore001/")), "{line}");
    }
    let summary = summary(work, "s.json");
    assert_eq!(summary["events_read"], first + second);
    assert_eq!(summary["stream"]["batches"], lines.len() as u64);
    assert!(summary["stream"]["latency"]["p95_ms"].as_f64().unwrap() > 0.0, "{summary}");
    assert!(work.read("stream.err").contains("latency p50"), "{}", work.read("stream.err"));
}

#[test]
fn sigterm_ends_it_cleanly_and_a_restart_goes_on_from_the_last_commit() {
    let pg = PgServer::start();
    let broker = Broker::start();
    let exports = Exports::new();
    let work = &exports.work;
    let (first, mut stream) = streaming_first_half(&exports, &pg, &broker, &[]);
    stop_after(work, &pg, &mut stream, first);

    let second = exports.second_half(&broker);
    let mut stream = spawn_stream(work, &pg, &broker, &["--stop-when-idle", "2s"]);
    assert_eq!(exit_code(&mut stream, WITHIN), Some(0), "{}", work.read("stream.err"));
    assert_eq!(summary(work, "s.json")["events_read"], second, "the restart reads only what is new");
    assert_tables_equal(&pg, work, "e.csv", "c.csv");
}

#[test]
fn postgres_going_away_is_waited_out_without_losing_or_repeating_a_record() {
    let mut pg = PgServer::start();
    let broker = Broker::start();
    let exports = Exports::new();
    let work = &exports.work;
    let (first, mut stream) = streaming_first_half(&exports, &pg, &broker, &[]);
    let mut second = 0;
    pg.restart(|| {
        second = exports.second_half(&broker);
        stream.retried.recv_timeout(WITHIN).expect("the stream tries the batch again while the server is down");
    });
    stop_after(work, &pg, &mut stream, first + second);
    assert_tables_equal(&pg, work, "e.csv", "c.csv");
    let lines = metrics(work);
    assert!(lines.iter().any(|line| line["retries"].as_u64().unwrap() > 0), "{lines:?}");
    assert_eq!(summary(work, "s.json")["duplicates"], 0, "nothing applied twice");
}

#[test]
fn current_inventory_alone_keeps_the_full_runs_stock_without_enriched() {
    let pg = PgServer::start();
    let broker = Broker::start();
    let exports = Exports::new();
    let work = &exports.work;
    let first = exports.first_half(&broker);
    let aggregated = ["--tables", "current_inventory", "--stop-when-idle", "2s", "--max-batch-records", "100"];
    let mut stream = spawn_stream(work, &pg, &broker, &aggregated);
    assert_eq!(exit_code(&mut stream, WITHIN), Some(0), "{}", work.read("stream.err"));
    let second = exports.second_half(&broker);
    let mut stream = spawn_stream(work, &pg, &broker, &aggregated);
    assert_eq!(exit_code(&mut stream, WITHIN), Some(0), "{}", work.read("stream.err"));

    assert_eq!(offsets_committed(&pg), first + second);
    assert_eq!(sorted(&pg.csv(CURRENT_INVENTORY)), sorted(&work.read("c.csv")), "current_inventory");
    assert_eq!(pg.psql("SELECT to_regclass('enriched') IS NULL"), "t\n", "enriched is not kept");
    assert!(work.read("stream.err").contains("enriched rows, not kept (--tables)"), "{}", work.read("stream.err"));
    let summary = summary(work, "s.json");
    assert_eq!(summary["events_read"], second);
    assert_eq!(summary["left_out_by_rules"], 0, "every record computed is accounted for: {summary}");

    // Both tables now would leave enriched without the rows so far.
    let mut stream = spawn_stream(work, &pg, &broker, &["--stop-when-idle", "2s"]);
    assert_eq!(exit_code(&mut stream, WITHIN), Some(1));
    let error = work.read("stream.err");
    assert!(
        error.contains("the runs so far kept current_inventory, this one would keep enriched,current_inventory: a run without --incremental"),
        "{error}"
    );
}

/// Killed with SIGKILL after a batch's rows are written and before its
/// commit (its checkpoint waits for a row another session holds): nothing
/// of the batch is in the tables, and the restart applies it once.
#[test]
fn killed_between_write_and_commit_then_restarted_loses_and_repeats_nothing() {
    let pg = PgServer::start();
    let broker = Broker::start();
    let exports = Exports::new();
    let work = &exports.work;
    let (first, mut stream) = streaming_first_half(&exports, &pg, &broker, &[]);
    let enriched_rows = || pg.psql("SELECT count(*) FROM enriched");
    let before = enriched_rows();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let reader = pg.connect().await;
        reader.batch_execute("BEGIN; SELECT * FROM pos_etl_checkpoint FOR UPDATE").await.unwrap();
        let mark = pg.log_mark();
        exports.second_half(&broker);
        pg.wait_for_log(mark, "COPY \"public\".\"enriched\" (", WITHIN);
        pg.wait_for_log(mark, "still waiting for ShareLock", WITHIN);
        stream.child.kill().unwrap();
        assert_eq!(stream.child.wait().unwrap().signal(), Some(9));
        reader.batch_execute("ROLLBACK").await.unwrap();
    });
    assert_eq!(offsets_committed(&pg), first, "the killed batch's offsets are not stored");
    assert_eq!(enriched_rows(), before, "nor any of its rows");

    let mut stream = spawn_stream(work, &pg, &broker, &["--stop-when-idle", "2s"]);
    assert_eq!(exit_code(&mut stream, WITHIN), Some(0), "{}", work.read("stream.err"));
    assert_tables_equal(&pg, work, "e.csv", "c.csv");
    assert_eq!(summary(work, "s.json")["duplicates"], 0, "nothing applied twice");
}

/// The broker killed and started again on its storage while the stream
/// runs: the stream says it waits, and goes on with what is sent after.
#[test]
fn a_broker_restarted_mid_stream_is_waited_for() {
    let s3 = S3Server::start();
    let mut broker = Broker::start_on(&s3);
    let pg = PgServer::start();
    let exports = Exports::new();
    let work = &exports.work;
    let (first, mut stream) = streaming_first_half(&exports, &pg, &broker, &[]);
    broker.restart();
    let second = exports.second_half(&broker);
    stop_after(work, &pg, &mut stream, first + second);
    assert_tables_equal(&pg, work, "e.csv", "c.csv");
    let error = work.read("stream.err");
    assert!(error.contains("(waiting for the brokers)"), "{error}");
    assert_eq!(summary(work, "s.json")["duplicates"], 0, "nothing applied twice");
}

/// A message that is not JSON of either form becomes a reject naming its
/// topic, partition and offset; the stream goes on.
#[test]
fn a_poison_message_is_rejected_and_the_stream_goes_on() {
    let pg = PgServer::start();
    let broker = Broker::start();
    let exports = Exports::new();
    let work = &exports.work;
    let (first, mut stream) = streaming_first_half(&exports, &pg, &broker, &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (partition, offset) = runtime.block_on(async {
        let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &broker.address).create().unwrap();
        let record = FutureRecord::to("InventoryChangeStore001").partition(0).key("poison").payload("{not json");
        producer.send(record, Duration::from_secs(10)).await.map(|delivery| (delivery.partition, delivery.offset)).unwrap()
    });
    let second = exports.second_half(&broker);
    stop_after(work, &pg, &mut stream, first + second + 1);
    assert_tables_equal(&pg, work, "e.csv", "c.csv");
    let rejects = pg.psql("SELECT source || ' ' || reason FROM rejects");
    assert!(
        rejects.contains(&format!("InventoryChangeStore001/{partition}@{offset} not valid JSON of either form")),
        "{rejects}"
    );
    assert_eq!(summary(work, "s.json")["rejected"], 1);
}

#[test]
fn stream_needs_kafka_and_postgres() {
    let work = Workdir::new();
    let run = work.run(&["stream", "--brokers", "127.0.0.1:9"]);
    run.expect_code(2);
    assert!(run.stderr().contains("stream reads Kafka and writes PostgreSQL: give --postgres URL"), "{}", run.stderr());
}
