//! The analysts' report over `enriched` and `current_inventory`: the
//! relational tables come from the SQL files of `sql/report/`; the forecast
//! and the item clusters are computed here from views those files define;
//! `html` draws them all on one page. No I/O: the command reads and writes.

pub mod clusters;
pub mod forecast;
pub mod html;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray, UInt64Array,
};
use arrow::compute::{cast, concat_batches};
use arrow::datatypes::{DataType, Date32Type, SchemaRef};
use datafusion::catalog::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionContext;

use crate::error::PipelineError;
use crate::pipeline::{self, Rules};
use clusters::{Clustering, DAYS_OF_WEEK, HOURS, ItemProfile};

/// Days of history shown for each low-stock pair.
pub const HISTORY_DAYS: i64 = 14;

/// The tables the SQL files compute and pos-etl writes as they are.
pub const SQL_OUTPUTS: [&str; 5] = ["top_items", "sales_by_store", "low_stock", "item_hourly", "seasonality"];

/// What the report is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSettings {
    /// Items ranked in top_items and forecast; pairs in low_stock.
    pub top: u64,
    /// Days forecast, and days held out by the back-test.
    pub horizon: usize,
    /// Items followed hour by hour; empty for the five best sellers.
    pub items: Vec<i64>,
}

/// One output table of the report, in memory (the report's tables are small:
/// a row per store and day, per top item, per hour of a few items).
#[derive(Debug, Clone)]
pub struct ReportTable {
    /// The table's name, and its file's.
    pub name: &'static str,
    /// Its rows, in one batch.
    pub batch: RecordBatch,
}

impl ReportTable {
    fn new(name: &'static str, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Self, DataFusionError> {
        Ok(ReportTable { name, batch: concat_batches(schema, batches)? })
    }

    /// Rows in the table.
    pub fn rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// A column as numbers (nulls as `None`).
    pub fn numbers(&self, column: &str) -> Vec<Option<f64>> {
        let array = self.cast(column, &DataType::Float64);
        array.as_primitive::<arrow::datatypes::Float64Type>().iter().collect()
    }

    /// A column of ids as integers (nulls as `None`); never through floats,
    /// which would merge ids above 2^53.
    pub fn ids(&self, column: &str) -> Vec<Option<i64>> {
        let array = self.cast(column, &DataType::Int64);
        array.as_primitive::<arrow::datatypes::Int64Type>().iter().collect()
    }

    /// A column as text, dates and timestamps included (nulls as `None`).
    pub fn texts(&self, column: &str) -> Vec<Option<String>> {
        let array = self.cast(column, &DataType::Utf8);
        array.as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect()
    }

    fn cast(&self, column: &str, to: &DataType) -> ArrayRef {
        let array = self
            .batch
            .column_by_name(column)
            .unwrap_or_else(|| panic!("report table {} has no column {column}", self.name));
        cast(array, to).unwrap_or_else(|e| panic!("{}.{column} cannot be read as {to}: {e}", self.name))
    }
}

/// Everything the report shows.
#[derive(Debug, Clone)]
pub struct Report {
    /// The tables, in the order they are written and shown.
    pub tables: Vec<ReportTable>,
    /// Mean MASE of the forecasts' back-tests, and of seasonal naive.
    pub mean_mase: Option<(f64, f64)>,
    /// The silhouette score of the clustering, when items could be clustered.
    pub silhouette: Option<f64>,
}

impl Report {
    /// The table called `name`.
    pub fn table(&self, name: &str) -> &ReportTable {
        self.tables.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no report table {name}"))
    }
}

/// Computes the report in `ctx`, which must hold the `enriched` and
/// `current_inventory` tables.
pub async fn build(ctx: &SessionContext, rules: &Rules, settings: &ReportSettings) -> Result<Report, PipelineError> {
    register_settings(ctx, settings)?;
    pipeline::run_rules(ctx, rules).await?;
    let mut tables = Vec::new();
    for name in SQL_OUTPUTS {
        tables.push(collect(ctx, name).await?);
    }
    let series = collect(ctx, "forecast_series").await?;
    let (forecast, accuracy, mean_mase) = forecasts(&series, settings.horizon);
    tables.push(forecast);
    tables.push(accuracy);
    let profiles = collect(ctx, "item_profiles").await?;
    let days = collect(ctx, "report_days").await?.rows();
    let clustering = clusters::cluster(&item_profiles(&profiles, days));
    let (items, centroids) = cluster_tables(&profiles, clustering.as_ref());
    tables.push(items);
    tables.push(centroids);
    Ok(Report { tables, mean_mase, silhouette: clustering.map(|c| c.silhouette) })
}

