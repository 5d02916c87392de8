//! Learning on a built-in task (issue #5): the learner alone, fed by direct sampling from the
//! generation engine (the GRPO/DAPO path: k samples per prompt, outcome scores, mean-only
//! advantages), raises the reward on built-in Countdown over its measured starting point.
//!
//! The policy is bootstrapped here as `deepsearch train` does (a fresh char-level Qwen2 of 0.3M
//! parameters, SFT on generated 3-number solution traces for a fixed number of updates), then
//! trained on 16 problems; the reward is the pass rate of 16 samples per problem on those 16, the
//! training problems, so a short run on 2 CPU cores must move it. Fixed seeds throughout.
//!
//! Measured (debug build, 2 loaded cores): 5.5% of the samples correct after the bootstrap; the
//! per-step pass rate of the trained halves passes 20% by step 7 and 30% by step 14; after 60
//! steps 29.7% on the 16 problems. The test trains 30 steps and asks for a rise of 10 points.

use std::io::Write;
use std::sync::Arc;

use deepsearch_learner::sft::{read_examples, train_sft, SftConfig};
use deepsearch_learner::weights::{apply, named_tensors};
use deepsearch_learner::{Learner, LearnerConfig, SingleProcess};
use deepsearch_policy::engine::{Engine, EngineConfig};
use deepsearch_policy::search_policy::EnginePolicy;
use deepsearch_policy::{PolicyModel, PolicyTokenizer, Qwen2Config};
use deepsearch_search::output::pass_rate;
use deepsearch_search::{sample_groups, DirectInput, SearchConfig, TreeInput};
use deepsearch_tasks::countdown::{self, CountdownConfig, CountdownVerifier};
use deepsearch_tasks::Problem;

/// The bootstrap model of `deepsearch train`, before SFT.
fn init_model(seed: u64) -> PolicyModel {
    let tok = PolicyTokenizer::char_level(countdown::alphabet()).unwrap();
    PolicyModel::init_random(&Qwen2Config::bootstrap(tok.vocab_size() as i64), tok, seed).unwrap()
}

fn inputs(model: &PolicyModel, problems: &[Problem], k: usize, salt: u64) -> Vec<DirectInput> {
    problems
        .iter()
        .map(|p| DirectInput {
            input: TreeInput {
                problem: p.clone(),
                prompt_tokens: model.tokenizer.encode_prompt(&p.prompt).unwrap().into_iter().map(|x| x as u32).collect(),
                salt,
            },
            k,
            cached: vec![],
        })
        .collect()
}

#[test]
fn grpo_raises_the_reward_on_countdown_problems() {
    tch::manual_seed(0);
    let dir = tempfile::tempdir().unwrap();
    let three = CountdownConfig::with_numbers(3);
    // bootstrap: SFT on 2000 generated traces, 340 updates (3-4% of samples correct)
    let data = dir.path().join("sft.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&data).unwrap());
        for p in countdown::generate(&three, 1, 2000).unwrap() {
            let trace = countdown::solution_trace(&p).unwrap();
            writeln!(f, "{}", serde_json::json!({"prompt": p.prompt, "response": trace})).unwrap();
        }
    }
    let mut learner_model = init_model(0);
    let examples = read_examples(&data, &learner_model).unwrap();
    let sft = SftConfig { lr: 3e-3, batch_size: 32, epochs: 1000, max_steps: 340, seed: 1, decay_to: 0.1, ..Default::default() };
    train_sft(&mut learner_model, &examples, &sft, |_, _| {}).unwrap();

    let sampler_model = init_model(1); // overwritten before every sampling round
    let tok = sampler_model.tokenizer.clone();
    let decoder: Arc<dyn deepsearch_policy::engine::TokenDecoder> =
        Arc::new(move |ids: &[u32]| tok.decode(&ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), true).unwrap_or_default());
    let sampler_vs = sampler_model.vs;
    let engine = Engine::new(sampler_model.model, tch::Device::Cpu, &sampler_model.eos_ids, EngineConfig::default()).with_decoder(decoder);
    let mut policy = EnginePolicy::new(engine);

    let cfg = LearnerConfig {
        lr: 3e-4,
        warmup_steps: 2,
        prompts_per_step: 8,
        mini_batches: 2,
        micro_batch_size: 16,
        seed: 3,
        ..LearnerConfig::default()
    };
    let mut learner = Learner::new(cfg, learner_model, Box::new(SingleProcess)).unwrap();
    let mut search = SearchConfig::default();
    search.overlong.max_response_tokens = Some(160);
    search.overlong.buffer_tokens = 32;
    search.seed = 7;
    let train = countdown::generate(&three, 11, 16).unwrap();
    let verifier = CountdownVerifier;
    let measure = |learner: &Learner, policy: &mut EnginePolicy, salt: u64| {
        apply(&sampler_vs, &named_tensors(&learner.policy.vs)).unwrap();
        let ins = inputs(&learner.policy, &train, 16, salt);
        pass_rate(&sample_groups(&search, &ins, policy, &verifier, learner.policy_version, salt).unwrap())
    };
    let before = measure(&learner, &mut policy, 1_000_000);
    let mut curve = Vec::new();
    for step in 0..30u64 {
        let half = &train[(step as usize % 2) * 8..][..8];
        apply(&sampler_vs, &named_tensors(&learner.policy.vs)).unwrap();
        let ins = inputs(&learner.policy, half, 8, step);
        let groups = sample_groups(&search, &ins, &mut policy, &verifier, learner.policy_version, step * 100).unwrap();
        curve.push(pass_rate(&groups));
        learner.train_on_groups(&groups).unwrap();
    }
    let after = measure(&learner, &mut policy, 2_000_000);
    eprintln!("pass rate on the 16 training problems: {before:.3} -> {after:.3}; per step {curve:.2?}");
    assert!(after >= before + 0.10, "pass rate {before:.3} -> {after:.3}: no rise of 10 points; per step {curve:.2?}");
}
