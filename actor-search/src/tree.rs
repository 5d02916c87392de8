//! The search tree as an arena of nodes (spec §1). Pure data: no policy, no verifier.
//!
//! The root holds the prompt; every other node holds one segment appended to its parent's prefix.
//! Children of a node are created together by one expansion and stored contiguously, so a node's
//! children are an index range. The frontier (non-root, non-terminal, childless, not dead nodes) is
//! maintained incrementally so selection never scans the whole tree.

use std::cmp::Ordering;
use std::sync::Arc;

use deepsearch_tasks::Verdict;

use crate::config::EntropyKind;
use crate::policy::Finish;
use crate::score::{EntropySum, Outcome};

/// Index of a node in its tree's arena; the root is 0.
pub type NodeId = u32;

/// Why a node is terminal (spec §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TerminalKind {
    /// The segment ended with EOS.
    Eos,
    /// The node reached `max_depth`.
    DepthCap,
    /// The response reached Lmax or the prefix filled the model context.
    LengthCap,
    /// The prefix hook judged the text already invalid (counted as a wrong answer).
    Pruned,
}

/// A terminal node's judgement.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Terminal {
    pub kind: TerminalKind,
    /// The verifier's verdict (`Wrong` for a pruned prefix).
    pub verdict: Verdict,
    /// `None` when the verdict was an error: no reward, dropped and counted (spec §2).
    pub outcome: Option<Outcome>,
    /// Decoded response, root to this node.
    pub text: String,
    /// Mean trajectory entropy root→leaf (spec §3).
    pub entropy: f64,
    /// The response repeats an n-gram excessively.
    pub garbled: bool,
    /// This terminal was backed up and recorded as a trajectory.
    pub chosen: bool,
}

/// One node (spec §1).
#[derive(Clone, Debug)]
pub struct Node {
    pub parent: Option<NodeId>,
    /// Children are `first_child .. first_child + n_children`.
    pub first_child: NodeId,
    pub n_children: u32,
    pub depth: u32,
    pub tokens: Vec<u32>,
    pub logprobs: Vec<f32>,
    /// Empty when the policy reported no full entropies.
    pub entropies: Vec<f32>,
    pub finish: Option<Finish>,
    pub visits: u32,
    pub value: f64,
    pub terminal: Option<Terminal>,
    /// Its expansion produced no usable child; never selected again.
    pub dead: bool,
    /// Response tokens from the root to the end of this node.
    pub response_len: usize,
    /// Mean uncertainty of this node's own segment (λ2 term).
    pub segment_entropy: f64,
    /// Uncertainty summed over the response root→this node.
    pub path_entropy: EntropySum,
    frontier_pos: Option<u32>,
}

/// A new child as produced by an expansion, before it is placed in the tree.
#[derive(Clone, Debug)]
pub struct NewChild {
    pub tokens: Vec<u32>,
    pub logprobs: Vec<f32>,
    pub entropies: Vec<f32>,
    pub finish: Option<Finish>,
    /// Terminal kind if the child is terminal (its judgement is filled in later).
    pub terminal: Option<TerminalKind>,
}

/// The arena.
#[derive(Clone, Debug)]
pub struct Tree {
    pub prompt: Arc<Vec<u32>>,
    nodes: Vec<Node>,
    frontier: Vec<NodeId>,
    entropy_kind: EntropyKind,
}

