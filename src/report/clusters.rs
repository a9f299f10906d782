//! Items grouped by how they sell: k-means (linfa) on each item's share of
//! units per day of week and per hour of day, and its velocity; k chosen by
//! silhouette score. Deterministic: a fixed seed and a fixed sample.

use linfa::prelude::*;
use linfa_clustering::KMeans;
use ndarray::{Array2, Axis};
use rand_xoshiro::Xoshiro256Plus;
use rand_xoshiro::rand_core::SeedableRng;

/// Buckets of the weekly profile (1 = Monday … 7 = Sunday).
pub const DAYS_OF_WEEK: usize = 7;
/// Buckets of the daily profile (hour 0 … 23).
pub const HOURS: usize = 24;

/// Items that sold fewer units have profiles too noisy to group.
pub const MIN_UNITS: f64 = 10.0;

/// Numbers of clusters tried.
const CANDIDATE_K: std::ops::RangeInclusive<usize> = 2..=8;
/// Items k-means is fitted on and the silhouette is scored on; the rest are
/// assigned to the nearest centroid. Silhouette costs n², so it is sampled.
const SAMPLE: usize = 2_000;
const SEED: u64 = 42;

/// The sales profile of one item.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemProfile {
    /// The item.
    pub item_id: i64,
    /// Units sold per day of week, Monday first.
    pub by_day_of_week: [f64; DAYS_OF_WEEK],
    /// Units sold per hour of day.
    pub by_hour: [f64; HOURS],
    /// Units sold per day over the report period.
    pub units_per_day: f64,
}

impl ItemProfile {
    fn total(&self) -> f64 {
        self.by_day_of_week.iter().sum()
    }

    /// The features k-means sees: both profiles as shares of the item's
    /// units, and velocity on a log scale reduced to the same range.
    fn features(&self, max_log_velocity: f64) -> Vec<f64> {
        let total = self.total().max(f64::MIN_POSITIVE);
        let velocity = (1.0 + self.units_per_day).ln() / max_log_velocity.max(f64::MIN_POSITIVE);
        self.by_day_of_week
            .iter()
            .chain(&self.by_hour)
            .map(|units| units / total)
            .chain(std::iter::once(velocity))
            .collect()
    }
}

/// One group of items.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// Cluster number, 1 for the largest.
    pub cluster: usize,
    /// Items in it.
    pub items: usize,
    /// Mean units per day of its items.
    pub units_per_day: f64,
    /// Share of units per day of week, Monday first (centroid).
    pub by_day_of_week: [f64; DAYS_OF_WEEK],
    /// Share of units per hour of day (centroid).
    pub by_hour: [f64; HOURS],
}

/// The grouping of the items.
#[derive(Debug, Clone, PartialEq)]
pub struct Clustering {
    /// The clusters, largest first.
    pub clusters: Vec<Cluster>,
    /// (item_id, cluster) for every item grouped, in input order.
    pub assignments: Vec<(i64, usize)>,
    /// The silhouette score of the chosen k, on the sample.
    pub silhouette: f64,
}

