//! Checked settings: the flags of `cli.rs` turned into the typed values that
//! commands use (formats inferred, default paths filled in, conflicts refused).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::ClientConfig;

use crate::cli::{
    EnrichArgs, Format, KafkaArgs, MessageForm, PostgresArgs, ProduceArgs, ProgressMode, ReportArgs, RunArgs, StreamArgs,
    StreamTable,
    format_size,
};
use crate::error::PipelineError;
use crate::pipeline::{MIN_MEMORY_PER_THREAD, Resources, Rules};
use crate::report::ReportSettings;
use crate::sinks::delta::DeltaTarget;
use crate::sinks::postgres::PgTarget;
use crate::sinks::{Destination, Output};
use crate::sources::Table;
use crate::cluster::ClusterTarget;
use crate::storage::{BadUrl, Location, StorageOptions, UnknownSetting};

/// A command line that parsed but makes no sense; exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The format of an output cannot be told from its name.
    #[error("cannot tell the format of {0} from its extension: use --format csv, parquet or delta")]
    UnknownFormat(String),
    /// stdout only takes CSV.
    #[error("--out - writes CSV to stdout; --format parquet or delta needs a path or URL")]
    NotCsvToStdout,
    /// Two outputs cannot share stdout.
    #[error("only one output can go to stdout")]
    TwoStdouts,
    /// Files and PostgreSQL tables in one run.
    #[error("{flag} writes a file, --postgres (or POS_ETL_POSTGRES) tables: give one destination")]
    TwoDestinations {
        /// The file flag given.
        flag: &'static str,
    },
    /// `--incremental` with a file output.
    #[error(
        "--incremental appends to tables and keeps its checkpoint beside them: it needs --postgres or --format delta (a file output is replaced whole each run)"
    )]
    IncrementalToFile,
    /// `stream` without one of its inputs or its destination.
    #[error("stream reads Kafka and writes PostgreSQL: give {what}")]
    StreamNeeds {
        /// The flag missing.
        what: &'static str,
    },
    /// The PostgreSQL URL cannot be used.
    #[error("--postgres: {0}")]
    Postgres(String),
    /// The config file cannot be read or parsed.
    #[error("cannot use config file {path}: {detail}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Two outputs of one run name the same file.
    #[error("{first} and {second} both name {path}: give each output a file of its own")]
    SameFile {
        /// The first flag.
        first: &'static str,
        /// The second flag.
        second: &'static str,
        /// The file, as the second flag names it.
        path: String,
    },
    /// The memory limit leaves a thread too little to work in.
    #[error("--memory-limit {limit} is too little for --threads {threads}: give each thread at least {per_thread} MiB (or use fewer threads)")]
    TooLittleMemory {
        /// The limit, as given.
        limit: String,
        /// The threads.
        threads: usize,
        /// MiB each thread needs.
        per_thread: usize,
    },
    /// A URL names no object store pos-etl can use.
    #[error(transparent)]
    Url(#[from] BadUrl),
    /// An object-store setting no store knows.
    #[error(transparent)]
    Setting(#[from] UnknownSetting),
    /// An input or output that must be local was given as a URL.
    #[error("{what}, not {url}")]
    LocalOnly {
        /// What must be local, and why.
        what: &'static str,
        /// The URL given.
        url: String,
    },
    /// `--cluster` names no scheduler.
    #[error("--cluster {0}: give the scheduler as df://HOST:PORT")]
    ClusterUrl(String),
    /// `--cluster` with a run that cannot use it.
    #[error("{0} runs here, not on a cluster: leave out --cluster")]
    NotOnCluster(&'static str),
    /// A command that talks to Kafka was given no brokers.
    #[error("no Kafka brokers: give --brokers HOST:PORT (or bootstrap.servers in the [kafka] table of --config)")]
    NoBrokers,
}

/// How to reach a Kafka cluster: the bootstrap brokers and every other
/// librdkafka setting, from `-X` and the `[kafka]` table of `--config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Other librdkafka settings, in the order they apply.
    pub properties: Vec<(String, String)>,
    /// How long to wait for the cluster.
    pub timeout: Duration,
}

impl KafkaSettings {
    /// The settings of `args`, or `None` if no brokers are named anywhere.
    pub fn from_args(args: KafkaArgs) -> Result<Option<Self>, ConfigError> {
        let mut properties = match &args.config {
            Some(path) => read_table(path, "kafka")?,
            None => Vec::new(),
        };
        properties.extend(args.settings);
        let from_properties = properties
            .iter()
            .rev()
            .find(|(key, _)| key == "bootstrap.servers" || key == "metadata.broker.list")
            .map(|(_, value)| value.clone());
        properties.retain(|(key, _)| key != "bootstrap.servers" && key != "metadata.broker.list");
        Ok(args.brokers.or(from_properties).map(|brokers| KafkaSettings {
            brokers,
            properties,
            timeout: args.kafka_timeout,
        }))
    }

    /// A librdkafka configuration of `defaults` overridden by these settings
    /// (a user's `-X enable.idempotence=false` wins over a built-in default).
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}

/// The settings of the object stores: the `[storage]` table of the config
/// file, then `--storage-option`.
fn storage_options(config: Option<&Path>, options: Vec<(String, String)>) -> Result<StorageOptions, ConfigError> {
    let mut all = match config {
        Some(path) => read_table(path, "storage")?,
        None => Vec::new(),
    };
    all.extend(options);
    Ok(StorageOptions::new(all)?)
}

/// The table `name` (`[kafka]`, `[storage]`) of a TOML config file, as
/// key-value settings.
fn read_table(path: &Path, name: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let error = |detail: String| ConfigError::ConfigFile { path: path.to_path_buf(), detail };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let document: toml::Table = text.parse().map_err(|e: toml::de::Error| error(e.message().to_string()))?;
    let Some(table) = document.get(name) else {
        return Ok(Vec::new());
    };
    let table = table.as_table().ok_or_else(|| error(format!("[{name}] is not a table")))?;
    table
        .iter()
        .map(|(key, value)| {
            let value = match value {
                toml::Value::String(text) => text.clone(),
                toml::Value::Integer(number) => number.to_string(),
                toml::Value::Float(number) => number.to_string(),
                toml::Value::Boolean(flag) => flag.to_string(),
                other => return Err(error(format!("{name}.{key} must be a string, number or boolean, not {}", other.type_str()))),
            };
            Ok((key.clone(), value))
        })
        .collect()
}

/// Where `enrich` reads the events (snapshots and changes) from.
#[derive(Debug, Clone)]
pub enum EventSource {
    /// The `inventory_snapshot_*.csv` / `inventory_change_*.csv` files of the data directory.
    Csv,
    /// Kafka topics, each with the table its messages belong to.
    Kafka {
        /// The cluster.
        settings: KafkaSettings,
        /// The topics.
        topics: Vec<(Table, String)>,
    },
}

/// Where the SQL rules come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleSource {
    /// The files built into the binary.
    Builtin,
    /// A user's directory of `*.sql` files.
    Dir(PathBuf),
}

