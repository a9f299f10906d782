//! `pos-etl report` on a small fixture whose every number was computed by
//! hand, and its page in a real browser.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::common::{CHANGE_TYPES, Workdir, manifest_dir};

/// Three stores (store_002 sells nothing), four items (doohickey has no
/// snapshot), three days: Friday 1 to Sunday 3 January 2021.
fn fixture() -> Workdir {
    let work = Workdir::new();
    work.write("data/store.csv", "store_id,name\n0,online\n1,store_001\n2,store_002\n");
    work.write(
        "data/item.csv",
        "item_id,name,supplier_id,safety_stock_quantity\n10,widget,7,5\n20,gadget,8,10\n30,gizmo,9,4\n40,doohickey,9,1\n",
    );
    work.write("data/inventory_change_type.csv", CHANGE_TYPES);
    work.write(
        "data/inventory_snapshot_store_001.csv",
        "item_id,employee_id,store_id,date_time,quantity\n\
         10,5,1,2021-01-01 08:00:00,20\n\
         20,5,1,2021-01-01 08:00:00,30\n\
         30,5,1,2021-01-01 08:00:00,8\n\
         10,,0,2021-01-01 08:00:00,50\n\
         10,6,2,2021-01-02 08:00:00,12\n",
    );
    work.write(
        "data/inventory_change_store_001.csv",
        "trans_id,item_id,quantity,change_type_id,store_id,date_time\n\
         t1,10,-3,1,1,2021-01-01 10:15:00\n\
         t1,20,-2,1,1,2021-01-01 10:15:00\n\
         t2,20,-1,1,1,2021-01-01 11:30:00\n\
         t3,10,-2,4,0,2021-01-01 12:00:00\n\
         t4,40,-4,1,1,2021-01-01 13:00:00\n\
         t5,30,-5,1,1,2021-01-02 09:10:00\n\
         t6,10,10,3,1,2021-01-02 09:40:00\n\
         t7,20,-1,2,1,2021-01-02 15:00:00\n\
         t8,10,5,3,2,2021-01-02 10:00:00\n\
         t9,20,-3,1,1,2021-01-03 10:20:00\n\
         t10,10,-1,1,1,2021-01-03 18:05:00\n",
    );
    work
}

/// The rows of a CSV output, as column → value.
fn rows(work: &Workdir, name: &str) -> Vec<BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_path(work.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let header = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|record| header.iter().zip(record.unwrap().iter()).map(|(h, v)| (h.to_string(), v.to_string())).collect())
        .collect()
}

/// The named columns of every row, joined by commas: easy to compare by eye.
fn columns(rows: &[BTreeMap<String, String>], names: &[&str]) -> Vec<String> {
    rows.iter().map(|row| names.iter().map(|n| row[*n].as_str()).collect::<Vec<_>>().join(",")).collect()
}

fn close(value: &str, expected: f64) -> bool {
    value.parse::<f64>().is_ok_and(|v| (v - expected).abs() < 1e-9)
}

