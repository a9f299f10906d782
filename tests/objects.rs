//! Object stores (SPEC 5), against a real S3 API server (s3s-fs) started
//! by each test: exports read from a bucket and outputs written to one
//! give the local run's bytes; an object appears only when its run
//! commits; the lock of an output in a bucket keeps two runs apart.

use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use crate::common::s3::S3Server;
use crate::common::{CHANGE_HEADER, CHANGE_TYPES, SNAPSHOT_HEADER, STORES, Workdir, summary};

const BUCKET: &str = "pos-bucket";

/// Exports in several dialects (BOM and CRLF, spreadsheet dates, braced
/// ids) with one bad row, under `dir` of the workdir and under `data/` of
/// the bucket.
fn mixed_exports(work: &Workdir, s3: &S3Server, dir: &str) {
    let files = [
        ("store.csv", STORES.to_string()),
        ("item.csv", "ITEM_ID,Name,supplier_id,safety_stock_quantity,colour\r\n10,widget,7,5,red\r\n20,gadget,8,10,blue\r\n".to_string()),
        ("inventory_change_type.csv", CHANGE_TYPES.to_string()),
        ("inventory_snapshot_store_001.csv", format!("{SNAPSHOT_HEADER}10,7,1,2021-01-03 09:00:00,100\n20,7,1,2021-01-03 09:00:00,50\n")),
        (
            "inventory_change_store_001.csv",
            format!(
                "\u{feff}{}T1,10,1,1/3/2021 2:05 PM,-1,1\r\n{{6B29FC40-1}},20,1,2021-01-03T15:00:00Z,4,3\r\nT3,10,1,2021-01-03 16:00:00,lots,1\r\nT4,10,0,2021-01-03 16:30:00,-2,4\r\n",
                CHANGE_HEADER.replace('\n', "\r\n")
            ),
        ),
        ("inventory_change_online.csv", format!("{CHANGE_HEADER}T5,20,0,2021-01-04 08:00:00,-1,4\n")),
    ];
    s3.bucket(BUCKET);
    for (name, contents) in files {
        work.write(&format!("{dir}/{name}"), &contents);
        let object = s3.object(BUCKET, &format!("{dir}/{name}"));
        std::fs::create_dir_all(object.parent().unwrap()).unwrap();
        std::fs::write(object, contents).unwrap();
    }
}

fn object_bytes(s3: &S3Server, key: &str) -> Vec<u8> {
    std::fs::read(s3.object(BUCKET, key)).unwrap_or_else(|e| panic!("no object {key}: {e}"))
}