/// Provides `report_settings` (one row) and `report_items` to the SQL files.
fn register_settings(ctx: &SessionContext, settings: &ReportSettings) -> Result<(), PipelineError> {
    let register = |name: &'static str, batch: RecordBatch| {
        let error = |source| PipelineError::Register { table: name, source };
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(error)?;
        ctx.register_table(name, Arc::new(table)).map_err(error).map(drop)
    };
    let int = |value: i64| Arc::new(Int64Array::from(vec![value])) as ArrayRef;
    let top = i64::try_from(settings.top).unwrap_or(i64::MAX);
    let horizon = i64::try_from(settings.horizon).unwrap_or(i64::MAX);
    register(
        "report_settings",
        RecordBatch::try_from_iter([("top", int(top)), ("horizon", int(horizon)), ("history_days", int(HISTORY_DAYS))])
            .expect("one-row columns"),
    )?;
    let items = Arc::new(Int64Array::from(settings.items.clone())) as ArrayRef;
    register("report_items", RecordBatch::try_from_iter([("item_id", items)]).expect("one column"))
}

async fn collect(ctx: &SessionContext, name: &'static str) -> Result<ReportTable, PipelineError> {
    let error = |source| PipelineError::Sql { file: format!("the report view {name}"), source };
    let frame = ctx.table(name).await.map_err(|_| PipelineError::MissingView { view: name })?;
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await.map_err(error)?;
    ReportTable::new(name, &schema, &batches).map_err(error)
}

/// One daily series of `forecast_series`.
struct Series {
    kind: String,
    id: Option<i64>,
    name: Option<String>,
    days: Vec<i32>,
    units: Vec<f64>,
}

fn split_series(table: &ReportTable) -> Vec<Series> {
    let batch = &table.batch;
    let kinds = table.texts("series_kind");
    let ids = table.ids("series_id");
    let names = table.texts("series_name");
    let days = cast(batch.column_by_name("day").expect("forecast_series.day"), &DataType::Date32)
        .expect("day is a date");
    let days = days.as_primitive::<Date32Type>();
    let units = table.numbers("units_sold");
    let mut series: Vec<Series> = Vec::new();
    for row in 0..table.rows() {
        let kind = kinds[row].clone().unwrap_or_default();
        let id = ids[row];
        let same = series.last().is_some_and(|s| s.kind == kind && s.id == id);
        if !same {
            series.push(Series { kind, id, name: names[row].clone(), days: Vec::new(), units: Vec::new() });
        }
        let current = series.last_mut().expect("just pushed");
        current.days.push(days.value(row));
        current.units.push(units[row].unwrap_or(0.0));
    }
    series
}

/// The `forecast` and `forecast_accuracy` tables, and the mean MASE of the
/// model and of seasonal naive over the series that have both.
fn forecasts(series_table: &ReportTable, horizon: usize) -> (ReportTable, ReportTable, Option<(f64, f64)>) {
    let mut rows = ForecastRows::default();
    let mut accuracy = AccuracyRows::default();
    let mut mases = Vec::new();
    for series in split_series(series_table) {
        let prediction = forecast::forecast(&series.units, horizon);
        for (day, units) in series.days.iter().zip(&series.units) {
            rows.push(&series, *day, Some(*units as i64), None);
        }
        let last_day = series.days.last().copied().unwrap_or_default();
        for step in 0..horizon {
            rows.push(&series, last_day + 1 + step as i32, None, Some((&prediction, step)));
        }
        let backtest = forecast::backtest(&series.units, horizon);
        if let Some((mase, naive)) = backtest.as_ref().and_then(|b| Some((b.mase?, b.naive_mase?))) {
            mases.push((mase, naive));
        }
        accuracy.push(&series, backtest.as_ref(), &prediction);
    }
    let mean_mase = (!mases.is_empty()).then(|| {
        let n = mases.len() as f64;
        (mases.iter().map(|m| m.0).sum::<f64>() / n, mases.iter().map(|m| m.1).sum::<f64>() / n)
    });
    (rows.finish(), accuracy.finish(), mean_mase)
}

/// The columns naming a series, which `forecast` and `forecast_accuracy` begin with.
#[derive(Default)]
struct SeriesColumns {
    kind: Vec<String>,
    id: Vec<Option<i64>>,
    name: Vec<Option<String>>,
}

