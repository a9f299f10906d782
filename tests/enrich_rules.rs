//! Hand-computed golden outputs for each rule of SPEC 2.1–2.3, through the
//! binary. Each test writes the standard lookups (see common) plus the events
//! it is about, and compares the whole output.

use crate::common::{CHANGE_HEADER, ENRICHED_HEADER, SNAPSHOT_HEADER, Workdir, summary};


fn golden(rows: &str) -> String {
    format!("{ENRICHED_HEADER}{rows}")
}

/// SPEC 2.1's example: snapshot 100 → sale −2 → restock +50 → snapshot 140 →
/// sale −1 at the snapshot's instant (after it). Also current_inventory.
#[test]
fn spec_example() {
    let work = Workdir::new();
    work.data(&[
        (
            "inventory_snapshot_store_001.csv",
            &format!("{SNAPSHOT_HEADER}10,7,1,2021-01-03 12:00:00,140\n10,7,1,2021-01-03 09:00:00,100\n"),
        ),
        (
            "inventory_change_store_001.csv",
            &format!(
                "{CHANGE_HEADER}T3,10,1,2021-01-03 12:00:00,-1,1\n{{T1}},10,1,2021-01-03 10:00:00,-2,1\nT2,10,1,2021-01-03 11:00:00,50,3\n"
            ),
        ),
    ]);
    let out = work.enrich(&["--current-out", "current.csv"]);
    assert_eq!(
        out,
        golden(
            "10,7,1,2021-01-03 09:00:00,100,snapshot_only,store_001,inventory report,,,,100,widget,7,5,\n\
             10,,1,2021-01-03 10:00:00,-2,snapshot_with_change,store_001,sale,T1,1,sale,98,widget,7,5,2\n\
             10,,1,2021-01-03 11:00:00,50,snapshot_with_change,store_001,restock,T2,3,restock,148,widget,7,5,\n\
             10,7,1,2021-01-03 12:00:00,140,snapshot_only,store_001,inventory report,,,,140,widget,7,5,\n\
             10,,1,2021-01-03 12:00:00,-1,snapshot_with_change,store_001,sale,T3,1,sale,139,widget,7,5,1\n"
        )
    );
    assert_eq!(
        work.read("current.csv"),
        "store_id,store_name,item_id,item_name,snapshot_quantity,change_quantity,current_inventory,safety_stock_quantity,below_safety_stock,date_time\n\
         1,store_001,10,widget,140,-1,139,5,false,2021-01-03 12:00:00\n"
    );
}

/// Ties at one instant: snapshot first, then trans_id, quantity, change_type_id.
#[test]
fn ties_are_broken_by_trans_id_quantity_and_change_type() {
    let work = Workdir::new();
    work.data(&[
        ("inventory_snapshot_store_001.csv", &format!("{SNAPSHOT_HEADER}20,3,1,2021-01-03 10:00:00,10\n")),
        (
            "inventory_change_store_001.csv",
            &format!(
                "{CHANGE_HEADER}B,20,1,2021-01-03 10:00:00,-1,1\nA,20,1,2021-01-03 10:00:00,5,3\nA,20,1,2021-01-03 10:00:00,-2,1\n\
                 C,20,1,2021-01-03 11:00:00,-1,2\nC,20,1,2021-01-03 11:00:00,-1,1\n"
            ),
        ),
    ]);
    let out = work.enrich(&["--current-out", "current.csv"]);
    assert_eq!(
        out,
        golden(
            "20,3,1,2021-01-03 10:00:00,10,snapshot_only,store_001,inventory report,,,,10,gadget,8,10,\n\
             20,,1,2021-01-03 10:00:00,-2,snapshot_with_change,store_001,sale,A,1,sale,8,gadget,8,10,2\n\
             20,,1,2021-01-03 10:00:00,5,snapshot_with_change,store_001,restock,A,3,restock,13,gadget,8,10,\n\
             20,,1,2021-01-03 10:00:00,-1,snapshot_with_change,store_001,sale,B,1,sale,12,gadget,8,10,1\n\
             20,,1,2021-01-03 11:00:00,-1,snapshot_with_change,store_001,sale,C,1,sale,11,gadget,8,10,1\n\
             20,,1,2021-01-03 11:00:00,-1,snapshot_with_change,store_001,shrink,C,2,shrink,10,gadget,8,10,\n"
        )
    );
    assert!(work.read("current.csv").ends_with("\n1,store_001,20,gadget,10,0,10,10,false,2021-01-03 11:00:00\n"));
}

