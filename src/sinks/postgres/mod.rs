//! PostgreSQL as a destination (SPEC 5). A run opens one connection and one
//! transaction: each output table is created under a loading name, filled
//! by binary `COPY ... FROM STDIN` (Arrow batches encoded by pgpq), indexed
//! and commented; at the commit the old tables are dropped and the loaded
//! ones renamed in their place, then the transaction commits. Readers see
//! the previous tables until that instant; a failed or killed run rolls
//! back and leaves them as they were. Runs that load the same schema take
//! turns on an advisory lock.
//!
//! An incremental run appends instead, in place, and keeps its checkpoint
//! in tables beside the outputs ([`state`]), in the same transaction.

mod connection;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use bytes::BytesMut;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::{SinkExt, StreamExt};
use pgpq::ArrowToPostgresBinaryEncoder;
use pgpq::pg_schema::PostgresType;
use tokio::sync::Mutex;
use tokio_postgres::config::{Host, SslMode};

use crate::error::SinkError;
use connection::Connection;

/// The suffix of a table while it loads, before it replaces its namesake.
const LOADING: &str = "__pos_etl_new";

/// Bytes of encoded rows sent to the server at a time.
const COPY_CHUNK: usize = 4 << 20;

/// Where tables go: a server, a database and a schema.
#[derive(Clone)]
pub struct PgTarget {
    config: tokio_postgres::Config,
    /// The connection as a URL without its password, for messages.
    shown: String,
    /// The schema the tables go to.
    pub schema: String,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the config: it holds the password.
        f.debug_struct("PgTarget").field("shown", &self.shown).field("schema", &self.schema).finish()
    }
}

impl std::fmt::Display for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl PgTarget {
    /// The server and schema, for messages (never a password).
    pub fn place(&self) -> String {
        format!("{self} schema {}", self.schema)
    }

    /// Reads a libpq connection URI (or `key=value` string); what it leaves
    /// out is taken from the libpq variables `env` gives (PGHOST, PGPORT,
    /// PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE), then libpq's defaults
    /// (localhost, 5432, the login name). The error never repeats the input,
    /// which may hold a password.
    pub fn parse(url: &str, schema: &str, env: impl Fn(&str) -> Option<String>) -> Result<PgTarget, String> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|error: tokio_postgres::Error| {
            // The cause names the option ("invalid value for option `port`"), never its value.
            let cause = std::error::Error::source(&error).map(|cause| format!(": {cause}")).unwrap_or_default();
            format!("not a PostgreSQL connection URL: {error}{cause}")
        })?;
        if config.get_hosts().is_empty() {
            let host = env("PGHOST").unwrap_or_else(|| "localhost".to_string());
            for host in host.split(',') {
                match host.starts_with('/') {
                    true => config.host_path(host),
                    false => config.host(host),
                };
            }
        }
        if config.get_ports().is_empty() {
            if let Some(port) = env("PGPORT") {
                config.port(port.parse().map_err(|_| format!("PGPORT is not a port number: {port}"))?);
            }
        }
        if config.get_user().is_none() {
            let user = env("PGUSER").or_else(|| env("USER")).ok_or("no user: give one in the URL or PGUSER")?;
            config.user(user);
        }
        if config.get_password().is_none() {
            if let Some(password) = env("PGPASSWORD") {
                config.password(password);
            }
        }
        if config.get_dbname().is_none() {
            if let Some(dbname) = env("PGDATABASE") {
                config.dbname(dbname);
            }
        }
        if !url.contains("sslmode") {
            match env("PGSSLMODE").as_deref() {
                None | Some("prefer") | Some("allow") => config.ssl_mode(SslMode::Prefer),
                Some("disable") => config.ssl_mode(SslMode::Disable),
                Some("require") => config.ssl_mode(SslMode::Require),
                Some(other) => return Err(format!("PGSSLMODE={other} is not supported: use disable, prefer or require")),
            };
        }
        config.application_name("pos-etl");
        config.connect_timeout(Duration::from_secs(10));
        let shown = shown(&config);
        Ok(PgTarget { config, shown, schema: schema.to_string() })
    }

    /// Connects, begins the run's transaction and takes the schema's lock,
    /// waiting up to `lock_timeout` for another run that holds it.
    pub async fn begin(&self, lock_timeout: Duration) -> Result<PgLoad, SinkError> {
        self.connect().await?.begin(lock_timeout).await
    }

    /// Connects, for runs one after another on one connection (`stream`'s batches).
    pub async fn connect(&self) -> Result<PgSession, SinkError> {
        let mut tls = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())
            .map_err(|e| SinkError::Write { path: self.shown.clone(), source: e.into() })?;
        // As libpq's prefer and require: encrypted, the server's certificate not checked.
        tls.set_verify(openssl::ssl::SslVerifyMode::NONE);
        let tls = postgres_openssl::MakeTlsConnector::new(tls.build());
        let (client, connection) = self.config.connect(tls).await.map_err(self.error("cannot connect"))?;
        tokio::spawn(async move {
            // Its errors reach the client's next call; nothing to do here.
            let _ = connection.await;
        });
        Ok(PgSession { client: Arc::new(Mutex::new(Connection::new(client))), target: self.clone() })
    }

    fn error(&self, action: &str) -> impl FnOnce(tokio_postgres::Error) -> SinkError {
        let action = format!("{action} ({self})");
        move |cause| SinkError::Postgres { action, cause }
    }
}

