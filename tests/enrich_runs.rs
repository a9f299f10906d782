//! Runs of `pos-etl enrich` as a user and cron see them: rejects and their
//! accounting, failed runs that keep the previous output, edited SQL rules,
//! locks, stdout, and the sample data in data/.

use std::path::Path;

use crate::common::{CHANGE_HEADER, ENRICHED_HEADER, Workdir, copy_sql_dir, manifest_dir, summary, temporary_files};


fn one_snapshot_and_one_change(work: &Workdir) {
    work.data(&[
        ("inventory_snapshot_store_001.csv", "item_id,employee_id,store_id,date_time,quantity\n10,7,1,2021-01-03 09:00:00,100\n"),
        ("inventory_change_store_001.csv", &format!("{CHANGE_HEADER}T1,10,1,2021-01-03 10:00:00,-2,1\n")),
    ]);
}

/// One bad record of each kind (SPEC 1.3), in a change file and a snapshot
/// file: each is rejected with file:line, reason and raw text, and every
/// record read is written, a duplicate, or rejected.
#[test]
fn each_kind_of_bad_record_is_rejected_and_accounted_for() {
    let work = Workdir::new();
    work.data(&[
        (
            "inventory_snapshot_store_001.csv",
            "item_id,employee_id,store_id,date_time,quantity\n\
             10,7,1,2021-01-03 09:00:00,100\n\
             10,7,1,2021-01-03 09:00:00,\n\
             10,,1,2021-01-03 09:00:00,3\n",
        ),
        (
            "inventory_change_store_001.csv",
            &format!(
                "{CHANGE_HEADER}\
                 T1,10,1,2021-01-03 10:00:00,-2,1\n\
                 T2,10,1,2021-01-03 10:00:00,-2\n\
                 T3,10,1,2021-01-03 10:00:00,-2,1,extra\n\
                 T4,ten,1,2021-01-03 10:00:00,-2,1\n\
                 T5,10,1,2021-01-03 10:00:00,-2.5,1\n\
                 T6,10,1,31/12/2021 10:00,-2,1\n\
                 ,10,1,2021-01-03 10:00:00,-2,1\n\
                 T7,10,1,,-2,1\n\
                 \"T8,x\",10,1,2021-01-03 10:00:00,-1,\n\
                 T1,10,1,2021-01-03 10:00:00,-2,1\n"
            ),
        ),
    ]);
    let run = work.run(&["enrich", "--out", "enriched.csv", "--summary-json", "summary.json"]);
    run.expect_code(0);
    let snapshots = Path::new("data").join("inventory_snapshot_store_001.csv").display().to_string();
    let changes = Path::new("data").join("inventory_change_store_001.csv").display().to_string();
    assert_eq!(
        work.read("enriched.csv.rejects.csv"),
        format!(
            "source,reason,raw\n\
             {snapshots}:3,quantity is empty,\"10,7,1,2021-01-03 09:00:00,\"\n\
             {changes}:3,\"expected 6 fields, found 5\",\"T2,10,1,2021-01-03 10:00:00,-2\"\n\
             {changes}:4,\"expected 6 fields, found 7\",\"T3,10,1,2021-01-03 10:00:00,-2,1,extra\"\n\
             {changes}:5,item_id is not an integer: 'ten',\"T4,ten,1,2021-01-03 10:00:00,-2,1\"\n\
             {changes}:6,quantity is not an integer: '-2.5',\"T5,10,1,2021-01-03 10:00:00,-2.5,1\"\n\
             {changes}:7,date_time is not a date: '31/12/2021 10:00' (no such date; 1/3/2021 is January 3),\"T6,10,1,31/12/2021 10:00,-2,1\"\n\
             {changes}:8,trans_id is empty,\",10,1,2021-01-03 10:00:00,-2,1\"\n\
             {changes}:9,date_time is empty,\"T7,10,1,,-2,1\"\n\
             {changes}:10,change_type_id is empty,\"\"\"T8,x\"\",10,1,2021-01-03 10:00:00,-1,\"\n"
        )
    );
    let summary = summary(&work, "summary.json");
    assert_eq!(summary["tables"]["inventory_snapshot"], serde_json::json!({"read": 3, "rejected": 1}));
    assert_eq!(summary["tables"]["inventory_change"], serde_json::json!({"read": 10, "rejected": 8}));
    let (read, written, duplicates, rejected) = (
        summary["events_read"].as_u64().unwrap(),
        summary["rows_written"].as_u64().unwrap(),
        summary["duplicates"].as_u64().unwrap(),
        summary["rejected"].as_u64().unwrap(),
    );
    assert_eq!((read, written, duplicates, rejected), (13, 3, 1, 9));
    assert_eq!(read, written + duplicates + rejected);
    assert_eq!(work.read("enriched.csv").lines().count(), 4);
    assert!(run.stderr().contains("9 rejected (see enriched.csv.rejects.csv)"), "{}", run.stderr());
}