/// Groups the items that sold at least [`MIN_UNITS`]; `None` when fewer
/// than three items qualify, or when they cannot be told apart.
pub fn cluster(profiles: &[ItemProfile]) -> Option<Clustering> {
    let items: Vec<&ItemProfile> = profiles.iter().filter(|p| p.total() >= MIN_UNITS).collect();
    let max_log_velocity = items.iter().map(|p| (1.0 + p.units_per_day).ln()).fold(0.0, f64::max);
    let width = DAYS_OF_WEEK + HOURS + 1;
    let rows: Vec<f64> = items.iter().flat_map(|p| p.features(max_log_velocity)).collect();
    let features = Array2::from_shape_vec((items.len(), width), rows).expect("every row has `width` features");
    let sample = features.select(Axis(0), &sample_rows(items.len()));
    let sample_set = DatasetBase::from(sample.clone());

    let (silhouette, model) = CANDIDATE_K
        .filter(|&k| k < sample.nrows())
        .filter_map(|k| {
            let model = KMeans::params_with_rng(k, Xoshiro256Plus::seed_from_u64(SEED))
                .n_runs(4)
                .tolerance(1e-4)
                .fit(&sample_set)
                .ok()?;
            let labelled = model.predict(sample_set.clone());
            let score = labelled.silhouette_score().ok().filter(|s: &f64| s.is_finite())?;
            Some((score, model))
        })
        .max_by(|(a, _), (b, _)| a.total_cmp(b))?;

    let labels = model.predict(&features);
    let k = model.centroids().nrows();
    let mut sizes = vec![0usize; k];
    for &label in &labels {
        sizes[label] += 1;
    }
    // Number clusters by size, largest first, so the output does not depend
    // on k-means' arbitrary label order.
    let mut order: Vec<usize> = (0..k).filter(|&label| sizes[label] > 0).collect();
    order.sort_by_key(|&label| (std::cmp::Reverse(sizes[label]), label));
    let number_of = |label: usize| order.iter().position(|&l| l == label).expect("non-empty cluster") + 1;

    let clusters = order
        .iter()
        .enumerate()
        .map(|(index, &label)| {
            let members: Vec<&&ItemProfile> = items.iter().zip(&labels).filter(|(_, l)| **l == label).map(|(p, _)| p).collect();
            let mean_share = |pick: &dyn Fn(&ItemProfile) -> (f64, f64)| {
                members.iter().map(|p| { let (units, total) = pick(p); units / total }).sum::<f64>() / members.len() as f64
            };
            Cluster {
                cluster: index + 1,
                items: members.len(),
                units_per_day: members.iter().map(|p| p.units_per_day).sum::<f64>() / members.len() as f64,
                by_day_of_week: std::array::from_fn(|d| mean_share(&|p| (p.by_day_of_week[d], p.total()))),
                by_hour: std::array::from_fn(|h| mean_share(&|p| (p.by_hour[h], p.total()))),
            }
        })
        .collect();
    let assignments = items.iter().zip(&labels).map(|(p, &label)| (p.item_id, number_of(label))).collect();
    Some(Clustering { clusters, assignments, silhouette })
}

/// Up to [`SAMPLE`] row numbers spread evenly over `rows`.
fn sample_rows(rows: usize) -> Vec<usize> {
    if rows <= SAMPLE {
        return (0..rows).collect();
    }
    (0..SAMPLE).map(|i| i * rows / SAMPLE).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An item selling `units` a day, all at `hour`, on weekdays or weekends.
    fn item(item_id: i64, hour: usize, weekend: bool, units: f64) -> ItemProfile {
        let mut by_day_of_week = [0.0; DAYS_OF_WEEK];
        for day in 0..DAYS_OF_WEEK {
            if (day >= 5) == weekend {
                by_day_of_week[day] = units;
            }
        }
        let mut by_hour = [0.0; HOURS];
        by_hour[hour] = by_day_of_week.iter().sum();
        ItemProfile { item_id, by_day_of_week, by_hour, units_per_day: units }
    }

    #[test]
    fn items_that_sell_alike_are_grouped_together() {
        let mut profiles = Vec::new();
        for i in 0..30 {
            profiles.push(item(i, 9, false, 20.0 + i as f64 * 0.05)); // weekday mornings
        }
        for i in 30..50 {
            profiles.push(item(i, 19, true, 5.0 + (i - 30) as f64 * 0.05)); // weekend evenings
        }
        profiles.push(item(99, 12, false, 0.5)); // too few units to profile
        let clustering = cluster(&profiles).expect("two clear groups");
        assert_eq!(clustering.clusters.len(), 2, "{:?}", clustering.clusters);
        assert_eq!(clustering.clusters[0].items, 30);
        assert_eq!(clustering.clusters[1].items, 20);
        assert!(clustering.silhouette > 0.8, "{}", clustering.silhouette);
        assert_eq!(clustering.assignments.len(), 50, "item 99 is left out");
        assert!(clustering.assignments.iter().all(|&(id, c)| c == if id < 30 { 1 } else { 2 }));
        let morning = &clustering.clusters[0];
        assert!((morning.by_hour[9] - 1.0).abs() < 1e-9);
        assert!((morning.by_day_of_week[5]).abs() < 1e-9, "no weekend sales");
        assert!((morning.units_per_day - (20.0 + 29.0 * 0.05 / 2.0)).abs() < 1e-9);
    }

    #[test]
    fn too_few_items_are_not_clustered() {
        assert_eq!(cluster(&[item(1, 9, false, 20.0), item(2, 9, true, 20.0)]), None);
    }
}
