//! Bad input at the edge (issue #5): mismatched lengths, NaN or infinite scores, unknown policy
//! versions, stale and empty groups are rejected with counts, never crashing the learner.

mod common;

use common::{synthetic_groups, trajectory};
use deepsearch_learner::{Learner, SingleProcess};
use deepsearch_search::{Group, GroupStats, Source};

fn group(trajs: Vec<deepsearch_search::Trajectory>) -> Group {
    Group {
        problem_id: "bad".into(),
        source: Source::Search,
        trajectories: trajs,
        stats: GroupStats::default(),
    }
}

#[test]
fn every_kind_of_bad_input_is_counted_and_the_good_rest_trains() {
    let mut l = Learner::new(common::cfg(), common::tiny_model(1), Box::new(SingleProcess)).unwrap();
    // advance to version 10 so staleness can be tested (max_staleness 4)
    l.policy_version = 10;
    let good = |v| trajectory(vec![3, 4], vec![5, 6, 7], vec![0.5, 0.5, 1.0], 1.0, vec![-1.0; 3], v);
    let mut short_scores = good(10);
    short_scores.token_scores.pop();
    let mut short_lp = good(10);
    short_lp.logprobs.pop();
    let mut bad_segments = good(10);
    bad_segments.segment_ends = vec![2];
    let mut nan_score = good(10);
    nan_score.token_scores[1] = f32::NAN;
    let mut inf_terminal = good(10);
    inf_terminal.terminal_score = f64::INFINITY;
    let mut inf_lp = good(10);
    inf_lp.logprobs[0] = f32::NEG_INFINITY;
    let mut oov = good(10);
    oov.tokens[0] = 10_000;
    let mut empty = good(10);
    empty.tokens.clear();
    empty.token_scores.clear();
    empty.logprobs.clear();
    empty.segment_ends = vec![0];
    let mut too_long = good(10);
    too_long.prompt_tokens = vec![3; 5000];
    let mut groups = vec![
        group(vec![good(10), short_scores, short_lp, bad_segments]),
        group(vec![good(9), nan_score, inf_terminal, inf_lp]),
        group(vec![oov, empty, too_long]), // nothing valid left: an empty group
        group(vec![good(10), good(11)]),   // version 11 is unknown to a learner at 10
        group(vec![good(10), good(5)]),    // 10 − 5 > max_staleness 4: stale
        group(vec![]),
    ];
    groups.extend(synthetic_groups(9, 2, 3, 8));
    let (batch, rep) = l.ingest(&groups);
    assert_eq!(rep.groups_in, 8);
    assert_eq!(
        (
            rep.mismatched_lengths,
            rep.nonfinite,
            rep.out_of_vocab,
            rep.empty_trajectories,
            rep.too_long
        ),
        (3, 3, 1, 1, 1)
    );
    assert_eq!(
        (rep.unknown_version_groups, rep.stale_groups, rep.empty_groups),
        (1, 1, 2)
    );
    assert_eq!(rep.groups_kept, 4);
    assert_eq!(rep.trajectories_kept, 1 + 1 + 6);
    // single survivors form groups of one: μ = 0, A = score
    assert_eq!(batch.samples[0].advantages, vec![0.5, 0.5, 1.0]);
    let (step, _) = l.train_on_groups(&groups).unwrap();
    assert_eq!(step.sequences, 8);
    assert!(step.loss.is_finite());

    // a step with nothing usable is an error, not a panic, and the learner stays usable
    let all_bad = vec![groups[2].clone(), groups[4].clone(), groups[5].clone()];
    let err = l.train_on_groups(&all_bad).unwrap_err().to_string();
    assert!(err.contains("no usable trajectory"), "{err}");
    let v = l.policy_version;
    l.train_on_groups(&synthetic_groups(3, 2, 2, v)).unwrap();
}
