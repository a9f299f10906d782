//! A connection that prepares each statement once. `stream` runs the same
//! dozen statements in every batch, and tokio-postgres prepares a statement
//! given as text on every call: a round trip each, a third of a batch's, and
//! on a busy machine every round trip waits for the server to be scheduled.

use std::collections::HashMap;

use bytes::Bytes;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, CopyInSink, Error, Row, SimpleQueryMessage, Statement};

/// Statements kept prepared at most. A run uses a few per table; the bound
/// only keeps a long-lived connection from growing if that ever changes.
const MAX_PREPARED: usize = 256;

/// A client and the statements prepared on its connection, by their text.
pub struct Connection {
    client: Client,
    prepared: HashMap<String, Statement>,
}

impl Connection {
    /// Wraps a connected client.
    pub fn new(client: Client) -> Connection {
        Connection { client, prepared: HashMap::new() }
    }

    /// The statement of `sql`, prepared on its first use on this connection.
    /// (PostgreSQL plans it again if a table it reads is altered.)
    async fn prepare(&mut self, sql: &str) -> Result<Statement, Error> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        if self.prepared.len() >= MAX_PREPARED {
            self.prepared.clear();
        }
        self.prepared.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    /// The rows of `sql` with `params`.
    pub async fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Error> {
        let statement = self.prepare(sql).await?;
        self.client.query(&statement, params).await
    }

    /// Runs each of `statements` (text and parameters) with one round trip
    /// for all: they are sent together and their replies read in order.
    /// Returns the rows each changed.
    pub async fn execute_all(&mut self, statements: &[(String, &[&(dyn ToSql + Sync)])]) -> Result<Vec<u64>, Error> {
        let mut prepared = Vec::with_capacity(statements.len());
        for (sql, _) in statements {
            prepared.push(self.prepare(sql).await?);
        }
        let client = &self.client;
        let runs = prepared.iter().zip(statements).map(|(statement, (_, params))| client.execute(statement, params));
        futures::future::try_join_all(runs).await
    }

    /// Starts `COPY ... FROM STDIN` by the statement `sql`.
    pub async fn copy_in(&mut self, sql: &str) -> Result<CopyInSink<Bytes>, Error> {
        let statement = self.prepare(sql).await?;
        self.client.copy_in(&statement).await
    }

    /// Runs `sql`, one or more statements without parameters, in one round trip.
    pub async fn batch_execute(&self, sql: &str) -> Result<(), Error> {
        self.client.batch_execute(sql).await
    }

    /// Runs `sql` as [`Connection::batch_execute`] does, returning the rows.
    pub async fn simple_query(&self, sql: &str) -> Result<Vec<SimpleQueryMessage>, Error> {
        self.client.simple_query(sql).await
    }
}
