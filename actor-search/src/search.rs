//! One tree's search as a state machine (spec §1–§5), driven by the forest.
//!
//! The forest asks each tree for its next [`ExpandRequest`], sends all of them to the policy in
//! one call, and hands each tree its result. A tree then validates the samples, adds the children,
//! verifies the terminals, backs up the chosen one (spec §3–§4) and decides what to expand next:
//! the UCT-best new child when the expansion had no terminal (the depth-first dive), the global
//! frontier otherwise (spec §5). Seeds derive from (run seed, problem id, salt, expansion index),
//! never from batch composition, so the same seed gives the same tree.

use std::sync::Arc;
use std::time::Instant;

use deepsearch_tasks::{Problem, Verdict};

use crate::backup::backup;
use crate::config::{SearchConfig, SelectionKind};
use crate::garbled::is_garbled;
use crate::output::{
    search_trajectory, Group, GroupStats, Source, Trajectory, TreeOutcome, TreeStats,
};
use crate::policy::{ExpandRequest, Finish, PolicyError, PrefixKey, SamplingParams, Segment};
use crate::score::{choose_terminal, outcome_of, reward_of, Outcome, TerminalCandidate};
use crate::select::{best_uct_child, select_frontier, select_uct_from_root};
use crate::tree::{NewChild, NodeId, Terminal, TerminalKind, Tree};

pub use crate::sample::{
    mix64, request_seed, tree_seed, validate_segment, InvalidSample, Judge, PrefixValid, TreeInput,
};

/// The request a tree is waiting on.
#[derive(Clone, Copy, Debug)]
struct Pending {
    node: NodeId,
    max_new: usize,
    max_context: usize,
}

/// The state of one tree inside a forest.
pub(crate) struct TreeSearch {
    pub(crate) id: u64,
    pub(crate) problem: Problem,
    pub(crate) tree: Tree,
    cfg: Arc<SearchConfig>,
    params: Arc<SamplingParams>,
    seed: u64,
    next: Option<NodeId>,
    pending: Option<Pending>,
    recorded: Vec<NodeId>,
    pub(crate) stats: TreeStats,
    expanded: Vec<NodeId>,
    consecutive_errors: u32,
    pub(crate) outcome: Option<TreeOutcome>,
}

impl TreeSearch {
    pub(crate) fn new(
        id: u64,
        input: TreeInput,
        cfg: Arc<SearchConfig>,
        params: Arc<SamplingParams>,
    ) -> Self {
        let seed = tree_seed(cfg.seed, &input.problem.id, input.salt);
        Self {
            id,
            tree: Tree::new(Arc::new(input.prompt_tokens), cfg.entropy),
            problem: input.problem,
            cfg,
            params,
            seed,
            next: Some(0),
            pending: None,
            recorded: Vec::new(),
            stats: TreeStats::default(),
            expanded: Vec::new(),
            consecutive_errors: 0,
            outcome: None,
        }
    }

    fn key(&self, node: NodeId) -> PrefixKey {
        PrefixKey {
            tree: self.id,
            node,
        }
    }

    /// The next request, or `None` when the tree is finished (then `outcome` is set).
    pub(crate) fn next_request(&mut self, max_context: usize) -> Option<ExpandRequest> {
        if self.outcome.is_some() {
            return None;
        }
        let prompt_len = self.tree.prompt.len();
        if prompt_len >= max_context {
            return self.finish(TreeOutcome::ContextOverflow {
                len: prompt_len,
                max: max_context,
            });
        }
        if self.recorded.len() >= self.cfg.trajectories_per_tree {
            return self.finish(TreeOutcome::Completed);
        }
        if self.stats.expansions as usize >= self.cfg.max_expansions {
            return self.finish(TreeOutcome::MaxExpansions);
        }
        let selected = match self.next {
            Some(n) => Some(n),
            None => match self.cfg.selection {
                SelectionKind::Frontier => select_frontier(&self.tree, &self.cfg),
                SelectionKind::Uct => select_uct_from_root(&self.tree, &self.cfg),
            },
        };
        let Some(node) = selected else {
            return self.finish(TreeOutcome::Exhausted);
        };
        self.next = Some(node);
        let n = self.tree.node(node);
        let ctx_left = max_context.saturating_sub(prompt_len + n.response_len);
        let lmax_left = self
            .cfg
            .max_response_tokens()
            .saturating_sub(n.response_len);
        let max_new = self.cfg.segment_tokens.min(ctx_left).min(lmax_left);
        debug_assert!(max_new > 0, "nodes at a length cap are terminal");
        self.pending = Some(Pending {
            node,
            max_new,
            max_context,
        });
        // released when the tree finishes, even if this request fails (the policy may cache it)
        if self.expanded.last() != Some(&node) {
            self.expanded.push(node);
        }
        Some(ExpandRequest {
            key: self.key(node),
            reuse: n.parent.map(|p| self.key(p)),
            tokens: Arc::new(self.tree.prefix_tokens(node)),
            n: self.cfg.expansion_width,
            max_new_tokens: max_new,
            params: self.params.clone(),
            seed: request_seed(self.seed, self.stats.expansions as u64),
        })
    }

