//! The memory pool of a run: `--memory-limit` is shared fairly by the
//! operators that can spill (the sorts and aggregates), as in DataFusion's
//! `FairSpillPool`; the operators that cannot spill are counted but not held
//! to it.
//!
//! In the `FairSpillPool` an operator that cannot spill (the merge of sorted
//! runs, the merge of sorted partitions) draws on the same limit, and when it
//! asks late, after the sorts have filled their shares, it finds nothing left
//! and fails the whole run: `--memory-limit 256MiB` failed on 10 million rows
//! that way. What those operators hold is small and bounded by the plan (a
//! batch per run merged, the windows' current rows, the lookups), so here
//! they always get it, and the limit is what it says in `--help`: what the
//! sorts and aggregates may hold before they spill.

use std::fmt;
use std::sync::{Mutex, MutexGuard};

use datafusion::common::{Result, resources_datafusion_err};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation};

/// Spilling operators share `size` bytes; the others are only counted.
#[derive(Debug)]
pub struct SpillPool {
    size: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Consumers that can spill, registered now.
    spillers: usize,
    /// Bytes held by consumers that can spill.
    spillable: usize,
    /// Bytes held by the others.
    unspillable: usize,
}

impl SpillPool {
    /// A pool whose spilling operators share `size` bytes.
    pub fn new(size: usize) -> Self {
        SpillPool { size, state: Mutex::new(State::default()) }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("no panic while holding the pool's lock")
    }
}

impl MemoryPool for SpillPool {
    fn name(&self) -> &str {
        "spill"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        if consumer.can_spill() {
            self.state().spillers += 1;
        }
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        if consumer.can_spill() {
            let mut state = self.state();
            state.spillers = state.spillers.saturating_sub(1);
        }
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        let mut state = self.state();
        match reservation.consumer().can_spill() {
            true => state.spillable += additional,
            false => state.unspillable += additional,
        }
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        let mut state = self.state();
        match reservation.consumer().can_spill() {
            true => state.spillable = state.spillable.saturating_sub(shrink),
            false => state.unspillable = state.unspillable.saturating_sub(shrink),
        }
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let mut state = self.state();
        if !reservation.consumer().can_spill() {
            state.unspillable += additional;
            return Ok(());
        }
        // Each spiller may hold its share of the limit, and no more than is
        // free. One holding nothing may take what is free beyond its share:
        // it has nothing to spill to make room, and the share depends on how
        // many spillers happen to be registered at that instant (a sort's
        // first batch is larger than 32 MiB / 14). Once it holds something,
        // its share binds and it spills.
        let share = self.size / state.spillers.max(1);
        let free = self.size.saturating_sub(state.spillable);
        let allowed = match reservation.size() {
            0 => free,
            held => share.saturating_sub(held).min(free),
        };
        if additional > allowed {
            return Err(resources_datafusion_err!(
                "{} needs {additional} more bytes, holding {}, and may have {allowed} more",
                reservation.consumer().name(),
                reservation.size()
            ));
        }
        state.spillable += additional;
        Ok(())
    }

    fn reserved(&self) -> usize {
        let state = self.state();
        state.spillable + state.unspillable
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.size)
    }
}

impl fmt::Display for SpillPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(size: {})", self.name(), self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn spillers_share_the_limit_and_the_others_are_only_counted() {
        let pool: Arc<dyn MemoryPool> = Arc::new(SpillPool::new(300));
        let sort = MemoryConsumer::new("sort").with_can_spill(true).register(&pool);
        let other_sort = MemoryConsumer::new("other sort").with_can_spill(true).register(&pool);
        let merge = MemoryConsumer::new("merge").register(&pool);
        sort.try_grow(150).unwrap();
        assert!(sort.try_grow(1).is_err(), "each of two spillers has half");
        merge.try_grow(1000).unwrap();
        other_sort.try_grow(150).unwrap();
        assert_eq!(pool.reserved(), 1300);
        drop(other_sort);
        assert!(sort.try_grow(1).is_ok(), "a spiller alone has it all");
        assert_eq!(pool.reserved(), 1151);
    }

    #[test]
    fn a_spiller_holding_nothing_may_take_what_is_free_beyond_its_share() {
        let pool: Arc<dyn MemoryPool> = Arc::new(SpillPool::new(300));
        let sorts: Vec<_> =
            (0..3).map(|n| MemoryConsumer::new(format!("sort {n}")).with_can_spill(true).register(&pool)).collect();
        sorts[0].try_grow(180).unwrap();
        assert!(sorts[0].try_grow(1).is_err(), "holding something, its share of 100 binds");
        assert!(sorts[1].try_grow(121).is_err(), "no more than is free");
        sorts[1].try_grow(120).unwrap();
        assert!(sorts[2].try_grow(1).is_err(), "nothing is free");
        sorts[0].shrink(180);
        sorts[2].try_grow(180).unwrap();
    }
}
