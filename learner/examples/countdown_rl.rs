//! The learner alone on built-in Countdown, fed by direct sampling (GRPO path), with a held-out
//! Pass@1 before and after: a probe for learning-rate and batch choices without the distributed
//! runtime in the way.
//!
//! `cargo run --release -p deepsearch-learner --example countdown_rl -- MODEL_DIR [steps] [lr]
//!  [numbers] [k] [prompts_per_step]` (env: KL_COEF, MINI_BATCHES, DROP_UNSOLVED=1)

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use deepsearch_learner::weights::{apply, named_tensors};
use deepsearch_learner::{Learner, LearnerConfig, SingleProcess};
use deepsearch_policy::engine::{Engine, EngineConfig};
use deepsearch_policy::search_policy::EnginePolicy;
use deepsearch_policy::PolicyModel;
use deepsearch_search::output::pass_rate;
use deepsearch_search::{sample_groups, DirectInput, SearchConfig, TreeInput};
use deepsearch_tasks::countdown::{self, CountdownConfig, CountdownVerifier};
use deepsearch_tasks::Problem;

fn arg<T: std::str::FromStr>(i: usize, default: T) -> T {
    std::env::args().nth(i).and_then(|s| s.parse().ok()).unwrap_or(default)
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

fn main() {
    tch::set_num_threads(1);
    let dir = PathBuf::from(std::env::args().nth(1).expect("MODEL_DIR"));
    let steps: u64 = arg(2, 100);
    let lr: f64 = arg(3, 5e-4);
    let numbers: usize = arg(4, 3);
    let k: usize = arg(5, 8);
    let pps: usize = arg(6, 8);
    let learner_model = PolicyModel::load_with(&dir, "cpu", "f32").unwrap();
    let sampler_model = PolicyModel::load_with(&dir, "cpu", "f32").unwrap();
    let tok = sampler_model.tokenizer.clone();
    let decoder: Arc<dyn deepsearch_policy::engine::TokenDecoder> =
        Arc::new(move |ids: &[u32]| tok.decode(&ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), true).unwrap_or_default());
    let sampler_vs = sampler_model.vs;
    let engine = Engine::new(sampler_model.model, tch::Device::Cpu, &sampler_model.eos_ids, EngineConfig::default()).with_decoder(decoder);
    let mut policy = EnginePolicy::new(engine);
    let env = |k: &str, d: f64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let cfg = LearnerConfig {
        lr,
        warmup_steps: 2,
        prompts_per_step: pps,
        mini_batches: env("MINI_BATCHES", 2.0) as usize,
        micro_batch_size: 16,
        kl_coef: env("KL_COEF", 0.0),
        drop_unsolved_groups: env("DROP_UNSOLVED", 0.0) > 0.0,
        ..LearnerConfig::default()
    };
    let mut learner = Learner::new(cfg, learner_model, Box::new(SingleProcess)).unwrap();
    let mut search = SearchConfig::default();
    search.overlong.max_response_tokens = Some(160);
    search.overlong.buffer_tokens = 32;
    let c = CountdownConfig { min_numbers: numbers, max_numbers: numbers, ..CountdownConfig::default() };
    let train = countdown::generate(&c, 11, 4000).unwrap();
    let held = countdown::generate(&c, 9, 100).unwrap();
    let verifier = CountdownVerifier;
    let t = Instant::now();
    let e0 = {
        let mut rates = Vec::new();
        for chunk in held.chunks(25) {
            let ins = inputs(&learner.policy, chunk, 8, 999);
            rates.push(pass_rate(&sample_groups(&search, &ins, &mut policy, &verifier, 0, 10_000_000 + rates.len() as u64 * 1000).unwrap()));
        }
        rates.iter().sum::<f64>() / rates.len() as f64
    };
    println!("held-out pass@1 before: {e0:.3} ({:.0}s)", t.elapsed().as_secs_f64());
    let mut window = Vec::new();
    for step in 0..steps {
        apply(&sampler_vs, &named_tensors(&learner.policy.vs)).unwrap();
        let lo = (step as usize * pps) % train.len();
        let ins = inputs(&learner.policy, &train[lo..lo + pps], k, step);
        let groups = sample_groups(&search, &ins, &mut policy, &verifier, learner.policy_version, step * 100).unwrap();
        window.push(pass_rate(&groups));
        let (rep, _) = learner.train_on_groups(&groups).unwrap();
        if (step + 1) % 10 == 0 {
            let m = window.iter().sum::<f64>() / window.len() as f64;
            println!("step {:4} train pass {m:.3} loss {:+.4} grad {:?} ({:.0}s)", step + 1, rep.loss, rep.grad_norms, t.elapsed().as_secs_f64());
            window.clear();
        }
    }
    let mut rates = Vec::new();
    for chunk in held.chunks(25) {
        let ins = inputs(&learner.policy, chunk, 8, 999);
        rates.push(pass_rate(&sample_groups(&search, &ins, &mut policy, &verifier, 0, 20_000_000 + rates.len() as u64 * 1000).unwrap()));
    }
    println!("held-out pass@1 after: {:.3} ({:.0}s)", rates.iter().sum::<f64>() / rates.len() as f64, t.elapsed().as_secs_f64());
}
