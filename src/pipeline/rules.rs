//! The SQL rule files: the defaults built into the binary, or a user's directory.

use std::path::Path;

use crate::error::PipelineError;

/// One SQL file: its name (for errors) and its text.
#[derive(Debug, Clone)]
pub struct RuleFile {
    /// The file name, or `sql/<name>` for a built-in file.
    pub name: String,
    /// The SQL text: one or more statements, usually `CREATE VIEW`.
    pub sql: String,
}

/// The built-in rules: the files of `sql/` at build time, in file-name order.
const BUILTIN: &[(&str, &str)] = &[
    ("010_events.sql", include_str!("../../sql/010_events.sql")),
    ("020_inventory_timeline.sql", include_str!("../../sql/020_inventory_timeline.sql")),
    ("030_enriched.sql", include_str!("../../sql/030_enriched.sql")),
    ("040_current_inventory.sql", include_str!("../../sql/040_current_inventory.sql")),
];

/// The built-in report rules: the files of `sql/report/` at build time.
const REPORT_BUILTIN: &[(&str, &str)] = &[
    ("010_period.sql", include_str!("../../sql/report/010_period.sql")),
    ("020_top_items.sql", include_str!("../../sql/report/020_top_items.sql")),
    ("030_sales_by_store.sql", include_str!("../../sql/report/030_sales_by_store.sql")),
    ("040_watched.sql", include_str!("../../sql/report/040_watched.sql")),
    ("050_low_stock.sql", include_str!("../../sql/report/050_low_stock.sql")),
    ("060_item_hourly.sql", include_str!("../../sql/report/060_item_hourly.sql")),
    ("070_seasonality.sql", include_str!("../../sql/report/070_seasonality.sql")),
    ("080_forecast_series.sql", include_str!("../../sql/report/080_forecast_series.sql")),
    ("090_item_profiles.sql", include_str!("../../sql/report/090_item_profiles.sql")),
];

/// The rule files a run executes, in order.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The files, in file-name order.
    pub files: Vec<RuleFile>,
}

impl Rules {
    /// The enrich rules compiled into the binary.
    pub fn builtin() -> Self {
        Self::compiled("sql", BUILTIN)
    }

    /// The report rules compiled into the binary.
    pub fn builtin_report() -> Self {
        Self::compiled("sql/report", REPORT_BUILTIN)
    }

    fn compiled(dir: &str, files: &[(&str, &str)]) -> Self {
        let files = files
            .iter()
            .map(|(name, sql)| RuleFile { name: format!("{dir}/{name}"), sql: sql.to_string() })
            .collect();
        Rules { files }
    }

    /// Every `*.sql` file of `dir`, in file-name order.
    pub fn from_dir(dir: &Path) -> Result<Self, PipelineError> {
        let dir_error = |source| PipelineError::SqlDir { path: dir.to_path_buf(), source };
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(dir_error)?
            .map(|entry| entry.map(|entry| entry.path()))
            .collect::<Result<_, _>>()
            .map_err(dir_error)?;
        paths.retain(|path| path.extension().is_some_and(|ext| ext == "sql") && path.is_file());
        paths.sort();
        if paths.is_empty() {
            return Err(PipelineError::NoSqlFiles(dir.to_path_buf()));
        }
        let files = paths
            .into_iter()
            .map(|path| {
                let sql = std::fs::read_to_string(&path).map_err(dir_error)?;
                Ok(RuleFile { name: path.display().to_string(), sql })
            })
            .collect::<Result<_, PipelineError>>()?;
        Ok(Rules { files })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repository root, read at run time: a path compiled in can name
    /// another clone that shared the target directory.
    fn manifest_dir() -> std::path::PathBuf {
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR").into()
    }

    /// A file added to sql/ (or sql/report/) but not to the built-in list
    /// would silently not run.
    #[test]
    fn builtin_rules_are_the_files_of_sql_dir() {
        for (builtin, dir) in [(Rules::builtin(), "sql"), (Rules::builtin_report(), "sql/report")] {
            assert_same_files(&builtin, &manifest_dir().join(dir));
        }
    }

    fn assert_same_files(builtin: &Rules, dir: &Path) {
        let on_disk = Rules::from_dir(dir).expect("the SQL directory is readable");
        let names = |rules: &Rules| -> Vec<String> {
            rules
                .files
                .iter()
                .map(|f| Path::new(&f.name).file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names(builtin), names(&on_disk));
        for (builtin, disk) in builtin.files.iter().zip(&on_disk.files) {
            assert_eq!(builtin.sql, disk.sql, "{}", builtin.name);
        }
    }
}