/// Lookup rows are checked too: a store id that is not an integer is
/// rejected, and so is a second row for an item id, which would otherwise
/// duplicate every event of that item.
#[test]
fn bad_lookup_rows_are_rejected() {
    let work = Workdir::new();
    one_snapshot_and_one_change(&work);
    work.write("data/store.csv", "store_id,name\n0,online\none,store_001\n");
    work.write("data/item.csv", "item_id,name,supplier_id,safety_stock_quantity\n10,widget,7,5\n10,widget v2,7,5\n");
    work.run(&["enrich", "--out", "enriched.csv", "--summary-json", "s.json"]).expect_code(0);
    let rejects = work.read("enriched.csv.rejects.csv");
    assert!(rejects.contains("store.csv:3,store_id is not an integer: 'one'"), "{rejects}");
    assert!(rejects.contains("item.csv:3,item_id 10 is already defined on line 2,\"10,widget v2,7,5\""), "{rejects}");
    assert_eq!(work.read("enriched.csv").lines().count(), 3, "one row per event");
    assert!(!work.read("enriched.csv").contains("widget v2"));
    assert_eq!(summary(&work, "s.json")["unmatched_lookups"]["store"], 2);
}

fn assert_failed_run_keeps(work: &Workdir, args: &[&str], code: i32, message: &str) {
    let before = std::fs::read(work.path().join("enriched.csv")).unwrap();
    let run = work.run(args);
    run.expect_code(code);
    assert!(run.stderr().contains(message), "expected {message:?} in stderr:\n{}", run.stderr());
    assert_eq!(std::fs::read(work.path().join("enriched.csv")).unwrap(), before, "previous output changed");
    assert_eq!(temporary_files(work.path()), Vec::<String>::new(), "a temporary output was left behind");
}

#[test]
fn a_broken_sql_file_fails_naming_it_and_keeps_the_previous_output() {
    let work = Workdir::new();
    one_snapshot_and_one_change(&work);
    work.enrich(&[]);
    copy_sql_dir(&work, "rules");
    work.write("rules/030_enriched.sql", "CREATE VIEW enriched AS SELEC item_id FROM inventory_timeline;");
    assert_failed_run_keeps(
        &work,
        &["enrich", "--out", "enriched.csv", "--sql-dir", "rules"],
        1,
        "030_enriched.sql failed",
    );
}

#[test]
fn more_rejects_than_allowed_exits_2_and_keeps_the_previous_output() {
    let work = Workdir::new();
    one_snapshot_and_one_change(&work);
    work.enrich(&[]);
    work.write(
        "data/inventory_change_store_001.csv",
        format!("{CHANGE_HEADER}T1,10,1,2021-01-03 10:00:00,-2,1\nT2,10,1,noon,-2,1\nT3,10,1,noon,-2,1\n"),
    );
    assert_failed_run_keeps(
        &work,
        &["enrich", "--out", "enriched.csv", "--max-rejects", "1"],
        2,
        "2 records rejected, more than --max-rejects 1",
    );
    assert_eq!(work.read("enriched.csv.rejects.csv").lines().count(), 3, "the rejects are written for diagnosis");
    work.run(&["enrich", "--out", "enriched.csv", "--max-rejects", "2"]).expect_code(0);
}

