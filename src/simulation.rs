//! A deterministic simulation of a small retailer, for `pos-etl generate`:
//! one physical store and one online store, written in the original export
//! dialect (byte-order mark, CRLF, `2021-01-03 14:05:00`, GUIDs in braces).
//!
//! Item popularity is skewed (log-normal weights); sales follow hour-of-day and
//! day-of-week profiles; a shelf below its safety stock is restocked the next
//! morning; shrink happens; online orders include BOPIS pick-ups; a full
//! recount of every item happens every 5 days, except that about a tenth of the
//! items miss the first one, so some changes precede any snapshot; and a few
//! records are sent twice, as an at-least-once producer does.

use std::io::{self, Write};

use chrono::{Datelike, NaiveDate, Weekday};
use rand::{RngExt, SeedableRng};
use rand_distr::weighted::WeightedAliasIndex;
use rand_distr::{Distribution, LogNormal, Poisson};
use rand_pcg::Pcg64Mcg;

/// The first simulated day.
pub const START: NaiveDate = NaiveDate::from_ymd_opt(2021, 1, 1).expect("valid date");
/// Days between two full recounts.
pub const RECOUNT_EVERY_DAYS: u64 = 5;
/// The first item id (as in the original data).
pub const FIRST_ITEM_ID: i64 = 100_001;
/// Probability that a record is written twice.
const DUPLICATE_RATE: f64 = 0.0002;

/// What to simulate.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Items in the catalogue.
    pub items: u64,
    /// Days of trading.
    pub days: u64,
    /// Random seed.
    pub seed: u64,
}

/// A simulated store and its demand profile.
#[derive(Debug, Clone, Copy)]
pub struct StoreProfile {
    /// store_id.
    pub id: i64,
    /// store.name; `online` is the web shop.
    pub name: &'static str,
    /// The suffix of its export file names.
    pub file_suffix: &'static str,
    /// Sale lines per item per average day.
    sale_lines_per_item: f64,
    /// BOPIS lines per item per average day.
    bopis_lines_per_item: f64,
    /// Shrink lines per item per average day.
    shrink_lines_per_item: f64,
    /// Relative demand per hour of the day, 0–23.
    hourly: [f64; 24],
    /// Relative demand Monday..Sunday.
    weekly: [f64; 7],
    /// Hour of the morning delivery and of the recount.
    delivery_hour: u32,
}

/// The two stores of the original dataset.
pub const STORES: [StoreProfile; 2] = [
    StoreProfile {
        id: 0,
        name: "online",
        file_suffix: "online",
        sale_lines_per_item: 0.8,
        bopis_lines_per_item: 0.3,
        shrink_lines_per_item: 0.0,
        hourly: [
            0.3, 0.2, 0.1, 0.1, 0.1, 0.2, 0.4, 0.7, 1.0, 1.1, 1.1, 1.2, 1.4, 1.3, 1.1, 1.0, 1.0,
            1.1, 1.3, 1.6, 1.9, 2.0, 1.5, 0.8,
        ],
        weekly: [0.95, 0.9, 0.9, 0.95, 1.0, 1.15, 1.15],
        delivery_hour: 5,
    },
    StoreProfile {
        id: 1,
        name: "store_001",
        file_suffix: "store_001",
        sale_lines_per_item: 1.8,
        bopis_lines_per_item: 0.0,
        shrink_lines_per_item: 0.08,
        hourly: [
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.6, 0.9, 1.1, 1.3, 1.7, 1.5, 1.2, 1.1, 1.3,
            1.7, 1.9, 1.6, 1.1, 0.6, 0.0, 0.0,
        ],
        weekly: [0.8, 0.8, 0.85, 0.9, 1.1, 1.45, 1.1],
        delivery_hour: 7,
    },
];

/// change_type ids of the original data.
mod change_type {
    pub const SALE: i64 = 1;
    pub const SHRINK: i64 = 2;
    pub const RESTOCK: i64 = 3;
    pub const BOPIS: i64 = 4;
}

/// Rows written by a simulation.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Snapshot rows, duplicates included.
    pub snapshots: u64,
    /// Change rows, duplicates included.
    pub changes: u64,
    /// Rows written twice.
    pub duplicates: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        self.snapshots += other.snapshots;
        self.changes += other.changes;
        self.duplicates += other.duplicates;
    }
}

