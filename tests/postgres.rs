//! `enrich --postgres` against a real PostgreSQL server (common/postgres.rs):
//! the tables equal the CSV outputs, and a failed, killed or blocked run
//! never shows a reader a half-loaded or missing table.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::postgres::PgServer;
use crate::common::tools::free_port;
use crate::common::{Workdir, copy_sql_dir, summary};

/// `current_inventory` as pos-etl's CSV writes it (booleans as true/false).
pub const CURRENT_INVENTORY: &str = "SELECT store_id, store_name, item_id, item_name, snapshot_quantity, change_quantity, \
     current_inventory, safety_stock_quantity, below_safety_stock::text AS below_safety_stock, date_time FROM current_inventory";

/// The lines of a CSV text, header first, rows sorted (a table has no order).
pub fn sorted(csv: &str) -> Vec<String> {
    let mut lines: Vec<String> = csv.lines().map(str::to_string).collect();
    lines[1..].sort();
    lines
}

pub fn generate(work: &Workdir, items: &str, days: &str) {
    work.run(&["generate", "--out-dir", "data", "--items", items, "--days", days, "--seed", "5"]).expect_code(0);
}

fn count(pg: &PgServer, table: &str) -> u64 {
    pg.psql(&format!("SELECT count(*) FROM {table}")).trim().parse().unwrap()
}

#[test]
fn the_tables_equal_the_csv_outputs_and_replace_the_previous_ones() {
    let pg = PgServer::start();
    let work = Workdir::new();
    generate(&work, "30", "4");
    // A bad record, so that the rejects table has a row.
    work.write("data/inventory_change_extra.csv", "trans_id,item_id,store_id,date_time,quantity,change_type_id\nT,1,1,1/3/21 2:19 PM,-1,1\n");
    work.run(&["enrich", "--out", "e.csv", "--current-out", "c.csv"]).expect_code(0);
    // The test server trusts every login, so any password will do: it must not show.
    let with_password = pg.url.replace("pos@", "pos:hunter2@");
    let run = work.run(&["enrich", "--postgres", &with_password, "--summary-json", "s.json"]);
    run.expect_code(0);
    assert!(!run.stderr().contains("hunter2") && !work.read("s.json").contains("hunter2"), "{}", run.stderr());

    assert_eq!(sorted(&pg.csv("SELECT * FROM enriched")), sorted(&work.read("e.csv")));
    assert_eq!(sorted(&pg.csv(CURRENT_INVENTORY)), sorted(&work.read("c.csv")));
    assert_eq!(pg.csv("SELECT * FROM rejects"), work.read("e.csv.rejects.csv"));
    assert_eq!(work.read("pos-etl.rejects.csv"), work.read("e.csv.rejects.csv"), "the rejects file too");
    let types = pg.psql(
        "SELECT table_name || '.' || column_name || ' ' || data_type FROM information_schema.columns \
         WHERE column_name IN ('item_id', 'date_time', 'store_name', 'below_safety_stock') ORDER BY 1",
    );
    assert_eq!(
        types,
        "current_inventory.below_safety_stock boolean\ncurrent_inventory.date_time timestamp without time zone\n\
         current_inventory.item_id bigint\ncurrent_inventory.store_name text\n\
         enriched.date_time timestamp without time zone\nenriched.item_id bigint\nenriched.store_name text\n"
    );
    assert_eq!(
        pg.psql("SELECT indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"),
        "current_inventory_pkey\nenriched_store_item_time\n"
    );
    assert_eq!(
        pg.psql("SELECT col_description('enriched'::regclass, 12)"),
        "The stock after this event; null before the first snapshot\n"
    );
    let summary = summary(&work, "s.json");
    assert_eq!(summary["outputs"][0]["rows"].as_u64(), Some(count(&pg, "enriched")));

    // A second run replaces every table, and leaves no loading table behind.
    let before = count(&pg, "enriched");
    std::fs::remove_file(work.path().join("data/inventory_change_extra.csv")).unwrap();
    generate(&work, "10", "2");
    work.run(&["enrich", "--postgres", &pg.url, "--out", "x.csv"]).expect_code(2);
    work.run(&["enrich", "--postgres", &pg.url]).expect_code(0);
    work.run(&["enrich", "--out", "e2.csv", "--current-out", "c2.csv"]).expect_code(0);
    assert_ne!(count(&pg, "enriched"), before);
    assert_eq!(sorted(&pg.csv("SELECT * FROM enriched")), sorted(&work.read("e2.csv")));
    assert_eq!(sorted(&pg.csv(CURRENT_INVENTORY)), sorted(&work.read("c2.csv")));
    assert_eq!(count(&pg, "rejects"), 0);
    assert_eq!(pg.psql("SELECT count(*) FROM pg_tables WHERE tablename LIKE '%pos_etl_new'"), "0\n");
}