/// A connection to the database, on which runs begin their transactions
/// one after another.
pub struct PgSession {
    client: Arc<Mutex<Connection>>,
    target: PgTarget,
}

impl PgSession {
    /// Begins a run's transaction and takes the schema's lock, waiting up
    /// to `lock_timeout` for another run that holds it. The session must
    /// not be in a transaction (the last run's committed, or none).
    pub async fn begin(&self, lock_timeout: Duration) -> Result<PgLoad, SinkError> {
        let target = &self.target;
        let client = self.client.lock().await;
        let schema = quote(&target.schema);
        // One round trip (a stream begins a transaction per batch), which
        // also finds whether a checkpoint is stored. The schema is looked
        // up, not created IF NOT EXISTS: that needs the right to create
        // schemas even when it exists. Statements are prepared once per
        // connection but planned with each execution's values: a generic
        // plan, which PostgreSQL picks after five executions, cannot see
        // how many pairs a batch brings, and took seconds to apply a batch
        // of thousands of records that custom plans applied in 30 ms.
        let lock = format!(
            "BEGIN; SET LOCAL lock_timeout = {}; SET LOCAL plan_cache_mode = force_custom_plan; \
             SELECT pg_advisory_xact_lock(hashtext({})); \
             SELECT count(*), to_regclass({}) IS NOT NULL FROM pg_namespace WHERE nspname = {}",
            lock_timeout.as_millis().max(1),
            literal(&format!("pos-etl load {}", target.schema)),
            literal(&qualified(&target.schema, state::CHECKPOINT)),
            literal(&target.schema),
        );
        let replies = client
            .simple_query(&lock)
            .await
            .map_err(target.error("waiting for another run loading this schema (see --lock-timeout)"))?;
        let found = replies.iter().rev().find_map(|reply| match reply {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some((row.get(0), row.get(1))),
            _ => None,
        });
        let (schema_found, checkpoint_found) = found.unwrap_or_default();
        if schema_found != Some("1") {
            client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.map_err(target.error("creating the schema"))?;
        }
        Ok(PgLoad {
            client: self.client.clone(),
            target: target.clone(),
            tables: Vec::new(),
            appending: Vec::new(),
            dropping: Vec::new(),
            checkpoint_stored: checkpoint_found == Some("t"),
        })
    }
}

/// The connection as a URL without its password.
fn shown(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",");
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or_default();
    let dbname = config.get_dbname().unwrap_or(user);
    format!("postgresql://{user}@{host}:{port}/{dbname}")
}