impl SeriesColumns {
    fn push(&mut self, series: &Series) {
        self.kind.push(series.kind.clone());
        self.id.push(series.id);
        self.name.push(series.name.clone());
    }

    /// Table `name`: the series columns, then `rest`.
    fn finish<'a>(self, name: &'static str, rest: impl IntoIterator<Item = (&'a str, ArrayRef)>) -> ReportTable {
        let series: [(&'a str, ArrayRef); 3] = [
            ("series_kind", Arc::new(StringArray::from(self.kind))),
            ("series_id", Arc::new(Int64Array::from(self.id))),
            ("series_name", Arc::new(StringArray::from(self.name))),
        ];
        let batch = RecordBatch::try_from_iter(series.into_iter().chain(rest)).expect("columns of equal length");
        ReportTable { name, batch }
    }
}

/// The columns of `forecast`, filled row by row.
#[derive(Default)]
struct ForecastRows {
    series: SeriesColumns,
    day: Vec<i32>,
    units_sold: Vec<Option<i64>>,
    model: Vec<Option<String>>,
    point: Vec<Option<f64>>,
    bounds: [Vec<Option<f64>>; 4],
}

impl ForecastRows {
    fn push(&mut self, series: &Series, day: i32, units: Option<i64>, predicted: Option<(&forecast::SeriesForecast, usize)>) {
        self.series.push(series);
        self.day.push(day);
        self.units_sold.push(units);
        self.model.push(predicted.map(|(f, _)| f.model.clone()));
        self.point.push(predicted.map(|(f, step)| f.point[step]));
        let bound = |pick: fn(&forecast::SeriesForecast, usize) -> f64| predicted.map(|(f, step)| pick(f, step));
        self.bounds[0].push(bound(|f, s| f.interval_80[s].0));
        self.bounds[1].push(bound(|f, s| f.interval_80[s].1));
        self.bounds[2].push(bound(|f, s| f.interval_95[s].0));
        self.bounds[3].push(bound(|f, s| f.interval_95[s].1));
    }

    fn finish(self) -> ReportTable {
        let [lower_80, upper_80, lower_95, upper_95] = self.bounds.map(|b| Arc::new(Float64Array::from(b)) as ArrayRef);
        self.series.finish("forecast", [
            ("day", Arc::new(Date32Array::from(self.day)) as ArrayRef),
            ("units_sold", Arc::new(Int64Array::from(self.units_sold))),
            ("forecast", Arc::new(Float64Array::from(self.point))),
            ("lower_80", lower_80),
            ("upper_80", upper_80),
            ("lower_95", lower_95),
            ("upper_95", upper_95),
            ("model", Arc::new(StringArray::from(self.model))),
        ])
    }
}

/// The columns of `forecast_accuracy`, filled row by row.
#[derive(Default)]
struct AccuracyRows {
    series: SeriesColumns,
    model: Vec<String>,
    note: Vec<Option<String>>,
    train_days: Vec<Option<u64>>,
    holdout_days: Vec<Option<u64>>,
    scores: [Vec<Option<f64>>; 4],
}

impl AccuracyRows {
    /// The back-test's model and scores; with no back-test, the model of
    /// the forecast, and why there are no scores.
    fn push(&mut self, series: &Series, backtest: Option<&forecast::Accuracy>, prediction: &forecast::SeriesForecast) {
        self.series.push(series);
        match backtest {
            Some(b) => {
                self.model.push(b.model.model.clone());
                self.note.push(b.model.note.clone());
                self.train_days.push(Some(b.train_days as u64));
                self.holdout_days.push(Some(b.holdout_days as u64));
                for (column, value) in self.scores.iter_mut().zip([b.mase, Some(b.smape), b.naive_mase, Some(b.naive_smape)]) {
                    column.push(value);
                }
            }
            None => {
                self.model.push(prediction.model.clone());
                self.note.push(Some(format!("{} days of history: too short to hold out a horizon", series.units.len())));
                self.train_days.push(None);
                self.holdout_days.push(None);
                self.scores.iter_mut().for_each(|column| column.push(None));
            }
        }
    }

