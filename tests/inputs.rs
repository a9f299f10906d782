//! Inputs that must not crash or silently corrupt a run (SPEC 1.1, 1.3, 2.1):
//! strict dates and quantities, the online store in any letter case, the raw
//! text of rejects, ids that stay integers through the report, one
//! definition of the stock order, and a report that stays readable on
//! dirty data.

use crate::common::{CHANGE_HEADER, CHANGE_TYPES, SNAPSHOT_HEADER, Workdir, copy_sql_dir, summary};


/// The reject reasons of a run, without the file names.
fn reasons(work: &Workdir, rejects: &str) -> Vec<String> {
    let mut reader = csv::Reader::from_path(work.path().join(rejects)).unwrap();
    reader.records().map(|record| record.unwrap()[1].to_string()).collect()
}

/// Dates that used to be misread (a two-digit year read as the year 21, a
/// 60th second, a three-part offset, a lone sign) and quantities that could
/// overflow the stock are rejects, with a reason that says what was expected.
#[test]
fn bad_dates_and_quantities_are_rejected_with_what_was_expected() {
    let work = Workdir::new();
    work.data(&[
        ("inventory_snapshot_store_001.csv", &format!("{SNAPSHOT_HEADER}10,7,1,2021-01-03 09:00:00,100\n10,7,1,2021-01-03 09:30:00,9223372036854775807\n")),
        (
            "inventory_change_store_001.csv",
            &format!(
                "{CHANGE_HEADER}\
                 T1,10,1,1/3/21 2:19 PM,-1,1\n\
                 T2,10,1,1/3/202 2:19 PM,-1,1\n\
                 T3,10,1,2021-01-03 14:25:60,-1,1\n\
                 T4,10,1,2021-01-03T14:25:00+05:30:00,-1,1\n\
                 T5,10,1,2021-01-03T14:25:00-,-1,1\n\
                 T6,10,1,2021-01-03 15:00:00,-9223372036854775808,1\n\
                 T7,10,1,2021-01-03 15:00:00,2147483648,3\n\
                 T8,10,1,2021-01-03 15:00:00,2147483647,3\n"
            ),
        ),
    ]);
    work.run(&["enrich", "--out", "e.csv", "--current-out", "c.csv", "--summary-json", "s.json"]).expect_code(0);
    assert_eq!(
        reasons(&work, "e.csv.rejects.csv"),
        [
            "quantity is out of range: '9223372036854775807' (a quantity is less than 2^31 either way)",
            "date_time is not a date: '1/3/21 2:19 PM' (the year must have four digits)",
            "date_time is not a date: '1/3/202 2:19 PM' (the year must have four digits)",
            "date_time is not a date: '2021-01-03 14:25:60' (hours run 0 to 23 (1 to 12 with AM/PM), minutes and seconds 00 to 59)",
            "date_time is not a date: '2021-01-03T14:25:00+05:30:00' (an offset is Z or ±HH:MM)",
            "date_time is not a date: '2021-01-03T14:25:00-' (an offset is Z or ±HH:MM)",
            "quantity is out of range: '-9223372036854775808' (a quantity is less than 2^31 either way)",
            "quantity is out of range: '2147483648' (a quantity is less than 2^31 either way)",
        ]
    );
    // The largest quantity still counts, and the stock does not wrap.
    assert!(work.read("c.csv").contains(",100,2147483647,2147483747,"), "{}", work.read("c.csv"));
    assert_eq!(summary(&work, "s.json")["rejected"], 8);
}

/// SPEC 2.1: the online store is matched without letter case or surrounding
/// spaces, for its BOPIS rule and its blank employee_id.
#[test]
fn the_online_store_in_any_letter_case() {
    for name in ["online", "Online", " ONLINE ", "\"  online\""] {
        let work = Workdir::new();
        work.data(&[
            ("inventory_snapshot_online.csv", &format!("{SNAPSHOT_HEADER}10,7,0,2021-01-03 09:00:00,100\n")),
            ("inventory_change_online.csv", &format!("{CHANGE_HEADER}T1,10,0,2021-01-03 10:00:00,-2,4\nT2,10,0,2021-01-03 11:00:00,-3,1\n")),
        ]);
        work.write("data/store.csv", format!("store_id,name\n0,{name}\n1,store_001\n"));
        let out = work.enrich(&[]);
        let rows: Vec<Vec<&str>> = out.lines().skip(1).map(|line| line.split(',').collect()).collect();
        let (employee, finals): (Vec<&str>, Vec<&str>) = rows.iter().map(|row| (row[1], row[11])).unzip();
        assert_eq!(employee, ["", "", ""], "store named {name:?}");
        assert_eq!(finals, ["100", "100", "97"], "store named {name:?}: an online BOPIS order leaves the stock");
    }
}

/// The raw text of a reject is the record as read: not trimmed, not re-quoted.
#[test]
fn rejects_keep_the_record_as_read() {
    let work = Workdir::new();
    work.data(&[
        ("inventory_snapshot_store_001.csv", &format!("{SNAPSHOT_HEADER}10,7,1,2021-01-03 09:00:00,100\n")),
        ("inventory_change_store_001.csv", &format!("{CHANGE_HEADER}   \n \"T1\" ,10,1,noon,-1,1\n")),
    ]);
    work.run(&["enrich", "--out", "e.csv"]).expect_code(0);
    let mut reader = csv::Reader::from_path(work.path().join("e.csv.rejects.csv")).unwrap();
    let raw: Vec<String> = reader.records().map(|record| record.unwrap()[2].to_string()).collect();
    assert_eq!(raw, ["   ", " \"T1\" ,10,1,noon,-1,1"]);
}