/// A run's open transaction: the tables it is loading, committed together.
pub struct PgLoad {
    client: Arc<Mutex<Connection>>,
    target: PgTarget,
    /// The tables staged so far, in the order they were staged.
    tables: Vec<String>,
    /// The tables written in place: an incremental run appends to them.
    appending: Vec<String>,
    /// Tables dropped at the commit.
    dropping: Vec<String>,
    /// Whether the checkpoint table existed when the transaction began.
    checkpoint_stored: bool,
}

impl PgLoad {
    /// Where the transaction's tables are.
    pub fn target(&self) -> &PgTarget {
        &self.target
    }
}

impl std::fmt::Debug for PgLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLoad").field("target", &self.target).field("tables", &self.tables).finish()
    }
}

impl PgLoad {
    /// A writer of `table`: one that appends to it in place if the run
    /// said so ([`PgLoad::append_to`]), else one that loads a new version
    /// under its loading name, to replace the old one at the commit.
    pub fn stage(&mut self, table: &str) -> PgTableWriter {
        let append = self.appends_to(table);
        if !append {
            self.tables.push(table.to_string());
        }
        PgTableWriter { client: self.client.clone(), schema: self.target.schema.clone(), table: table.to_string(), append }
    }

    /// Makes the writers of `table` append to it in place (it exists).
    pub fn append_to(&mut self, table: &str) {
        self.appending.push(table.to_string());
    }

    /// Whether the rows of `table` go into the table itself ([`PgLoad::append_to`]).
    pub fn appends_to(&self, table: &str) -> bool {
        self.appending.iter().any(|t| t == table)
    }

    /// Drops `table`, if it exists, at the commit.
    pub fn drop_at_commit(&mut self, table: &str) {
        self.dropping.push(table.to_string());
    }

    /// Stages `batch` as the whole new version of `table` (or appends it,
    /// see [`PgLoad::append_to`]).
    pub async fn put(&mut self, table: &str, batch: RecordBatch) -> Result<u64, SinkError> {
        if batch.num_rows() == 0 && self.appends_to(table) {
            // Three round trips for nothing: most stream batches have no
            // rejects and many no snapshots for their journal.
            return Ok(0);
        }
        // In slices, so that the encoded rows go out as they are encoded.
        const SLICE: usize = 64 << 10;
        let slices: Vec<RecordBatch> =
            (0..batch.num_rows()).step_by(SLICE).map(|start| batch.slice(start, SLICE.min(batch.num_rows() - start))).collect();
        let stream = datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
            batch.schema(),
            futures::stream::iter(slices.into_iter().map(Ok)),
        );
        self.stage(table).write(Box::pin(stream), |_| {}).await
    }

    /// Swaps every staged table in for the old one, and commits.
    pub async fn commit(self) -> Result<(), SinkError> {
        let client = self.client.lock().await;
        let drops = self.dropping.iter().map(|table| format!("DROP TABLE IF EXISTS {};", qualified(&self.target.schema, table)));
        let swaps = self.tables.iter().map(|table| swap_sql(&self.target.schema, table));
        let sql: String = drops.chain(swaps).collect();
        let written: Vec<&str> = self.tables.iter().chain(&self.appending).map(String::as_str).collect();
        let action = format!("committing the tables {} ({})", written.join(", "), self.target);
        let error = |source| SinkError::Postgres { action: action.clone(), cause: source };
        // COMMIT goes once the swaps are done, not in the same message: a
        // run killed while a swap waits for a reader's lock must not leave
        // the server a COMMIT to carry out without it.
        if !sql.is_empty() {
            client.batch_execute(&sql).await.map_err(error)?;
        }
        client.batch_execute("COMMIT").await.map_err(error)
    }
}