/// Changes before the first snapshot are `change_only` with no final_quantity,
/// and a (store, item) with no snapshot at all has no current_inventory row.
#[test]
fn changes_before_any_snapshot() {
    let work = Workdir::new();
    work.data(&[
        ("inventory_snapshot_store_001.csv", &format!("{SNAPSHOT_HEADER}10,7,1,2021-01-03 09:00:00,100\n")),
        (
            "inventory_change_store_001.csv",
            &format!("{CHANGE_HEADER}T0,10,1,2021-01-03 08:00:00,-1,1\nT1,10,1,2021-01-03 09:30:00,-3,2\nT2,20,1,2021-01-03 09:30:00,-1,1\n"),
        ),
    ]);
    let out = work.enrich(&["--current-out", "current.csv"]);
    assert_eq!(
        out,
        golden(
            "10,,1,2021-01-03 08:00:00,-1,change_only,store_001,sale,T0,1,sale,,widget,7,5,1\n\
             10,7,1,2021-01-03 09:00:00,100,snapshot_only,store_001,inventory report,,,,100,widget,7,5,\n\
             10,,1,2021-01-03 09:30:00,-3,snapshot_with_change,store_001,shrink,T1,2,shrink,97,widget,7,5,\n\
             20,,1,2021-01-03 09:30:00,-1,change_only,store_001,sale,T2,1,sale,,gadget,8,10,1\n"
        )
    );
    assert_eq!(work.read("current.csv").lines().count(), 2, "only item 10 has a snapshot");
}

/// An online BOPIS order does not move the online stock (the physical store
/// fulfils it) but counts as a sale; online snapshots have no employee_id.
/// A BOPIS row of a physical store does move its stock.
#[test]
fn online_bopis_keeps_the_online_stock() {
    let work = Workdir::new();
    work.data(&[
        (
            "inventory_snapshot_online.csv",
            &format!("{SNAPSHOT_HEADER}10,5,0,2021-01-03 09:00:00,30\n10,5,1,2021-01-03 09:00:00,40\n"),
        ),
        (
            "inventory_change_online.csv",
            &format!(
                "{CHANGE_HEADER}W1,10,0,2021-01-03 10:00:00,-2,4\nW2,10,0,2021-01-03 11:00:00,-1,1\nW3,10,1,2021-01-03 10:00:00,-2,4\n"
            ),
        ),
    ]);
    let out = work.enrich(&["--current-out", "current.csv"]);
    assert_eq!(
        out,
        golden(
            "10,,0,2021-01-03 09:00:00,30,snapshot_only,online,inventory report,,,,30,widget,7,5,\n\
             10,,0,2021-01-03 10:00:00,-2,snapshot_with_change,online,bopis,W1,4,bopis,30,widget,7,5,2\n\
             10,,0,2021-01-03 11:00:00,-1,snapshot_with_change,online,sale,W2,1,sale,29,widget,7,5,1\n\
             10,5,1,2021-01-03 09:00:00,40,snapshot_only,store_001,inventory report,,,,40,widget,7,5,\n\
             10,,1,2021-01-03 10:00:00,-2,snapshot_with_change,store_001,bopis,W3,4,bopis,38,widget,7,5,2\n"
        )
    );
    let current = work.read("current.csv");
    assert!(current.contains("\n0,online,10,widget,30,-1,29,5,false,2021-01-03 11:00:00\n"), "{current}");
    assert!(current.contains("\n1,store_001,10,widget,40,-2,38,5,false,2021-01-03 10:00:00\n"), "{current}");
}

