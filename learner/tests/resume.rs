//! Resume (issue #5 §4): a run interrupted after step k and resumed from its checkpoint reaches the
//! same weights at step k + 2 as an uninterrupted run; old checkpoints are pruned.

mod common;

use deepsearch_learner::{latest_checkpoint, list_checkpoints, Learner, SingleProcess};

fn step(l: &mut Learner) {
    let groups = common::synthetic_groups(200 + l.step, 4, 4, l.policy_version);
    l.train_on_groups(&groups).unwrap();
    l.data_cursor = serde_json::json!({"next_group_seed": 200 + l.step});
}

#[test]
fn interrupted_and_resumed_run_matches_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let k = 2;
    let mut a = Learner::new(common::cfg(), common::tiny_model(3), Box::new(SingleProcess)).unwrap();
    for _ in 0..k {
        step(&mut a);
        a.save_checkpoint(dir.path()).unwrap();
    }
    for _ in 0..2 {
        step(&mut a);
    }
    let want = common::weights(&a);

    // a fresh process: other initial weights, state only from the checkpoint
    let mut b = Learner::new(common::cfg(), common::tiny_model(99), Box::new(SingleProcess)).unwrap();
    let ckpt = latest_checkpoint(dir.path()).unwrap().unwrap();
    assert!(ckpt.ends_with("step-00000002"), "{}", ckpt.display());
    let state = b.load_checkpoint(&ckpt).unwrap();
    assert_eq!(
        (
            state.step,
            state.policy_version,
            b.data_cursor["next_group_seed"].as_u64()
        ),
        (2, 2, Some(202))
    );
    for _ in 0..2 {
        step(&mut b);
    }
    assert_eq!(
        (b.step, b.policy_version, b.opt.updates),
        (a.step, a.policy_version, a.opt.updates)
    );
    assert_eq!(b.rng.get_word_pos(), a.rng.get_word_pos());
    let d = common::max_diff(&want, &common::weights(&b));
    assert_eq!(d, 0.0, "resumed weights differ by {d}");

    // keep_last = 2: saving steps 5 and 6 prunes 1 and 2 (and the model folder is HF layout)
    for _ in 0..2 {
        step(&mut b);
        b.save_checkpoint(dir.path()).unwrap();
    }
    let steps: Vec<u64> = list_checkpoints(dir.path())
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(steps, vec![5, 6]);
    let last = latest_checkpoint(dir.path()).unwrap().unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "optimizer.safetensors",
        "trainer_state.json",
    ] {
        assert!(last.join(f).exists(), "{f}");
    }
    assert!(!std::fs::read_dir(dir.path()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with(".tmp")));
}

#[test]
fn a_corrupt_checkpoint_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Learner::new(common::cfg(), common::tiny_model(3), Box::new(SingleProcess)).unwrap();
    step(&mut a);
    let ckpt = a.save_checkpoint(dir.path()).unwrap();
    std::fs::write(ckpt.join("optimizer.safetensors"), b"garbage").unwrap();
    let err = a.load_checkpoint(&ckpt).unwrap_err().to_string();
    assert!(err.contains("optimizer.safetensors"), "{err}");
    std::fs::write(ckpt.join("trainer_state.json"), b"{\"step\": 1}").unwrap();
    let err = a.load_checkpoint(&ckpt).unwrap_err().to_string();
    assert!(err.contains("trainer_state.json"), "{err}");
}
