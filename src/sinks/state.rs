//! Where an incremental run keeps its checkpoint (SPEC 6.1): in the
//! destination of its tables, committed with them. PostgreSQL keeps it in
//! tables written in the run's transaction ([`postgres::state`]), Delta
//! Lake in files that the run's commit names ([`delta::state`]). The run
//! ([`crate::incremental`]) asks the same questions of either.
//!
//! [`postgres::state`]: super::postgres::state
//! [`delta::state`]: super::delta::state

use std::collections::{BTreeMap, HashMap};

use arrow::array::RecordBatch;

use super::delta::state::DeltaLoad;
use super::postgres::{PgLoad, state};
use crate::checkpoint::{Checkpoint, Pair, PairState};
use crate::error::SinkError;
use crate::sources::Table;

/// The checkpoint of an incremental run, where its tables are.
pub enum StateStore<'a> {
    /// In the run's PostgreSQL transaction.
    Postgres(&'a mut PgLoad),
    /// Beside the run's Delta tables.
    Delta(&'a mut DeltaLoad),
}

impl StateStore<'_> {
    /// Where the checkpoint is, for messages.
    pub fn place(&self) -> String {
        match self {
            StateStore::Postgres(load) => load.target().place(),
            StateStore::Delta(load) => load.place(),
        }
    }

    /// The checkpoint of the runs so far, `None` before the first (or
    /// after a full load).
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>, SinkError> {
        match self {
            StateStore::Postgres(load) => load.checkpoint().await,
            StateStore::Delta(load) => Ok(load.checkpoint()),
        }
    }

    /// Readies the store for the lookups of a run that goes on from a checkpoint.
    pub async fn start_lookups(&self) -> Result<(), SinkError> {
        match self {
            StateStore::Postgres(load) => load.look_up_pairs_by_index().await,
            StateStore::Delta(_) => Ok(()),
        }
    }

    /// The stored stock of each of `pairs` that has one.
    pub async fn stock(&self, pairs: &[Pair]) -> Result<HashMap<Pair, PairState>, SinkError> {
        match self {
            StateStore::Postgres(load) => load.stock(pairs).await,
            StateStore::Delta(load) => Ok(load.stock(pairs)),
        }
    }

    /// For each row of `batch` (events of `table`), whether an identical
    /// event has been applied already.
    pub async fn already_applied(&self, table: Table, batch: &RecordBatch) -> Result<Vec<bool>, SinkError> {
        match self {
            StateStore::Postgres(load) => load.already_applied(table, batch).await,
            StateStore::Delta(load) => load.already_applied(table, batch).await,
        }
    }

    /// For each of `from`'s pairs, the time of the last snapshot applied at
    /// or before its time, if any.
    pub async fn last_snapshot_at_or_before(&self, from: &HashMap<Pair, i64>) -> Result<HashMap<Pair, i64>, SinkError> {
        match self {
            StateStore::Postgres(load) => load.last_snapshot_at_or_before(from).await,
            StateStore::Delta(load) => load.last_snapshot_at_or_before(from).await,
        }
    }

    /// The distinct events of `table` applied to each of `from`'s pairs at
    /// or after its time.
    pub async fn applied_since(&self, table: Table, from: &HashMap<Pair, i64>) -> Result<RecordBatch, SinkError> {
        match self {
            StateStore::Postgres(load) => load.applied_since(table, from).await,
            StateStore::Delta(load) => load.applied_since(table, from).await,
        }
    }

    /// Takes out of the tables `kept` what the run computes again (the
    /// `enriched` rows of `from`'s pairs from their times on, the
    /// `current_inventory` rows and stock of `touched`), and makes the run
    /// append to them. Returns the `enriched` rows taken out.
    pub async fn remove_for_rewrite(&mut self, from: &HashMap<Pair, i64>, touched: &[Pair], kept: &[&str]) -> Result<u64, SinkError> {
        match self {
            StateStore::Postgres(load) => {
                let removed = load.remove_for_rewrite(from, touched, kept).await?;
                for table in kept.iter().chain(&[state::STOCK, state::SNAPSHOT_JOURNAL, state::CHANGE_JOURNAL, state::CHECKPOINT]) {
                    load.append_to(table);
                }
                Ok(removed)
            }
            StateStore::Delta(load) => load.remove_for_rewrite(from, touched).await,
        }
    }

    /// Sets the stock of `states`' pairs.
    pub async fn put_stock(&mut self, states: &BTreeMap<Pair, PairState>) -> Result<(), SinkError> {
        match self {
            StateStore::Postgres(load) => load.put_stock(states).await,
            StateStore::Delta(load) => {
                load.put_stock(states);
                Ok(())
            }
        }
    }

    /// Adds `batch` (events of `table`, applied) to the journal.
    pub async fn put_journal(&mut self, table: Table, batch: RecordBatch) -> Result<(), SinkError> {
        match self {
            StateStore::Postgres(load) => load.put(state::journal(table), batch).await.map(drop),
            StateStore::Delta(load) => {
                load.put_journal(table, batch);
                Ok(())
            }
        }
    }

    /// Sets the checkpoint the run leaves.
    pub async fn put_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), SinkError> {
        match self {
            StateStore::Postgres(load) => load.put_checkpoint(checkpoint).await,
            StateStore::Delta(load) => {
                load.put_checkpoint(checkpoint);
                Ok(())
            }
        }
    }
}