/// Records identical in every column count once, across files too; records
/// differing in any column are kept. The summary counts what was dropped.
#[test]
fn exact_duplicates_are_removed_and_counted() {
    let work = Workdir::new();
    let snapshot = "20,3,1,2021-01-03 09:00:00,4\n";
    let change = "T1,20,1,2021-01-03 10:00:00,-1,1\n";
    work.data(&[
        ("inventory_snapshot_store_001.csv", &format!("{SNAPSHOT_HEADER}{snapshot}{snapshot}20,4,1,2021-01-03 09:00:00,4\n")),
        ("inventory_change_store_001.csv", &format!("{CHANGE_HEADER}{change}{change}T1,20,1,2021-01-03 10:00:00,-2,1\n")),
        ("inventory_change_store_001_resent.csv", &format!("{CHANGE_HEADER}{{T1}},20,1,2021-01-03 10:00:00,-1,1\n")),
    ]);
    let out = work.enrich(&["--summary-json", "summary.json", "--current-out", "current.csv"]);
    assert_eq!(
        out,
        golden(
            "20,3,1,2021-01-03 09:00:00,4,snapshot_only,store_001,inventory report,,,,4,gadget,8,10,\n\
             20,4,1,2021-01-03 09:00:00,4,snapshot_only,store_001,inventory report,,,,4,gadget,8,10,\n\
             20,,1,2021-01-03 10:00:00,-2,snapshot_with_change,store_001,sale,T1,1,sale,2,gadget,8,10,2\n\
             20,,1,2021-01-03 10:00:00,-1,snapshot_with_change,store_001,sale,T1,1,sale,1,gadget,8,10,1\n"
        )
    );
    assert!(work.read("current.csv").ends_with("\n1,store_001,20,gadget,4,-3,1,10,true,2021-01-03 10:00:00\n"));
    let summary = summary(&work, "summary.json");
    assert_eq!(summary["events_read"], 7);
    assert_eq!(summary["rows_written"], 4);
    assert_eq!(summary["duplicates"], 3);
    assert_eq!(summary["rejected"], 0);
}

/// Ids with no lookup row are kept with null names and counted.
#[test]
fn unknown_ids_are_kept_and_counted() {
    let work = Workdir::new();
    work.data(&[
        ("inventory_snapshot_store_001.csv", &format!("{SNAPSHOT_HEADER}99,3,1,2021-01-03 09:00:00,4\n")),
        (
            "inventory_change_store_001.csv",
            &format!("{CHANGE_HEADER}T1,99,1,2021-01-03 10:00:00,-1,9\nT2,10,5,2021-01-03 10:00:00,-1,1\n"),
        ),
    ]);
    let out = work.enrich(&["--summary-json", "summary.json"]);
    assert_eq!(
        out,
        golden(
            "99,3,1,2021-01-03 09:00:00,4,snapshot_only,store_001,inventory report,,,,4,,,,\n\
             99,,1,2021-01-03 10:00:00,-1,snapshot_with_change,store_001,,T1,9,,3,,,,\n\
             10,,5,2021-01-03 10:00:00,-1,change_only,,sale,T2,1,sale,,widget,7,5,1\n"
        )
    );
    let summary = summary(&work, "summary.json");
    assert_eq!(summary["unmatched_lookups"], serde_json::json!({"store": 1, "item": 2, "change_type": 1}));
}

/// Every date dialect of SPEC 1.1, one file each, is the same wall-clock time.
#[test]
fn date_dialects_give_the_same_time() {
    let work = Workdir::new();
    let dialects = [
        "2021-01-03 14:05:00",
        "1/3/2021 14:05",
        "01/03/2021 2:05 PM",
        "2021-01-03T14:05:00.250Z",
        "2021-01-03T14:05:00+05:30",
    ];
    let files: Vec<(String, String)> = dialects
        .iter()
        .enumerate()
        .map(|(i, date)| (format!("inventory_change_{i}.csv"), format!("{CHANGE_HEADER}T{i},10,1,{date},-1,1\n")))
        .collect();
    let mut events: Vec<(&str, &str)> = files.iter().map(|(n, c)| (n.as_str(), c.as_str())).collect();
    let snapshots = format!("{SNAPSHOT_HEADER}10,7,1,1/3/2021 2:00 PM,50\n");
    events.push(("inventory_snapshot_store_001.csv", &snapshots));
    work.data(&events);
    let out = work.enrich(&[]);
    let times: Vec<&str> = out.lines().skip(1).map(|line| line.split(',').nth(3).unwrap()).collect();
    assert_eq!(times, ["2021-01-03 14:00:00"].into_iter().chain(["2021-01-03 14:05:00"; 5]).collect::<Vec<_>>());
    let finals: Vec<&str> = out.lines().skip(1).map(|line| line.split(',').nth(11).unwrap()).collect();
    assert_eq!(finals, ["50", "49", "48", "47", "46", "45"]);
}