/// The catalogue shared by the stores: per item, its relative popularity,
/// supplier and safety stock.
#[derive(Debug, Clone)]
pub struct Catalogue {
    popularity: Vec<f64>,
    suppliers: Vec<u32>,
    safety_stock: Vec<i64>,
}

impl Catalogue {
    /// Draws the catalogue of `params.items` items.
    pub fn new(params: &Params) -> Self {
        let mut rng = Pcg64Mcg::seed_from_u64(params.seed);
        let skew = LogNormal::new(0.0, 1.3).expect("valid log-normal");
        let items = params.items as usize;
        let popularity: Vec<f64> = (0..items).map(|_| skew.sample(&mut rng)).collect();
        let total: f64 = popularity.iter().sum();
        let popularity = popularity.into_iter().map(|p| p * items as f64 / total).collect();
        let suppliers = (0..items).map(|_| rng.random_range(1..=1000)).collect();
        let safety_stock = (0..items).map(|_| [5, 10, 10, 10, 15, 20][rng.random_range(0..6)]).collect();
        Catalogue { popularity, suppliers, safety_stock }
    }

    /// Writes `item.csv`.
    pub fn write_items(&self, out: impl Write) -> io::Result<()> {
        let mut csv = export_writer(out)?;
        csv.write_record(["item_id", "name", "supplier_id", "safety_stock_quantity"])?;
        for index in 0..self.popularity.len() {
            csv.write_record([
                (FIRST_ITEM_ID + index as i64).to_string(),
                format!("item_{index:06}"),
                self.suppliers[index].to_string(),
                self.safety_stock[index].to_string(),
            ])?;
        }
        csv.flush()
    }
}

/// Writes `store.csv`.
pub fn write_stores(out: impl Write) -> io::Result<()> {
    let mut csv = export_writer(out)?;
    csv.write_record(["store_id", "name"])?;
    for store in STORES {
        csv.write_record([store.id.to_string(), store.name.to_string()])?;
    }
    csv.flush()
}

/// Writes `inventory_change_type.csv`, with the `-1,snapshot` label of the original.
pub fn write_change_types(out: impl Write) -> io::Result<()> {
    let mut csv = export_writer(out)?;
    csv.write_record(["change_type_id", "change_type"])?;
    for (id, name) in [(1, "sale"), (2, "shrink"), (3, "restock"), (4, "bopis"), (-1, "snapshot")] {
        csv.write_record([id.to_string(), name.to_string()])?;
    }
    csv.flush()
}

/// A CSV writer in the original export dialect: byte-order mark, CRLF.
fn export_writer<W: Write>(mut out: W) -> io::Result<csv::Writer<W>> {
    out.write_all(crate::sources::dialect::UTF8_BOM)?;
    Ok(csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(out))
}