/// Loads one table of a run. Several load at once (enriched, and the
/// current_inventory computed from it) over the run's one connection: each
/// keeps its batches in memory until the connection is free, then streams.
pub struct PgTableWriter {
    client: Arc<Mutex<Connection>>,
    schema: String,
    table: String,
    /// Whether the rows go into the table itself (it exists), not a new version.
    append: bool,
}

impl std::fmt::Debug for PgTableWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTableWriter").field("schema", &self.schema).field("table", &self.table).finish()
    }
}

impl PgTableWriter {
    /// Creates the loading table, copies every batch of `stream` into it,
    /// then adds its index and comments; or, appending, copies the batches
    /// into the table itself. `on_batch` sees every batch first.
    pub async fn write(
        self,
        mut stream: SendableRecordBatchStream,
        mut on_batch: impl FnMut(&RecordBatch),
    ) -> Result<u64, SinkError> {
        let schema = pg_schema(&stream.schema());
        let mut waiting = Vec::new();
        let mut copy: Option<CopyIn> = None;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|source| SinkError::Compute { path: self.table.clone(), source })?;
            on_batch(&batch);
            let batch = to_pg_types(batch, &schema).map_err(|e| SinkError::Write { path: self.table.clone(), source: e.into() })?;
            if copy.is_none() {
                if let Ok(client) = self.client.clone().try_lock_owned() {
                    copy = Some(CopyIn::start(client, &self.schema, &self.table, &schema, self.append).await?);
                }
            }
            match &mut copy {
                Some(copy) => {
                    for batch in waiting.drain(..) {
                        copy.send(&batch).await?;
                    }
                    copy.send(&batch).await?;
                }
                None => waiting.push(batch),
            }
        }
        let mut copy = match copy {
            Some(copy) => copy,
            None => {
                let client = self.client.clone().lock_owned().await;
                CopyIn::start(client, &self.schema, &self.table, &schema, self.append).await?
            }
        };
        for batch in waiting.drain(..) {
            copy.send(&batch).await?;
        }
        copy.finish(&schema).await
    }
}

/// A `COPY ... FROM STDIN (FORMAT binary)` in progress, holding the connection.
struct CopyIn {
    client: tokio::sync::OwnedMutexGuard<Connection>,
    sink: std::pin::Pin<Box<tokio_postgres::CopyInSink<bytes::Bytes>>>,
    encoder: ArrowToPostgresBinaryEncoder,
    buffer: BytesMut,
    schema: String,
    table: String,
    /// The table the rows go into: the loading table, or the table itself.
    target: String,
    /// Whether `target` is the table itself, which has its index already.
    append: bool,
    rows: u64,
}

impl CopyIn {
    async fn start(
        mut client: tokio::sync::OwnedMutexGuard<Connection>,
        schema: &str,
        table: &str,
        arrow: &Schema,
        append: bool,
    ) -> Result<CopyIn, SinkError> {
        let error = |action: String| move |source| SinkError::Postgres { action, cause: source };
        let encode_error = |e: pgpq::error::ErrorKind| SinkError::Write { path: table.to_string(), source: e.into() };
        let mut encoder = ArrowToPostgresBinaryEncoder::try_new(arrow).map_err(encode_error)?;
        let target = match append {
            true => qualified(schema, table),
            false => qualified(schema, &format!("{table}{LOADING}")),
        };
        if !append {
            let columns: Vec<(String, String, bool)> = encoder
                .schema()
                .columns
                .iter()
                .map(|column| (column.name.clone(), sql_type(&column.data_type), column.nullable))
                .collect();
            let create = create_table_sql(&target, &columns);
            client.batch_execute(&create).await.map_err(error(format!("creating {target}")))?;
        }
        let columns = arrow.fields().iter().map(|f| quote(f.name())).collect::<Vec<_>>().join(", ");
        let sink = client
            .copy_in(&format!("COPY {target} ({columns}) FROM STDIN (FORMAT binary)"))
            .await
            .map_err(error(format!("starting COPY into {target}")))?;
        let mut buffer = BytesMut::with_capacity(COPY_CHUNK);
        encoder.write_header(&mut buffer).map_err(encode_error)?;
        Ok(CopyIn {
            client,
            sink: Box::pin(sink),
            encoder,
            buffer,
            schema: schema.to_string(),
            table: table.to_string(),
            target,
            append,
            rows: 0,
        })
    }