/// A byte-order mark, CRLF line ends, header names in any case, columns in
/// another order and extra columns all load; output is UTF-8 without BOM, `\n`.
#[test]
fn bom_crlf_header_case_and_extra_columns() {
    let work = Workdir::new();
    work.data(&[
        (
            "inventory_snapshot_store_001.csv",
            "\u{feff}Store_ID,ITEM_ID,Date_Time,Quantity,Employee_Id,Note\r\n1,10,2021-01-03 09:00:00,8,7,recount\r\n",
        ),
        (
            "inventory_change_store_001.csv",
            "\u{feff}Trans_ID,Item_ID,Store_ID,Date_Time,Quantity,Change_Type_ID,Till\r\n{A1},10,1,2021-01-03 10:00:00,-1,1,4\r\n",
        ),
    ]);
    let out = work.enrich(&[]);
    assert_eq!(
        out,
        golden(
            "10,7,1,2021-01-03 09:00:00,8,snapshot_only,store_001,inventory report,,,,8,widget,7,5,\n\
             10,,1,2021-01-03 10:00:00,-1,snapshot_with_change,store_001,sale,A1,1,sale,7,widget,7,5,1\n"
        )
    );
}

/// Parquet output holds the same rows with the types of SPEC 2.
#[test]
fn parquet_output_has_the_contract_types() {
    use arrow::datatypes::DataType;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let work = Workdir::new();
    work.data(&[
        ("inventory_snapshot_store_001.csv", &format!("{SNAPSHOT_HEADER}10,7,1,2021-01-03 09:00:00,100\n")),
        ("inventory_change_store_001.csv", &format!("{CHANGE_HEADER}T1,10,1,2021-01-03 10:00:00,-2,1\nT0,20,1,2021-01-03 10:00:00,-2,2\n")),
    ]);
    let csv = work.enrich(&[]);
    work.run(&["enrich", "--out", "enriched.parquet", "--current-out", "current.parquet"]).expect_code(0);
    let file = std::fs::File::open(work.path().join("enriched.parquet")).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    // Readers without the embedded Arrow schema (DuckDB, Spark, Tableau) see
    // the Parquet types: date_time must be a local timestamp, not an integer.
    let columns = builder.metadata().file_metadata().schema_descr();
    let date_time = columns.columns().iter().find(|c| c.name() == "date_time").unwrap();
    assert!(
        matches!(date_time.logical_type_ref(), Some(parquet::basic::LogicalType::Timestamp(t)) if !t.is_adjusted_to_u_t_c),
        "{:?}",
        date_time.logical_type_ref()
    );
    let reader = builder.build().unwrap();
    let batches: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
    let schema = batches[0].schema();
    let types: Vec<(&str, &DataType)> = schema.fields().iter().map(|f| (f.name().as_str(), f.data_type())).collect();
    for (name, data_type) in &types {
        let expected_int = ["item_id", "employee_id", "store_id", "quantity", "change_type_id", "final_quantity", "supplier_id", "safety_stock_quantity", "sales"];
        if expected_int.contains(name) {
            assert_eq!(**data_type, DataType::Int64, "{name}");
        } else if *name == "date_time" {
            assert!(matches!(data_type, DataType::Timestamp(_, None)), "{name}: {data_type}");
        } else {
            assert_eq!(**data_type, DataType::Utf8, "{name}");
        }
    }
    let as_csv: Vec<u8> = batches
        .iter()
        .enumerate()
        .flat_map(|(i, batch)| pos_etl::sinks::csv::encode(batch, i == 0).unwrap())
        .collect();
    assert_eq!(String::from_utf8(as_csv).unwrap(), csv);
    let current = std::fs::File::open(work.path().join("current.parquet")).unwrap();
    let rows: usize = ParquetRecordBatchReaderBuilder::try_new(current).unwrap().build().unwrap().map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 1);
}
