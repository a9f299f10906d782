//! What a run leaves behind when something goes wrong, and the paths users
//! try: all the outputs of a run are committed together or not at all, reject
//! positions are the lines an editor shows whatever the line ends, outputs
//! that would overwrite each other are refused, links and modes are kept,
//! the reader of stdout may go away, and resources run short.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{ENRICHED_HEADER, Workdir, copy_sql_dir, summary, temporary_files};

const SNAPSHOT_HEADER: &str = "item_id,employee_id,store_id,date_time,quantity";
const CHANGE_HEADER: &str = "trans_id,item_id,store_id,date_time,quantity,change_type_id";

/// A change file with a bad first data row (line 2) and a bad quantity on
/// line 7, in the given line ends, with or without a byte-order mark; and a
/// store.csv that repeats store 1 on line 4.
fn data_with_rejects(work: &Workdir, bom: &str, end: &str) {
    let lines = [
        CHANGE_HEADER,
        "T0,10,1,2021-01-03 10:00:00,-1",
        "T1,10,1,2021-01-03 10:00:00,-1,1",
        "T2,10,1,2021-01-03 10:01:00,-1,1",
        "T3,10,1,2021-01-03 10:02:00,-1,1",
        "T4,10,1,2021-01-03 10:03:00,-1,1",
        "T5,10,1,2021-01-03 10:04:00,lots,1",
        "T6,10,1,2021-01-03 10:05:00,-1,1",
    ];
    work.data(&[
        ("inventory_snapshot_store_001.csv", &format!("{SNAPSHOT_HEADER}\n10,7,1,2021-01-03 09:00:00,100\n")),
        ("inventory_change_store_001.csv", &format!("{bom}{}{end}", lines.join(end))),
    ]);
    work.write("data/store.csv", format!("{bom}store_id,name{end}0,online{end}1,store_001{end}1,store_002{end}"));
}

/// SPEC 1.3: positions are `file:line` with the header as line 1, the same
/// for `\n` and `\r\n` files, with or without a byte-order mark.
#[test]
fn reject_positions_are_the_same_for_every_line_end() {
    let changes = Path::new("data").join("inventory_change_store_001.csv").display().to_string();
    let stores = Path::new("data").join("store.csv").display().to_string();
    let expected = format!(
        "source,reason,raw\n\
         {stores}:4,store_id 1 is already defined on line 3,\"1,store_002\"\n\
         {changes}:2,\"expected 6 fields, found 5\",\"T0,10,1,2021-01-03 10:00:00,-1\"\n\
         {changes}:7,quantity is not an integer: 'lots',\"T5,10,1,2021-01-03 10:04:00,lots,1\"\n"
    );
    for (bom, end) in [("", "\n"), ("", "\r\n"), ("\u{feff}", "\r\n")] {
        let work = Workdir::new();
        data_with_rejects(&work, bom, end);
        work.run(&["enrich", "--out", "enriched.csv"]).expect_code(0);
        assert_eq!(work.read("enriched.csv.rejects.csv"), expected, "BOM {bom:?}, line end {end:?}");
    }
}

/// The files a failing run must leave as they were, read before the run.
struct Before<'a> {
    work: &'a Workdir,
    files: Vec<(&'a str, Vec<u8>)>,
}

impl<'a> Before<'a> {
    fn read(work: &'a Workdir, names: &[&'a str]) -> Self {
        let files = names.iter().map(|name| (*name, std::fs::read(work.path().join(name)).unwrap())).collect();
        Before { work, files }
    }

    fn assert_unchanged(&self) {
        for (name, bytes) in &self.files {
            assert_eq!(&std::fs::read(self.work.path().join(name)).unwrap(), bytes, "{name} changed");
        }
        assert_eq!(temporary_files(self.work.path()), Vec::<String>::new(), "temporary files left behind");
    }
}

