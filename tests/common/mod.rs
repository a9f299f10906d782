//! Test helpers: a private working directory per test and a way to run the
//! built binary in it, with failure messages that show the command, the
//! working directory and stderr.

pub mod broker;
pub mod cluster;
pub mod delta;
pub mod postgres;
pub mod s3;
pub mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root, read when the test runs: the target directory is
/// shared between clones, so a path compiled in can name another clone.
pub fn manifest_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"))
}

/// A temporary working directory, removed when the test ends.
pub struct Workdir {
    dir: tempfile::TempDir,
}

/// What a run of the binary printed and returned.
pub struct Run {
    pub command: String,
    pub cwd: PathBuf,
    pub output: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// Fails the test, showing the run, unless the exit code is `expected`.
    pub fn expect_code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(expected),
            "\ncommand: {}\ncwd: {}\nstdout:\n{}\nstderr:\n{}",
            self.command,
            self.cwd.display(),
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// The standard lookups of the tests: two stores, two items, and the change
/// types exactly as the original export has them (BOM, CRLF, `-1,snapshot`).
pub const STORES: &str = "store_id,name\n0,online\n1,store_001\n";
pub const ITEMS: &str = "item_id,name,supplier_id,safety_stock_quantity\n10,widget,7,5\n20,gadget,8,10\n";
pub const CHANGE_TYPES: &str =
    "\u{feff}change_type_id,change_type\r\n1,sale\r\n2,shrink\r\n3,restock\r\n4,bopis\r\n-1,snapshot\r\n";
/// The header of an inventory_snapshot export.
pub const SNAPSHOT_HEADER: &str = "item_id,employee_id,store_id,date_time,quantity\n";
/// The header of an inventory_change export.
pub const CHANGE_HEADER: &str = "trans_id,item_id,store_id,date_time,quantity,change_type_id\n";
/// The header of every enriched output (SPEC 2).
pub const ENRICHED_HEADER: &str = "item_id,employee_id,store_id,date_time,quantity,source_type,store_name,action,trans_id,change_type_id,change_type,final_quantity,item_name,supplier_id,safety_stock_quantity,sales\n";

impl Workdir {
    pub fn new() -> Self {
        Workdir { dir: tempfile::tempdir().expect("create a temporary directory") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to `name` (relative to the workdir), creating directories.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) {
        let path = self.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
    }

    pub fn read(&self, name: &str) -> String {
        let path = self.path().join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    }

    /// Writes the standard lookups into `data/` plus the given event files.
    pub fn data(&self, events: &[(&str, &str)]) {
        self.write("data/store.csv", STORES);
        self.write("data/item.csv", ITEMS);
        self.write("data/inventory_change_type.csv", CHANGE_TYPES);
        for (name, contents) in events {
            self.write(&format!("data/{name}"), contents);
        }
    }

    /// Runs `pos-etl ARGS` in the workdir.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_env::<&str, &str>(args, &[])
    }

    /// `pos-etl ARGS` to be started in the workdir, with variables `env` set.
    pub fn command<K: AsRef<std::ffi::OsStr>, V: AsRef<std::ffi::OsStr>>(&self, args: &[&str], env: &[(K, V)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pos-etl"));
        command.args(args).current_dir(self.path()).env_remove("POS_ETL_DATA").env_remove("POS_ETL_SQL_DIR");
        for (key, value) in env {
            command.env(key, value);
        }
        command
    }

    /// Runs `pos-etl ARGS` in the workdir with variables `env` set.
    pub fn run_with_env<K: AsRef<std::ffi::OsStr>, V: AsRef<std::ffi::OsStr>>(&self, args: &[&str], env: &[(K, V)]) -> Run {
        let output = self.command(args, env).output().expect("run pos-etl");
        Run { command: format!("pos-etl {}", args.join(" ")), cwd: self.path().to_path_buf(), output }
    }

    /// Runs `pos-etl enrich --out enriched.csv ARGS`, expects success, returns the output.
    pub fn enrich(&self, extra: &[&str]) -> String {
        let mut args = vec!["enrich", "--out", "enriched.csv"];
        args.extend_from_slice(extra);
        self.run(&args).expect_code(0);
        self.read("enriched.csv")
    }
}

/// The summary JSON a run wrote.
pub fn summary(work: &Workdir, name: &str) -> serde_json::Value {
    serde_json::from_str(&work.read(name)).expect("summary is JSON")
}

/// Copies the repository's sql/ tree to `name`, as a user starting to edit the rules would.
pub fn copy_sql_dir(work: &Workdir, name: &str) {
    copy_tree(work, &manifest_dir().join("sql"), name);
}

fn copy_tree(work: &Workdir, source: &Path, name: &str) {
    for entry in std::fs::read_dir(source).unwrap() {
        let path = entry.unwrap().path();
        let target = format!("{name}/{}", path.file_name().unwrap().to_string_lossy());
        if path.is_dir() {
            copy_tree(work, &path, &target);
        } else {
            work.write(&target, std::fs::read(&path).unwrap());
        }
    }
}

/// Every file in `dir` and below whose name ends in `.tmp`.
pub fn temporary_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(temporary_files(&path));
        } else if path.to_string_lossy().ends_with(".tmp") {
            found.push(path.display().to_string());
        }
    }
    found
}
