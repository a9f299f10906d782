//! The command line exactly as typed: clap derive types only, no validation
//! beyond single values. `config.rs` turns these into checked settings.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Retail point-of-sale ETL: enrich inventory events with their lookups.
#[derive(Debug, Parser)]
#[command(
    name = "pos-etl",
    version,
    about = "Turn point-of-sale inventory exports into one enriched table for Tableau",
    long_about = "pos-etl reads the CSV exports of a point-of-sale system (stores, items, change \
types, inventory snapshots and inventory changes), runs the business rules in sql/*.sql with \
Apache DataFusion, and writes one enriched table (and, if asked, the current stock per store and \
item) as CSV or Parquet.",
    after_help = "Examples:\n  pos-etl enrich --out combined.csv\n  pos-etl enrich --data exports/ --out combined.parquet --current-out current.csv\n  pos-etl report --out-dir report\n  pos-etl generate --out-dir big/ --items 100000 --days 30"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Join the inventory events with their lookups and compute the stock after each event.
    #[command(after_help = ENRICH_EXAMPLES)]
    Enrich(EnrichArgs),
    /// Write the analysts' tables, a sales forecast and one HTML page of charts.
    #[command(after_help = REPORT_EXAMPLES)]
    Report(ReportArgs),
    /// Apply the events arriving on Kafka to PostgreSQL in micro-batches, until stopped.
    #[command(after_help = STREAM_EXAMPLES)]
    Stream(StreamArgs),
    /// Send the snapshot and change exports to Kafka topics, in date_time order.
    #[command(after_help = PRODUCE_EXAMPLES)]
    Produce(ProduceArgs),
    /// Write a realistic, deterministic sample dataset in the original export dialect.
    #[command(after_help = GENERATE_EXAMPLES)]
    Generate(GenerateArgs),
    /// Run a node of an Apache DataFusion Ballista cluster for enrich --cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

/// The processes of a cluster.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The scheduler: plans each job and hands its tasks to the executors.
    #[command(after_help = CLUSTER_EXAMPLES)]
    Scheduler(SchedulerArgs),
    /// An executor: runs the tasks the scheduler hands it.
    #[command(after_help = CLUSTER_EXAMPLES)]
    Executor(ExecutorArgs),
}

const CLUSTER_EXAMPLES: &str = "Starting a cluster:
  # on one machine: the scheduler
  pos-etl cluster scheduler --bind 0.0.0.0:50050

  # on each of the others: an executor (same pos-etl version as the scheduler)
  pos-etl cluster executor --scheduler sched-1:50050 --bind 0.0.0.0:50051 \\
      --concurrent-tasks 8 --work-dir /var/tmp/pos-etl --memory-limit 16GiB

  # then, from anywhere that reaches the scheduler and the shared directory:
  pos-etl enrich --data /shared/exports --cluster df://sched-1:50050 \\
      --cluster-staging /shared/staging --out combined.parquet

--cluster-staging must be a directory that the scheduler and every executor
see at the same path (NFS, a cluster filesystem). Both processes log to
stderr (RUST_LOG=debug for more) and stop on SIGINT or SIGTERM; an executor
finishes its running tasks first.";

/// Flags of `pos-etl cluster scheduler`.
#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// Where to listen for clients (enrich --cluster) and executors.
    #[arg(long, value_name = "HOST:PORT", default_value = "0.0.0.0:50050")]
    pub bind: std::net::SocketAddr,

    /// How long an executor may go without a heartbeat before it is taken
    /// for dead and its tasks are run again on the others.
    #[arg(long, value_name = "DURATION", default_value = "180s", value_parser = parse_duration)]
    pub executor_timeout: Duration,
}

/// A host and a port, as HOST:PORT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// The host name or address.
    pub host: String,
    /// The port.
    pub port: u16,
}

/// Parses HOST:PORT.
pub fn parse_host_port(text: &str) -> Result<HostPort, String> {
    let (host, port) = text.rsplit_once(':').filter(|(host, _)| !host.is_empty()).ok_or("expected HOST:PORT")?;
    let port = port.parse().map_err(|_| format!("{port} is not a port number"))?;
    Ok(HostPort { host: host.trim_start_matches('[').trim_end_matches(']').to_string(), port })
}

