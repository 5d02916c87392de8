//! Data-parallel equivalence (issue #5): 2 thread ranks with half of each mini-batch each reach the
//! same weights as 1 rank with all of it.

mod common;

use deepsearch_learner::{Learner, SingleProcess, ThreadGroup};
use std::time::Duration;

const STEPS: u64 = 2;

fn run_steps(l: &mut Learner) {
    for s in 0..STEPS {
        let groups = common::synthetic_groups(100 + s, 4, 4, l.policy_version);
        let (rep, ingest) = l.train_on_groups(&groups).unwrap();
        assert_eq!(ingest.trajectories_kept, 16);
        assert_eq!(rep.optimizer_updates, 2);
    }
}

#[test]
fn two_thread_ranks_equal_one_rank() {
    let mut single = Learner::new(common::cfg(), common::tiny_model(7), Box::new(SingleProcess)).unwrap();
    let before = common::weights(&single);
    run_steps(&mut single);
    let want = common::weights(&single);
    assert!(
        common::max_diff(&before, &want) > 1e-4,
        "the steps must change the weights"
    );

    let ranks = ThreadGroup::new(2, Duration::from_secs(60), 1000);
    let handles: Vec<_> = ranks
        .into_iter()
        .map(|c| {
            std::thread::spawn(move || {
                // rank 1 starts from other weights: the broadcast in Learner::new aligns them
                let seed = 7 + c_rank(&c) as u64;
                let mut l = Learner::new(common::cfg(), common::tiny_model(seed), Box::new(c)).unwrap();
                run_steps(&mut l);
                common::weights(&l)
            })
        })
        .collect();
    let got: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        common::max_diff(&got[0], &got[1]),
        0.0,
        "ranks must hold identical weights"
    );
    let d = common::max_diff(&got[0], &want);
    assert!(d < 2e-5, "2 ranks vs 1 rank: max weight difference {d}");
}

fn c_rank(c: &deepsearch_learner::ThreadCollective) -> usize {
    use deepsearch_learner::Collective;
    c.rank()
}