/// A user's copy of the rules with one rule edited changes the output.
#[test]
fn edited_sql_dir_changes_the_output() {
    let work = Workdir::new();
    one_snapshot_and_one_change(&work);
    copy_sql_dir(&work, "rules");
    let enriched = work.read("rules/030_enriched.sql").replace("'inventory report'", "'shelf count'");
    work.write("rules/030_enriched.sql", enriched);
    let out = work.enrich(&["--sql-dir", "rules"]);
    assert_eq!(
        out,
        format!(
            "{ENRICHED_HEADER}10,7,1,2021-01-03 09:00:00,100,snapshot_only,store_001,shelf count,,,,100,widget,7,5,\n\
             10,,1,2021-01-03 10:00:00,-2,snapshot_with_change,store_001,sale,T1,1,sale,98,widget,7,5,2\n"
        )
    );
}

/// The built-in current_inventory reads enriched's rows as they are written;
/// a user's version that computes it from the timeline instead runs on its
/// own and gives the same table. One that reads enriched twice is refused.
#[test]
fn current_inventory_with_or_without_reading_enriched() {
    let work = Workdir::new();
    one_snapshot_and_one_change(&work);
    work.enrich(&["--current-out", "builtin.csv"]);
    let builtin = work.read("builtin.csv");
    assert_eq!(
        builtin,
        "store_id,store_name,item_id,item_name,snapshot_quantity,change_quantity,current_inventory,safety_stock_quantity,below_safety_stock,date_time\n\
         1,store_001,10,widget,100,-2,98,5,false,2021-01-03 10:00:00\n"
    );

    copy_sql_dir(&work, "rules");
    work.write(
        "rules/040_current_inventory.sql",
        "CREATE VIEW current_inventory AS
         WITH last AS (
             SELECT store_id, item_id, max(stock_seq) AS row_seq,
                    max(CASE WHEN event_order = 0 THEN stock_seq END) AS snapshot_seq
             FROM inventory_timeline GROUP BY store_id, item_id)
         SELECT t.store_id, t.store_name, t.item_id, i.name AS item_name,
                s.quantity AS snapshot_quantity, t.final_quantity - s.quantity AS change_quantity,
                t.final_quantity AS current_inventory, i.safety_stock_quantity,
                t.final_quantity < i.safety_stock_quantity AS below_safety_stock, t.date_time
         FROM last l
         JOIN inventory_timeline t ON t.store_id = l.store_id AND t.item_id = l.item_id AND t.stock_seq = l.row_seq
         JOIN inventory_timeline s ON s.store_id = l.store_id AND s.item_id = l.item_id AND s.stock_seq = l.snapshot_seq
         JOIN item i ON i.item_id = t.item_id
         ORDER BY t.store_id, t.item_id;",
    );
    work.enrich(&["--current-out", "from_timeline.csv", "--sql-dir", "rules"]);
    assert_eq!(work.read("from_timeline.csv"), builtin);

    work.write(
        "rules/040_current_inventory.sql",
        "CREATE VIEW current_inventory AS SELECT a.* FROM enriched a JOIN enriched b ON a.item_id = b.item_id;",
    );
    let run = work.run(&["enrich", "--out", "enriched.csv", "--current-out", "twice.csv", "--sql-dir", "rules"]);
    run.expect_code(1);
    assert!(run.stderr().contains("enriched can be read only once"), "{}", run.stderr());
    assert_eq!(work.read("builtin.csv"), builtin);
}

#[test]
fn missing_inputs_are_one_line_errors() {
    let work = Workdir::new();
    let run = work.run(&["enrich", "--data", "nowhere", "--out", "enriched.csv"]);
    run.expect_code(1);
    assert_eq!(run.stderr(), "pos-etl: input directory nowhere does not exist\n");

    one_snapshot_and_one_change(&work);
    std::fs::remove_file(work.path().join("data/item.csv")).unwrap();
    let run = work.run(&["enrich", "--out", "enriched.csv"]);
    run.expect_code(1);
    let item = Path::new("data").join("item.csv");
    assert_eq!(run.stderr(), format!("pos-etl: missing input file {}\n", item.display()));
}

#[test]
fn unknown_output_extension_is_a_usage_error() {
    let work = Workdir::new();
    let run = work.run(&["enrich", "--out", "enriched.txt"]);
    run.expect_code(2);
    assert!(run.stderr().contains("use --format csv, parquet or delta"), "{}", run.stderr());
}