/// Flags of `pos-etl cluster executor`.
#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// The scheduler to register with.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub scheduler: HostPort,

    /// Where to serve task results to the other executors and clients
    /// (Arrow Flight); the gRPC port is --grpc-port on the same address.
    #[arg(long, value_name = "HOST:PORT", default_value = "0.0.0.0:50051")]
    pub bind: std::net::SocketAddr,

    /// The executor's gRPC port [default: the --bind port + 1].
    #[arg(long, value_name = "PORT")]
    pub grpc_port: Option<u16>,

    /// The host name the scheduler and the other executors reach this one
    /// by [default: the address the scheduler sees it connect from].
    #[arg(long, value_name = "HOST")]
    pub external_host: Option<String>,

    /// Tasks to run at once [default: one per core].
    #[arg(long, value_name = "N", value_parser = parse_positive)]
    pub concurrent_tasks: Option<u64>,

    /// Where to keep the shuffle files of running jobs [default: a temporary directory].
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,

    /// Memory the tasks share before their sorts spill to disk [default: most of the machine's].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory_limit: Option<u64>,

    /// How often to tell the scheduler this executor is alive.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub heartbeat: Duration,
}

const ENRICH_EXAMPLES: &str = "Examples:
  # the sample data in ./data, one CSV for Tableau
  pos-etl enrich --out combined.csv

  # other exports, Parquet, plus stock per store and item, and a JSON summary
  pos-etl enrich --data /srv/exports --out enriched.parquet \\
      --current-out current_inventory.csv --summary-json run.json

  # fail (exit 2) if more than 100 records are bad, keeping the previous output
  pos-etl enrich --out combined.csv --max-rejects 100

  # CSV on stdout
  pos-etl enrich --out - | head

  # Delta Lake tables in a bucket; then, hourly, only what is new, appended
  pos-etl enrich --format delta --out s3://lake/pos/enriched --current-out s3://lake/pos/current_inventory
  pos-etl enrich --format delta --incremental --brokers kafka-1:9092 \
      --out s3://lake/pos/enriched --current-out s3://lake/pos/current_inventory

  # events from Kafka (lookups still from --data), TLS and SASL from a config file
  pos-etl enrich --brokers kafka-1:9093 --config pos-etl.toml --out combined.csv
  pos-etl enrich --brokers kafka-1:9093 -X security.protocol=SASL_SSL \\
      -X sasl.mechanisms=PLAIN -X sasl.username=etl -X sasl.password=secret --out combined.csv";

const STREAM_EXAMPLES: &str = "Examples:
  # apply what arrives, batch after batch, until SIGINT or SIGTERM
  pos-etl stream --brokers kafka-1:9092 --postgres postgresql://pos@db/pos

  # one batch every 10 s, per-batch metrics as JSON lines, stop after 5 s without a record
  pos-etl stream --brokers kafka-1:9092 --postgres postgresql://pos@db/pos \\
      --trigger 10s --metrics batches.jsonl --stop-when-idle 5s

Each batch is committed with its offsets in one transaction (as enrich
--incremental): restarted, it goes on from the last committed batch.";

const REPORT_EXAMPLES: &str = "Examples:
  # the sample data in ./data; open report/report.html in a browser
  pos-etl report --out-dir report

  # other exports, Parquet tables, two items followed hour by hour, a 4-week forecast
  pos-etl report --data /srv/exports --out-dir /srv/report --format parquet \\
      --items 1021,1187 --horizon 28 --top 30

  # events from Kafka, as for enrich
  pos-etl report --brokers kafka-1:9092 --out-dir report

Writes top_items, sales_by_store, low_stock, item_hourly, forecast,
forecast_accuracy, seasonality, item_clusters and cluster_profiles (.csv or
.parquet), rejects.csv and report.html. Each file is replaced only when all
of them are written.";

const PRODUCE_EXAMPLES: &str = "Examples:
  # the sample data, one message per row, to a local broker
  pos-etl produce --brokers 127.0.0.1:9092

  # one message per transaction, 4 producers, at most 5000 records/s in total
  pos-etl produce --brokers kafka:9092 --data exports --form transaction --producers 4 --rate 5000

Each inventory_snapshot_<store>.csv goes to InventorySnapshot<Store> and each
inventory_change_<store>.csv to InventoryChange<Store> (store_001 → Store001).";