impl RuleSource {
    /// The enrich rules this names.
    pub fn load(&self) -> Result<Rules, PipelineError> {
        match self {
            RuleSource::Builtin => Ok(Rules::builtin()),
            RuleSource::Dir(dir) => Rules::from_dir(dir),
        }
    }

    /// The report rules: `report/` of a user's directory, as in the
    /// repository's `sql/report/`, or the built-in ones when it has none.
    pub fn load_report(&self) -> Result<Rules, PipelineError> {
        match self {
            RuleSource::Dir(dir) if dir.join("report").is_dir() => Rules::from_dir(&dir.join("report")),
            _ => Ok(Rules::builtin_report()),
        }
    }
}

/// The checked settings every run of the pipeline has: inputs, rules,
/// limits and resources.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The directory or prefix of CSV exports (lookups always come from here).
    pub data: Location,
    /// How to reach object stores.
    pub storage: StorageOptions,
    /// Where the events come from.
    pub events: EventSource,
    /// The SQL rules.
    pub rules: RuleSource,
    /// Fail when more records than this are rejected.
    pub max_rejects: Option<u64>,
    /// How long to wait for another run's lock.
    pub lock_timeout: Duration,
    /// Progress bar mode.
    pub progress: ProgressMode,
    /// Threads and memory the rules may use.
    pub resources: Resources,
    /// The Ballista cluster to run the rules on, if not here.
    pub cluster: Option<ClusterTarget>,
}

impl TryFrom<RunArgs> for RunConfig {
    type Error = ConfigError;