/// A second run waits for the first's lock, then gives up saying who holds it.
#[test]
fn a_locked_output_makes_the_second_run_give_up() {
    let work = Workdir::new();
    one_snapshot_and_one_change(&work);
    let lock = std::fs::File::create(work.path().join("enriched.csv.lock")).unwrap();
    lock.lock().unwrap();
    std::fs::write(work.path().join("enriched.csv.lock"), "pid 4242 since 2026-01-01 00:00:00").unwrap();
    let run = work.run(&["enrich", "--out", "enriched.csv", "--lock-timeout", "200ms"]);
    run.expect_code(1);
    assert!(run.stderr().contains("enriched.csv.lock is locked by another run (pid 4242 since 2026-01-01 00:00:00)"), "{}", run.stderr());
    assert!(!work.path().join("enriched.csv").exists());
    drop(lock);
    work.enrich(&[]);
}

/// `--out -` writes CSV to stdout; stderr has the summary and no progress bar.
#[test]
fn stdout_output_and_quiet_stderr() {
    let work = Workdir::new();
    one_snapshot_and_one_change(&work);
    let run = work.run(&["enrich", "--out", "-"]);
    run.expect_code(0);
    assert!(run.stdout().starts_with(ENRICHED_HEADER));
    assert_eq!(run.stdout().lines().count(), 3);
    assert!(!run.stderr().contains('\r') && !run.stderr().contains('\u{1b}'), "progress drawn to a pipe: {:?}", run.stderr());
    assert!(run.stderr().lines().all(|line| line.starts_with("pos-etl: ")), "{}", run.stderr());
}

/// The built binary on the project's sample data, from another directory.
#[test]
fn end_to_end_on_the_sample_data() {
    let work = Workdir::new();
    let data = manifest_dir().join("data");
    let run = work.run(&[
        "enrich", "--data", data.to_str().unwrap(), "--out", "combined.csv",
        "--current-out", "current.parquet", "--summary-json", "summary.json",
    ]);
    run.expect_code(0);
    let summary = summary(&work, "summary.json");
    let combined = work.read("combined.csv");
    assert!(combined.starts_with(ENRICHED_HEADER));
    let rows = combined.lines().count() as u64 - 1;
    assert_eq!(summary["rows_written"], rows);
    assert!(rows > 10_000, "the sample has {rows} rows");
    assert_eq!(summary["rejected"], 0);
    assert!(summary["duplicates"].as_u64().unwrap() > 0, "the sample has duplicates");
    assert_eq!(
        summary["events_read"].as_u64().unwrap(),
        rows + summary["duplicates"].as_u64().unwrap()
    );
    // each table's count is the records of all its files (one per store)
    let records = |files: &[&str]| -> u64 {
        files.iter().map(|f| std::fs::read_to_string(data.join(f)).unwrap().lines().count() as u64 - 1).sum()
    };
    let changes = records(&["inventory_change_online.csv", "inventory_change_store_001.csv"]);
    let snapshots = records(&["inventory_snapshot_online.csv", "inventory_snapshot_store_001.csv"]);
    assert_eq!(summary["tables"]["inventory_change"]["read"], changes);
    assert_eq!(summary["tables"]["inventory_snapshot"]["read"], snapshots);
    for source_type in ["snapshot_only", "change_only", "snapshot_with_change"] {
        assert!(combined.contains(source_type), "no {source_type} row");
    }
    for action in [",bopis,", ",restock,", ",shrink,", ",sale,"] {
        assert!(combined.contains(action), "no {action} row");
    }
}

/// `kill -9` while the output is being written leaves the previous output as
/// it was: the new one is staged under a temporary name and renamed at the end.
#[cfg(unix)]
#[test]
fn a_killed_run_leaves_the_previous_output() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};

    let work = Workdir::new();
    work.run(&["generate", "--out-dir", "data", "--items", "4000", "--days", "20", "--seed", "1"]).expect_code(0);
    work.write("enriched.csv", "previous output\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pos-etl"))
        .args(["enrich", "--out", "enriched.csv", "--progress", "always"])
        .current_dir(work.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The "enriched" bar appears when writing starts; reading the pipe blocks until then.
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("enriched") {
        let read = stderr.read(&mut buffer).unwrap();
        assert!(read > 0, "the run ended before writing: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buffer[..read]);
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "the run finished before it could be killed");
    assert_eq!(work.read("enriched.csv"), "previous output\n");
}