const GENERATE_EXAMPLES: &str = "Examples:
  # the sample in data/
  pos-etl generate --out-dir data --items 300 --days 21 --seed 7

  # about 10 million change rows
  pos-etl generate --out-dir big --items 100000 --days 30";

/// Flags of `pos-etl enrich`.
#[derive(Debug, Args)]
pub struct EnrichArgs {
    /// Where to write the enriched table: a path, an s3://, gs:// or az://
    /// URL, or `-` for CSV on stdout; not with --postgres.
    #[arg(long, value_name = "PATH|URL", required_unless_present = "postgres")]
    pub out: Option<PathBuf>,

    /// Also write the current stock per store and item to PATH (or URL).
    #[arg(long, value_name = "PATH|URL")]
    pub current_out: Option<PathBuf>,

    /// Output format; by default it follows each output's extension (.csv,
    /// .parquet). With delta, --out and --current-out name Delta tables.
    #[arg(long, value_enum)]
    pub format: Option<Format>,

    /// Where to write rejected records [default: <out>.rejects.csv, or
    /// pos-etl.rejects.csv with --out -]; a path or URL.
    #[arg(long, value_name = "PATH|URL")]
    pub rejects: Option<PathBuf>,

    /// Also write the run summary as JSON to PATH (or URL).
    #[arg(long, value_name = "PATH|URL")]
    pub summary_json: Option<PathBuf>,

    /// Where the tables go instead of files: a PostgreSQL database.
    #[command(flatten)]
    pub postgres: PostgresArgs,

    /// Read only what is new since the last incremental run and append it
    /// (with --postgres, or --format delta): the checkpoint is kept with the
    /// tables, committed with the rows. The first run loads everything.
    #[arg(long)]
    pub incremental: bool,

    /// With --incremental: how far (in event time) before the last event
    /// applied to a store and item a new event may be and still be applied,
    /// its rows rewritten; an older one is rejected as late.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration, requires = "incremental")]
    pub late_window: Duration,

    /// Inputs, rules and resources.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Flags of `pos-etl stream`.
#[derive(Debug, Args)]
pub struct StreamArgs {
    /// The database the batches go to (required).
    #[command(flatten)]
    pub postgres: PostgresArgs,

    /// Wait this long between the starts of two batches; 0s starts the
    /// next one as soon as the previous has committed.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub trigger: Duration,

    /// The tables kept: enriched (every event's row) and current_inventory
    /// (one row per store and item, upserted); current_inventory alone is
    /// the lighter "aggregated" variant. The set may not change between
    /// runs on one checkpoint.
    #[arg(long, value_name = "TABLE,...", value_delimiter = ',', default_value = "enriched,current_inventory")]
    pub tables: Vec<StreamTable>,

    /// At most N records per batch.
    #[arg(long, value_name = "N", default_value = "100000", value_parser = parse_positive)]
    pub max_batch_records: u64,

    /// Exit (0) after this long without a record.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub stop_when_idle: Option<Duration>,

    /// Append one JSON line per batch to PATH: records, rows, the time in
    /// each step, latency and lag.
    #[arg(long, value_name = "PATH")]
    pub metrics: Option<PathBuf>,

    /// As enrich --late-window: how late (event time) an event may be and
    /// still be applied exactly.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub late_window: Duration,

    /// Write the summary of the whole run as JSON to PATH at exit.
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,

    /// Inputs (--brokers and the topics; lookups from --data), rules and resources.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Flags naming a PostgreSQL destination.
#[derive(Debug, Args)]
pub struct PostgresArgs {
    /// Write the tables (enrich: enriched, current_inventory and rejects;
    /// report: its tables and rejects) into this PostgreSQL database instead
    /// of files: a libpq URI such as postgresql://pos@db:5432/pos; PGHOST,
    /// PGPORT, PGUSER, PGPASSWORD, PGDATABASE and PGSSLMODE fill in what it
    /// leaves out. The tables are loaded by COPY into new tables that
    /// replace the old ones in one transaction.
    #[arg(long, value_name = "URL", env = "POS_ETL_POSTGRES", hide_env_values = true)]
    pub postgres: Option<String>,

    /// The schema the tables go to (created if missing).
    #[arg(long, value_name = "NAME", default_value = "public")]
    pub pg_schema: String,
}

/// Flags of `pos-etl report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Directory (or s3://, gs://, az:// prefix) to write the report's
    /// tables and report.html to (created if missing).
    #[arg(long, value_name = "DIR|URL")]
    pub out_dir: PathBuf,