/// Simulates one store over every day and writes its snapshot and change exports.
pub fn simulate_store(
    params: &Params,
    catalogue: &Catalogue,
    store: &StoreProfile,
    snapshots: impl Write,
    changes: impl Write,
    mut on_day: impl FnMut(),
) -> io::Result<Counts> {
    let mut rng = Pcg64Mcg::seed_from_u64(params.seed ^ (0x9E37_79B9_7F4A_7C15 * (store.id as u64 + 1)));
    let items = catalogue.popularity.len();
    let mut out = StoreWriter {
        snapshots: export_writer(snapshots)?,
        changes: export_writer(changes)?,
        counts: Counts::default(),
    };
    out.snapshots.write_record(["item_id", "employee_id", "store_id", "date_time", "quantity"])?;
    out.changes.write_record(["trans_id", "item_id", "store_id", "date_time", "quantity", "change_type_id"])?;
    if items == 0 {
        return out.finish();
    }
    let demand = WeightedAliasIndex::new(catalogue.popularity.clone()).expect("positive weights");
    // Stock a week of expected sales, and at least four times the safety stock.
    let target: Vec<i64> = (0..items)
        .map(|i| {
            let weekly_units = 7.0 * 1.5 * store.sale_lines_per_item * catalogue.popularity[i];
            (weekly_units.ceil() as i64).max(4 * catalogue.safety_stock[i])
        })
        .collect();
    let mut stock = target.clone();
    let mut low: Vec<bool> = vec![false; items];
    let mut restock_queue: Vec<usize> = Vec::new();
    let hourly_total: f64 = store.hourly.iter().sum();
    let mut basket: Vec<usize> = Vec::new();

    for day in 0..params.days {
        let date = START + chrono::Days::new(day);
        let date_text = date.format("%Y-%m-%d").to_string();
        let weekday = weekday_index(date.weekday());

        if day % RECOUNT_EVERY_DAYS == 0 {
            let time = format!("{date_text} {:02}:00:00", store.delivery_hour - 1);
            for item in 0..items {
                // A tenth of the items miss the first recount.
                if day == 0 && rng.random_bool(0.1) {
                    continue;
                }
                let miscount = if rng.random_bool(0.15) { rng.random_range(-3..=2) } else { 0 };
                let counted = (stock[item] + miscount).max(0);
                stock[item] = counted;
                let employee = rng.random_range(1001..=1040).to_string();
                out.snapshot(&mut rng, [&item_id(item), &employee, &store.id.to_string(), &time, &counted.to_string()])?;
            }
        }

        if !restock_queue.is_empty() {
            let time = format!("{date_text} {:02}:30:00", store.delivery_hour);
            for delivery in restock_queue.chunks(20) {
                let trans_id = guid(&mut rng);
                for &item in delivery {
                    let quantity = (target[item] - stock[item]).max(catalogue.safety_stock[item]);
                    let quantity = (quantity + 5) / 6 * 6;
                    stock[item] += quantity;
                    low[item] = false;
                    out.change(&mut rng, [&trans_id, &item_id(item), &store.id.to_string(), &time, &quantity.to_string(), &change_type::RESTOCK.to_string()])?;
                }
            }
            restock_queue.clear();
        }

        let lines_today = items as f64 * store.weekly[weekday];
        for hour in 0..24 {
            let share = store.hourly[hour as usize] / hourly_total;
            if share == 0.0 {
                continue;
            }
            let mut events = Vec::new();
            for (kind, lines_per_item) in [
                (change_type::SALE, store.sale_lines_per_item),
                (change_type::BOPIS, store.bopis_lines_per_item),
                (change_type::SHRINK, store.shrink_lines_per_item),
            ] {
                // A transaction has 1 + Geometric(0.6) lines: 1.67 on average.
                let transactions = lines_today * lines_per_item * share / if kind == change_type::SHRINK { 1.0 } else { 1.67 };
                if transactions <= 0.0 {
                    continue;
                }
                let count = Poisson::new(transactions).expect("positive rate").sample(&mut rng) as u64;
                events.extend((0..count).map(|_| (rng.random_range(0..3600u32), kind)));
            }
            events.sort_unstable();
            for (second, kind) in events {
                let time = format!("{date_text} {hour:02}:{:02}:{:02}", second / 60, second % 60);
                let trans_id = guid(&mut rng);
                let lines = if kind == change_type::SHRINK { 1 } else { 1 + geometric(&mut rng, 0.6) };
                basket.clear();
                for _ in 0..lines {
                    // A till rings up an item once per transaction, with its quantity.
                    let item = demand.sample(&mut rng);
                    if basket.contains(&item) {
                        continue;
                    }
                    basket.push(item);
                    let quantity = match kind {
                        change_type::SHRINK => -rng.random_range(1..=3),
                        change_type::BOPIS => -rng.random_range(1..=2),
                        _ => -[1, 1, 1, 1, 1, 1, 1, 2, 2, 3][rng.random_range(0..10)],
                    };
                    // An online BOPIS order is fulfilled from the physical store's shelf.
                    if !(kind == change_type::BOPIS && store.name == "online") {
                        stock[item] += quantity;
                    }
                    if stock[item] < catalogue.safety_stock[item] && !low[item] {
                        low[item] = true;
                        restock_queue.push(item);
                    }
                    out.change(&mut rng, [&trans_id, &item_id(item), &store.id.to_string(), &time, &quantity.to_string(), &kind.to_string()])?;
                }
            }
        }
        on_day();
    }
    out.finish()
}