/// The same run from a bucket to a bucket as from files to files gives the
/// same bytes, CSV and Parquet, rejects included (their positions naming
/// the objects); credentials come from the environment or from
/// --storage-option, and never show in the summary or on stderr.
#[test]
fn a_run_from_a_bucket_to_a_bucket_writes_the_local_runs_bytes() {
    let s3 = S3Server::start();
    let work = Workdir::new();
    mixed_exports(&work, &s3, "data");
    let url = |key: &str| format!("s3://{BUCKET}/{key}");

    // Enriched as CSV, current_inventory as Parquet; credentials from the environment.
    work.run(&["enrich", "--data", "data", "--out", "e.csv", "--current-out", "c.parquet"]).expect_code(0);
    let (out, current) = (url("out/e.csv"), url("out/c.parquet"));
    let run = work.run_with_env(&["enrich", "--data", &url("data/"), "--out", &out, "--current-out", &current], &s3.env());
    run.expect_code(0);
    assert_eq!(object_bytes(&s3, "out/e.csv"), std::fs::read(work.path().join("e.csv")).unwrap());
    assert_eq!(object_bytes(&s3, "out/c.parquet"), std::fs::read(work.path().join("c.parquet")).unwrap());
    let local_rejects = work.read("e.csv.rejects.csv");
    assert!(local_rejects.contains("data/inventory_change_store_001.csv:4"), "{local_rejects}");
    assert_eq!(
        String::from_utf8(object_bytes(&s3, "out/e.csv.rejects.csv")).unwrap(),
        local_rejects.replace("data/", &url("data/"))
    );

    // The other way round, with --storage-option alone and the summary in the bucket.
    work.run(&["enrich", "--out", "e.parquet", "--current-out", "c.csv", "--summary-json", "s.json"]).expect_code(0);
    let mut args: Vec<String> = ["enrich", "--data", &url("data"), "--out", &url("p/e.parquet"), "--current-out", &url("p/c.csv")]
        .map(String::from)
        .to_vec();
    args.extend(["--summary-json".to_string(), url("p/s.json")]);
    args.extend(s3.options());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = work.run_with_env(&args, &[("AWS_SECRET_ACCESS_KEY", "not-this-one"), ("AWS_ACCESS_KEY_ID", "nor-this")]);
    run.expect_code(0);
    assert_eq!(object_bytes(&s3, "p/e.parquet"), std::fs::read(work.path().join("e.parquet")).unwrap());
    assert_eq!(object_bytes(&s3, "p/c.csv"), std::fs::read(work.path().join("c.csv")).unwrap());
    let json = String::from_utf8(object_bytes(&s3, "p/s.json")).unwrap();
    let (local, remote) = (summary(&work, "s.json"), serde_json::from_str::<serde_json::Value>(&json).unwrap());
    for field in ["rejected", "duplicates"] {
        assert_eq!(local[field], remote[field], "{field}");
    }
    assert_eq!(remote["rejected"], 1);
    for text in [&json, &run.stderr()] {
        assert!(!text.contains(s3.secret_key), "the secret key shows: {text}");
    }
    assert_eq!(s3.keys(BUCKET).iter().filter(|key| key.ends_with(".lock")).count(), 0, "{:?}", s3.keys(BUCKET));

    // An incremental run keeps per-file checkpoints of local files: a bucket is a usage error.
    let run = work.run(&["enrich", "--data", &url("data"), "--postgres", "postgresql://pos@127.0.0.1:1/pos", "--incremental"]);
    run.expect_code(2);
    let refused = format!("enrich --incremental reads its CSV exports from a local directory, not {}", url("data"));
    assert!(run.stderr().contains(&refused), "{}", run.stderr());

    // A prefix with no exports, and a store that refuses the credentials: exit 1, named, no secret.
    let run = work.run_with_env(&["enrich", "--data", &url("nothing/"), "--out", &url("x.csv")], &s3.env());
    run.expect_code(1);
    assert!(run.stderr().contains(&format!("input directory {} does not exist", url("nothing/"))), "{}", run.stderr());
    let mut env = s3.env();
    env.retain(|(key, _)| *key != "AWS_SECRET_ACCESS_KEY");
    env.push(("AWS_SECRET_ACCESS_KEY", "wrong-secret-value".to_string()));
    let run = work.run_with_env(&["enrich", "--data", &url("data"), "--out", &url("x.csv")], &env);
    run.expect_code(1);
    let refused = format!("cannot create the lock {}.lock: Server returned non-2xx status code: 403 Forbidden", url("x.csv"));
    assert!(run.stderr().contains(&refused), "{}", run.stderr());
    assert!(!run.stderr().contains("wrong-secret-value"), "{}", run.stderr());
}

/// Exports big enough that the enriched CSV takes more than one 16 MiB
/// part (about 30 MiB), so that a part is stored well before the commit.
fn big_exports(work: &Workdir) {
    work.run(&["generate", "--out-dir", "big", "--items", "3000", "--days", "20", "--seed", "7"]).expect_code(0);
}

