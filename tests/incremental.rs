//! `enrich --postgres --incremental` on a real PostgreSQL server (and Kafka
//! on the test broker): generated data cut into chunks by day and delivered
//! run after run gives the tables of one full run; chunks delivered twice,
//! late events, a snapshot that left the topics and a run killed between
//! its COPY and its COMMIT change nothing of that.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::broker::Broker;
use crate::common::postgres::PgServer;
use crate::common::{Workdir, summary};
use crate::postgres::{CURRENT_INVENTORY, WITHIN, generate, sorted};

/// The lookup files, copied as they are into every data directory.
const LOOKUPS: [&str; 3] = ["store.csv", "item.csv", "inventory_change_type.csv"];

/// One event file of the generated data, cut into its lines.
pub struct EventFile {
    pub name: String,
    /// The header line, with the generator's byte-order mark.
    header: String,
    rows: Vec<String>,
}

impl EventFile {
    fn is_snapshot(&self) -> bool {
        self.name.starts_with("inventory_snapshot_")
    }

    /// The store and item of a row, and its date_time (`YYYY-MM-DD HH:MM:SS`).
    fn key<'a>(&self, row: &'a str) -> ((&'a str, &'a str), &'a str) {
        let fields: Vec<&str> = row.split(',').collect();
        let item = if self.is_snapshot() { fields[0] } else { fields[1] };
        ((fields[2], item), fields[3])
    }
}