struct StoreWriter<S: Write, C: Write> {
    snapshots: csv::Writer<S>,
    changes: csv::Writer<C>,
    counts: Counts,
}

impl<S: Write, C: Write> StoreWriter<S, C> {
    fn snapshot(&mut self, rng: &mut Pcg64Mcg, record: [&str; 5]) -> io::Result<()> {
        let copies = copies(rng);
        for _ in 0..copies {
            self.snapshots.write_record(record)?;
        }
        self.counts.snapshots += copies;
        self.counts.duplicates += copies - 1;
        Ok(())
    }

    fn change(&mut self, rng: &mut Pcg64Mcg, record: [&str; 6]) -> io::Result<()> {
        let copies = copies(rng);
        for _ in 0..copies {
            self.changes.write_record(record)?;
        }
        self.counts.changes += copies;
        self.counts.duplicates += copies - 1;
        Ok(())
    }

    fn finish(mut self) -> io::Result<Counts> {
        self.snapshots.flush()?;
        self.changes.flush()?;
        Ok(self.counts)
    }
}

/// How many times to write a record: twice, rarely.
fn copies(rng: &mut Pcg64Mcg) -> u64 {
    if rng.random_bool(DUPLICATE_RATE) { 2 } else { 1 }
}

fn item_id(index: usize) -> String {
    (FIRST_ITEM_ID + index as i64).to_string()
}

fn weekday_index(day: Weekday) -> usize {
    day.num_days_from_monday() as usize
}

/// Failures before the first success, with success probability `p`.
fn geometric(rng: &mut Pcg64Mcg, p: f64) -> u32 {
    let mut failures = 0;
    while !rng.random_bool(p) && failures < 20 {
        failures += 1;
    }
    failures
}

/// A random GUID in the braces of the original export.
fn guid(rng: &mut Pcg64Mcg) -> String {
    let id = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
    let mut buffer = [0u8; uuid::fmt::Braced::LENGTH];
    id.braced().encode_upper(&mut buffer).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(params: Params) -> (Vec<u8>, Vec<u8>, Counts) {
        let catalogue = Catalogue::new(&params);
        let (mut snapshots, mut changes) = (Vec::new(), Vec::new());
        let counts = simulate_store(&params, &catalogue, &STORES[1], &mut snapshots, &mut changes, || {})
            .expect("writing to memory");
        (snapshots, changes, counts)
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let params = Params { items: 50, days: 6, seed: 7 };
        assert_eq!(run(params), run(params));
        assert_ne!(run(params).1, run(Params { seed: 8, ..params }).1);
    }

    #[test]
    fn original_dialect_and_plausible_content() {
        let params = Params { items: 200, days: 11, seed: 1 };
        let (snapshots, changes, counts) = run(params);
        let changes = String::from_utf8(changes).unwrap();
        assert!(changes.starts_with("\u{feff}trans_id,item_id,store_id,date_time,quantity,change_type_id\r\n"));
        let rows: Vec<Vec<&str>> = changes.lines().skip(1).map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len() as u64, counts.changes);
        assert!(rows.iter().all(|r| r[0].starts_with('{') && r[0].ends_with('}') && r[0].len() == 38));
        // Multi-item transactions, every change type of a physical store, and time order.
        let distinct_trans: std::collections::HashSet<&str> = rows.iter().map(|r| r[0]).collect();
        assert!(distinct_trans.len() < rows.len());
        for kind in ["1", "2", "3"] {
            assert!(rows.iter().any(|r| r[5] == kind), "no change of type {kind}");
        }
        assert!(rows.windows(2).all(|w| w[0][3] <= w[1][3]), "changes are in time order");
        // Three recounts (days 0, 5, 10); the first misses some items.
        let snapshots = String::from_utf8(snapshots).unwrap();
        let first_day = snapshots.lines().filter(|l| l.contains("2021-01-01 ")).count();
        assert!(first_day > 150 && first_day < 200, "{first_day}");
        assert_eq!(counts.snapshots, snapshots.lines().count() as u64 - 1);
    }
}