/// An output that cannot be written fails the run before any other output
/// (or the rejects file) is replaced.
#[test]
fn an_output_that_cannot_be_written_changes_no_other() {
    let work = Workdir::new();
    data_with_rejects(&work, "", "\n");
    work.run(&["enrich", "--out", "e.csv", "--summary-json", "s.json"]).expect_code(0);
    std::fs::create_dir(work.path().join("c.csv")).unwrap();
    let before = Before::read(&work, &["e.csv", "e.csv.rejects.csv", "s.json"]);
    work.write("data/inventory_change_store_001.csv", format!("{CHANGE_HEADER}\nT9,10,1,2021-01-04 10:00:00,-1,1\n"));
    let run = work.run(&["enrich", "--out", "e.csv", "--current-out", "c.csv", "--summary-json", "s.json"]);
    run.expect_code(1);
    assert!(run.stderr().contains("cannot write c.csv: it is a directory"), "{}", run.stderr());
    before.assert_unchanged();
}

/// `report` commits its rejects with its tables: a report that fails after
/// the enrich pipeline ran leaves the previous rejects.csv too.
#[test]
fn a_failing_report_keeps_its_previous_rejects() {
    let work = Workdir::new();
    data_with_rejects(&work, "", "\n");
    work.run(&["report", "--out-dir", "report"]).expect_code(0);
    let before = Before::read(&work, &["report/rejects.csv", "report/top_items.csv", "report/report.html"]);
    work.write("data/inventory_change_store_001.csv", format!("{CHANGE_HEADER}\nT9,10,1,2021-01-04 10:00:00,-1,x\n"));
    copy_sql_dir(&work, "rules");
    work.write("rules/report/020_top_items.sql", "CREATE VIEW top_items AS SELECT no_such_column FROM enriched;");
    let run = work.run(&["report", "--out-dir", "report", "--sql-dir", "rules"]);
    run.expect_code(1);
    assert!(run.stderr().contains("020_top_items.sql"), "{}", run.stderr());
    before.assert_unchanged();
}

/// Two outputs naming one file would overwrite each other: a usage error.
#[test]
fn outputs_naming_the_same_file_are_refused() {
    let work = Workdir::new();
    data_with_rejects(&work, "", "\n");
    std::fs::create_dir(work.path().join("sub")).unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["--out", "e.csv", "--current-out", "e.csv"], "--out and --current-out both name e.csv"),
        (&["--out", "e.csv", "--rejects", "./sub/../e.csv"], "--out and --rejects both name ./sub/../e.csv"),
        (&["--out", "-", "--current-out", "c.csv", "--summary-json", "c.csv"], "--current-out and --summary-json"),
        (&["--out", "e.csv", "--rejects", "r.csv", "--summary-json", "sub/../r.csv"], "--rejects and --summary-json"),
    ];
    for (flags, message) in cases {
        let mut args = vec!["enrich"];
        args.extend_from_slice(flags);
        let run = work.run(&args);
        run.expect_code(2);
        assert!(run.stderr().contains(message), "{flags:?}: {}", run.stderr());
    }
    assert!(!work.path().join("e.csv").exists());
}