    /// Format of the tables.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,

    /// Items to follow hour by hour in item_hourly [default: the five best sellers].
    #[arg(long, value_name = "ID,...", value_delimiter = ',')]
    pub items: Vec<i64>,

    /// Days to forecast (and to hold out when scoring the forecast).
    #[arg(long, value_name = "DAYS", default_value = "14", value_parser = parse_positive)]
    pub horizon: u64,

    /// Items in top_items and the forecast; (store, item) pairs in low_stock.
    #[arg(long, value_name = "N", default_value = "20", value_parser = parse_positive)]
    pub top: u64,

    /// Also write the run summary as JSON to PATH (or URL).
    #[arg(long, value_name = "PATH|URL")]
    pub summary_json: Option<PathBuf>,

    /// The report's tables into a PostgreSQL database (the page and
    /// rejects.csv still go to --out-dir).
    #[command(flatten)]
    pub postgres: PostgresArgs,

    /// Inputs, rules and resources.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Where the events come from, the rules, and what a run may use; shared by
/// `enrich` and `report`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Directory (or s3://, gs://, az:// prefix) with store.csv, item.csv,
    /// inventory_change_type.csv and the inventory_snapshot_*.csv /
    /// inventory_change_*.csv exports.
    #[arg(long, value_name = "DIR|URL", default_value = "data", env = "POS_ETL_DATA")]
    pub data: String,

    /// Object stores.
    #[command(flatten)]
    pub storage: StorageArgs,

    /// Run the SQL rules in DIR (all *.sql, in file-name order) instead of the
    /// built-in ones; report also runs DIR/report/*.sql if there is one.
    #[arg(long, value_name = "DIR", env = "POS_ETL_SQL_DIR")]
    pub sql_dir: Option<PathBuf>,

    /// Fail with exit code 2, leaving the previous output in place, when more
    /// than N records are rejected.
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub max_rejects: Option<u64>,

    /// How long to wait for another run writing the same output before giving up.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration,
          long_help = "How long to wait for another pos-etl run that is writing the same output \
(it holds <out>.lock) before giving up with exit code 1. Accepts 500ms, 30s, 5m, 1h, or plain seconds.")]
    pub lock_timeout: Duration,

    /// Progress bars on stderr: auto shows them only when stderr is a terminal.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,

    /// Threads to run the rules on [default: one per core].
    #[arg(long, value_name = "N", env = "POS_ETL_THREADS", value_parser = parse_positive)]
    pub threads: Option<u64>,

    /// Memory the sorts may hold before they spill to disk.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", env = "POS_ETL_MEMORY_LIMIT", value_parser = parse_size,
          long_help = "Memory the sorts and aggregates of the rules share before they spill to files in \
the temporary directory ($TMPDIR), at least 8 MiB per thread. The merges of what they spilled, the \
windows and the lookup tables come on top (tens of MiB per thread), and so does reading and writing: \
at the default, a run of 10 or 30 million rows peaks at about 1.1 GiB. A run that needs more than the limit \
gives it fails naming the flags to change. Accepts 512MiB, 2GiB, 1.5G, or plain bytes.")]
    pub memory_limit: u64,

    /// Run the rules on an Apache DataFusion Ballista cluster, named by its
    /// scheduler (see pos-etl cluster --help); needs --cluster-staging.
    #[arg(long, value_name = "df://HOST:PORT", requires = "cluster_staging")]
    pub cluster: Option<String>,

    /// With --cluster: a directory that the scheduler and every executor
    /// see at the same path (a shared filesystem), where the run stages its
    /// checked inputs as Parquet for the cluster (removed after the run).
    #[arg(long, value_name = "DIR", requires = "cluster")]
    pub cluster_staging: Option<PathBuf>,

    /// Kafka connection: with --brokers, events come from topics instead of CSV files.
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Topics holding snapshot messages.
    #[arg(long, value_name = "A,B", value_delimiter = ',',
          default_value = "InventorySnapshotOnline,InventorySnapshotStore001")]
    pub snapshot_topics: Vec<String>,

    /// Topics holding change messages.
    #[arg(long, value_name = "C,D", value_delimiter = ',',
          default_value = "InventoryChangeOnline,InventoryChangeStore001")]
    pub change_topics: Vec<String>,
}