/// The event files of `dir`.
pub fn event_files(dir: &Path) -> Vec<EventFile> {
    let mut files: Vec<EventFile> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| !LOOKUPS.contains(&name.as_str()))
        .map(|name| {
            let text = std::fs::read_to_string(dir.join(&name)).unwrap();
            let mut lines = text.lines().map(|line| line.trim_end_matches('\r').to_string());
            let header = lines.next().unwrap();
            EventFile { name, header, rows: lines.filter(|line| !line.is_empty()).collect() }
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
}

/// The days the events fall on, in order.
pub fn days(files: &[EventFile]) -> Vec<String> {
    let mut days: Vec<String> =
        files.iter().flat_map(|file| file.rows.iter().map(|row| file.key(row).1[..10].to_string())).collect();
    days.sort();
    days.dedup();
    days
}

/// Appends `rows` to `dir/name` as the generator writes (CRLF), the header first if it is new.
fn append(dir: &Path, name: &str, header: &str, rows: &[&String]) {
    use std::io::Write;
    let path = dir.join(name);
    let new = !path.exists();
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
    if new {
        write!(file, "{header}\r\n").unwrap();
    }
    for row in rows {
        write!(file, "{row}\r\n").unwrap();
    }
}

/// A data directory `name` in `work` with the lookups of `data/`.
pub fn data_dir(work: &Workdir, name: &str) -> std::path::PathBuf {
    let dir = work.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for lookup in LOOKUPS {
        std::fs::copy(work.path().join("data").join(lookup), dir.join(lookup)).unwrap();
    }
    dir
}

/// Writes the rows of `files` on `days` into `dir`, each file appended to
/// under its own name, or under `NAME_SUFFIX.csv` if `suffix` is given
/// (with its header, even if no row falls on `days`). Returns the rows written.
pub fn deliver(files: &[EventFile], days: &[String], dir: &Path, suffix: Option<&str>) -> u64 {
    let mut written = 0;
    for file in files {
        let rows: Vec<&String> = file.rows.iter().filter(|row| days.iter().any(|day| file.key(row).1.starts_with(day.as_str()))).collect();
        // Written even without rows: produce sends every file's topic, so that it exists.
        let name = match suffix {
            Some(suffix) => file.name.replace(".csv", &format!("_{suffix}.csv")),
            None => file.name.clone(),
        };
        append(dir, &name, &file.header, &rows);
        written += rows.len() as u64;
    }
    written
}

/// `pos-etl enrich --postgres URL --incremental --summary-json JSON ARGS`, expected to succeed.
fn incremental(work: &Workdir, pg: &PgServer, json: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["enrich", "--postgres", &pg.url, "--incremental", "--summary-json", json];
    all.extend_from_slice(args);
    work.run(&all).expect_code(0);
    summary(work, json)["incremental"].clone()
}

/// Six generated days in `data/` and the full run's tables in `e.csv` and
/// `c.csv`; the event files cut into lines, and their days.
pub fn six_days() -> (Workdir, Vec<EventFile>, Vec<String>) {
    let work = Workdir::new();
    generate(&work, "20", "6");
    work.run(&["enrich", "--out", "e.csv", "--current-out", "c.csv"]).expect_code(0);
    let files = event_files(&work.path().join("data"));
    let days = days(&files);
    assert_eq!(days.len(), 6);
    (work, files, days)
}

/// Asserts that the tables equal the full run's files.
pub fn assert_tables_equal(pg: &PgServer, work: &Workdir, enriched: &str, current: &str) {
    assert_eq!(sorted(&pg.csv("SELECT * FROM enriched")), sorted(&work.read(enriched)), "enriched");
    assert_eq!(sorted(&pg.csv(CURRENT_INVENTORY)), sorted(&work.read(current)), "current_inventory");
}

/// Six days in six runs: three by files growing, three as new files; then
/// nothing new; then a day delivered again.
#[test]
fn csv_chunks_give_the_full_runs_tables_and_a_chunk_sent_twice_adds_nothing() {
    let pg = PgServer::start();
    let (work, files, days) = six_days();
    let live = data_dir(&work, "live");
    for (index, day) in days.iter().enumerate() {
        let part = format!("part{index}");
        let rows = deliver(&files, std::slice::from_ref(day), &live, (index >= 3).then_some(part.as_str()));
        let run = incremental(&work, &pg, &format!("s{index}.json"), &["--data", "live"]);
        assert_eq!(run["first_run"], index == 0, "{run}");
        assert_eq!(run["records_read"], rows, "only the new rows are read: {run}");
        assert_eq!(run["late_rejected"], 0);
    }
    assert_tables_equal(&pg, &work, "e.csv", "c.csv");
    let rows = pg.psql("SELECT count(*) FROM enriched");

    let again = work.run(&["enrich", "--postgres", &pg.url, "--incremental", "--data", "live"]);
    again.expect_code(0);
    assert!(again.stderr().contains("nothing new since the checkpoint; nothing committed"), "{}", again.stderr());

    // Day 5 again, in new files: every record is one already applied.
    let sent = deliver(&files, &days[4..5], &live, Some("again"));
    let run = incremental(&work, &pg, "again.json", &["--data", "live"]);
    assert_eq!((run["duplicates"].as_u64(), run["rows_appended"].as_u64()), (Some(sent), Some(0)), "{run}");
    assert_eq!(pg.psql("SELECT count(*) FROM enriched"), rows);
    assert_tables_equal(&pg, &work, "e.csv", "c.csv");

    // A file rewritten, not appended to, is an error naming it.
    let path = live.join(&files[0].name);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("2021-01-01", "2021-01-02", 1)).unwrap();
    let run = work.run(&["enrich", "--postgres", &pg.url, "--incremental", "--data", "live"]);
    run.expect_code(1);
    assert!(run.stderr().contains(&files[0].name) && run.stderr().contains("changed since an incremental run loaded it"), "{}", run.stderr());
    assert_tables_equal(&pg, &work, "e.csv", "c.csv");

    // A full load starts over: the checkpoint goes with the tables it accounted for.
    work.run(&["enrich", "--postgres", &pg.url, "--data", "live"]).expect_code(0);
    assert_eq!(pg.psql("SELECT to_regclass('pos_etl_checkpoint') IS NULL"), "t\n");
    assert_eq!(incremental(&work, &pg, "over.json", &["--data", "live"])["first_run"], true);
}