/// `--out ../dir/e.csv` works; an output that is a symbolic link is written
/// through to its target, and an existing output keeps its mode.
#[test]
fn relative_paths_links_and_modes() {
    let work = Workdir::new();
    data_with_rejects(&work, "", "\n");
    std::fs::create_dir(work.path().join("runs")).unwrap();
    let run_in = |dir: &str, args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_pos-etl"))
            .args(args)
            .current_dir(work.path().join(dir))
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    };
    run_in("runs", &["enrich", "--data", "../data", "--out", "../out/e.csv"]);
    assert!(work.read("out/e.csv").starts_with(ENRICHED_HEADER));

    std::fs::create_dir(work.path().join("real")).unwrap();
    work.write("real/e.csv", "previous\n");
    std::fs::set_permissions(work.path().join("real/e.csv"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("real/e.csv", work.path().join("e.csv")).unwrap();
    run_in(".", &["enrich", "--out", "e.csv"]);
    assert!(std::fs::symlink_metadata(work.path().join("e.csv")).unwrap().file_type().is_symlink());
    assert!(work.read("real/e.csv").starts_with(ENRICHED_HEADER), "written through the link");
    let mode = std::fs::metadata(work.path().join("real/e.csv")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
    assert_eq!(temporary_files(work.path()), Vec::<String>::new());
}

/// Concurrent runs writing to stdout in one directory share only the rejects
/// file's name, never a temporary file.
#[test]
fn concurrent_runs_to_stdout_do_not_collide() {
    let work = Workdir::new();
    data_with_rejects(&work, "", "\n");
    let children: Vec<_> = (0..12)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_pos-etl"))
                .args(["enrich", "--out", "-"])
                .current_dir(work.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(String::from_utf8_lossy(&output.stdout).starts_with(ENRICHED_HEADER));
    }
    assert_eq!(work.read("pos-etl.rejects.csv").lines().count(), 4);
    assert_eq!(temporary_files(work.path()), Vec::<String>::new());
}

/// `enrich --out - --current-out c.csv | head -2`: the other outputs are
/// computed from all the data, and the summary says what stdout did not get.
#[test]
fn a_reader_of_stdout_that_goes_away_leaves_the_other_outputs_whole() {
    use std::io::{BufRead, BufReader};

    let work = Workdir::new();
    work.run(&["generate", "--out-dir", "data", "--items", "3000", "--days", "10", "--seed", "3"]).expect_code(0);
    work.run(&["enrich", "--out", "full.csv", "--current-out", "full_current.csv", "--summary-json", "full.json"])
        .expect_code(0);
    let mut child = Command::new(env!("CARGO_BIN_EXE_pos-etl"))
        .args(["enrich", "--out", "-", "--current-out", "c.csv", "--summary-json", "s.json"])
        .current_dir(work.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    stdout.read_line(&mut first).unwrap();
    drop(stdout);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(first, work.read("full.csv").lines().take(2).map(|l| format!("{l}\n")).collect::<String>());
    assert_eq!(work.read("c.csv"), work.read("full_current.csv"), "current_inventory from all the data");
    let (full, cut) = (summary(&work, "full.json"), summary(&work, "s.json"));
    assert_eq!(cut["duplicates"], full["duplicates"], "rows not written are not duplicates");
    let (written, unread) = (cut["rows_written"].as_u64().unwrap(), cut["rows_unread"].as_u64().unwrap());
    assert!(unread > 0, "{cut}");
    assert_eq!(written + unread, full["rows_written"].as_u64().unwrap());
    assert!(stderr.contains("its reader went away"), "{stderr}");
}

/// Over the reject limit with the rows on stdout, the error does not claim
/// that the previous output is unchanged.
#[test]
fn too_many_rejects_on_stdout_says_where_the_rows_went() {
    let work = Workdir::new();
    data_with_rejects(&work, "", "\n");
    let run = work.run(&["enrich", "--out", "-", "--max-rejects", "0"]);
    run.expect_code(2);
    assert!(run.stderr().contains("the enriched rows had already gone to stdout"), "{}", run.stderr());
    assert!(!run.stderr().contains("previous output"), "{}", run.stderr());
}

/// Duplicates are the records the rules drop as sent again: rows a user's
/// rules filter out are counted apart.
#[test]
fn rows_a_users_rules_leave_out_are_not_duplicates() {
    let work = Workdir::new();
    work.data(&[
        ("inventory_snapshot_store_001.csv", &format!("{SNAPSHOT_HEADER}\n10,7,1,2021-01-03 09:00:00,100\n")),
        (
            "inventory_change_store_001.csv",
            &format!(
                "{CHANGE_HEADER}\nT1,10,1,2021-01-03 10:00:00,-2,1\nT1,10,1,2021-01-03 10:00:00,-2,1\nT2,20,1,2021-01-03 10:00:00,-2,1\n"
            ),
        ),
    ]);
    copy_sql_dir(&work, "rules");
    let enriched = work.read("rules/030_enriched.sql").replace("WHERE e.event_order >= 0", "WHERE e.event_order >= 0 AND e.item_id <> 20");
    work.write("rules/030_enriched.sql", enriched);
    work.run(&["enrich", "--out", "e.csv", "--sql-dir", "rules", "--summary-json", "s.json"]).expect_code(0);
    let summary = summary(&work, "s.json");
    assert_eq!(
        (&summary["events_read"], &summary["rows_written"], &summary["duplicates"], &summary["left_out_by_rules"]),
        (&4.into(), &2.into(), &1.into(), &1.into())
    );
}

/// Many threads and little memory: the sorts share the limit instead of each
/// reserving DataFusion's default, and spill what does not fit.
#[test]
fn many_threads_in_little_memory() {
    let work = Workdir::new();
    work.run(&["generate", "--out-dir", "data", "--items", "2000", "--days", "20", "--seed", "5"]).expect_code(0);
    let expected = work.enrich(&["--current-out", "expected_current.csv"]);
    for (threads, limit) in [("48", "512MiB"), ("2", "32MiB")] {
        let out = format!("e{threads}.csv");
        work.run(&["enrich", "--out", &out, "--current-out", "c.csv", "--threads", threads, "--memory-limit", limit])
            .expect_code(0);
        assert_eq!(work.read(&out), expected, "--threads {threads} --memory-limit {limit}");
        assert_eq!(work.read("c.csv"), work.read("expected_current.csv"));
    }
    let run = work.run(&["enrich", "--out", "x.csv", "--threads", "64", "--memory-limit", "256MiB"]);
    run.expect_code(2);
    assert!(run.stderr().contains("--memory-limit 256MiB is too little for --threads 64"), "{}", run.stderr());
    // Enough by the rule of thumb, not for this data: a batch of 4,000 events
    // with 8 KB trans_ids (32 MB) cannot be held, nor spilled, in 16 MiB. The
    // error names the flags to change.
    let wide = Workdir::new();
    let trans_id = "T".repeat(8000);
    let events: String =
        (0..4000).map(|n| format!("{trans_id},10,1,2021-01-01 0{}:{:02}:{:02},-1,1\n", n / 3600, n / 60 % 60, n % 60)).collect();
    wide.data(&[
        ("inventory_change_store_001.csv", &format!("{CHANGE_HEADER}\n{events}")),
        ("inventory_snapshot_store_001.csv", &format!("{SNAPSHOT_HEADER}\n")),
    ]);
    let run = wide.run(&["enrich", "--out", "x.csv", "--threads", "2", "--memory-limit", "16MiB"]);
    run.expect_code(1);
    assert_eq!(
        run.stderr(),
        "pos-etl: computing x.csv needs more memory than --memory-limit 16MiB gives 2 threads: raise --memory-limit or lower --threads\n"
    );
}

/// A disk that fills up mid-run: exit 1, the previous outputs intact, no
/// temporary file left. The disk is a 1 MiB tmpfs mounted in a mount
/// namespace of the test's own (`unshare`), which needs no privileges.
#[test]
fn a_full_disk_fails_the_run_and_keeps_the_previous_outputs() {
    let work = Workdir::new();
    work.run(&["generate", "--out-dir", "data", "--items", "300", "--days", "21", "--seed", "7"]).expect_code(0);
    let script = format!(
        r#"set -u
mount -t tmpfs -o size=1m tmpfs disk || exit 90
mkdir disk/tmp
printf 'previous\n' > disk/e.csv
printf 'previous current\n' > disk/c.csv
TMPDIR=$PWD/disk/tmp {binary} enrich --out disk/e.csv --current-out disk/c.csv 2> stderr.txt
echo "exit $?"
cat disk/e.csv disk/c.csv
ls -A disk
ls -A disk/tmp
"#,
        binary = env!("CARGO_BIN_EXE_pos-etl")
    );
    std::fs::create_dir(work.path().join("disk")).unwrap();
    let output = Command::new("unshare")
        .args(["--map-root-user", "--mount", "sh", "-c", &script])
        .current_dir(work.path())
        .output()
        .expect("run unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout,
        "exit 1\nprevious\nprevious current\nc.csv\nc.csv.lock\ne.csv\ne.csv.lock\ntmp\n",
        "unshare: {}\npos-etl: {}",
        String::from_utf8_lossy(&output.stderr),
        work.read("stderr.txt")
    );
    let stderr = work.read("stderr.txt");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one error line: {stderr}");
}