#[test]
fn report_tables_match_the_hand_computed_fixture() {
    let work = fixture();
    work.run(&["report", "--out-dir", "out", "--top", "3", "--summary-json", "run.json"]).expect_code(0);

    // widget: 3 + 2 (online BOPIS) + 1; gadget 2 + 1 + 3: tied first.
    let top = rows(&work, "out/top_items.csv");
    assert_eq!(columns(&top, &["rank", "item_id", "item_name", "units_sold", "transactions"]), [
        "1,10,widget,6,3",
        "1,20,gadget,6,3",
        "3,30,gizmo,5,1",
    ]);
    assert!(close(&top[0]["share_of_units"], 6.0 / 21.0), "{:?}", top[0]);

    // every store every day; store_002 only restocked
    let by_store = rows(&work, "out/sales_by_store.csv");
    assert_eq!(columns(&by_store, &["store_id", "day", "units_sold", "transactions"]), [
        "0,2021-01-01,2,1",
        "0,2021-01-02,0,0",
        "0,2021-01-03,0,0",
        "1,2021-01-01,10,3",
        "1,2021-01-02,5,1",
        "1,2021-01-03,4,2",
        "2,2021-01-01,0,0",
        "2,2021-01-02,0,0",
        "2,2021-01-03,0,0",
    ]);

    // lowest stock now: gizmo 3 (below its 4), widget at store_002 17 (no
    // snapshot before day 2, so no stock on day 1), gadget 23; doohickey has
    // no snapshot, so no stock at all
    let low = rows(&work, "out/low_stock.csv");
    let wanted = ["rank", "store_id", "item_id", "current_inventory", "below_safety_stock", "day", "units_sold", "restocked", "shrunk", "end_of_day_stock"];
    assert_eq!(columns(&low, &wanted), [
        "1,1,30,3,true,2021-01-01,0,0,0,8",
        "1,1,30,3,true,2021-01-02,5,0,0,3",
        "1,1,30,3,true,2021-01-03,0,0,0,3",
        "2,2,10,17,false,2021-01-01,0,0,0,",
        "2,2,10,17,false,2021-01-02,0,5,0,17",
        "2,2,10,17,false,2021-01-03,0,0,0,17",
        "3,1,20,23,false,2021-01-01,3,0,0,27",
        "3,1,20,23,false,2021-01-02,0,0,1,26",
        "3,1,20,23,false,2021-01-03,3,0,0,23",
    ]);

    // default items: the best sellers, every store that has them
    let hourly = rows(&work, "out/item_hourly.csv");
    let pairs: std::collections::BTreeSet<String> = columns(&hourly, &["item_id", "store_id"]).into_iter().collect();
    assert_eq!(pairs.into_iter().collect::<Vec<_>>(), ["10,0", "10,1", "10,2", "20,1", "30,1", "40,1"]);
    // 08:00 on the 1st to 18:00 on the 3rd is 59 hours
    assert_eq!(hourly.len(), 6 * 59);
    // doohickey has no snapshot: its sales count, its stock is unknown
    let doohickey: Vec<_> = hourly.iter().filter(|r| r["item_id"] == "40").collect();
    assert!(doohickey.iter().all(|r| r["final_quantity"].is_empty()));
    let sold: Vec<_> = doohickey.iter().filter(|r| r["units_sold"] != "0").map(|r| (r["hour"].as_str(), r["units_sold"].as_str())).collect();
    assert_eq!(sold, [("2021-01-01 13:00:00", "4")]);

    // each weekday of the fixture occurs once; store_001 sold 19 units over
    // 72 observed hours, 5 of them on Friday at 10
    let season = rows(&work, "out/seasonality.csv");
    assert_eq!(season.len(), 3 * 7 * 24);
    let cell = |store: &str, day: &str, hour: &str| {
        season.iter().find(|r| r["store_id"] == store && r["day_of_week"] == day && r["hour_of_day"] == hour).unwrap()
    };
    assert_eq!(cell("1", "5", "10")["units_sold"], "5");
    assert!(close(&cell("1", "5", "10")["index"], 5.0 * 72.0 / 19.0));
    assert_eq!(cell("1", "1", "10")["index"], "", "no Monday in the period");
    assert_eq!(cell("2", "5", "10")["index"], "", "a store with no sales has no index");

    // three days are too short to back-test a 14-day horizon: said so
    let accuracy = rows(&work, "out/forecast_accuracy.csv");
    assert_eq!(columns(&accuracy, &["series_kind", "series_id"]), ["item,10", "item,20", "item,30", "store,0", "store,1", "store,2"]);
    assert!(accuracy.iter().all(|r| r["mase"].is_empty() && r["note"].contains("too short")), "{accuracy:?}");
    let forecast = rows(&work, "out/forecast.csv");
    assert_eq!(forecast.len(), 6 * (3 + 14));
    let future: Vec<_> = forecast.iter().filter(|r| r["series_id"] == "1" && r["series_kind"] == "store" && r["units_sold"].is_empty()).collect();
    assert_eq!(future.len(), 14);
    assert_eq!(future[0]["day"], "2021-01-04");

    // fewer than ten units per item: nothing to cluster, and the files say so by being empty
    assert!(rows(&work, "out/item_clusters.csv").is_empty());

    let summary = crate::common::summary(&work, "run.json");
    assert_eq!(summary["rows_written"], 16);
    let written: Vec<&str> = summary["outputs"].as_array().unwrap().iter().map(|o| o["table"].as_str().unwrap()).collect();
    assert_eq!(written, [
        "top_items", "sales_by_store", "low_stock", "item_hourly", "seasonality",
        "forecast", "forecast_accuracy", "item_clusters", "cluster_profiles",
    ]);
    let leftovers: Vec<_> = std::fs::read_dir(work.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.') || name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "scratch files left behind: {leftovers:?}");
}

#[test]
fn items_chosen_and_parquet_tables() {
    let work = fixture();
    work.run(&["report", "--out-dir", "out", "--items", "30", "--format", "parquet"]).expect_code(0);
    let file = std::fs::File::open(work.path().join("out/item_hourly.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    let table = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_eq!(table.num_rows(), 59, "gizmo is sold in store_001 only");
    let text = arrow::util::pretty::pretty_format_batches(&[table.slice(25, 2)]).unwrap().to_string();
    // 2021-01-02 09:00: five sold, three left
    assert!(text.contains("| 1        | store_001  | 30      | gizmo     | 2021-01-02T09:00:00 | 5          | 0         | 0      | 3              |"), "{text}");
}

#[test]
fn delta_tables_hold_the_rows_of_the_csv_tables() {
    let work = fixture();
    work.run(&["report", "--out-dir", "csv", "--items", "30"]).expect_code(0);
    work.run(&["report", "--out-dir", "lake", "--items", "30", "--format", "delta"]).expect_code(0);
    for table in ["item_hourly", "top_items", "low_stock"] {
        let delta = crate::common::delta::read(work.path(), &format!("lake/{table}"), &[]);
        assert_eq!(delta.csv, crate::postgres::sorted(&work.read(&format!("csv/{table}.csv"))), "{table}");
    }
    assert!(work.path().join("lake/report.html").exists());
}

#[test]
fn a_failed_report_leaves_the_previous_one_whole() {
    let work = fixture();
    work.run(&["report", "--out-dir", "out"]).expect_code(0);
    let before = work.read("out/report.html");
    let top_before = work.read("out/top_items.csv");
    // a rule file that does not parse: the run fails and changes nothing
    work.write("rules/010_events.sql", "CREATE VIEW enriched AS SELEC 1;");
    let run = work.run(&["report", "--out-dir", "out", "--sql-dir", "rules", "--top", "1"]);
    run.expect_code(1);
    assert!(run.stderr().contains("rules/010_events.sql failed"), "{}", run.stderr());
    assert_eq!(work.read("out/report.html"), before);
    assert_eq!(work.read("out/top_items.csv"), top_before);
}

/// Headless Chromium (Debian's `chromium`), or a clear failure saying how to get it.
fn chromium() -> String {
    for candidate in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(candidate).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return candidate.to_string();
        }
    }
    panic!("the report page test needs headless Chromium: apt-get install chromium (.ci/run does)");
}

fn headless(browser: &str, args: &[&str], page: &Path, profile: &Path) -> std::process::Output {
    Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium")
}

/// The marks (`class="mark"` elements) inside the element with `id`.
fn marks_in(dom: &str, id: &str) -> usize {
    let start = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in the rendered page"));
    let end = dom[start..].find("</figure>").map_or(dom.len(), |e| start + e);
    dom[start..end].matches("class=\"mark").count()
}

#[test]
fn the_page_renders_in_a_real_browser_with_every_mark() {
    let browser = chromium();
    let work = Workdir::new();
    let data = manifest_dir().join("data");
    work.run(&["report", "--data", data.to_str().unwrap(), "--out-dir", "out"]).expect_code(0);
    let page = work.path().join("out/report.html");
    let html = work.read("out/report.html");
    for forbidden in ["<script", "http://", "https://", "@import", "url("] {
        assert!(!html.contains(forbidden), "the page must be self-contained, found {forbidden}");
    }

    let profile = work.path().join("chromium-profile");
    let dumped = headless(&browser, &["--enable-logging=stderr", "--v=0", "--dump-dom"], &page, &profile);
    let stderr = String::from_utf8_lossy(&dumped.stderr);
    assert!(dumped.status.success(), "chromium failed: {stderr}");
    let console: Vec<&str> = stderr.lines().filter(|l| l.contains("CONSOLE") || l.contains("Uncaught")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    let dom = String::from_utf8_lossy(&dumped.stdout);

    let top = rows(&work, "out/top_items.csv");
    assert_eq!(marks_in(&dom, "chart-top-items"), top.len(), "one bar per top item");
    let stores: std::collections::BTreeSet<_> = rows(&work, "out/sales_by_store.csv").into_iter().map(|r| r["store_id"].clone()).collect();
    assert_eq!(marks_in(&dom, "chart-sales-by-store"), stores.len(), "one line per store");
    let series = rows(&work, "out/forecast_accuracy.csv").len();
    assert!(series > 2);
    for index in 0..series {
        assert_eq!(marks_in(&dom, &format!("chart-forecast-{index}")), 4, "two bands and two lines");
    }
    let low_pairs: std::collections::BTreeSet<_> = rows(&work, "out/low_stock.csv").into_iter().map(|r| r["rank"].clone()).collect();
    assert_eq!(marks_in(&dom, "chart-low-stock"), 2 * low_pairs.len(), "two sparklines per low-stock row");
    for index in 0..stores.len() {
        assert_eq!(marks_in(&dom, &format!("chart-seasonality-{index}")), 7 * 24, "a full heatmap per store");
    }
    let clusters: std::collections::BTreeSet<_> = rows(&work, "out/cluster_profiles.csv").into_iter().map(|r| r["cluster"].clone()).collect();
    assert!(clusters.len() >= 2, "the sample has items that sell differently");
    assert_eq!(marks_in(&dom, "chart-clusters-week"), clusters.len());
    assert_eq!(marks_in(&dom, "chart-clusters-day"), clusters.len());

    // the screenshot, kept as an artifact of the test run
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report.png");
    let _ = std::fs::remove_file(&shot);
    let screenshot = format!("--screenshot={}", shot.display());
    let taken = headless(&browser, &[&screenshot, "--window-size=1200,5200", "--hide-scrollbars"], &page, &profile);
    assert!(taken.status.success(), "{}", String::from_utf8_lossy(&taken.stderr));
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 50_000, "a real picture, {} bytes", png.len());

    // and it prints (A4, by the page's @page rule)
    let pdf = work.path().join("report.pdf");
    let print = format!("--print-to-pdf={}", pdf.display());
    let printed = headless(&browser, &[&print, "--no-pdf-header-footer"], &page, &profile);
    assert!(printed.status.success(), "{}", String::from_utf8_lossy(&printed.stderr));
    let pdf = std::fs::read(&pdf).expect("a PDF");
    assert!(pdf.starts_with(b"%PDF") && pdf.len() > 50_000, "a real document, {} bytes", pdf.len());
}