/// A late event within the window rewrites its store and item exactly; one
/// beyond it is rejected as late and changes nothing.
#[test]
fn late_events_are_applied_within_the_window_and_rejected_beyond_it() {
    let pg = PgServer::start();
    let work = Workdir::new();
    let (files, within, beyond) = late_setup(&work);
    incremental(&work, &pg, "first.json", &["--data", "live"]);
    let before = pg.csv("SELECT * FROM enriched");
    append_late(&work, &files, &within, &beyond);
    let run = incremental(&work, &pg, "late.json", &["--data", "live", "--rejects", "late.csv"]);
    assert_late_run(&work, &run, &beyond);
    assert_tables_equal(&pg, &work, "e.csv", "c.csv");
    assert!(!before.is_empty());
}

/// A change of a file and its row.
pub type Pick = (usize, String);

/// Six generated days in `data/`; in `live/` all their events but two
/// changes, one within the default late window before the last event of
/// its store and item, one beyond it; the expected tables (of everything
/// but the one beyond) in `e.csv` and `c.csv`.
pub fn late_setup(work: &Workdir) -> (Vec<EventFile>, Pick, Pick) {
    generate(work, "20", "6");
    let files = event_files(&work.path().join("data"));
    // The last event time of each store and item.
    let mut last = std::collections::HashMap::new();
    for file in &files {
        for row in &file.rows {
            let (pair, time) = file.key(row);
            let entry = last.entry(pair).or_insert(time);
            *entry = (*entry).max(time);
        }
    }
    let seconds = |time: &str| chrono::NaiveDateTime::parse_from_str(time, "%Y-%m-%d %H:%M:%S").unwrap().and_utc().timestamp();
    let before_last = |file: &EventFile, row: &String| seconds(last[&file.key(row).0]) - seconds(file.key(row).1);
    let changes = files.iter().filter(|file| !file.is_snapshot());
    let pick = |range: std::ops::Range<i64>| {
        changes.clone().find_map(|file| file.rows.iter().find(|row| range.contains(&before_last(file, row))).map(|row| (file, row)))
    };
    let index = |file: &EventFile| files.iter().position(|f| f.name == file.name).unwrap();
    let (within_file, within) = pick(3600..12 * 3600).expect("a change 1 to 12 hours before its pair's last event");
    let (beyond_file, beyond) = pick(36 * 3600..100 * 3600).expect("a change 36 to 100 hours before its pair's last event");
    let (within, beyond) = ((index(within_file), within.clone()), (index(beyond_file), beyond.clone()));

    // Everything but the two, for a first run.
    let live = data_dir(work, "live");
    for file in &files {
        let rows: Vec<&String> = file.rows.iter().filter(|row| **row != within.1 && **row != beyond.1).collect();
        append(&live, &file.name, &file.header, &rows);
    }
    // The expected tables: everything but the one beyond the window.
    let expected = data_dir(work, "expected");
    for file in &files {
        let rows: Vec<&String> = file.rows.iter().filter(|row| **row != beyond.1).collect();
        append(&expected, &file.name, &file.header, &rows);
    }
    work.run(&["enrich", "--data", "expected", "--out", "e.csv", "--current-out", "c.csv"]).expect_code(0);
    (files, within, beyond)
}

/// Adds the two late changes of [`late_setup`] to `live/`, in files of their own.
pub fn append_late(work: &Workdir, files: &[EventFile], within: &Pick, beyond: &Pick) {
    let live = work.path().join("live");
    append(&live, "inventory_change_late.csv", &files[within.0].header, &[&within.1]);
    append(&live, "inventory_change_later.csv", &files[beyond.0].header, &[&beyond.1]);
}

/// Asserts what the run that read the late changes did: one applied (the
/// rows after it written again), one rejected as late into `late.csv`.
pub fn assert_late_run(work: &Workdir, run: &serde_json::Value, beyond: &Pick) {
    assert_eq!(run["late_rejected"], 1, "{run}");
    assert_eq!(run["rows_appended"], 1, "{run}");
    assert!(run["rows_rewritten"].as_u64().unwrap() >= 1, "the rows after the late one are written again: {run}");
    let rejects = work.read("late.csv");
    let trans_id = beyond.1.split(',').next().unwrap().trim_matches(['{', '}']);
    assert!(rejects.contains("late: ") && rejects.contains("beyond --late-window 1d") && rejects.contains(trans_id), "{rejects}");
}