#[test]
fn another_schema_is_created_and_identifiers_are_quoted() {
    let pg = PgServer::start();
    let work = Workdir::new();
    generate(&work, "5", "1");
    work.run(&["enrich", "--postgres", &pg.url, "--pg-schema", "Point of \"Sale\""]).expect_code(0);
    work.run(&["enrich", "--out", "e.csv"]).expect_code(0);
    assert_eq!(sorted(&pg.csv("SELECT * FROM \"Point of \"\"Sale\"\"\".enriched")), sorted(&work.read("e.csv")));
}

#[test]
fn a_failed_run_leaves_the_previous_tables() {
    let pg = PgServer::start();
    let work = Workdir::new();
    generate(&work, "10", "2");
    work.run(&["enrich", "--postgres", &pg.url]).expect_code(0);
    let previous = pg.csv("SELECT * FROM enriched");
    copy_sql_dir(&work, "rules");
    work.write("rules/040_current_inventory.sql", "CREATE VIEW current_inventory AS SELEC nonsense;");
    let run = work.run(&["enrich", "--postgres", &pg.url, "--sql-dir", "rules"]);
    run.expect_code(1);
    assert_eq!(pg.csv("SELECT * FROM enriched"), previous);
    assert_eq!(pg.psql("SELECT count(*) FROM pg_tables WHERE tablename LIKE '%pos_etl_new'"), "0\n");
}