    /// Called by `next_request` when a stop condition holds.
    fn finish(&mut self, outcome: TreeOutcome) -> Option<ExpandRequest> {
        tracing::debug!(tree = self.id, problem = %self.problem.id, ?outcome, "tree finished");
        self.outcome = Some(outcome);
        None
    }

    /// Apply the policy's answer to the pending request.
    pub(crate) fn apply(
        &mut self,
        result: Result<Vec<Segment>, PolicyError>,
        decode: &dyn Fn(&[u32]) -> String,
        judge: &Judge<'_>,
    ) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let node = pending.node;
        let segs = match result {
            Ok(s) => s,
            Err(e) => {
                self.stats.policy_errors += 1;
                self.consecutive_errors += 1;
                tracing::warn!(tree = self.id, problem = %self.problem.id, error = %e, "expansion failed");
                if matches!(e, PolicyError::ContextOverflow { .. })
                    || self.consecutive_errors > self.cfg.max_policy_errors
                {
                    self.outcome = Some(TreeOutcome::PolicyFailed {
                        reason: e.to_string(),
                    });
                }
                return;
            }
        };
        self.consecutive_errors = 0;
        self.stats.expansions += 1;
        self.next = None;
        let kids = self.make_children(pending, segs, decode, judge);
        if kids.is_empty() {
            self.tree.mark_dead(node);
            self.stats.dead_nodes += 1;
            return;
        }
        let range = self.tree.add_children(node, kids);
        self.stats.nodes = self.tree.len() as u32;
        self.stats.max_depth = self.stats.max_depth.max(self.tree.node(node).depth + 1);
        let terminals: Vec<NodeId> = range
            .clone()
            .filter(|&c| self.tree.node(c).terminal.is_some())
            .collect();
        if terminals.is_empty() {
            // the depth-first dive (spec §5)
            if self.cfg.selection == SelectionKind::Frontier {
                self.next = best_uct_child(&self.tree, node, self.cfg.uct_lambda);
            }
            return;
        }
        self.judge_terminals(&terminals, decode, judge);
        let usable: Vec<NodeId> = terminals
            .iter()
            .copied()
            .filter(|&c| {
                self.tree
                    .node(c)
                    .terminal
                    .as_ref()
                    .is_some_and(|t| t.outcome.is_some())
            })
            .collect();
        let cands: Vec<TerminalCandidate> = usable
            .iter()
            .map(|&c| {
                let t = self.tree.node(c).terminal.as_ref().expect("terminal");
                TerminalCandidate {
                    outcome: t.outcome.expect("usable"),
                    entropy: t.entropy,
                    garbled: t.garbled,
                }
            })
            .collect();
        match choose_terminal(&cands) {
            Some(i) => {
                let leaf = usable[i];
                let t = self
                    .tree
                    .node_mut(leaf)
                    .terminal
                    .as_mut()
                    .expect("terminal");
                t.chosen = true;
                let v = reward_of(&self.cfg.reward, t.outcome.expect("usable"));
                backup(&mut self.tree, leaf, v, self.cfg.backup, self.cfg.gamma_min);
                self.recorded.push(leaf);
            }
            None => self.stats.expansions_without_backup += 1,
        }
    }

    /// Validate samples and turn them into children, deciding which are terminal (spec §1).
    /// Invalid samples are dropped and counted, so a node may get fewer than `expansion_width`
    /// children (the spec's "0 or `expansion_width`" holds whenever the policy behaves).
    fn make_children(
        &mut self,
        pending: Pending,
        mut segs: Vec<Segment>,
        decode: &dyn Fn(&[u32]) -> String,
        judge: &Judge<'_>,
    ) -> Vec<NewChild> {
        let width = self.cfg.expansion_width;
        if segs.len() != width {
            tracing::warn!(
                tree = self.id,
                got = segs.len(),
                want = width,
                "wrong number of samples"
            );
            self.stats.malformed_segments += width.abs_diff(segs.len()) as u32;
            segs.truncate(width);
        }
        let Pending {
            node,
            max_new,
            max_context,
        } = pending;
        let (depth, parent_len) = {
            let n = self.tree.node(node);
            (n.depth + 1, n.response_len)
        };
        let prompt_len = self.tree.prompt.len();
        let lmax = self.cfg.max_response_tokens();
        let prune = judge
            .prefix_valid
            .filter(|_| self.cfg.prune_invalid_prefixes);
        let parent_tokens = if prune.is_some() {
            self.tree.response_tokens(node)
        } else {
            Vec::new()
        };
        let mut kids = Vec::with_capacity(segs.len());
        for s in segs {
            self.stats.generated_tokens += s.tokens.len() as u64;
            match validate_segment(&s, max_new) {
                Ok(()) => {}
                Err(InvalidSample::Empty) => {
                    self.stats.empty_segments += 1;
                    continue;
                }
                Err(InvalidSample::NonFiniteLogprob) => {
                    self.stats.nonfinite_logprobs += 1;
                    continue;
                }
                Err(InvalidSample::Malformed) => {
                    self.stats.malformed_segments += 1;
                    continue;
                }
            }
            let len = parent_len + s.tokens.len();
            let at_length_cap = len >= lmax || prompt_len + len >= max_context;
            let mut terminal = if s.finish == Some(Finish::Eos) {
                Some(TerminalKind::Eos)
            } else if depth >= self.cfg.max_depth {
                Some(TerminalKind::DepthCap)
            } else if at_length_cap {
                Some(TerminalKind::LengthCap)
            } else {
                None
            };
            if let (None, Some(valid)) = (terminal, prune) {
                let mut all = parent_tokens.clone();
                all.extend_from_slice(&s.tokens);
                if !valid(&self.problem, &decode(&all)) {
                    terminal = Some(TerminalKind::Pruned);
                    self.stats.pruned_prefixes += 1;
                }
            }
            kids.push(NewChild {
                tokens: s.tokens,
                logprobs: s.logprobs,
                entropies: s.entropies,
                finish: s.finish,
                terminal,
            });
        }
        kids
    }

    /// Decode and verify each new terminal (spec §2); mark garbled wrong answers (spec §7).
    fn judge_terminals(
        &mut self,
        terminals: &[NodeId],
        decode: &dyn Fn(&[u32]) -> String,
        judge: &Judge<'_>,
    ) {
        let t0 = Instant::now();
        for &c in terminals {
            let tokens = self.tree.response_tokens(c);
            let text = decode(&tokens);
            let kind = self.tree.node(c).terminal.as_ref().expect("terminal").kind;
            let verdict = match kind {
                TerminalKind::Pruned => Verdict::Wrong,
                _ => judge.verifier.verify(&self.problem, &text),
            };
            let outcome = outcome_of(
                &verdict,
                kind == TerminalKind::Eos || kind == TerminalKind::Pruned,
            );
            match outcome {
                Some(Outcome::Correct) => self.stats.correct += 1,
                Some(Outcome::Wrong) => self.stats.wrong += 1,
                Some(Outcome::Incomplete) => self.stats.incomplete += 1,
                None => {
                    self.stats.verifier_errors += 1;
                    tracing::warn!(tree = self.id, problem = %self.problem.id, ?verdict, "verifier error: terminal dropped");
                }
            }
            let t: &mut Terminal = self.tree.node_mut(c).terminal.as_mut().expect("terminal");
            t.verdict = verdict;
            t.outcome = outcome;
            t.text = text;
        }
        self.mark_garbled(terminals);
        self.stats.verify_ns += t0.elapsed().as_nanos() as u64;
    }

    /// The garbled filter (spec §7), evaluated lazily: only when the batch has no correct terminal,
    /// on the wrong ones from the most confident on, until one passes. `garbled_wrong` counts the
    /// wrong terminals skipped this way.
    fn mark_garbled(&mut self, terminals: &[NodeId]) {
        let g = self.cfg.garbled.clone();
        let outcome =
            |tree: &Tree, c: NodeId| tree.node(c).terminal.as_ref().and_then(|t| t.outcome);
        if !g.enabled
            || terminals
                .iter()
                .any(|&c| outcome(&self.tree, c) == Some(Outcome::Correct))
        {
            return;
        }
        let mut wrong: Vec<NodeId> = terminals
            .iter()
            .copied()
            .filter(|&c| outcome(&self.tree, c) == Some(Outcome::Wrong))
            .collect();
        let entropy = |c: NodeId| {
            self.tree
                .node(c)
                .terminal
                .as_ref()
                .map_or(f64::NAN, |t| t.entropy)
        };
        // the order in which `choose_terminal` considers them: entropy ascending, ties in child
        // order (stable sort), NaN last
        let (nan, mut ordered): (Vec<NodeId>, Vec<NodeId>) =
            wrong.drain(..).partition(|&c| entropy(c).is_nan());
        ordered.sort_by(|&a, &b| {
            entropy(a)
                .partial_cmp(&entropy(b))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        ordered.extend(nan);
        for c in ordered {
            if !is_garbled(&self.tree.response_tokens(c), g.ngram_tokens, g.max_repeats) {
                return;
            }
            self.stats.garbled_wrong += 1;
            self.tree
                .node_mut(c)
                .terminal
                .as_mut()
                .expect("terminal")
                .garbled = true;
        }
    }

    /// Leaves recorded so far, in backup order.
    pub(crate) fn recorded(&self) -> &[NodeId] {
        &self.recorded
    }

    /// Prefix keys the policy may hold for this tree (released when the tree finishes).
    pub(crate) fn expanded_keys(&self) -> Vec<PrefixKey> {
        self.expanded.iter().map(|&n| self.key(n)).collect()
    }

    pub(crate) fn into_finished(mut self) -> FinishedTree {
        let depths: Vec<u32> = self
            .recorded
            .iter()
            .map(|&l| self.tree.node(l).depth)
            .collect();
        self.stats.trajectories = self.recorded.len() as u32;
        self.stats.mean_depth = if depths.is_empty() {
            0.0
        } else {
            depths.iter().map(|&d| d as f64).sum::<f64>() / depths.len() as f64
        };
        self.stats.frontier_size = self.tree.frontier().len() as u32;
        self.stats.nodes = self.tree.len() as u32;
        FinishedTree {
            id: self.id,
            problem: self.problem,
            tree: self.tree,
            cfg: self.cfg,
            recorded: self.recorded,
            stats: self.stats,
            outcome: self.outcome.unwrap_or(TreeOutcome::Exhausted),
        }
    }
}

/// A tree whose search is over: read its trajectories and statistics (spec §6).
#[derive(Clone, Debug)]
pub struct FinishedTree {
    pub id: u64,
    pub problem: Problem,
    pub tree: Tree,
    pub cfg: Arc<SearchConfig>,
    /// Recorded leaves in the order they were backed up.
    pub recorded: Vec<NodeId>,
    pub stats: TreeStats,
    pub outcome: TreeOutcome,
}

impl FinishedTree {
    /// The recorded trajectories with their scores, read now that values are final (spec §6).
    pub fn trajectories(&self, policy_version: u64) -> Vec<Trajectory> {
        self.recorded
            .iter()
            .map(|&l| search_trajectory(&self.cfg, &self.tree, &self.problem.id, l, policy_version))
            .collect()
    }

    /// This tree as a training group.
    pub fn group(&self, policy_version: u64) -> Group {
        let trajectories = self.trajectories(policy_version);
        Group {
            problem_id: self.problem.id.clone(),
            source: Source::Search,
            stats: GroupStats {
                generated_tokens: self.stats.generated_tokens,
                correct: self.stats.correct,
                wrong: self.stats.wrong,
                incomplete: self.stats.incomplete,
                verifier_errors: self.stats.verifier_errors,
                invalid_samples: self.stats.empty_segments
                    + self.stats.nonfinite_logprobs
                    + self.stats.malformed_segments,
                pass_fraction: None,
                outcome: Some(self.outcome.clone()),
                tree: Some(self.stats.clone()),
            },
            trajectories,
        }
    }

    /// True when some recorded trajectory is correct.
    pub fn solved(&self) -> bool {
        self.recorded.iter().any(|&l| {
            self.tree
                .node(l)
                .terminal
                .as_ref()
                .is_some_and(|t| t.outcome == Some(Outcome::Correct))
        })
    }
}