impl Tree {
    /// A tree holding only the root (the prompt), N(root) = 0.
    pub fn new(prompt: Arc<Vec<u32>>, entropy_kind: EntropyKind) -> Self {
        let root = Node {
            parent: None,
            first_child: 0,
            n_children: 0,
            depth: 0,
            tokens: Vec::new(),
            logprobs: Vec::new(),
            entropies: Vec::new(),
            finish: None,
            visits: 0,
            value: 0.0,
            terminal: None,
            dead: false,
            response_len: 0,
            segment_entropy: f64::NAN,
            path_entropy: EntropySum::default(),
            frontier_pos: None,
        };
        Self {
            prompt,
            nodes: vec![root],
            frontier: Vec::new(),
            entropy_kind,
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id as usize]
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The children of `id` as arena ids.
    pub fn children(&self, id: NodeId) -> std::ops::Range<NodeId> {
        let n = self.node(id);
        n.first_child..n.first_child + n.n_children
    }

    /// The frontier candidates of spec §5, in no particular order.
    pub fn frontier(&self) -> &[NodeId] {
        &self.frontier
    }

    /// Append the children of a childless node (spec §1). Non-terminal children get N = 1 and join
    /// the frontier; the parent leaves it. Returns the new ids.
    pub fn add_children(&mut self, parent: NodeId, kids: Vec<NewChild>) -> std::ops::Range<NodeId> {
        debug_assert_eq!(self.node(parent).n_children, 0, "a node is expanded once");
        self.remove_from_frontier(parent);
        let first = self.nodes.len() as NodeId;
        let (depth, base_len, base_ent) = {
            let p = self.node(parent);
            (p.depth + 1, p.response_len, p.path_entropy)
        };
        for k in kids {
            let mut seg = EntropySum::default();
            seg.add_segment(self.entropy_kind, &k.logprobs, &k.entropies);
            let mut path = base_ent;
            path.add_segment(self.entropy_kind, &k.logprobs, &k.entropies);
            let id = self.nodes.len() as NodeId;
            let terminal = k.terminal.map(|kind| Terminal {
                kind,
                verdict: Verdict::Unparsable,
                outcome: None,
                text: String::new(),
                entropy: path.mean(),
                garbled: false,
                chosen: false,
            });
            let is_terminal = terminal.is_some();
            self.nodes.push(Node {
                parent: Some(parent),
                first_child: 0,
                n_children: 0,
                depth,
                response_len: base_len + k.tokens.len(),
                tokens: k.tokens,
                logprobs: k.logprobs,
                entropies: k.entropies,
                finish: k.finish,
                visits: if is_terminal { 0 } else { 1 },
                value: 0.0,
                terminal,
                dead: false,
                segment_entropy: seg.mean(),
                path_entropy: path,
                frontier_pos: None,
            });
            if !is_terminal {
                self.node_mut(id).frontier_pos = Some(self.frontier.len() as u32);
                self.frontier.push(id);
            }
        }
        let end = self.nodes.len() as NodeId;
        let p = self.node_mut(parent);
        p.first_child = first;
        p.n_children = end - first;
        first..end
    }

    /// Mark a node whose expansion produced nothing usable: it leaves the frontier for good.
    pub fn mark_dead(&mut self, id: NodeId) {
        self.node_mut(id).dead = true;
        self.remove_from_frontier(id);
    }

    fn remove_from_frontier(&mut self, id: NodeId) {
        if let Some(pos) = self.node_mut(id).frontier_pos.take() {
            let last = self.frontier.pop().expect("frontier holds the node");
            if last != id {
                self.frontier[pos as usize] = last;
                self.node_mut(last).frontier_pos = Some(pos);
            }
        }
    }

    /// Node ids from the root to `leaf`, both included.
    pub fn path(&self, leaf: NodeId) -> Vec<NodeId> {
        let mut p = Vec::with_capacity(self.node(leaf).depth as usize + 1);
        let mut cur = Some(leaf);
        while let Some(id) = cur {
            p.push(id);
            cur = self.node(id).parent;
        }
        p.reverse();
        p
    }

    /// The response tokens root→`id` (segments concatenated, prompt excluded).
    pub fn response_tokens(&self, id: NodeId) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.node(id).response_len);
        for n in self.path(id) {
            out.extend_from_slice(&self.node(n).tokens);
        }
        out
    }

    /// The full prefix of `id`: prompt ⊕ segments on its path (never re-tokenized, spec §1).
    pub fn prefix_tokens(&self, id: NodeId) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.prompt.len() + self.node(id).response_len);
        out.extend_from_slice(&self.prompt);
        for n in self.path(id) {
            out.extend_from_slice(&self.node(n).tokens);
        }
        out
    }

    /// Depth-first (pre-order, children in order) comparison of two nodes; ties of the frontier
    /// score go to the node first in this order (spec §5).
    pub fn dfs_cmp(&self, mut a: NodeId, mut b: NodeId) -> Ordering {
        if a == b {
            return Ordering::Equal;
        }
        let (da, db) = (self.node(a).depth, self.node(b).depth);
        // lift the deeper node; if it lands on the other, the other is its ancestor (comes first)
        let (mut la, mut lb) = (da, db);
        while la > lb {
            let pa = self.node(a).parent.expect("non-root has a parent");
            if pa == b {
                return Ordering::Greater;
            }
            a = pa;
            la -= 1;
        }
        while lb > la {
            let pb = self.node(b).parent.expect("non-root has a parent");
            if pb == a {
                return Ordering::Less;
            }
            b = pb;
            lb -= 1;
        }
        loop {
            let (pa, pb) = (self.node(a).parent, self.node(b).parent);
            if pa == pb {
                // siblings: contiguous ids in child order
                return a.cmp(&b);
            }
            a = pa.expect("same depth, not yet at the root");
            b = pb.expect("same depth, not yet at the root");
        }
    }

    /// All node ids in depth-first pre-order.
    pub fn dfs_order(&self) -> Vec<NodeId> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut stack = vec![0 as NodeId];
        while let Some(id) = stack.pop() {
            out.push(id);
            stack.extend(self.children(id).rev());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn kid(tokens: &[u32], terminal: Option<TerminalKind>) -> NewChild {
        NewChild {
            tokens: tokens.to_vec(),
            logprobs: vec![-1.0; tokens.len()],
            entropies: Vec::new(),
            finish: None,
            terminal,
        }
    }

    #[test]
    fn children_paths_prefixes_and_frontier() {
        let mut t = Tree::new(Arc::new(vec![100, 101]), EntropyKind::Nll);
        let r = t.add_children(
            0,
            vec![
                kid(&[1], None),
                kid(&[2, 3], None),
                kid(&[9], Some(TerminalKind::Eos)),
            ],
        );
        assert_eq!(r, 1..4);
        assert_eq!(t.node(1).visits, 1);
        assert_eq!(t.node(3).visits, 0);
        let mut f = t.frontier().to_vec();
        f.sort();
        assert_eq!(f, vec![1, 2]);
        t.add_children(2, vec![kid(&[4], None), kid(&[5], None)]);
        assert_eq!(t.path(5), vec![0, 2, 5]);
        assert_eq!(t.prefix_tokens(5), vec![100, 101, 2, 3, 5]);
        assert_eq!(t.response_tokens(5), vec![2, 3, 5]);
        assert_eq!(t.node(5).response_len, 3);
        assert_eq!(t.node(5).depth, 2);
        let mut f = t.frontier().to_vec();
        f.sort();
        assert_eq!(f, vec![1, 4, 5]);
        t.mark_dead(4);
        let mut f = t.frontier().to_vec();
        f.sort();
        assert_eq!(f, vec![1, 5]);
    }

    #[test]
    fn dfs_order_and_comparison_agree() {
        let mut t = Tree::new(Arc::new(vec![]), EntropyKind::Nll);
        t.add_children(0, vec![kid(&[1], None), kid(&[2], None), kid(&[3], None)]); // 1 2 3
        t.add_children(2, vec![kid(&[4], None), kid(&[5], None)]); // 4 5 under 2
        t.add_children(1, vec![kid(&[6], None)]); // 6 under 1
        t.add_children(5, vec![kid(&[7], None)]); // 7 under 5
        let order = t.dfs_order();
        assert_eq!(order, vec![0, 1, 6, 2, 4, 5, 7, 3]);
        for (i, &a) in order.iter().enumerate() {
            for (j, &b) in order.iter().enumerate() {
                assert_eq!(t.dfs_cmp(a, b), i.cmp(&j), "nodes {a} and {b}");
            }
        }
    }

    #[test]
    fn path_entropy_accumulates() {
        let mut t = Tree::new(Arc::new(vec![]), EntropyKind::Nll);
        t.add_children(0, vec![kid(&[1, 2], None)]);
        let mut k = kid(&[3], Some(TerminalKind::Eos));
        k.logprobs = vec![-4.0];
        t.add_children(1, vec![k]);
        // (1 + 1 + 4) / 3
        assert_eq!(t.node(2).terminal.as_ref().unwrap().entropy, 2.0);
        assert_eq!(t.node(2).segment_entropy, 4.0);
    }
}