    fn try_from(args: RunArgs) -> Result<Self, ConfigError> {
        let storage = storage_options(args.kafka.config.as_deref(), args.storage.options)?;
        let data = Location::parse(&args.data, &storage)?;
        let events = match KafkaSettings::from_args(args.kafka)? {
            None => EventSource::Csv,
            Some(settings) => {
                let snapshots = args.snapshot_topics.into_iter().map(|t| (Table::InventorySnapshot, t));
                let changes = args.change_topics.into_iter().map(|t| (Table::InventoryChange, t));
                let topics = snapshots.chain(changes).filter(|(_, t)| !t.is_empty()).collect();
                EventSource::Kafka { settings, topics }
            }
        };
        let resources = Resources {
            threads: args.threads.map_or_else(default_threads, |n| n as usize),
            memory_limit: usize::try_from(args.memory_limit).unwrap_or(usize::MAX),
        };
        if resources.memory_limit / resources.threads < MIN_MEMORY_PER_THREAD {
            return Err(ConfigError::TooLittleMemory {
                limit: format_size(args.memory_limit as usize),
                threads: resources.threads,
                per_thread: MIN_MEMORY_PER_THREAD >> 20,
            });
        }
        let cluster = match (args.cluster, args.cluster_staging) {
            (Some(url), Some(staging)) => Some(cluster_target(&url, staging)?),
            _ => None,
        };
        Ok(RunConfig {
            data,
            storage,
            events,
            rules: args.sql_dir.map_or(RuleSource::Builtin, RuleSource::Dir),
            max_rejects: args.max_rejects,
            lock_timeout: args.lock_timeout,
            progress: args.progress,
            resources,
            cluster,
        })
    }
}

/// The scheduler named by `url` (df://HOST:PORT, the port 50050 if left
/// out), with its staging directory.
fn cluster_target(url: &str, staging: PathBuf) -> Result<ClusterTarget, ConfigError> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Err(ConfigError::ClusterUrl(url.to_string()));
    };
    // A scheduler takes no credentials: a URL with some is wrong, and is
    // not echoed with them.
    let bad = || ConfigError::ClusterUrl(crate::storage::shown(&parsed));
    let plain = parsed.scheme() == "df" && parsed.path().trim_matches('/').is_empty() && parsed.username().is_empty() && parsed.password().is_none();
    let host = parsed.host_str().filter(|_| plain).ok_or_else(bad)?;
    Ok(ClusterTarget { host: host.to_string(), port: parsed.port().unwrap_or(50050), staging })
}

/// The checked settings of `pos-etl enrich`.
#[derive(Debug, Clone)]
pub struct EnrichConfig {
    /// Inputs, rules, limits and resources.
    pub run: RunConfig,
    /// The enriched output.
    pub enriched: Output,
    /// The current_inventory output, if asked for.
    pub current_inventory: Option<Output>,
    /// Where rejected records go.
    pub rejects: Location,
    /// Where to write the JSON summary.
    pub summary_json: Option<Location>,
    /// The database the tables go to, if not files.
    pub postgres: Option<PgTarget>,
    /// With `--incremental`: the late window.
    pub incremental: Option<std::time::Duration>,
}

/// The rejects file of a run whose main output is not a file.
const DEFAULT_REJECTS: &str = "pos-etl.rejects.csv";

impl TryFrom<EnrichArgs> for EnrichConfig {
    type Error = ConfigError;

    fn try_from(args: EnrichArgs) -> Result<Self, ConfigError> {
        if let Some(url) = args.postgres.postgres.clone() {
            return EnrichConfig::postgres(&url, args);
        }
        if args.incremental && args.format != Some(Format::Delta) {
            return Err(ConfigError::IncrementalToFile);
        }
        let run = RunConfig::try_from(args.run)?;
        if args.incremental {
            incremental_inputs(&run)?;
        }
        let at = |path: &Path| location(path, &run.storage);
        let out = args.out.as_deref().expect("clap requires --out without --postgres");
        let enriched = output(at(out)?, args.format, &run.storage)?;
        let current_inventory = args.current_out.as_deref().map(|path| output(at(path)?, args.format, &run.storage)).transpose()?;
        if enriched.destination == Destination::Stdout
            && current_inventory.as_ref().is_some_and(|o| o.destination == Destination::Stdout)
        {
            return Err(ConfigError::TwoStdouts);
        }
        let rejects = match args.rejects.as_deref() {
            Some(path) => at(path)?,
            None => enriched.destination.location().map_or(Location::Local(PathBuf::from(DEFAULT_REJECTS)), |out| out.with_suffix(".rejects.csv")),
        };
        let summary_json = args.summary_json.as_deref().map(at).transpose()?;
        refuse_shared_files(&[
            ("--out", enriched.destination.location()),
            ("--current-out", current_inventory.as_ref().and_then(|o| o.destination.location())),
            ("--rejects", Some(rejects.clone())),
            ("--summary-json", summary_json.clone()),
        ])?;
        let incremental = args.incremental.then_some(args.late_window);
        Ok(EnrichConfig { run, enriched, current_inventory, rejects, summary_json, postgres: None, incremental })
    }
}

