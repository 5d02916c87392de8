//! Durable state in one redb file (issue #6 item 2: "state survives restarts").
//!
//! Tables (keys are ids, values JSON):
//! - `problems`: problem id → [`ProblemRecord`] (status, Pass1@K history, attempts, verified
//!   solutions = the cache entry when cached, last error);
//! - `leases`: lease id → [`Lease`] (live and recently expired; leases in flight at a crash keep
//!   their deadline and simply expire and are re-leased after a restart);
//! - `accepted`: lease id → problem id of every accepted result (the exactly-once set);
//! - `meta`: "meta" → [`Meta`] (round, policy version, pause/drain, live filter settings).
//!
//! Every [`Batch`] is one write transaction, committed with `Durability::Immediate` (fsync)
//! before the caller answers the RPC, so kill -9 loses nothing that was acknowledged: records,
//! cache, accepted results, settings. Lease issue and expiry are committed lazily (no fsync; they
//! reach the disk with the next durable commit): a crash may forget a lease issued just before
//! it, whose report then gets NOT_FOUND and whose problem is leased again — the issue's "leases
//! in flight at crash time simply expire and are re-leased". Heartbeat extensions of lease
//! deadlines are not persisted (after a restart a lease may expire early and be re-leased).

use std::collections::HashMap;
use std::path::Path;

use redb::{Database, Durability, ReadableTable, TableDefinition};

use crate::error::{Error, Result};
use crate::record::{Lease, Meta, ProblemRecord};

const PROBLEMS: TableDefinition<&str, &[u8]> = TableDefinition::new("problems");
const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("leases");
const ACCEPTED: TableDefinition<&str, &str> = TableDefinition::new("accepted");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const META_KEY: &str = "meta";

/// The embedded database.
pub struct Store {
    db: Database,
}

/// Everything loaded at start.
#[derive(Default)]
pub struct Loaded {
    pub problems: Vec<ProblemRecord>,
    pub leases: Vec<Lease>,
    /// Accepted lease id → problem id.
    pub accepted: HashMap<String, String>,
    pub meta: Option<Meta>,
}

/// One atomic write.
#[derive(Default)]
pub struct Batch<'a> {
    pub problems: Vec<&'a ProblemRecord>,
    pub put_leases: Vec<&'a Lease>,
    pub delete_leases: Vec<&'a str>,
    /// (lease id, problem id)
    pub accepted: Vec<(&'a str, &'a str)>,
    pub meta: Option<&'a Meta>,
    /// Commit without fsync (`Durability::None`): the change is visible at once and reaches the
    /// disk with the next durable commit; a crash before that rolls it back. Used only for
    /// lease issue and expiry, which a restart may safely forget (the problem is re-leased).
    pub lazy: bool,
}

impl Batch<'_> {
    fn is_empty(&self) -> bool {
        self.problems.is_empty()
            && self.put_leases.is_empty()
            && self.delete_leases.is_empty()
            && self.accepted.is_empty()
            && self.meta.is_none()
    }
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Store(format!("encode: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(table: &str, key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Store(format!("table {table}, key {key:?}: corrupt value: {e}")))
}

impl Store {
    /// Opens (or creates) the database file, creating its parent directory and the tables.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let db = Database::create(path)
            .map_err(|e| Error::Store(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write()?;
        {
            txn.open_table(PROBLEMS)?;
            txn.open_table(LEASES)?;
            txn.open_table(ACCEPTED)?;
            txn.open_table(META)?;
        }
        txn.commit()?;
        Ok(Store { db })
    }

    /// Reads every table.
    pub fn load(&self) -> Result<Loaded> {
        let txn = self.db.begin_read()?;
        let mut out = Loaded::default();
        for item in txn.open_table(PROBLEMS)?.iter()? {
            let (k, v) = item?;
            out.problems.push(decode("problems", k.value(), v.value())?);
        }
        for item in txn.open_table(LEASES)?.iter()? {
            let (k, v) = item?;
            out.leases.push(decode("leases", k.value(), v.value())?);
        }
        for item in txn.open_table(ACCEPTED)?.iter()? {
            let (k, v) = item?;
            out.accepted.insert(k.value().to_string(), v.value().to_string());
        }
        if let Some(v) = txn.open_table(META)?.get(META_KEY)? {
            out.meta = Some(decode("meta", META_KEY, v.value())?);
        }
        Ok(out)
    }

    /// Makes every earlier lazy commit durable: an empty transaction committed with fsync.
    pub fn flush(&self) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        txn.commit()?;
        Ok(())
    }

    /// Commits a batch durably (fsync) in one transaction.
    pub fn write(&self, batch: &Batch<'_>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut txn = self.db.begin_write()?;
        txn.set_durability(if batch.lazy { Durability::None } else { Durability::Immediate });
        {
            let mut t = txn.open_table(PROBLEMS)?;
            for r in &batch.problems {
                t.insert(r.problem.id.as_str(), encode(r)?.as_slice())?;
            }
            let mut t = txn.open_table(LEASES)?;
            for l in &batch.put_leases {
                t.insert(l.id.as_str(), encode(l)?.as_slice())?;
            }
            for id in &batch.delete_leases {
                t.remove(*id)?;
            }
            let mut t = txn.open_table(ACCEPTED)?;
            for (lease, problem) in &batch.accepted {
                t.insert(*lease, *problem)?;
            }
            if let Some(m) = batch.meta {
                txn.open_table(META)?.insert(META_KEY, encode(m)?.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{LeaseState, Mode, SchedState};
    use deepsearch_tasks::Problem;

    #[test]
    fn batch_round_trips_through_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db/coordinator.redb");
        let rec = ProblemRecord::new(Problem::new("p1", "countdown", "q", "a"));
        let lease = Lease {
            id: "l1".into(),
            problem_id: "p1".into(),
            actor_id: "a".into(),
            mode: Mode::Filter,
            round: 0,
            policy_version: 0,
            num_samples: 4,
            issued_unix_ms: 1,
            deadline_unix_ms: 2,
            state: LeaseState::Live,
        };
        let meta = Meta { round: 3, policy_version: 7, state: SchedState::Paused, filter_override: None };
        {
            let store = Store::open(&path).unwrap();
            store
                .write(&Batch {
                    problems: vec![&rec],
                    put_leases: vec![&lease],
                    accepted: vec![("l0", "p1")],
                    meta: Some(&meta),
                    ..Batch::default()
                })
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.problems, vec![rec]);
        assert_eq!(loaded.leases, vec![lease]);
        assert_eq!(loaded.accepted.get("l0").map(String::as_str), Some("p1"));
        assert_eq!(loaded.meta, Some(meta));
        store.write(&Batch { delete_leases: vec!["l1"], ..Batch::default() }).unwrap();
        assert!(store.load().unwrap().leases.is_empty());
    }
}