/// The stock order is written once, in sql/020: a user who changes it there
/// changes every view after it. Here trans_ids sort backwards at the same
/// instant, and current_inventory follows enriched's new last row.
#[test]
fn the_stock_order_is_defined_once() {
    let work = Workdir::new();
    work.data(&[
        ("inventory_snapshot_store_001.csv", &format!("{SNAPSHOT_HEADER}10,7,1,2021-01-03 09:00:00,100\n")),
        ("inventory_change_store_001.csv", &format!("{CHANGE_HEADER}A,10,1,2021-01-03 10:00:00,-2,1\nB,10,1,2021-01-03 10:00:00,5,3\n")),
    ]);
    copy_sql_dir(&work, "rules");
    let order = "ORDER BY item_id, date_time, event_order, trans_id,";
    let timeline = work.read("rules/020_inventory_timeline.sql");
    assert!(timeline.contains(order), "the stock order moved: {timeline}");
    let timeline = timeline.replace(order, "ORDER BY item_id, date_time, event_order, trans_id DESC,");
    work.write("rules/020_inventory_timeline.sql", timeline);
    let out = work.enrich(&["--sql-dir", "rules", "--current-out", "c.csv"]);
    let trans: Vec<&str> = out.lines().skip(1).map(|line| line.split(',').nth(8).unwrap()).collect();
    assert_eq!(trans, ["", "B", "A"]);
    assert!(work.read("c.csv").contains(",100,3,103,"), "{}", work.read("c.csv"));
}

/// Ids above 2^53 stay distinct through the report (as floats, these two
/// would be one item).
#[test]
fn ids_stay_integers_through_the_report() {
    let work = Workdir::new();
    let (a, b) = (9_007_199_254_740_993_i64, 9_007_199_254_740_992_i64);
    work.write("data/store.csv", "store_id,name\n1,store_001\n");
    work.write("data/item.csv", format!("item_id,name,supplier_id,safety_stock_quantity\n{a},a,1,1\n{b},b,1,1\n"));
    work.write("data/inventory_change_type.csv", CHANGE_TYPES);
    let mut snapshots = String::from(SNAPSHOT_HEADER);
    let mut changes = String::from(CHANGE_HEADER);
    for day in 1..=20 {
        for (item, sold) in [(a, 2), (b, 5)] {
            snapshots.push_str(&format!("{item},1,1,2021-01-{day:02} 06:00:00,100\n"));
            changes.push_str(&format!("T{day}{item},{item},1,2021-01-{day:02} 12:00:00,-{sold},1\n"));
        }
    }
    work.write("data/inventory_snapshot_store_001.csv", snapshots);
    work.write("data/inventory_change_store_001.csv", changes);
    work.run(&["report", "--out-dir", "report", "--horizon", "3"]).expect_code(0);
    let forecast = work.read("report/forecast.csv");
    for item in [a, b] {
        assert!(forecast.contains(&format!("item,{item},")), "item {item} is not a series of its own:\n{forecast}");
    }
    let page = work.read("report/report.html");
    assert!(page.contains(">b</") && page.contains(">a</"), "both items are drawn");
}

/// A store id without a lookup row and a few sales at one hour: every
/// store's heatmap is on its own scale (each has a darkest cell), two stores
/// without a name are two heatmaps, and the page and low_stock say which id
/// has no lookup row.
#[test]
fn the_report_on_dirty_data() {
    let work = Workdir::new();
    work.write("data/store.csv", "store_id,name\n1,store_001\n");
    work.write("data/item.csv", "item_id,name,supplier_id,safety_stock_quantity\n10,widget,7,500\n");
    work.write("data/inventory_change_type.csv", CHANGE_TYPES);
    let mut snapshots = String::from(SNAPSHOT_HEADER);
    let mut changes = String::from(CHANGE_HEADER);
    for (store, count) in [(1, 1000), (84, 100), (85, 100)] {
        snapshots.push_str(&format!("10,1,{store},2021-01-01 06:00:00,{count}\n"));
    }
    for day in 1..=14 {
        for hour in 8..20 {
            changes.push_str(&format!("S{day}-{hour},10,1,2021-01-{day:02} {hour:02}:15:00,-1,1\n"));
        }
    }
    changes.push_str("X1,10,84,2021-01-05 03:00:00,-40,1\nX2,10,85,2021-01-06 04:00:00,-1,1\n");
    work.write("data/inventory_snapshot_store_001.csv", snapshots);
    work.write("data/inventory_change_store_001.csv", changes);
    work.run(&["report", "--out-dir", "report", "--horizon", "3"]).expect_code(0);
    let page = work.read("report/report.html");
    let heatmaps: Vec<&str> = page.split("<figure id=\"chart-seasonality-").skip(1).collect();
    assert_eq!(heatmaps.len(), 3, "one heatmap per store id");
    for (heatmap, store) in heatmaps.iter().zip(["store_001", "store 84 (no lookup row)", "store 85 (no lookup row)"]) {
        assert!(heatmap.contains(store), "{store}");
        assert!(heatmap.contains("fill=\"#08306b\""), "{store}: its busiest hour has the darkest colour");
    }
    let low_stock = work.read("report/low_stock.csv");
    assert!(low_stock.lines().any(|line| line.starts_with("1,84,,10,widget,")), "{low_stock}");
    assert!(page.contains("store 84 (no lookup row)</td>"), "the low-stock table names the id");
}
