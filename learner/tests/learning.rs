//! Learning (issue #5): the learner alone, fed by direct sampling from the generation engine
//! (GRPO/DAPO path: k samples per prompt, outcome scores, mean-only advantages), raises the reward
//! of a built-in toy task over its measured starting point. Weights travel learner → sampler
//! through the checksummed publication ([`deepsearch_learner::weights`]), as they do to actors.
//!
//! Task: a response is correct when its first character is one of `abcdef` (6 of the 24 ids of a
//! tiny char-level model, so about 25% at random initialisation).

mod common;

use deepsearch_learner::weights::{apply, named_tensors, publish, Reassembler};
use deepsearch_learner::{Learner, LearnerConfig, SingleProcess};
use deepsearch_policy::engine::{Engine, EngineConfig};
use deepsearch_policy::search_policy::EnginePolicy;
use deepsearch_search::output::pass_rate;
use deepsearch_search::{sample_groups, DirectInput, SearchConfig, TreeInput};
use deepsearch_tasks::{Problem, Verdict, Verifier};
use std::sync::Arc;

struct FirstCharVerifier;

impl Verifier for FirstCharVerifier {
    fn verify(&self, _p: &Problem, response: &str) -> Verdict {
        match response.chars().next() {
            Some(c) if "abcdef".contains(c) => Verdict::Correct,
            Some(_) => Verdict::Wrong,
            None => Verdict::Unparsable,
        }
    }
}

#[test]
fn direct_sampling_grpo_raises_reward_over_the_baseline() {
    let learner_model = common::tiny_model(11);
    let sampler_model = common::tiny_model(12); // overwritten by the first publication
    let tok = sampler_model.tokenizer.clone();
    let decoder: Arc<dyn deepsearch_policy::engine::TokenDecoder> = Arc::new(move |ids: &[u32]| {
        tok.decode(&ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), true)
            .unwrap_or_default()
    });
    let sampler_vs = sampler_model.vs;
    let engine = Engine::new(
        sampler_model.model,
        tch::Device::Cpu,
        &sampler_model.eos_ids,
        EngineConfig::default(),
    )
    .with_decoder(decoder);
    let mut policy = EnginePolicy::new(engine);

    let cfg = LearnerConfig {
        lr: 3e-3,
        warmup_steps: 1,
        mini_batches: 1,
        micro_batch_size: 64,
        ..LearnerConfig::for_test()
    };
    let mut learner = Learner::new(cfg, learner_model, Box::new(SingleProcess)).unwrap();
    let mut search = SearchConfig::for_test();
    search.overlong.max_response_tokens = Some(3);
    search.overlong.buffer_tokens = 0;
    search.seed = 5;
    let inputs: Vec<DirectInput> = (0..8)
        .map(|i| {
            let prompt = ["ab", "cd", "ef", "gh", "ij", "kl", "mn", "op"][i].to_string();
            let ids: Vec<u32> = learner
                .policy
                .tokenizer
                .encode(&prompt, false)
                .unwrap()
                .into_iter()
                .map(|x| x as u32)
                .collect();
            DirectInput {
                input: TreeInput {
                    problem: Problem::new(format!("p{i}"), "toy", prompt, ""),
                    prompt_tokens: ids,
                    salt: 0,
                },
                k: 8,
                cached: vec![],
            }
        })
        .collect();

    let mut rates = Vec::new();
    for step in 0..30u64 {
        // publish → verify → swap: the sampler gets exactly the learner's weights
        let (manifest, chunks) = publish(&named_tensors(&learner.policy.vs), learner.policy_version, 4096).unwrap();
        let mut r = Reassembler::new(manifest).unwrap();
        for c in &chunks {
            r.push(c).unwrap();
        }
        apply(&sampler_vs, &r.finish().unwrap()).unwrap();
        let mut inputs = inputs.clone();
        for d in &mut inputs {
            d.input.salt = step; // fresh samples each step
        }
        let groups = sample_groups(
            &search,
            &inputs,
            &mut policy,
            &FirstCharVerifier,
            learner.policy_version,
            step * 100,
        )
        .unwrap();
        rates.push(pass_rate(&groups));
        learner.train_on_groups(&groups).unwrap();
    }
    eprintln!("pass rate per step: {rates:?}");
    let baseline = rates[0];
    let last = rates[rates.len() - 3..].iter().sum::<f64>() / 3.0;
    assert!(
        last > baseline + 0.3,
        "pass rate per step {rates:?}: baseline {baseline:.2}, last three {last:.2}"
    );
}
