//! The step's options run end to end on a tiny model: KL to a frozen reference, truncated
//! importance sampling, sequence aggregations, token-capped micro-batches, several epochs, bf16
//! parameters with fp32 masters; and the step does what a policy-gradient step must do.

mod common;

use deepsearch_learner::{Learner, LearnerConfig, LossAgg, Precision, SingleProcess};

#[test]
fn options_run_end_to_end() {
    let cfg = LearnerConfig {
        kl_coef: 0.05,
        tis_cap: Some(2.0),
        loss_agg: LossAgg::SeqMeanTokenSumNorm,
        micro_batch_tokens: 24,
        epochs: 2,
        ..common::cfg()
    };
    let mut l = Learner::new(cfg, common::tiny_model(4), Box::new(SingleProcess)).unwrap();
    let (rep, _) = l.train_on_groups(&common::synthetic_groups(1, 4, 4, 0)).unwrap();
    assert_eq!(rep.optimizer_updates, 4);
    assert!(rep.loss.is_finite() && rep.grad_norms.iter().all(|g| g.is_finite() && *g > 0.0));
    assert_eq!(rep.sequences, 2 * 16);
}

#[test]
fn bf16_parameters_train_with_fp32_masters() {
    let cfg = LearnerConfig {
        precision: Precision::Bf16,
        ..common::cfg()
    };
    let mut l = Learner::new(cfg, common::tiny_model(4), Box::new(SingleProcess)).unwrap();
    assert_eq!(l.policy.dtype, tch::Kind::BFloat16);
    let before = common::weights(&l);
    let (rep, _) = l.train_on_groups(&common::synthetic_groups(1, 4, 4, 0)).unwrap();
    assert!(rep.loss.is_finite());
    assert!(common::max_diff(&before, &common::weights(&l)) > 0.0);
    assert!(l
        .opt
        .state_tensors()
        .iter()
        .any(|(n, t)| n.starts_with("master.") && t.kind() == tch::Kind::Float));
}

#[test]
fn a_step_raises_the_likelihood_of_positive_advantage_responses() {
    // one group: response A scores +1, response B −1 (μ = 0); after a few steps with a large lr
    // the log-prob of A rises and B falls
    use deepsearch_policy::logprobs::{token_logprobs_no_grad, LogprobOptions};
    let cfg = LearnerConfig {
        lr: 3e-3,
        mini_batches: 1,
        shuffle: false,
        ..common::cfg()
    };
    let mut l = Learner::new(cfg, common::tiny_model(5), Box::new(SingleProcess)).unwrap();
    let a = common::trajectory(vec![3, 4, 5], vec![6, 7, 8, 9], vec![1.0; 4], 1.0, vec![], 0);
    let b = common::trajectory(vec![3, 4, 5], vec![10, 11, 12, 13], vec![-1.0; 4], -1.0, vec![], 0);
    let lp = |l: &Learner, resp: &[i64]| {
        let ids: Vec<i64> = [3, 4, 5].iter().chain(resp).copied().collect();
        let t = tch::Tensor::from_slice(&ids).view([1, -1]);
        let out = token_logprobs_no_grad(&l.policy.model, &t, &t.ones_like(), LogprobOptions::default()).unwrap();
        out.logprobs.narrow(1, 2, 4).sum(tch::Kind::Float).double_value(&[])
    };
    let (a0, b0) = (lp(&l, &[6, 7, 8, 9]), lp(&l, &[10, 11, 12, 13]));
    for _ in 0..3 {
        let mut g = common::synthetic_groups(0, 1, 1, l.policy_version);
        g[0].trajectories = vec![a.clone(), b.clone()];
        for t in &mut g[0].trajectories {
            t.policy_version = l.policy_version;
        }
        l.train_on_groups(&g).unwrap();
    }
    let (a1, b1) = (lp(&l, &[6, 7, 8, 9]), lp(&l, &[10, 11, 12, 13]));
    assert!(a1 > a0 + 0.1 && b1 < b0 - 0.1, "A {a0} → {a1}, B {b0} → {b1}");
}

/// A step whose groups carry no signal (every trajectory wrong, outcome scores: all advantages
/// zero) leaves the weights exactly where they were, even after a step with signal has given
/// AdamW momentum; with `skip_zero_grad_updates = false` the momentum moves them.
#[test]
fn a_step_without_signal_does_not_move_the_weights() {
    let no_signal = || {
        let mut g = common::synthetic_groups(3, 2, 4, 1);
        for t in g.iter_mut().flat_map(|g| g.trajectories.iter_mut()) {
            t.terminal_score = -1.0;
            t.token_scores.iter_mut().for_each(|s| *s = -1.0);
        }
        g
    };
    for skip in [true, false] {
        let cfg = LearnerConfig {
            skip_zero_grad_updates: skip,
            mini_batches: 1,
            ..common::cfg()
        };
        let mut l = Learner::new(cfg, common::tiny_model(4), Box::new(SingleProcess)).unwrap();
        l.train_on_groups(&common::synthetic_groups(1, 2, 4, 0)).unwrap();
        let before = common::weights(&l);
        let (rep, _) = l.train_on_groups(&no_signal()).unwrap();
        let moved = common::max_diff(&before, &common::weights(&l));
        if skip {
            assert_eq!((rep.skipped_updates, rep.optimizer_updates, moved), (1, 0, 0.0));
        } else {
            assert_eq!((rep.skipped_updates, rep.optimizer_updates), (0, 1));
            assert!(moved > 0.0, "momentum should have moved the weights");
        }
    }
}
