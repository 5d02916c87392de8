//! The prefix cache: KV rows of token prefixes already computed, kept on the device so a tree
//! node's children never pay the prefill of the root and the ancestors again (spec §1).
//!
//! Entries are grouped by [`PrefixKey`] (the node that produced them): a node's own prefix, and
//! one entry per sample generated from it (prefix ⊕ the sample's tokens but the last, whose KV was
//! never computed). A child expansion names its parent in `reuse`; the longest entry under the
//! named keys whose tokens are a prefix of the request is used, so a child prefills one token.
//! Memory is bounded by a byte budget with least-recently-used eviction.

use crate::model::KvCache;
use deepsearch_search::policy::PrefixKey;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug)]
struct Entry {
    key: PrefixKey,
    tokens: Vec<u32>,
    /// `[1, kv_heads, tokens.len(), head_dim]` per layer.
    kv: KvCache,
    bytes: usize,
    tick: u64,
}

/// A hit: the KV of the first `len` tokens of the request (views into the cached tensors, with
/// capacity = length, so appending to them copies instead of writing into the entry).
#[derive(Debug)]
pub struct CacheHit {
    pub len: usize,
    pub kv: KvCache,
}

/// Counters for logs and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub bytes: usize,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

/// LRU-bounded map from prefix keys to cached KV rows.
#[derive(Debug)]
pub struct PrefixCache {
    budget: usize,
    tick: u64,
    next_id: u64,
    entries: HashMap<u64, Entry>,
    by_key: HashMap<PrefixKey, Vec<u64>>,
    lru: BTreeMap<u64, u64>,
    stats: CacheStats,
}

impl PrefixCache {
    /// An empty cache holding at most `budget` bytes of KV (0 disables caching).
    pub fn new(budget: usize) -> Self {
        PrefixCache {
            budget,
            tick: 0,
            next_id: 0,
            entries: HashMap::new(),
            by_key: HashMap::new(),
            lru: BTreeMap::new(),
            stats: CacheStats::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.budget > 0
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats { entries: self.entries.len(), ..self.stats }
    }

    /// Stores `kv` (rows `[1, .., tokens.len(), ..]`) for `tokens` under `key`, evicting the
    /// least recently used entries to stay within the budget. An entry larger than the whole
    /// budget, or one whose tokens are already cached under the key, is not stored.
    pub fn insert(&mut self, key: PrefixKey, tokens: Vec<u32>, kv: KvCache) {
        let bytes = kv.bytes();
        if bytes > self.budget || tokens.is_empty() {
            return;
        }
        if let Some(ids) = self.by_key.get(&key) {
            if ids.iter().any(|id| self.entries[id].tokens == tokens) {
                return;
            }
        }
        while self.stats.bytes + bytes > self.budget {
            let Some((_, oldest)) = self.lru.pop_first() else { break };
            self.remove(oldest);
            self.stats.evictions += 1;
        }
        self.tick += 1;
        let id = self.next_id;
        self.next_id += 1;
        self.entries.insert(id, Entry { key, tokens, kv, bytes, tick: self.tick });
        self.by_key.entry(key).or_default().push(id);
        self.lru.insert(self.tick, id);
        self.stats.bytes += bytes;
    }

    /// The longest entry under any of `keys` whose tokens are a prefix of `tokens`, cut to at most
    /// `max_len` tokens (the engine keeps at least one token to prefill for the next-token
    /// logits). Marks the entry as recently used.
    pub fn lookup(&mut self, keys: &[PrefixKey], tokens: &[u32], max_len: usize) -> Option<CacheHit> {
        let best = keys
            .iter()
            .filter_map(|k| self.by_key.get(k))
            .flatten()
            .filter(|id| {
                let e = &self.entries[*id];
                e.tokens.len() <= tokens.len() && tokens[..e.tokens.len()] == e.tokens[..]
            })
            .max_by_key(|id| self.entries[*id].tokens.len())
            .copied();
        let Some(id) = best else {
            self.stats.misses += 1;
            return None;
        };
        self.tick += 1;
        let e = self.entries.get_mut(&id).expect("indexed entry exists");
        self.lru.remove(&e.tick);
        e.tick = self.tick;
        self.lru.insert(self.tick, id);
        let len = e.tokens.len().min(max_len);
        if len == 0 {
            self.stats.misses += 1;
            return None;
        }
        self.stats.hits += 1;
        Some(CacheHit { len, kv: e.kv.narrow(0, len as i64) })
    }

    /// Drops every entry stored under the keys.
    pub fn release(&mut self, keys: &[PrefixKey]) {
        for key in keys {
            for id in self.by_key.remove(key).unwrap_or_default() {
                if let Some(e) = self.entries.get(&id) {
                    self.lru.remove(&e.tick);
                }
                self.drop_entry(id);
            }
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(e) = self.entries.get(&id) {
            let key = e.key;
            if let Some(ids) = self.by_key.get_mut(&key) {
                ids.retain(|x| *x != id);
                if ids.is_empty() {
                    self.by_key.remove(&key);
                }
            }
        }
        self.drop_entry(id);
    }

    fn drop_entry(&mut self, id: u64) {
        if let Some(e) = self.entries.remove(&id) {
            self.stats.bytes -= e.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    fn kv(len: i64) -> KvCache {
        let t = || Tensor::zeros([1, 1, len, 2], (Kind::Float, tch::Device::Cpu));
        KvCache::from_layers(vec![(t(), t())])
    }
    const A: PrefixKey = PrefixKey { tree: 1, node: 0 };
    const B: PrefixKey = PrefixKey { tree: 1, node: 1 };

    #[test]
    fn longest_matching_prefix_wins_and_is_cut() {
        let mut c = PrefixCache::new(1 << 20);
        c.insert(A, vec![1, 2], kv(2));
        c.insert(A, vec![1, 2, 3, 4], kv(4));
        c.insert(A, vec![1, 2, 9, 9], kv(4));
        let hit = c.lookup(&[A], &[1, 2, 3, 4, 5], 4).unwrap();
        assert_eq!((hit.len, hit.kv.len()), (4, 4));
        // whole request cached: cut so one token is left to prefill
        let hit = c.lookup(&[A], &[1, 2, 3, 4], 3).unwrap();
        assert_eq!((hit.len, hit.kv.len()), (3, 3));
        assert!(c.lookup(&[B], &[1, 2, 3], 2).is_none());
        assert!(c.lookup(&[A], &[5, 2, 3], 2).is_none());
        assert_eq!(c.stats().hits, 2);
    }

    #[test]
    fn budget_evicts_least_recently_used_and_release_frees() {
        // one entry of len 4: 2 tensors * 8 floats * 4 bytes = 64 bytes
        let mut c = PrefixCache::new(128);
        c.insert(A, vec![1, 2, 3, 4], kv(4));
        c.insert(B, vec![5, 6, 7, 8], kv(4));
        assert!(c.lookup(&[A], &[1, 2, 3, 4, 0], 4).is_some()); // A is now the most recent
        c.insert(B, vec![5, 6, 7, 9], kv(4)); // evicts B's first entry
        assert_eq!(c.stats().evictions, 1);
        assert!(c.lookup(&[B], &[5, 6, 7, 8, 0], 4).is_none());
        assert!(c.lookup(&[A], &[1, 2, 3, 4, 0], 4).is_some());
        c.release(&[A, B]);
        assert_eq!((c.stats().entries, c.stats().bytes), (0, 0));
        c.insert(A, vec![1], kv(200)); // larger than the budget: not stored
        assert_eq!(c.stats().entries, 0);
    }
}