/// A run that fails on broken SQL, and one killed with -9 in the middle of
/// its upload, leave the previous objects byte for byte and no new object;
/// the killed run's lock then stops a second run, which names the lock and
/// its holder, until the lock is stale and a third run takes it over.
#[test]
fn failed_and_killed_runs_leave_the_previous_objects_and_the_lock_keeps_runs_apart() {
    let s3 = S3Server::start();
    let work = Workdir::new();
    mixed_exports(&work, &s3, "data");
    big_exports(&work);
    let url = |key: &str| format!("s3://{BUCKET}/{key}");
    let (out, current) = (url("out/e.csv"), url("out/c.parquet"));
    let small = ["enrich", "--data", "data", "--out", &out, "--current-out", &current];
    work.run_with_env(&small, &s3.env()).expect_code(0);
    let before: Vec<(String, Vec<u8>)> = s3.keys(BUCKET).into_iter().map(|key| (key.clone(), object_bytes(&s3, &key))).collect();
    let unchanged = |what: &str| {
        let now: Vec<(String, Vec<u8>)> =
            s3.keys(BUCKET).into_iter().filter(|key| !key.ends_with(".lock")).map(|key| (key.clone(), object_bytes(&s3, &key))).collect();
        assert!(now == before, "{what}: the bucket changed: {:?}", s3.keys(BUCKET));
    };

    // Over --max-rejects, a run that has written its outputs fails (exit 2)
    // after its uploads: they are aborted; only its rejects are kept.
    for name in ["store.csv", "item.csv", "inventory_change_type.csv", "inventory_snapshot_store_001.csv", "inventory_change_store_001.csv"] {
        work.write(&format!("more/{name}"), std::fs::read(work.path().join("data").join(name)).unwrap());
    }
    work.write("more/inventory_change_online.csv", format!("{CHANGE_HEADER}T5,20,0,2021-01-04 08:00:00,-1,4\nT6,20,0,2021-01-04 09:00:00,-3,4\n"));
    let run = work.run_with_env(&["enrich", "--data", "more", "--max-rejects", "0", "--out", &out, "--current-out", &current], &s3.env());
    run.expect_code(2);
    for (key, bytes) in before.iter().filter(|(key, _)| ["out/e.csv", "out/c.parquet"].contains(&key.as_str())) {
        assert!(&object_bytes(&s3, key) == bytes, "{key} changed by a run over --max-rejects");
    }
    assert!(String::from_utf8(object_bytes(&s3, "out/e.csv.rejects.csv")).unwrap().contains("more/inventory_change_store_001.csv:4"));
    work.run_with_env(&small, &s3.env()).expect_code(0);
    unchanged("after a run over --max-rejects and a good run");

    work.write("bad-sql/10_broken.sql", "CREATE VIEW enriched AS SELECT no_such_column FROM inventory_change;");
    let run = work.run_with_env(&["enrich", "--data", "data", "--sql-dir", "bad-sql", "--out", &out, "--current-out", &current], &s3.env());
    run.expect_code(1);
    unchanged("after broken SQL");

    let mut child = work
        .command(&["enrich", "--data", "big", "--out", &out, "--current-out", &current, "--progress", "never"], &s3.env())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !s3.has_uploaded_part() {
        assert!(child.try_wait().unwrap().is_none(), "the big run ended before a part was uploaded");
        assert!(Instant::now() < deadline, "no part uploaded within 120 s");
        std::thread::yield_now();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    unchanged("after kill -9 mid-upload");

    // The killed run's lock is still there: a second run waits, then names it.
    let lock = s3.object(BUCKET, "out/c.parquet.lock");
    let holder = std::fs::read_to_string(&lock).expect("the killed run left its lock");
    assert!(holder.contains(&format!("pid {}", child.id())), "{holder}");
    let mut waiting = small.to_vec();
    waiting.extend(["--lock-timeout", "1s"]);
    let run = work.run_with_env(&waiting, &s3.env());
    run.expect_code(1);
    let expected = format!("{}.lock is locked by another run (pid {}", url("out/c.parquet"), child.id());
    assert!(run.stderr().contains(&expected), "{}", run.stderr());
    unchanged("after a run that found the output locked");

    // Once it has not been renewed for minutes, the lock is taken over.
    let long_ago = SystemTime::now() - Duration::from_secs(600);
    for lock in [lock, s3.object(BUCKET, "out/e.csv.lock")] {
        std::fs::File::options().write(true).open(&lock).unwrap().set_modified(long_ago).unwrap();
    }
    let big = ["enrich", "--data", "big", "--out", &out, "--current-out", &current];
    work.run_with_env(&big, &s3.env()).expect_code(0);
    work.run(&["enrich", "--data", "big", "--out", "e.csv", "--current-out", "c.parquet"]).expect_code(0);
    assert_eq!(object_bytes(&s3, "out/e.csv"), std::fs::read(work.path().join("e.csv")).unwrap());
    assert!(s3.keys(BUCKET).iter().all(|key| !key.ends_with(".lock")), "{:?}", s3.keys(BUCKET));
}

/// `report --out-dir s3://…` writes the tables (and the page) that a local
/// run writes.
#[test]
fn a_report_goes_to_a_bucket() {
    let s3 = S3Server::start();
    let work = Workdir::new();
    mixed_exports(&work, &s3, "data");
    work.run(&["report", "--data", "data", "--out-dir", "local", "--top", "5"]).expect_code(0);
    let prefix = format!("s3://{BUCKET}/report");
    work.run_with_env(&["report", "--data", "data", "--out-dir", &prefix, "--top", "5"], &s3.env()).expect_code(0);
    let mut local: Vec<String> =
        std::fs::read_dir(work.path().join("local")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    local.retain(|name| !name.ends_with(".lock"));
    local.sort();
    let remote: Vec<String> = s3.keys(BUCKET).into_iter().filter_map(|key| key.strip_prefix("report/").map(String::from)).collect();
    assert_eq!(remote, local);
    for name in local.iter().filter(|name| name.ends_with(".csv")) {
        assert_eq!(String::from_utf8(object_bytes(&s3, &format!("report/{name}"))).unwrap(), work.read(&format!("local/{name}")), "{name}");
    }
}
