//! Many trees searched at once, one batched policy call per iteration (issue #4, item 2).
//!
//! Every iteration each active tree contributes its one pending expansion; all of them go to
//! [`Policy::expand`] together (the reference ran 16 trees per inference worker this way), so the
//! device sees `trees × expansion_width` samples per call and stays busy. Failures stay local: a
//! policy error, a malformed sample, a verifier timeout or an oversized prompt is counted on its
//! tree and the rest of the forest goes on. A finished tree's prefix keys are released at once.

use std::sync::Arc;
use std::time::Instant;

use crate::config::{ConfigError, SearchConfig};
use crate::policy::{Policy, PolicyError, SamplingParams};
use crate::search::{FinishedTree, Judge, TreeInput, TreeSearch};
use crate::tree::{NodeId, Tree};

/// Forest-wide counters.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ForestStats {
    pub iterations: u64,
    /// Batched calls to the policy.
    pub policy_calls: u64,
    /// Expansion requests sent (sum of batch sizes).
    pub requests: u64,
    /// Calls whose answer had the wrong number of results (every request counted failed).
    pub malformed_batches: u64,
    pub generation_ns: u64,
    /// Time in the forest outside the policy call (selection, tree updates, verification).
    pub bookkeeping_ns: u64,
    pub trees_finished: u64,
}

/// A set of trees searched together.
pub struct Forest {
    cfg: Arc<SearchConfig>,
    params: Arc<SamplingParams>,
    trees: Vec<TreeSearch>,
    next_id: u64,
    stats: ForestStats,
}

impl std::fmt::Debug for Forest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forest")
            .field("active", &self.trees.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// The sampling parameters of an expansion under `cfg` (spec §1).
pub fn sampling_params(cfg: &SearchConfig) -> SamplingParams {
    SamplingParams {
        temperature: cfg.temperature,
        top_p: cfg.top_p,
        top_k: 0,
        stop: cfg.segment_delimiter.iter().cloned().collect(),
    }
}

impl Forest {
    /// An empty forest; tree ids (the `tree` of every [`crate::policy::PrefixKey`]) start at
    /// `first_tree_id`, so forests sharing one policy must use disjoint ranges.
    pub fn new(cfg: SearchConfig, first_tree_id: u64) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let params = Arc::new(sampling_params(&cfg));
        Ok(Self {
            cfg: Arc::new(cfg),
            params,
            trees: Vec::new(),
            next_id: first_tree_id,
            stats: ForestStats::default(),
        })
    }

    pub fn config(&self) -> &SearchConfig {
        &self.cfg
    }

    /// Start a tree; returns its id.
    pub fn add(&mut self, input: TreeInput) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.trees.push(TreeSearch::new(
            id,
            input,
            self.cfg.clone(),
            self.params.clone(),
        ));
        id
    }

    /// Trees still searching.
    pub fn active(&self) -> usize {
        self.trees.len()
    }

    /// Read-only view of the active trees: (tree id, problem id, tree, recorded leaves so far).
    /// For progress displays and for tests that check invariants while the search runs.
    pub fn active_trees(&self) -> impl Iterator<Item = (u64, &str, &Tree, &[NodeId])> {
        self.trees
            .iter()
            .map(|t| (t.id, t.problem.id.as_str(), &t.tree, t.recorded()))
    }

    pub fn stats(&self) -> &ForestStats {
        &self.stats
    }

    /// One iteration: gather one request per active tree, one policy call, update every tree.
    /// Returns the trees that finished (their prefix keys are already released).
    pub fn step<P: Policy + ?Sized>(
        &mut self,
        policy: &mut P,
        judge: &Judge<'_>,
    ) -> Vec<FinishedTree> {
        let t_start = Instant::now();
        self.stats.iterations += 1;
        let max_ctx = policy.max_context();
        let mut reqs = Vec::with_capacity(self.trees.len());
        let mut who = Vec::with_capacity(self.trees.len());
        for (i, t) in self.trees.iter_mut().enumerate() {
            let b = Instant::now();
            if let Some(r) = t.next_request(max_ctx) {
                reqs.push(r);
                who.push(i);
            }
            t.stats.bookkeeping_ns += b.elapsed().as_nanos() as u64;
        }
        let mut gen_ns = 0;
        if !reqs.is_empty() {
            let g = Instant::now();
            let mut results = policy.expand(&reqs);
            gen_ns = g.elapsed().as_nanos() as u64;
            self.stats.policy_calls += 1;
            self.stats.requests += reqs.len() as u64;
            if results.len() != reqs.len() {
                tracing::warn!(
                    got = results.len(),
                    want = reqs.len(),
                    "policy returned a malformed batch"
                );
                self.stats.malformed_batches += 1;
                let msg = format!(
                    "policy returned {} results for {} requests",
                    results.len(),
                    reqs.len()
                );
                results = reqs
                    .iter()
                    .map(|_| Err(PolicyError::Failed(msg.clone())))
                    .collect();
            }
            let pol: &P = policy;
            let decode = |toks: &[u32]| pol.decode(toks);
            for (i, res) in who.into_iter().zip(results) {
                let t = &mut self.trees[i];
                t.stats.generation_ns += gen_ns;
                let b = Instant::now();
                let v0 = t.stats.verify_ns;
                t.apply(res, &decode, judge);
                let spent = b.elapsed().as_nanos() as u64;
                t.stats.bookkeeping_ns += spent.saturating_sub(t.stats.verify_ns - v0);
            }
        }
        let finished = self.sweep(policy);
        self.stats.generation_ns += gen_ns;
        self.stats.bookkeeping_ns += (t_start.elapsed().as_nanos() as u64).saturating_sub(gen_ns);
        finished
    }

    /// Remove finished trees, release their prefix keys in one call.
    fn sweep<P: Policy + ?Sized>(&mut self, policy: &mut P) -> Vec<FinishedTree> {
        let mut done = Vec::new();
        let mut keys = Vec::new();
        let mut i = 0;
        while i < self.trees.len() {
            if self.trees[i].outcome.is_some() {
                let t = self.trees.remove(i);
                keys.extend(t.expanded_keys());
                let f = t.into_finished();
                tracing::debug!(
                    tree = f.id,
                    problem = %f.problem.id,
                    expansions = f.stats.expansions,
                    trajectories = f.stats.trajectories,
                    "tree done"
                );
                done.push(f);
            } else {
                i += 1;
            }
        }
        if !keys.is_empty() {
            policy.release(&keys);
        }
        self.stats.trees_finished += done.len() as u64;
        done
    }

    /// Step until every tree is finished; returns them in the order they finished.
    pub fn run<P: Policy + ?Sized>(
        &mut self,
        policy: &mut P,
        judge: &Judge<'_>,
    ) -> Vec<FinishedTree> {
        let mut all = Vec::new();
        while !self.trees.is_empty() {
            all.extend(self.step(policy, judge));
        }
        all
    }
}

/// Search every input in one forest and return the finished trees in input order.
pub fn search_all<P: Policy + ?Sized>(
    cfg: &SearchConfig,
    inputs: Vec<TreeInput>,
    policy: &mut P,
    judge: &Judge<'_>,
) -> Result<Vec<FinishedTree>, ConfigError> {
    let mut forest = Forest::new(cfg.clone(), 0)?;
    for inp in inputs {
        forest.add(inp);
    }
    let mut done = forest.run(policy, judge);
    done.sort_by_key(|t| t.id);
    Ok(done)
}