/// How to reach a Kafka cluster; shared by `enrich` and `produce`.
#[derive(Debug, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap brokers, comma separated; for enrich, reading events from
    /// topics instead of CSV files.
    #[arg(long, value_name = "HOST:PORT", env = "POS_ETL_BROKERS")]
    pub brokers: Option<String>,

    /// A librdkafka setting, as kcat takes it (repeatable): -X security.protocol=SASL_SSL.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub settings: Vec<(String, String)>,

    /// A TOML file whose [kafka] table holds librdkafka settings (-X wins over it).
    #[arg(long, value_name = "PATH", env = "POS_ETL_CONFIG")]
    pub config: Option<PathBuf>,

    /// How long to wait for the cluster to answer before failing.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub kafka_timeout: Duration,
}

/// How to reach object stores.
#[derive(Debug, Args)]
pub struct StorageArgs {
    /// An object-store setting, as object_store names it (repeatable), such
    /// as aws_endpoint=http://127.0.0.1:9000 or aws_secret_access_key=…;
    /// wins over the [storage] table of --config, which wins over the
    /// AWS_*, GOOGLE_* and AZURE_* environment variables.
    #[arg(long = "storage-option", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub options: Vec<(String, String)>,
}

/// Flags of `pos-etl produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Directory (or s3://, gs://, az:// prefix) with the
    /// inventory_snapshot_*.csv and inventory_change_*.csv exports.
    #[arg(long, value_name = "DIR|URL", default_value = "data", env = "POS_ETL_DATA")]
    pub data: String,

    /// Object stores.
    #[command(flatten)]
    pub storage: StorageArgs,

    /// Kafka connection.
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// One message per CSV row, or (changes) one per transaction with its items.
    #[arg(long, value_enum, default_value_t = MessageForm::Row)]
    pub form: MessageForm,

    /// At most N records per second in total (default: as fast as the cluster takes them).
    #[arg(long, value_name = "N", value_parser = parse_count, conflicts_with = "rate_per_producer")]
    pub rate: Option<u64>,

    /// At most N records per second per producer (N × --producers in total).
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub rate_per_producer: Option<u64>,

    /// Send the files again and again, each time stamped anew, until
    /// DURATION has passed (a timed run for `stream`'s latency; the records
    /// sent again are duplicates to enrich and stream).
    #[arg(long = "loop", value_name = "DURATION", value_parser = parse_duration)]
    pub loop_for: Option<Duration>,

    /// Run K producers side by side, each sending a share of the records.
    #[arg(long, value_name = "K", default_value = "1", value_parser = parse_positive)]
    pub producers: u64,

    /// Partitions of each topic that has to be created.
    #[arg(long, value_name = "N", default_value = "3", value_parser = parse_positive)]
    pub partitions: u64,

    /// Replication factor of each topic that has to be created.
    #[arg(long, value_name = "N", default_value = "1", value_parser = parse_positive)]
    pub replication: u64,

    /// Progress bars on stderr: auto shows them only when stderr is a terminal.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
}

/// The shape of a Kafka message (SPEC 1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MessageForm {
    /// One JSON object per CSV row, with the CSV column names.
    Row,
    /// Changes: one JSON object per transaction, with its `items`; snapshots stay rows.
    Transaction,
}

/// Flags of `pos-etl generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Directory to write the dataset to (created if missing; existing files are replaced).
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,

    /// Number of items in the catalogue.
    #[arg(long, value_name = "N", default_value = "1000", value_parser = parse_count)]
    pub items: u64,

    /// Number of days of trading to simulate, starting 2021-01-01.
    #[arg(long, value_name = "D", default_value = "30", value_parser = parse_count)]
    pub days: u64,

    /// Random seed: the same seed, items and days give byte-identical files.
    #[arg(long, value_name = "S", default_value = "42", value_parser = parse_count)]
    pub seed: u64,

    /// Progress bars on stderr: auto shows them only when stderr is a terminal.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
}

/// A table `stream` can keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum StreamTable {
    /// Every event's row.
    #[value(name = "enriched")]
    Enriched,
    /// The stock now per store and item.
    #[value(name = "current_inventory")]
    CurrentInventory,
}

/// Output file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated values with a header line.
    Csv,
    /// Apache Parquet.
    Parquet,
    /// A Delta Lake table (a directory or prefix of Parquet files and their log).
    Delta,
}