#[test]
fn an_unreachable_server_fails_naming_it_without_the_password() {
    let work = Workdir::new();
    generate(&work, "3", "1");
    let url = format!("postgresql://pos:hunter2@127.0.0.1:{}/pos", free_port());
    let run = work.run(&["enrich", "--postgres", &url]);
    run.expect_code(1);
    let stderr = run.stderr();
    assert!(stderr.contains(&url.replace(":hunter2", "")), "{stderr}");
    assert!(stderr.contains("cannot connect") && stderr.contains("Connection refused"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// How long a run may take to reach the point a test waits for.
pub const WITHIN: Duration = Duration::from_secs(60);

fn spawn_enrich(work: &Workdir, url: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_pos-etl"))
        .args(["enrich", "--postgres", url, "--progress", "never"])
        .current_dir(work.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_run_killed_during_copy_leaves_the_previous_tables() {
    let pg = PgServer::start();
    let work = Workdir::new();
    generate(&work, "20", "2");
    work.run(&["enrich", "--postgres", &pg.url]).expect_code(0);
    let previous = pg.csv("SELECT * FROM enriched");
    generate(&work, "3000", "20");
    let mark = pg.log_mark();
    let mut child = spawn_enrich(&work, &pg.url);
    // The driver sends COPY as a prepared statement: `pos-etl LOG:  execute s1: COPY …`.
    pg.wait_for_log(mark, ": COPY \"public\".\"enriched__pos_etl_new\" (\"item_id\"", WITHIN);
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9), "killed during COPY");
    assert_eq!(pg.csv("SELECT * FROM enriched"), previous);
    // The server rolls the dead session back: nothing of it stays.
    pg.wait_for_log(mark, "pos-etl LOG:  disconnection", WITHIN);
    assert_eq!(pg.psql("SELECT count(*) FROM pg_class WHERE relname LIKE '%pos_etl_new%'"), "0\n");
}

#[test]
fn a_reader_in_a_transaction_sees_the_old_table_until_the_swap() {
    let pg = PgServer::start();
    let work = Workdir::new();
    generate(&work, "10", "2");
    work.run(&["enrich", "--postgres", &pg.url]).expect_code(0);
    let old = count(&pg, "enriched");
    generate(&work, "40", "3");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let reader = pg.connect().await;
        let count_rows = async || -> u64 {
            let row = reader.query_one("SELECT count(*) FROM enriched", &[]).await.unwrap();
            row.get::<_, i64>(0) as u64
        };
        reader.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ").await.unwrap();
        assert_eq!(count_rows().await, old);
        let mark = pg.log_mark();
        let mut child = spawn_enrich(&work, &pg.url);
        // The run has loaded its tables and waits for the reader's lock to swap them in.
        pg.wait_for_log(mark, "still waiting for AccessExclusiveLock", WITHIN);
        assert_eq!(count_rows().await, old, "the reader still sees the old table");
        reader.batch_execute("COMMIT").await.unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{status}");
        assert!(count_rows().await > old, "a new transaction sees the new table");
    });
}

#[test]
fn the_report_tables_go_to_postgres_and_the_page_to_its_directory() {
    let pg = PgServer::start();
    let work = Workdir::new();
    generate(&work, "12", "21");
    work.run(&["report", "--out-dir", "files", "--horizon", "7"]).expect_code(0);
    work.run(&["report", "--out-dir", "db", "--horizon", "7", "--postgres", &pg.url]).expect_code(0);
    let tables_as_files: Vec<String> = std::fs::read_dir(work.path().join("db"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".csv") && name != "rejects.csv")
        .collect();
    assert!(tables_as_files.is_empty(), "{tables_as_files:?}");
    assert!(work.read("db/report.html").contains("<svg"));
    assert_eq!(work.read("db/rejects.csv"), "source,reason,raw\n");
    let mut tables = 0;
    for entry in std::fs::read_dir(work.path().join("files")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let Some(table) = name.strip_suffix(".csv").filter(|t| *t != "rejects") else { continue };
        let rows = work.read(&format!("files/{name}")).lines().count() as u64 - 1;
        assert_eq!(count(&pg, table), rows, "{table}");
        tables += 1;
    }
    assert!(tables >= 8, "every report table: {tables}");
    assert_eq!(count(&pg, "rejects"), 0);
}

#[test]
fn over_max_rejects_or_blocked_by_another_run_the_tables_stay() {
    let pg = PgServer::start();
    let work = Workdir::new();
    generate(&work, "10", "2");
    work.run(&["enrich", "--postgres", &pg.url]).expect_code(0);
    let previous = pg.csv("SELECT * FROM enriched");
    work.write("data/inventory_change_bad.csv", "trans_id,item_id,store_id,date_time,quantity,change_type_id\nT,1,1,noon,-1,1\n");
    work.run(&["enrich", "--postgres", &pg.url, "--max-rejects", "0"]).expect_code(2);
    assert_eq!(pg.csv("SELECT * FROM enriched"), previous);
    assert_eq!(count(&pg, "rejects"), 0, "the rejects table is the previous run's");
    assert!(work.read("pos-etl.rejects.csv").contains("noon"), "the rejects file is kept for diagnosis");

    // Another run loading the same schema holds its lock.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let other = pg.connect().await;
        other.batch_execute("SELECT pg_advisory_lock(hashtext('pos-etl load public'))").await.unwrap();
        let run = work.run(&["enrich", "--postgres", &pg.url, "--lock-timeout", "1s"]);
        run.expect_code(1);
        assert!(run.stderr().contains("waiting for another run loading this schema (see --lock-timeout)"), "{}", run.stderr());
        assert!(run.stderr().contains("lock timeout"), "{}", run.stderr());
    });
    assert_eq!(pg.csv("SELECT * FROM enriched"), previous);
}