/// `path` as a location: a URL names an object, anything else a local path.
fn location(path: &Path, options: &StorageOptions) -> Result<Location, ConfigError> {
    match path.to_str() {
        Some(text) => Ok(Location::parse(text, options)?),
        None => Ok(Location::Local(path.to_path_buf())),
    }
}

/// Refuses to an incremental run CSV exports in a bucket (its checkpoint
/// fingerprints local files) and a cluster (its batches are small: they
/// run here).
fn incremental_inputs(run: &RunConfig) -> Result<(), ConfigError> {
    if run.cluster.is_some() {
        return Err(ConfigError::NotOnCluster("enrich --incremental"));
    }
    match (&run.events, &run.data) {
        (EventSource::Csv, Location::Object(url)) => {
            let what = "enrich --incremental reads its CSV exports from a local directory";
            Err(ConfigError::LocalOnly { what, url: url.to_string() })
        }
        _ => Ok(()),
    }
}

/// The database of `--postgres URL`, its gaps filled from the environment as libpq would.
fn pg_target(url: &str, args: &PostgresArgs) -> Result<PgTarget, ConfigError> {
    PgTarget::parse(url, &args.pg_schema, |name| std::env::var(name).ok()).map_err(ConfigError::Postgres)
}

impl EnrichConfig {
    /// The settings of a run that loads its tables into PostgreSQL.
    fn postgres(url: &str, args: EnrichArgs) -> Result<EnrichConfig, ConfigError> {
        let flag = [("--out", args.out.is_some()), ("--current-out", args.current_out.is_some()), ("--format", args.format.is_some())]
            .into_iter()
            .find_map(|(flag, given)| given.then_some(flag));
        if let Some(flag) = flag {
            return Err(ConfigError::TwoDestinations { flag });
        }
        let target = pg_target(url, &args.postgres)?;
        let table = |name: &str| Output { destination: Destination::table(&target, name), format: Format::Csv };
        let run = RunConfig::try_from(args.run)?;
        if args.incremental {
            incremental_inputs(&run)?;
        }
        let rejects = match args.rejects.as_deref() {
            Some(path) => location(path, &run.storage)?,
            None => Location::Local(PathBuf::from(DEFAULT_REJECTS)),
        };
        let summary_json = args.summary_json.as_deref().map(|path| location(path, &run.storage)).transpose()?;
        refuse_shared_files(&[("--rejects", Some(rejects.clone())), ("--summary-json", summary_json.clone())])?;
        Ok(EnrichConfig {
            run,
            enriched: table(crate::pipeline::ENRICHED),
            current_inventory: Some(table(crate::pipeline::CURRENT_INVENTORY)),
            rejects,
            summary_json,
            postgres: Some(target),
            incremental: args.incremental.then_some(args.late_window),
        })
    }
}

/// The checked settings of `pos-etl stream`.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Inputs (Kafka), rules and resources.
    pub run: RunConfig,
    /// The database.
    pub target: PgTarget,
    /// Time between the starts of two batches.
    pub trigger: Duration,
    /// Records per batch at most.
    pub max_batch_records: u64,
    /// Whether `enriched` is kept (else only computed, for the stock).
    pub keep_enriched: bool,
    /// Whether `current_inventory` is kept.
    pub keep_current_inventory: bool,
    /// Exit after this long without a record.
    pub stop_when_idle: Option<Duration>,
    /// Where the per-batch JSON lines go.
    pub metrics: Option<PathBuf>,
    /// The late window.
    pub late_window: Duration,
    /// Where to write the JSON summary.
    pub summary_json: Option<Location>,
}

impl TryFrom<StreamArgs> for StreamConfig {
    type Error = ConfigError;

