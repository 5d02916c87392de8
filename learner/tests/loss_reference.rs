//! Loss, advantages and gradients against the PyTorch reference written by
//! `tests/fixtures/gen_loss_fixture.py` (regenerate with /work/pyref/bin/python).

mod common;

use deepsearch_learner::batch::{build_step, IngestLimits};
use deepsearch_learner::loss::{policy_loss, token_weight, AggCounts, ClipParams, LossInputs, LossParams};
use deepsearch_learner::LearnerConfig;
use deepsearch_search::{Group, GroupStats, Source};
use serde_json::Value;
use tch::{Kind, Tensor};

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn loss_and_gradients_match_pytorch() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/loss_fixture.json")).unwrap();
    let fx: Value = serde_json::from_str(&text).unwrap();
    let trajs = fx["trajectories"].as_array().unwrap();
    let n_groups = fx["groups"].as_array().unwrap().len();
    let mut groups: Vec<Group> = (0..n_groups)
        .map(|g| Group {
            problem_id: format!("g{g}"),
            source: Source::Search,
            trajectories: vec![],
            stats: GroupStats::default(),
        })
        .collect();
    for t in trajs {
        let scores = f32s(&t["token_scores"]);
        let n = scores.len();
        let sampling = if t["sampling_logp"].is_null() {
            vec![]
        } else {
            f32s(&t["sampling_logp"])
        };
        let tr = common::trajectory(
            vec![3, 4],
            vec![5; n],
            scores,
            t["terminal_score"].as_f64().unwrap(),
            sampling,
            0,
        );
        groups[t["group"].as_u64().unwrap() as usize].trajectories.push(tr);
    }
    let cat = |key: &str| -> Vec<f32> { trajs.iter().flat_map(|t| f32s(&t[key])).collect() };
    let (logp_v, old_v, ref_v) = (cat("logp"), cat("old_logp"), cat("ref_logp"));
    let lim = IngestLimits {
        learner_version: 0,
        vocab_size: 10,
        max_context: 100,
    };
    for case in fx["cases"].as_array().unwrap() {
        let o = &case["options"];
        let cfg: LearnerConfig = serde_json::from_value(serde_json::json!({
            "adv_norm": o["adv_norm"], "loss_agg": o["loss_agg"], "clip_low": o["clip_low"],
            "clip_high": o["clip_high"], "dual_clip": o["dual_clip"], "kl_coef": o["kl_coef"],
            "tis_cap": o["tis_cap"], "loss_norm_tokens": o["loss_norm_tokens"],
        }))
        .unwrap();
        let (step, rep) = build_step(&groups, &cfg, &lim);
        assert_eq!(rep.trajectories_kept, trajs.len());
        // advantages (samples keep fixture order: groups are contiguous in the fixture)
        let want_adv: Vec<Vec<f32>> = case["advantages"].as_array().unwrap().iter().map(f32s).collect();
        for (s, w) in step.samples.iter().zip(&want_adv) {
            for (a, b) in s.advantages.iter().zip(w) {
                assert!((a - b).abs() < 1e-5, "{o}: advantage {a} vs {b}");
            }
        }
        let lens: Vec<usize> = step.samples.iter().map(|s| s.response.len()).collect();
        let counts = AggCounts::of(&lens);
        let weight: Vec<f32> = lens
            .iter()
            .flat_map(|&l| std::iter::repeat_n(token_weight(cfg.loss_agg, l, counts, cfg.loss_norm_tokens) as f32, l))
            .collect();
        let adv: Vec<f32> = step.samples.iter().flat_map(|s| s.advantages.clone()).collect();
        let (samp, has): (Vec<f32>, Vec<f32>) = step
            .samples
            .iter()
            .flat_map(|s| match &s.sampling_logprobs {
                Some(lp) => lp.iter().map(|&x| (x, 1.0)).collect::<Vec<_>>(),
                None => vec![(0.0, 0.0); s.response.len()],
            })
            .unzip();
        let logp = Tensor::from_slice(&logp_v).set_requires_grad(true);
        let t = Tensor::from_slice;
        let (old, advt, wt, reft, sampt, hast) = (t(&old_v), t(&adv), t(&weight), t(&ref_v), t(&samp), t(&has));
        let inputs = LossInputs {
            logp: &logp,
            old_logp: &old,
            adv: &advt,
            weight: &wt,
            ref_logp: Some(&reft),
            sampling: Some((&sampt, &hast)),
        };
        let params = LossParams {
            clip: ClipParams {
                low: cfg.clip_low,
                high: cfg.clip_high,
                dual: cfg.dual_clip,
            },
            kl_coef: cfg.kl_coef,
            tis_cap: cfg.tis_cap,
        };
        let (loss, _) = policy_loss(&inputs, params);
        loss.backward();
        let want = case["loss"].as_f64().unwrap();
        let got = loss.double_value(&[]);
        assert!(
            (got - want).abs() < 1e-5 * (1.0 + want.abs()),
            "{o}: loss {got} vs {want}"
        );
        let grad = Vec::<f32>::try_from(logp.grad().to_kind(Kind::Float)).unwrap();
        let want_g: Vec<f32> = case["grad_logp"].as_array().unwrap().iter().flat_map(f32s).collect();
        for (i, (a, b)) in grad.iter().zip(&want_g).enumerate() {
            assert!((a - b).abs() < 1e-5, "{o}: grad[{i}] {a} vs {b}");
        }
    }
}