    async fn send(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        self.encoder
            .write_batch(batch, &mut self.buffer)
            .map_err(|e| SinkError::Write { path: self.table.clone(), source: e.into() })?;
        self.rows += batch.num_rows() as u64;
        if self.buffer.len() >= COPY_CHUNK {
            let chunk = self.buffer.split().freeze();
            self.sink.send(chunk).await.map_err(|source| self.error("copying rows into", source))?;
        }
        Ok(())
    }

    async fn finish(mut self, arrow: &Schema) -> Result<u64, SinkError> {
        self.encoder
            .write_footer(&mut self.buffer)
            .map_err(|e| SinkError::Write { path: self.table.clone(), source: e.into() })?;
        let chunk = self.buffer.split().freeze();
        self.sink.send(chunk).await.map_err(|source| self.error("copying rows into", source))?;
        self.sink.as_mut().finish().await.map_err(|source| self.error("finishing COPY into", source))?;
        if !self.append {
            let names: Vec<&str> = arrow.fields().iter().map(|f| f.name().as_str()).collect();
            let sql = finish_table_sql(&self.schema, &self.table, &names);
            self.client.batch_execute(&sql).await.map_err(|source| self.error("indexing", source))?;
        }
        Ok(self.rows)
    }

    fn error(&self, action: &str, source: tokio_postgres::Error) -> SinkError {
        SinkError::Postgres { action: format!("{action} {}", self.target), cause: source }
    }
}

/// `schema` with the types PostgreSQL cannot hold as they are replaced by
/// the nearest it can: nanosecond times by microseconds (PostgreSQL's
/// precision), unsigned integers by bigint.
fn pg_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| {
            let data_type = match field.data_type() {
                DataType::Timestamp(TimeUnit::Nanosecond, zone) => DataType::Timestamp(TimeUnit::Microsecond, zone.clone()),
                DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => DataType::Int64,
                other => other.clone(),
            };
            field.as_ref().clone().with_data_type(data_type)
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` cast to `schema` (from [`pg_schema`]), if it differs.
fn to_pg_types(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| arrow::compute::cast(column, field.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

/// The SQL type of SPEC 5 for a column pgpq encodes as `data_type`.
fn sql_type(data_type: &PostgresType) -> String {
    match data_type {
        PostgresType::Int8 => "bigint".to_string(),
        PostgresType::Text => "text".to_string(),
        PostgresType::Timestamp => "timestamp".to_string(),
        PostgresType::Bool => "boolean".to_string(),
        other => other.name().unwrap_or_else(|| "text".to_string()),
    }
}

/// `CREATE TABLE` for the loading table `name` (already qualified and quoted).
fn create_table_sql(name: &str, columns: &[(String, String, bool)]) -> String {
    let columns: Vec<String> = columns
        .iter()
        .map(|(column, sql_type, nullable)| {
            format!("{} {sql_type}{}", quote(column), if *nullable { "" } else { " NOT NULL" })
        })
        .collect();
    format!("DROP TABLE IF EXISTS {name}; CREATE TABLE {name} ({});", columns.join(", "))
}

/// The index a dashboard needs on `table` (its name suffix, its columns,
/// whether it is the primary key), if the table has those columns.
fn index_of(table: &str) -> Option<(&'static str, &'static [&'static str], bool)> {
    match table {
        "enriched" => Some(("store_item_time", &["store_id", "item_id", "date_time"], false)),
        "current_inventory" | state::STOCK => Some(("pkey", &["store_id", "item_id"], true)),
        state::SNAPSHOT_JOURNAL | state::CHANGE_JOURNAL => Some(("store_item_time", &["store_id", "item_id", "date_time"], false)),
        state::CHECKPOINT => Some(("pkey", &["source", "name"], true)),
        _ => None,
    }
}

/// Indexes and comments for the loaded `table`, on its loading name.
fn finish_table_sql(schema: &str, table: &str, columns: &[&str]) -> String {
    let loading_name = format!("{table}{LOADING}");
    let loading = qualified(schema, &loading_name);
    let mut sql = String::new();
    if let Some((suffix, keys, primary)) = index_of(table).filter(|(_, keys, _)| keys.iter().all(|k| columns.contains(k))) {
        let index = quote(&format!("{loading_name}_{suffix}"));
        let keys = keys.iter().map(|k| quote(k)).collect::<Vec<_>>().join(", ");
        sql += &match primary {
            true => format!("ALTER TABLE {loading} ADD CONSTRAINT {index} PRIMARY KEY ({keys});"),
            false => format!("CREATE INDEX {index} ON {loading} ({keys});"),
        };
    }
    if let Some(comment) = table_comment(table) {
        sql += &format!("COMMENT ON TABLE {loading} IS {};", literal(comment));
    }
    for column in columns {
        if let Some(comment) = column_comment(table, column) {
            sql += &format!("COMMENT ON COLUMN {loading}.{} IS {};", quote(column), literal(comment));
        }
    }
    sql
}

/// Drops the old `table` and renames the loaded one (and its index) in its place.
fn swap_sql(schema: &str, table: &str) -> String {
    let loading_name = format!("{table}{LOADING}");
    let mut sql = format!(
        "DROP TABLE IF EXISTS {}; ALTER TABLE {} RENAME TO {};",
        qualified(schema, table),
        qualified(schema, &loading_name),
        quote(table)
    );
    if let Some((suffix, ..)) = index_of(table) {
        // The index exists if the table had its columns; renamed only then.
        sql += &format!(
            "ALTER INDEX IF EXISTS {} RENAME TO {};",
            qualified(schema, &format!("{loading_name}_{suffix}")),
            quote(&format!("{table}_{suffix}"))
        );
    }
    sql
}

/// A quoted identifier: `"name"`, inner quotes doubled.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"schema"."name"`.
fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote(schema), quote(name))
}

