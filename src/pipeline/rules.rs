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

/// The rule files a run executes, in order.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The files, in file-name order.
    pub files: Vec<RuleFile>,
}

impl Rules {
    /// The rules compiled into the binary.
    pub fn builtin() -> Self {
        let files = BUILTIN
            .iter()
            .map(|(name, sql)| RuleFile { name: format!("sql/{name}"), sql: sql.to_string() })
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

    /// A file added to sql/ but not to BUILTIN would silently not run.
    #[test]
    fn builtin_rules_are_the_files_of_sql_dir() {
        let dir = manifest_dir().join("sql");
        let on_disk = Rules::from_dir(&dir).expect("sql/ is readable");
        let names = |rules: &Rules| -> Vec<String> {
            rules
                .files
                .iter()
                .map(|f| Path::new(&f.name).file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names(&Rules::builtin()), names(&on_disk));
        for (builtin, disk) in Rules::builtin().files.iter().zip(&on_disk.files) {
            assert_eq!(builtin.sql, disk.sql, "{}", builtin.name);
        }
    }
}