/// When to draw progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// Only when stderr is a terminal.
    Auto,
    /// Always (useful under `script` or a terminal multiplexer that hides the TTY).
    Always,
    /// Never.
    Never,
}

/// Parses a non-negative integer such as `100` or `10_000`.
pub fn parse_count(text: &str) -> Result<u64, String> {
    text.replace('_', "")
        .parse()
        .map_err(|_| format!("'{text}' is not a non-negative integer"))
}

/// Parses a positive integer.
pub fn parse_positive(text: &str) -> Result<u64, String> {
    match parse_count(text)? {
        0 => Err("must be at least 1".to_string()),
        n => Ok(n),
    }
}

/// Parses a size such as `512MiB`, `2GiB`, `1.5G`, `100k` or plain bytes
/// (binary units: k, m, g and t are 1024-based, with or without `iB`/`B`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("'{text}' is not a size (try 512MiB or 2GiB)"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let power = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        _ => return Err(format!("'{text}' has an unknown unit (use KiB, MiB, GiB or TiB)")),
    };
    Ok((value * 1024f64.powi(power)) as u64)
}

/// `bytes` in the largest binary unit it is a whole number of (`8MiB`), as
/// [`parse_size`] reads it back.
pub fn format_size(bytes: usize) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let power = (0..units.len()).rev().find(|&power| bytes > 0 && bytes % (1 << (10 * power)) == 0).unwrap_or(0);
    format!("{}{}", bytes >> (10 * power), units[power])
}

/// Parses `key=value`, as kcat's `-X`.
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.to_string())),
        _ => Err(format!("'{text}' is not KEY=VALUE")),
    }
}

/// Parses a duration such as `500ms`, `30s`, `5m`, `1h`, `7d` or plain seconds (`90`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (try 500ms, 30s, 5m or 1h)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        _ => return Err(format!("'{text}' has an unknown unit '{unit}' (use ms, s, m, h or d)")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port() {
        let parsed = |text: &str| parse_host_port(text).map(|hp| (hp.host, hp.port));
        assert_eq!(parsed("sched-1:50050"), Ok(("sched-1".to_string(), 50050)));
        assert_eq!(parsed("[::1]:50050"), Ok(("::1".to_string(), 50050)));
        assert!(parsed("sched-1").is_err());
        assert!(parsed(":50050").is_err());
        assert!(parsed("sched-1:http").is_err());
    }

    #[test]
    fn durations() {
        let cases = [
            ("500ms", Ok(Duration::from_millis(500))),
            ("30s", Ok(Duration::from_secs(30))),
            ("90", Ok(Duration::from_secs(90))),
            ("5m", Ok(Duration::from_secs(300))),
            ("1h", Ok(Duration::from_secs(3600))),
            ("2d", Ok(Duration::from_secs(2 * 86_400))),
            ("1.5s", Ok(Duration::from_millis(1500))),
            ("x", Err("'x' is not a duration (try 500ms, 30s, 5m or 1h)".to_string())),
            ("3w", Err("'3w' has an unknown unit 'w' (use ms, s, m, h or d)".to_string())),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), expected, "{text}");
        }
    }

    #[test]
    fn sizes() {
        let cases = [
            ("1024", Ok(1024)),
            ("512MiB", Ok(512 << 20)),
            ("2GiB", Ok(2 << 30)),
            ("2g", Ok(2 << 30)),
            ("1.5G", Ok(3 << 29)),
            ("100kb", Ok(100 << 10)),
            ("x", Err("'x' is not a size (try 512MiB or 2GiB)".to_string())),
            ("3 parsecs", Err("'3 parsecs' has an unknown unit (use KiB, MiB, GiB or TiB)".to_string())),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_size(text), expected, "{text}");
        }
    }

    #[test]
    fn counts() {
        assert_eq!(parse_count("10_000"), Ok(10_000));
        assert_eq!(parse_count("-1"), Err("'-1' is not a non-negative integer".to_string()));
    }

    #[test]
    fn key_values() {
        assert_eq!(parse_key_value("sasl.password=a=b"), Ok(("sasl.password".into(), "a=b".into())));
        assert_eq!(parse_key_value("novalue"), Err("'novalue' is not KEY=VALUE".to_string()));
        assert_eq!(parse_key_value("=x"), Err("'=x' is not KEY=VALUE".to_string()));
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
