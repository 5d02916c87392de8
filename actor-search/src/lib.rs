//! DeepSearch tree search (spec §1–§6) and the ways of producing a training group (spec §6–§7).
//!
//! Pure Rust, generic over the [`policy::Policy`] trait: the MCTS never links libtorch.
//!
//! * [`config`]: every knob with the spec's defaults.
//! * [`score`]: the formulas (UCT, frontier score, backup step, overlong penalty, score targets,
//!   terminal choice) as pure functions; [`garbled`]: the n-gram repetition filter.
//! * [`tree`], [`backup`], [`select`]: the arena, the constrained backup, node selection.
//! * [`sample`]: search inputs, derived seeds, sample validation; [`search`]: one tree's state
//!   machine; [`forest`]: many trees, one batched policy call per
//!   iteration.
//! * [`output`]: trajectories with per-token scores, tree statistics, groups;
//!   [`direct`]: direct sampling and the cached path; [`dump`]: JSON and HTML views of a tree.
//! * [`runtime`]: the search actor (lease work from the coordinator, run it, stream trajectories
//!   to the learner, follow policy versions).
//!
//! Typical use (the actor and `deepsearch search`):
//!
//! ```text
//! let judge = Judge { verifier: &verifier, prefix_valid: None };
//! let mut forest = Forest::new(cfg, first_tree_id)?;           // SearchConfig, validated
//! forest.add(TreeInput { problem, prompt_tokens, salt });      // one per problem, e.g. 16
//! for tree in forest.run(&mut policy, &judge) {                // or `step` to refill as trees end
//!     let group = tree.group(policy_version);                  // trajectories + stats
//!     let json = tree_to_json(&tree, &|ids| policy.decode(ids));
//!     let html = tree_to_html(&tree, &|ids| policy.decode(ids));
//! }
//! let groups = sample_groups(&cfg, &direct_inputs, &mut policy, &verifier, version, key0)?;
//! ```
pub mod backup;
pub mod config;
pub mod direct;
pub mod dump;
pub mod forest;
pub mod garbled;
pub mod output;
pub mod policy;
pub mod runtime;
pub mod sample;
pub mod score;
pub mod search;
pub mod select;
pub mod tree;

pub use config::SearchConfig;
pub use direct::{sample_groups, CachedSolution, DirectInput};
pub use dump::{tree_to_html, tree_to_json};
pub use forest::{search_all, Forest, ForestStats};
pub use output::{Group, GroupStats, Source, Trajectory, TreeOutcome, TreeStats};
pub use policy::{ExpandRequest, Finish, Metered, Policy, PolicyError, PrefixKey, SamplingParams, Segment};
pub use search::{FinishedTree, Judge, TreeInput};
