//! The runtime driving the real Tree-GRPO learner ([`PolicyTrainer`] on a tiny Qwen2): pushed
//! groups become a step, and the published weights are the model's parameters under their HF
//! names, changed by the step.

mod runtime_support;

use deepsearch_learner::runtime::{LearnerRuntimeConfig, PolicyTrainer};
use deepsearch_learner::{Learner, LearnerConfig, SingleProcess};
use deepsearch_policy::{PolicyModel, PolicyTokenizer, Qwen2Config};
use deepsearch_proto::v1 as pb;
use deepsearch_proto::weights::{download_and_verify_with, DownloadOptions};
use runtime_support::*;

fn tiny_model() -> PolicyModel {
    let tok = PolicyTokenizer::char_level("abcdefghijklmnopqrst").unwrap();
    let mut cfg = Qwen2Config::tiny(24);
    cfg.hidden_size = 32;
    cfg.intermediate_size = 64;
    PolicyModel::init_random(&cfg, tok, 1).unwrap()
}

#[tokio::test]
async fn policy_trainer_steps_and_publishes_hf_named_weights() {
    within(60, async {
        let lcfg = LearnerConfig { prompts_per_step: 2, ..LearnerConfig::for_test() };
        let learner = Learner::new(lcfg, tiny_model(), Box::new(SingleProcess)).unwrap();
        let trainer = PolicyTrainer::new(learner, r#"{"model_type":"qwen2"}"#.into());
        let lr = start(LearnerRuntimeConfig { chunk_bytes: 4096, ..LearnerRuntimeConfig::for_test() }, trainer).await;
        let mut c = client(lr.addr).await;
        let opts = DownloadOptions::default();
        let (v0, before, manifest) = download_and_verify_with(&mut c, 0, &opts).await.unwrap();
        assert_eq!((v0, manifest.config_json.as_str()), (0, r#"{"model_type":"qwen2"}"#));
        assert!(manifest.tensors.iter().any(|t| t.name == "model.embed_tokens.weight"), "{:?}", manifest.tensors.iter().map(|t| &t.name).collect::<Vec<_>>());

        let mut watch = c.watch_policy_versions(pb::WatchPolicyVersionsRequest { after_version: 0 }).await.unwrap().into_inner();
        assert_eq!(watch.message().await.unwrap().unwrap().policy_version, 0);
        let mut p = Pusher::open(&mut c).await;
        for g in 0..2 {
            for k in 0..2u32 {
                let mut t = traj(&format!("g{g}k{k}"), &format!("g{g}"), 2, 0);
                t.prompt_tokens = vec![3, 4, 5];
                t.response_tokens = vec![6 + k, 7, 8 + g];
                let r = if k == 0 { 1.0 } else { -1.0 };
                t.token_scores = vec![r; 3];
                t.terminal_score = r;
                t.verdict = if k == 0 { pb::Verdict::Correct } else { pb::Verdict::Wrong } as i32;
                t.sampling_logprobs = vec![-3.0; 3];
                p.send(Some(t)).await;
            }
        }
        assert_eq!(p.flush().await.rejected_invalid, 0);
        assert_eq!(watch.message().await.unwrap().unwrap().policy_version, 1);
        let (v1, after, m1) = download_and_verify_with(&mut c, 1, &opts).await.unwrap();
        assert_eq!(v1, 1);
        let names = |m: &pb::WeightsManifest| m.tensors.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&manifest), names(&m1));
        let changed = manifest.tensors.iter().zip(&m1.tensors).filter(|(a, b)| a.sha256 != b.sha256).count();
        assert!(changed > 0, "the step changed no tensor");
        assert_ne!(before, after);
        lr.stop().await.unwrap();
    })
    .await
}