    fn try_from(args: StreamArgs) -> Result<Self, ConfigError> {
        let url = args.postgres.postgres.clone().ok_or(ConfigError::StreamNeeds { what: "--postgres URL (or POS_ETL_POSTGRES)" })?;
        let target = pg_target(&url, &args.postgres)?;
        let run = RunConfig::try_from(args.run)?;
        if !matches!(run.events, EventSource::Kafka { .. }) {
            return Err(ConfigError::StreamNeeds { what: "--brokers HOST:PORT (or POS_ETL_BROKERS)" });
        }
        if run.cluster.is_some() {
            return Err(ConfigError::NotOnCluster("stream"));
        }
        let metrics = args.metrics.as_deref().map(|path| location(path, &run.storage)).transpose()?;
        if let Some(Location::Object(url)) = &metrics {
            return Err(ConfigError::LocalOnly { what: "--metrics appends to a local file", url: url.to_string() });
        }
        let summary_json = args.summary_json.as_deref().map(|path| location(path, &run.storage)).transpose()?;
        refuse_shared_files(&[("--metrics", metrics), ("--summary-json", summary_json.clone())])?;
        Ok(StreamConfig {
            run,
            target,
            trigger: args.trigger,
            max_batch_records: args.max_batch_records,
            keep_enriched: args.tables.contains(&StreamTable::Enriched),
            keep_current_inventory: args.tables.contains(&StreamTable::CurrentInventory),
            stop_when_idle: args.stop_when_idle,
            metrics: args.metrics,
            late_window: args.late_window,
            summary_json,
        })
    }
}

/// The checked settings of `pos-etl report`.
#[derive(Debug, Clone)]
pub struct ReportConfig {
    /// Inputs, rules, limits and resources.
    pub run: RunConfig,
    /// Where the tables and the page go: a directory or a prefix.
    pub out_dir: Location,
    /// The tables' format.
    pub format: Format,
    /// What the report is asked for.
    pub settings: ReportSettings,
    /// Where to write the JSON summary.
    pub summary_json: Option<Location>,
    /// The database the tables go to, if not files.
    pub postgres: Option<PgTarget>,
}

impl TryFrom<ReportArgs> for ReportConfig {
    type Error = ConfigError;

    fn try_from(args: ReportArgs) -> Result<Self, ConfigError> {
        let postgres = args.postgres.postgres.as_deref().map(|url| pg_target(url, &args.postgres)).transpose()?;
        let run = RunConfig::try_from(args.run)?;
        let out_dir = location(&args.out_dir, &run.storage)?;
        let summary_json = args.summary_json.as_deref().map(|path| location(path, &run.storage)).transpose()?;
        Ok(ReportConfig {
            postgres,
            run,
            out_dir,
            format: args.format,
            settings: ReportSettings {
                top: args.top,
                horizon: usize::try_from(args.horizon).unwrap_or(usize::MAX),
                items: args.items,
            },
            summary_json,
        })
    }
}

/// One thread per core.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The checked settings of `pos-etl produce`.
#[derive(Debug, Clone)]
pub struct ProduceConfig {
    /// The directory or prefix of CSV exports.
    pub data: Location,
    /// The cluster.
    pub kafka: KafkaSettings,
    /// Row or transaction messages.
    pub form: MessageForm,
    /// Records per second in total, if capped.
    pub rate: Option<u64>,
    /// Keep sending the files over again until this has passed.
    pub loop_for: Option<Duration>,
    /// Producers side by side.
    pub producers: usize,
    /// Partitions of a topic to create.
    pub partitions: i32,
    /// Replication factor of a topic to create.
    pub replication: i32,
    /// Progress bar mode.
    pub progress: ProgressMode,
}

impl TryFrom<ProduceArgs> for ProduceConfig {
    type Error = ConfigError;

    fn try_from(args: ProduceArgs) -> Result<Self, ConfigError> {
        let storage = storage_options(args.kafka.config.as_deref(), args.storage.options)?;
        Ok(ProduceConfig {
            data: Location::parse(&args.data, &storage)?,
            kafka: KafkaSettings::from_args(args.kafka)?.ok_or(ConfigError::NoBrokers)?,
            form: args.form,
            rate: args.rate.or(args.rate_per_producer.map(|rate| rate.saturating_mul(args.producers))),
            loop_for: args.loop_for,
            producers: args.producers as usize,
            partitions: i32::try_from(args.partitions).unwrap_or(i32::MAX),
            replication: i32::try_from(args.replication).unwrap_or(i32::MAX),
            progress: args.progress,
        })
    }
}

