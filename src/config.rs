//! Checked settings: the flags of `cli.rs` turned into the typed values that
//! commands use (formats inferred, default paths filled in, conflicts refused).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{EnrichArgs, Format, ProgressMode};
use crate::sinks::{Destination, Output};

/// A command line that parsed but makes no sense; exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The format of an output cannot be told from its name.
    #[error("cannot tell the format of {0} from its extension: use --format csv or --format parquet")]
    UnknownFormat(PathBuf),
    /// stdout only takes CSV.
    #[error("--out - writes CSV to stdout; --format parquet needs a file name")]
    ParquetToStdout,
    /// Two outputs cannot share stdout.
    #[error("only one output can go to stdout")]
    TwoStdouts,
}

/// Where the SQL rules come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleSource {
    /// The files built into the binary.
    Builtin,
    /// A user's directory of `*.sql` files.
    Dir(PathBuf),
}

/// The checked settings of `pos-etl enrich`.
#[derive(Debug, Clone)]
pub struct EnrichConfig {
    /// The directory of CSV exports.
    pub data_dir: PathBuf,
    /// The enriched output.
    pub enriched: Output,
    /// The current_inventory output, if asked for.
    pub current_inventory: Option<Output>,
    /// The SQL rules.
    pub rules: RuleSource,
    /// Where rejected records go.
    pub rejects: PathBuf,
    /// Fail when more records than this are rejected.
    pub max_rejects: Option<u64>,
    /// Where to write the JSON summary.
    pub summary_json: Option<PathBuf>,
    /// How long to wait for another run's lock.
    pub lock_timeout: Duration,
    /// Progress bar mode.
    pub progress: ProgressMode,
}

impl TryFrom<EnrichArgs> for EnrichConfig {
    type Error = ConfigError;

    fn try_from(args: EnrichArgs) -> Result<Self, ConfigError> {
        let enriched = output(&args.out, args.format)?;
        let current_inventory = args.current_out.as_deref().map(|path| output(path, args.format)).transpose()?;
        if enriched.destination == Destination::Stdout
            && current_inventory.as_ref().is_some_and(|o| o.destination == Destination::Stdout)
        {
            return Err(ConfigError::TwoStdouts);
        }
        let rejects = args.rejects.unwrap_or_else(|| match &enriched.destination {
            Destination::Stdout => PathBuf::from("pos-etl.rejects.csv"),
            Destination::File(path) => with_suffix(path, ".rejects.csv"),
        });
        Ok(EnrichConfig {
            data_dir: args.data,
            enriched,
            current_inventory,
            rules: args.sql_dir.map_or(RuleSource::Builtin, RuleSource::Dir),
            rejects,
            max_rejects: args.max_rejects,
            summary_json: args.summary_json,
            lock_timeout: args.lock_timeout,
            progress: args.progress,
        })
    }
}

/// `path` with `suffix` appended to its file name (`combined.csv` → `combined.csv.rejects.csv`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// An output for `path` (`-` is stdout), in `format` or the one its extension names.
fn output(path: &Path, format: Option<Format>) -> Result<Output, ConfigError> {
    if path == Path::new("-") {
        return match format {
            Some(Format::Parquet) => Err(ConfigError::ParquetToStdout),
            _ => Ok(Output { destination: Destination::Stdout, format: Format::Csv }),
        };
    }
    let extension = path.extension().map(|ext| ext.to_string_lossy().to_ascii_lowercase());
    let format = match (format, extension.as_deref()) {
        (Some(format), _) => format,
        (None, Some("csv")) => Format::Csv,
        (None, Some("parquet" | "pq")) => Format::Parquet,
        (None, _) => return Err(ConfigError::UnknownFormat(path.to_path_buf())),
    };
    Ok(Output { destination: Destination::File(path.to_path_buf()), format })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_follow_the_extension_unless_overridden() {
        let file = |p: &str| Destination::File(PathBuf::from(p));
        let cases = [
            ("out.csv", None, Some((file("out.csv"), Format::Csv))),
            ("OUT.CSV", None, Some((file("OUT.CSV"), Format::Csv))),
            ("out.parquet", None, Some((file("out.parquet"), Format::Parquet))),
            ("out.txt", Some(Format::Parquet), Some((file("out.txt"), Format::Parquet))),
            ("-", None, Some((Destination::Stdout, Format::Csv))),
            ("out.txt", None, None),
            ("-", Some(Format::Parquet), None),
        ];
        for (path, format, expected) in cases {
            let found = output(Path::new(path), format).ok().map(|o| (o.destination, o.format));
            assert_eq!(found, expected, "{path} {format:?}");
        }
    }
}