    fn finish(self) -> ReportTable {
        let [mase, smape, naive_mase, naive_smape] = self.scores.map(|s| Arc::new(Float64Array::from(s)) as ArrayRef);
        self.series.finish("forecast_accuracy", [
            ("model", Arc::new(StringArray::from(self.model)) as ArrayRef),
            ("note", Arc::new(StringArray::from(self.note))),
            ("train_days", Arc::new(UInt64Array::from(self.train_days))),
            ("holdout_days", Arc::new(UInt64Array::from(self.holdout_days))),
            ("mase", mase),
            ("smape", smape),
            ("seasonal_naive_mase", naive_mase),
            ("seasonal_naive_smape", naive_smape),
        ])
    }
}

/// The profiles of `item_profiles` (long: item, profile, bucket, units).
fn item_profiles(table: &ReportTable, days: usize) -> Vec<ItemProfile> {
    let ids = table.ids("item_id");
    let kinds = table.texts("profile");
    let buckets = table.numbers("bucket");
    let units = table.numbers("units_sold");
    let mut profiles: BTreeMap<i64, ItemProfile> = BTreeMap::new();
    for row in 0..table.rows() {
        let (Some(id), Some(bucket)) = (ids[row], buckets[row]) else { continue };
        let profile = profiles.entry(id).or_insert_with(|| ItemProfile {
            item_id: id,
            by_day_of_week: [0.0; DAYS_OF_WEEK],
            by_hour: [0.0; HOURS],
            units_per_day: 0.0,
        });
        let units = units[row].unwrap_or(0.0);
        match kinds[row].as_deref() {
            Some("day_of_week") if (1..=DAYS_OF_WEEK).contains(&(bucket as usize)) => {
                profile.by_day_of_week[bucket as usize - 1] += units;
                profile.units_per_day += units / days.max(1) as f64;
            }
            Some("hour_of_day") if (bucket as usize) < HOURS => profile.by_hour[bucket as usize] += units,
            _ => {}
        }
    }
    profiles.into_values().collect()
}

/// `item_clusters` (one row per item grouped) and `cluster_profiles` (one
/// row per cluster, profile and bucket), empty when nothing was grouped.
fn cluster_tables(profiles: &ReportTable, clustering: Option<&Clustering>) -> (ReportTable, ReportTable) {
    let names: BTreeMap<i64, Option<String>> = profiles
        .ids("item_id")
        .into_iter()
        .zip(profiles.texts("item_name"))
        .filter_map(|(id, name)| Some((id?, name)))
        .collect();
    let empty = Clustering { clusters: Vec::new(), assignments: Vec::new(), silhouette: f64::NAN };
    let clustering = clustering.unwrap_or(&empty);
    let speed: BTreeMap<usize, f64> = clustering.clusters.iter().map(|c| (c.cluster, c.units_per_day)).collect();
    let items = RecordBatch::try_from_iter([
        ("item_id", Arc::new(Int64Array::from_iter_values(clustering.assignments.iter().map(|a| a.0))) as ArrayRef),
        ("item_name", Arc::new(StringArray::from_iter(clustering.assignments.iter().map(|a| names.get(&a.0).cloned().flatten())))),
        ("cluster", Arc::new(UInt64Array::from_iter_values(clustering.assignments.iter().map(|a| a.1 as u64)))),
        ("cluster_units_per_day", Arc::new(Float64Array::from_iter_values(clustering.assignments.iter().map(|a| speed[&a.1])))),
    ])
    .expect("columns of equal length");

    let (mut cluster, mut size, mut velocity, mut profile, mut bucket, mut share) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for c in &clustering.clusters {
        let shares = c.by_day_of_week.iter().enumerate().map(|(d, s)| ("day_of_week", d as i64 + 1, *s));
        let shares = shares.chain(c.by_hour.iter().enumerate().map(|(h, s)| ("hour_of_day", h as i64, *s)));
        for (kind, b, s) in shares {
            cluster.push(c.cluster as u64);
            size.push(c.items as u64);
            velocity.push(c.units_per_day);
            profile.push(kind);
            bucket.push(b);
            share.push(s);
        }
    }
    let centroids = RecordBatch::try_from_iter([
        ("cluster", Arc::new(UInt64Array::from(cluster)) as ArrayRef),
        ("items", Arc::new(UInt64Array::from(size))),
        ("units_per_day", Arc::new(Float64Array::from(velocity))),
        ("profile", Arc::new(StringArray::from(profile))),
        ("bucket", Arc::new(Int64Array::from(bucket))),
        ("share", Arc::new(Float64Array::from(share))),
    ])
    .expect("columns of equal length");
    (ReportTable { name: "item_clusters", batch: items }, ReportTable { name: "cluster_profiles", batch: centroids })
}
