//! `pos-etl generate`: deterministic, in the original dialect, and readable by `enrich`.

use crate::common::{Workdir, summary};

#[test]
fn generated_data_is_deterministic_and_enriches_cleanly() {
    let work = Workdir::new();
    let args = |dir: &'static str| ["generate", "--out-dir", dir, "--items", "40", "--days", "7", "--seed", "3"];
    work.run(&args("a")).expect_code(0);
    work.run(&args("b")).expect_code(0);
    let mut names: Vec<String> = std::fs::read_dir(work.path().join("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "inventory_change_online.csv",
            "inventory_change_store_001.csv",
            "inventory_change_type.csv",
            "inventory_snapshot_online.csv",
            "inventory_snapshot_store_001.csv",
            "item.csv",
            "store.csv",
        ]
    );
    for name in &names {
        assert_eq!(work.read(&format!("a/{name}")), work.read(&format!("b/{name}")), "{name} differs");
    }
    assert!(work.read("a/inventory_change_type.csv").starts_with("\u{feff}change_type_id,change_type\r\n"));

    work.run(&["enrich", "--data", "a", "--out", "out.csv", "--summary-json", "s.json"]).expect_code(0);
    let summary = summary(&work, "s.json");
    assert_eq!(summary["rejected"], 0);
    assert_eq!(summary["unmatched_lookups"], serde_json::json!({"store": 0, "item": 0, "change_type": 0}));
}
