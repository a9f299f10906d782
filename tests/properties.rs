//! Property tests of the rules through the binary: any set of valid events,
//! delivered shuffled, split over files and with records repeated (Kafka
//! delivers at least once), gives the same `enriched` as the same events in
//! stock order without repeats (SPEC 2.1, 2.2).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::common::{CHANGE_HEADER, SNAPSHOT_HEADER, Workdir, summary};


/// A valid event, its fields in the order of its CSV columns after the kind.
/// A small domain (two stores, one the online store; two items; a few
/// minutes of one morning) so that ties at one instant and BOPIS on the
/// online store come up often.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// item, employee, store, minute, quantity.
    Snapshot(u8, u8, u8, u8, i32),
    /// trans_id, item, store, minute, quantity, change type.
    Change(char, u8, u8, u8, i32, u8),
}

impl Event {
    fn line(&self) -> String {
        let time = |minute: &u8| format!("2021-01-03 10:{minute:02}:00");
        match self {
            Event::Snapshot(item, employee, store, minute, quantity) => {
                format!("{item},{employee},{store},{},{quantity}\n", time(minute))
            }
            Event::Change(trans, item, store, minute, quantity, kind) => {
                format!("{trans},{item},{store},{},{quantity},{kind}\n", time(minute))
            }
        }
    }

    /// The stock order of SPEC 2.1, roughly: store, item, time, snapshots first.
    fn stock_order(&self) -> (u8, u8, u8, bool) {
        match self {
            Event::Snapshot(item, _, store, minute, _) => (*store, *item, *minute, false),
            Event::Change(_, item, store, minute, ..) => (*store, *item, *minute, true),
        }
    }
}

fn event() -> impl Strategy<Value = Event> {
    let item = prop_oneof![Just(10u8), Just(20u8)];
    let store = 0u8..2;
    let minute = 0u8..6;
    prop_oneof![
        (item.clone(), 1u8..3, store.clone(), minute.clone(), 0i32..50)
            .prop_map(|(i, e, s, m, q)| Event::Snapshot(i, e, s, m, q)),
        (prop_oneof![Just('A'), Just('B'), Just('C')], item, store, minute, -5i32..6, 1u8..5)
            .prop_map(|(t, i, s, m, q, k)| Event::Change(t, i, s, m, q, k)),
    ]
}

/// Writes `events` as two files per kind, in the given order, and returns
/// `enrich`'s output and its count of duplicates.
fn enrich(events: &[Event]) -> (String, u64) {
    let (mut snapshots, mut changes) = ([SNAPSHOT_HEADER.to_string(), SNAPSHOT_HEADER.to_string()], [
        CHANGE_HEADER.to_string(),
        CHANGE_HEADER.to_string(),
    ]);
    for (index, event) in events.iter().enumerate() {
        match event {
            Event::Snapshot(..) => snapshots[index % 2].push_str(&event.line()),
            Event::Change(..) => changes[index % 2].push_str(&event.line()),
        }
    }
    let work = Workdir::new();
    work.data(&[
        ("inventory_snapshot_a.csv", &snapshots[0]),
        ("inventory_snapshot_b.csv", &snapshots[1]),
        ("inventory_change_a.csv", &changes[0]),
        ("inventory_change_b.csv", &changes[1]),
    ]);
    let out = work.enrich(&["--summary-json", "summary.json"]);
    let duplicates = summary(&work, "summary.json")["duplicates"].as_u64().expect("duplicates");
    (out, duplicates)
}

#[test]
fn shuffled_and_repeated_events_give_the_same_enriched_as_ordered_ones() {
    // Each case runs the binary twice; 48 cases keep this under a minute.
    let mut runner = TestRunner::new(Config { cases: 48, failure_persistence: None, ..Config::default() });
    let cases = (proptest::collection::btree_set(event(), 1..40), any::<u64>(), proptest::collection::vec(any::<prop::sample::Index>(), 0..10));
    runner
        .run(&cases, |(events, seed, repeats)| {
            let mut ordered: Vec<Event> = events.into_iter().collect();
            ordered.sort_by_key(Event::stock_order);
            let mut delivered = ordered.clone();
            for index in &repeats {
                delivered.push(index.get(&ordered).clone());
            }
            shuffle(&mut delivered, seed);
            let (expected, none) = enrich(&ordered);
            let (actual, duplicates) = enrich(&delivered);
            prop_assert_eq!(none, 0);
            prop_assert_eq!(duplicates, repeats.len() as u64, "every repeat is counted once");
            prop_assert_eq!(actual, expected);
            Ok(())
        })
        .unwrap();
}

/// A Fisher–Yates shuffle driven by `seed` (proptest shrinks the seed, not the permutation).
fn shuffle(events: &mut [Event], mut seed: u64) {
    for i in (1..events.len()).rev() {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        events.swap(i, (seed >> 33) as usize % (i + 1));
    }
}