/// Killed after its COPY, while its commit waits for a lock: the tables stay
/// as they were, and the next run loads the chunk once.
#[test]
fn a_run_killed_between_copy_and_commit_loses_and_repeats_nothing() {
    let pg = PgServer::start();
    let (work, files, days) = six_days();
    let live = data_dir(&work, "live");
    deliver(&files, &days[..3], &live, None);
    incremental(&work, &pg, "s0.json", &["--data", "live"]);
    let tables = || (sorted(&pg.csv("SELECT * FROM enriched")), pg.csv("SELECT * FROM pos_etl_checkpoint ORDER BY name"));
    let previous = tables();
    deliver(&files, &days[3..], &live, None);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // A reader of the rejects table holds it: the run's commit waits to
        // replace it (the checkpoint itself is written in place).
        let reader = pg.connect().await;
        reader.batch_execute("BEGIN; SELECT count(*) FROM rejects").await.unwrap();
        let mark = pg.log_mark();
        let mut child = Command::new(env!("CARGO_BIN_EXE_pos-etl"))
            .args(["enrich", "--postgres", &pg.url, "--incremental", "--data", "live", "--progress", "never"])
            .current_dir(work.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        pg.wait_for_log(mark, ": COPY \"public\".\"enriched\" (", WITHIN);
        pg.wait_for_log(mark, "still waiting for AccessExclusiveLock", WITHIN);
        child.kill().unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(9));
        reader.batch_execute("ROLLBACK").await.unwrap();
        pg.wait_for_log(mark, "pos-etl LOG:  disconnection", WITHIN);
    });
    let after_kill = tables();
    assert!(after_kill == previous, "the killed run changed the tables: {:?}", after_kill.1);
    let run = incremental(&work, &pg, "s1.json", &["--data", "live"]);
    assert_eq!(run["first_run"], false);
    assert_tables_equal(&pg, &work, "e.csv", "c.csv");
}

/// Five runs over Kafka, the last two on fresh topics that no longer hold
/// the earlier snapshots; one chunk produced twice.
#[test]
fn kafka_chunks_give_the_full_runs_tables_after_the_snapshots_left_the_topics() {
    let pg = PgServer::start();
    let broker = Broker::start();
    let (work, files, days) = six_days();
    let chunks = [&days[0..2], &days[2..3], &days[3..4], &days[4..5], &days[5..6]];
    for (index, chunk) in chunks.iter().enumerate() {
        let dir = data_dir(&work, &format!("chunk{index}"));
        // From the fourth chunk on, new topics: InventoryChangeStore001Later…
        let later = index >= 3;
        let rows = deliver(&files, chunk, &dir, later.then_some("later"));
        let data = format!("chunk{index}");
        let times = if index == 1 { 2 } else { 1 };
        for _ in 0..times {
            work.run(&["produce", "--brokers", &broker.address, "--data", &data, "--partitions", "2"]).expect_code(0);
        }
        let mut args = vec!["--brokers", broker.address.as_str(), "--data", data.as_str()];
        if later {
            args.extend([
                "--snapshot-topics",
                "InventorySnapshotOnlineLater,InventorySnapshotStore001Later",
                "--change-topics",
                "InventoryChangeOnlineLater,InventoryChangeStore001Later",
            ]);
        }
        let run = incremental(&work, &pg, &format!("k{index}.json"), &args);
        assert_eq!(run["records_read"], rows * times, "{run}");
        assert_eq!(run["duplicates"], rows * (times - 1), "{run}");
    }
    assert_tables_equal(&pg, &work, "e.csv", "c.csv");
}

#[test]
fn incremental_needs_a_destination_that_appends() {
    let work = Workdir::new();
    generate(&work, "5", "1");
    let run = work.run(&["enrich", "--out", "e.csv", "--incremental"]);
    run.expect_code(2);
    assert!(run.stderr().contains("--incremental appends to tables and keeps its checkpoint beside them: it needs --postgres"), "{}", run.stderr());
    assert!(!work.path().join("e.csv").exists());
}