/// Fails if two of the named outputs are one file or object: each would overwrite the other.
fn refuse_shared_files(outputs: &[(&'static str, Option<Location>)]) -> Result<(), ConfigError> {
    let named: Vec<(&'static str, &Location, String)> = outputs
        .iter()
        .filter_map(|(flag, location)| location.as_ref().map(|location| (*flag, location, identity(location))))
        .collect();
    for (index, (second, location, identity)) in named.iter().enumerate() {
        if let Some((first, _, _)) = named[..index].iter().find(|(_, _, other)| other == identity) {
            return Err(ConfigError::SameFile { first, second, path: location.to_string() });
        }
    }
    Ok(())
}

/// What two locations naming one file or object have in common.
fn identity(location: &Location) -> String {
    match location {
        Location::Local(path) => file_identity(path).display().to_string(),
        Location::Object(url) => url.to_string(),
    }
}

/// What two paths naming one file have in common: the path with symbolic
/// links, `.` and `..` resolved as far as it exists.
fn file_identity(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
            file_identity(parent).join(name)
        }
        _ => std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
    }
}

/// An output at `location` (the local path `-` is stdout), in `format` or
/// the one its extension names; a Delta table's store is reached with `storage`.
fn output(location: Location, format: Option<Format>, storage: &StorageOptions) -> Result<Output, ConfigError> {
    if location == Location::Local(PathBuf::from("-")) {
        return match format {
            Some(Format::Parquet | Format::Delta) => Err(ConfigError::NotCsvToStdout),
            _ => Ok(Output { destination: Destination::Stdout, format: Format::Csv }),
        };
    }
    let format = match (format, location.extension().as_deref()) {
        (Some(Format::Delta), _) => {
            let destination = Destination::Delta(DeltaTarget::new(location, storage.clone()));
            return Ok(Output { destination, format: Format::Delta });
        }
        (Some(format), _) => format,
        (None, Some("csv")) => Format::Csv,
        (None, Some("parquet" | "pq")) => Format::Parquet,
        (None, _) => return Err(ConfigError::UnknownFormat(location.to_string())),
    };
    Ok(Output { destination: Destination::at(location), format })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_is_named_by_its_scheduler_as_a_df_url() {
        let target = |url: &str| cluster_target(url, PathBuf::from("/shared")).map(|t| (t.host, t.port));
        assert_eq!(target("df://sched-1:50060").unwrap(), ("sched-1".to_string(), 50060));
        assert_eq!(target("df://10.0.0.5").unwrap(), ("10.0.0.5".to_string(), 50050));
        for bad in ["http://sched-1:50050", "sched-1:50050", "df://", "df://sched-1:50050/jobs", "df://etl@sched-1"] {
            assert!(matches!(target(bad), Err(ConfigError::ClusterUrl(_))), "{bad}");
        }
        let Err(error) = cluster_target("df://etl:secret@sched-1", PathBuf::new()) else { panic!("credentials are refused") };
        assert!(!error.to_string().contains("secret"), "{error}");
    }

    #[test]
    fn kafka_settings_merge_the_config_file_and_dash_x() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pos-etl.toml");
        std::fs::write(
            &path,
            "[kafka]\n\"bootstrap.servers\" = \"k1:9093\"\n\"security.protocol\" = \"SASL_SSL\"\n\"socket.keepalive.enable\" = true\n",
        )
        .unwrap();
        let args = |brokers: Option<&str>, settings: Vec<(&str, &str)>| KafkaArgs {
            brokers: brokers.map(str::to_string),
            settings: settings.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            config: Some(path.clone()),
            kafka_timeout: Duration::from_secs(5),
        };
        let settings = KafkaSettings::from_args(args(None, vec![("security.protocol", "SSL")])).unwrap().unwrap();
        assert_eq!(settings.brokers, "k1:9093");
        let config = settings.client_config(&[("socket.keepalive.enable", "false")]);
        assert_eq!(config.get("security.protocol"), Some("SSL"), "-X wins over the file");
        assert_eq!(config.get("socket.keepalive.enable"), Some("true"));
        let settings = KafkaSettings::from_args(args(Some("k2:9092"), vec![])).unwrap().unwrap();
        assert_eq!(settings.client_config(&[]).get("bootstrap.servers"), Some("k2:9092"));

        std::fs::write(&path, "[kafka]\nretries = [1]\n").unwrap();
        let error = KafkaSettings::from_args(args(None, vec![])).unwrap_err().to_string();
        assert!(error.ends_with("kafka.retries must be a string, number or boolean, not array"), "{error}");
    }

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
            let found = output(Location::Local(PathBuf::from(path)), format, &StorageOptions::default()).ok().map(|o| (o.destination, o.format));
            assert_eq!(found, expected, "{path} {format:?}");
        }
    }
}