/// A string literal: `'text'`, inner quotes doubled.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn table_comment(table: &str) -> Option<&'static str> {
    Some(match table {
        "enriched" => "Every distinct inventory event joined with its store, item and change type, with the stock after it (pos-etl, SPEC 2)",
        "current_inventory" => "The stock now, per store and item that has a snapshot (pos-etl, SPEC 3)",
        "rejects" => "Records pos-etl could not use, with where they were and why (SPEC 1.3)",
        state::CHECKPOINT => "pos-etl --incremental: where each input stopped (do not edit)",
        state::STOCK => "pos-etl --incremental: the stock after the last applied event, per store and item (do not edit)",
        state::SNAPSHOT_JOURNAL | state::CHANGE_JOURNAL => "pos-etl --incremental: every event applied, as read (do not edit)",
        _ => return None,
    })
}

/// What a column of an output table means (SPEC 2, 3 and 1.3).
fn column_comment(table: &str, column: &str) -> Option<&'static str> {
    Some(match (table, column) {
        (_, "item_id") => "The item",
        (_, "store_id") => "The store",
        (_, "store_name") => "store.name; null if the store has no lookup row",
        (_, "item_name") => "item.name; null if the item has no lookup row",
        (_, "safety_stock_quantity") => "item.safety_stock_quantity",
        (_, "date_time") if table == "current_inventory" => "The later of the latest snapshot and the last change",
        (_, "date_time") => "When the event happened, store-local wall-clock time",
        ("enriched", "employee_id") => "Who counted (snapshots); null for changes and the online store",
        ("enriched", "quantity") => "The counted quantity (snapshot) or the signed change",
        ("enriched", "source_type") => "snapshot_only, snapshot_with_change, or change_only before any snapshot",
        ("enriched", "action") => "inventory report, or the change type",
        ("enriched", "trans_id") => "The transaction, braces stripped; null for snapshots",
        ("enriched", "change_type_id") => "The change type; null for snapshots",
        ("enriched", "change_type") => "sale, shrink, restock or bopis; null for snapshots",
        ("enriched", "final_quantity") => "The stock after this event; null before the first snapshot",
        ("enriched", "supplier_id") => "item.supplier_id",
        ("enriched", "sales") => "Units sold (sale or bopis), else null",
        ("current_inventory", "snapshot_quantity") => "The latest snapshot's count",
        ("current_inventory", "change_quantity") => "The sum of the counted changes since that snapshot",
        ("current_inventory", "current_inventory") => "snapshot_quantity + change_quantity",
        ("current_inventory", "below_safety_stock") => "current_inventory < safety_stock_quantity",
        ("rejects", "source") => "file:line or topic/partition@offset",
        ("rejects", "reason") => "Why the record was rejected",
        ("rejects", "raw") => "The record as read",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str, env: &[(&str, &str)]) -> Result<PgTarget, String> {
        PgTarget::parse(url, "public", |name| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn the_url_then_the_libpq_variables_fill_the_connection() {
        let target = parse("postgresql://pos:secret@db.example:6543/sales", &[("PGHOST", "other"), ("PGUSER", "x")]).unwrap();
        assert_eq!(target.to_string(), "postgresql://pos@db.example:6543/sales", "no password, URL first");
        assert_eq!(target.config.get_password(), Some(&b"secret"[..]));
        let env = [("PGHOST", "pg1"), ("PGPORT", "5433"), ("PGUSER", "etl"), ("PGPASSWORD", "pw"), ("PGDATABASE", "pos")];
        let target = parse("postgresql://", &env).unwrap();
        assert_eq!(target.to_string(), "postgresql://etl@pg1:5433/pos");
        assert_eq!(target.config.get_password(), Some(&b"pw"[..]));
        assert_eq!(parse("postgresql://", &[("USER", "me")]).unwrap().to_string(), "postgresql://me@localhost:5432/me");
        assert!(matches!(parse("postgresql://", &[("USER", "me"), ("PGSSLMODE", "require")]).unwrap().config.get_ssl_mode(), SslMode::Require));
    }

    #[test]
    fn a_bad_url_is_not_repeated_in_the_error() {
        let error = parse("postgresql://pos:hunter2@host:notaport/db", &[]).unwrap_err();
        assert!(!error.contains("hunter2") && error.contains("port"), "{error}");
        assert!(!format!("{:?}", parse("postgresql://pos:hunter2@h/db", &[]).unwrap()).contains("hunter2"));
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(qualified("my \"schema\"", "enriched"), "\"my \"\"schema\"\"\".\"enriched\"");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(
            swap_sql("public", "current_inventory"),
            "DROP TABLE IF EXISTS \"public\".\"current_inventory\"; \
             ALTER TABLE \"public\".\"current_inventory__pos_etl_new\" RENAME TO \"current_inventory\";\
             ALTER INDEX IF EXISTS \"public\".\"current_inventory__pos_etl_new_pkey\" RENAME TO \"current_inventory_pkey\";"
        );
    }

    #[test]
    fn the_index_needs_its_columns() {
        let sql = finish_table_sql("s", "enriched", &["store_id", "item_id", "date_time", "sales"]);
        assert!(sql.starts_with("CREATE INDEX \"enriched__pos_etl_new_store_item_time\" ON \"s\".\"enriched__pos_etl_new\" (\"store_id\", \"item_id\", \"date_time\");"), "{sql}");
        assert!(sql.contains("COMMENT ON COLUMN \"s\".\"enriched__pos_etl_new\".\"sales\" IS 'Units sold (sale or bopis), else null';"));
        assert!(!finish_table_sql("s", "enriched", &["store_id", "sales"]).contains("INDEX"), "a user's rules dropped a key column");
    }
}
