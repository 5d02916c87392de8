//! The config files the repository ships for the role commands (`configs/paper-1.5b/`,
//! `deploy/launch/templates/`, `deploy/k8s/.../config/`) parse with each role's own loader, with
//! the placeholders filled in as `deploy/launch/launch.sh` does; the paper's run holds every value
//! of `shared/spec/deepsearch.md`.

use std::path::{Path, PathBuf};

use deepsearch_coordinator::config::{CacheRule, Pipeline, Refilter};
use deepsearch_coordinator::sources::SourceConfig;
use deepsearch_learner::{AdvNorm, LearnerConfig, LossAgg, Precision};
use deepsearch_search::config::{BackupKind, CreditKind, DepthBonus, EntropyKind, SelectionKind};
use deepsearch_search::SearchConfig;

use crate::cmd_actor::ActorFileConfig;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The placeholders `deploy/launch/launch.sh` fills in, with values of a GPU host.
const FILLED: &[(&str, &str)] = &[
    ("COORDINATOR_PORT", "50051"),
    ("LEARNER_PORT", "50061"),
    ("COORDINATOR", "node1:50051"),
    ("LEARNER", "node1:50061"),
    ("WORKDIR", "/shared/runs/paper"),
    ("MODEL", "/shared/base"),
    ("DEVICE", "cuda"),
    ("DTYPE", "bf16"),
    ("ACTOR_NAME", "actor-3"),
];

/// `file` with every placeholder filled in, written to `dir`; a placeholder launch.sh does not
/// know fails the test (it would reach the role as a literal `@NAME@`).
fn filled(file: &Path, dir: &Path) -> PathBuf {
    let mut text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    for (k, v) in FILLED {
        text = text.replace(&format!("@{k}@"), v);
    }
    // what is left of the form @NAME@ (upper case, digits, underscores) outside comments
    for line in text.lines().map(|l| l.split('#').next().unwrap_or("")) {
        let parts: Vec<&str> = line.split('@').collect();
        for name in parts.iter().skip(1).take(parts.len().saturating_sub(2)) {
            let placeholder = !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            assert!(!placeholder, "{}: placeholder @{name}@ is not one launch.sh fills in", file.display());
        }
    }
    let out = dir.join(file.file_name().unwrap());
    std::fs::write(&out, text).unwrap();
    out
}

#[test]
fn the_paper_run_holds_every_value_of_the_spec() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = repo().join("configs/paper-1.5b");

    let l = crate::cmd_learner::load(&filled(&dir.join("learner.toml"), tmp.path()), &[]).unwrap();
    // spec §6, written out by hand: AdamW lr 1e-6, 10 warm-up steps, wd 0.1, clip 1.0; 256 prompts
    // x 8 trajectories, 8 mini-batches, 1 epoch; clip-higher 0.2/0.28, dual-clip 10; mean-only
    // advantages, token-mean, no KL; bf16 on GPU; unsolved trees train.
    let spec = LearnerConfig {
        lr: 1e-6,
        warmup_steps: 10,
        weight_decay: 0.1,
        grad_clip: 1.0,
        clip_low: 0.2,
        clip_high: 0.28,
        dual_clip: 10.0,
        prompts_per_step: 256,
        trajectories_per_prompt: 8,
        mini_batches: 8,
        epochs: 1,
        adv_norm: AdvNorm::Mean,
        loss_agg: LossAgg::TokenMean,
        kl_coef: 0.0,
        tis_cap: None,
        drop_unsolved_groups: false,
        precision: Precision::Bf16,
        micro_batch_size: 4,
        ..LearnerConfig::default()
    };
    assert_eq!(l.learner, spec);
    assert_eq!((l.model.path.as_path(), l.model.device.as_str(), l.model.dtype.as_str()), (Path::new("/shared/base"), "cuda", "bf16"));
    assert_eq!((l.runtime.prompts_per_step, l.runtime.max_staleness), (256, l.learner.max_staleness));
    assert_eq!(l.runtime.checkpoint_dir.as_deref(), Some(Path::new("/shared/runs/paper/checkpoints")));
    assert_eq!(l.runtime.coordinator.as_ref().map(|c| c.address.as_str()), Some("node1:50051"));

    let a = ActorFileConfig::load(&filled(&dir.join("actor.toml"), tmp.path()), &[]).unwrap();
    let s = &a.actor.search;
    // spec §1–§5 by hand
    assert_eq!((s.segment_tokens, s.segment_delimiter.as_deref(), s.max_depth, s.expansion_width), (256, None, 64, 8));
    assert_eq!((s.temperature, s.top_p), (1.0, 1.0));
    assert_eq!((s.reward.correct, s.reward.wrong, s.reward.incomplete), (1.0, -1.0, -1.0));
    assert_eq!((s.overlong.max_response_tokens, s.overlong.buffer_tokens, s.overlong.factor), (Some(16384), 4096, 1.0));
    assert_eq!((s.entropy, s.backup, s.gamma_min, s.uct_lambda), (EntropyKind::Nll, BackupKind::Constrained, 0.1, 2.0));
    let f = &s.frontier;
    assert_eq!((f.lambda1, f.lambda2, f.lambda3, f.lambda4, f.depth_bonus), (0.4, 0.0, 0.01, 0.0, DepthBonus::Sqrt));
    assert_eq!((s.selection, s.trajectories_per_tree), (SelectionKind::Frontier, 8));
    assert_eq!((s.q_eps, s.q_max, s.credit), (1.0, 1.0, CreditKind::Node));
    assert!(s.garbled.enabled && !s.prune_invalid_prefixes);
    // nothing else differs from the crate's defaults (which follow the spec)
    let defaults = SearchConfig { overlong: s.overlong.clone(), ..SearchConfig::default() };
    assert_eq!(*s, defaults);
    assert_eq!(a.actor.capacity, 16, "spec §8: 16 trees per inference worker");
    assert_eq!(a.model.engine.max_context, 2048 + 16384, "prompt <= 2048, response <= 16384");
    assert_eq!((a.actor.name.as_str(), a.actor.coordinator.as_str(), a.actor.learner.as_str()), ("actor-3", "node1:50051", "node1:50061"));

    let c = crate::cmd_coordinator::load(&filled(&dir.join("coordinator.toml"), tmp.path()), &[]).unwrap();
    // spec §7 by hand: Pass1@4 <= 25%, re-filtered each round; the released cache rule
    assert_eq!((c.filter.k, c.filter.delta, c.filter.strict, c.filter.refilter), (4, 0.25, false, Refilter::PerRound));
    assert_eq!((c.cache.rule, c.cache.released_max_fraction, c.cache.max_solutions), (CacheRule::Released, 0.25, 8));
    assert_eq!((c.schedule.pipeline, c.schedule.group_size), (Pipeline::Deepsearch, 8));
    match c.sources.as_slice() {
        [SourceConfig::File(f)] => assert_eq!((f.task.as_str(), f.answer_field.as_str()), ("math", "final_answer")),
        other => panic!("the paper's run reads one DeepMath file, got {other:?}"),
    }
    assert_eq!(c.state_dir, Path::new("/shared/runs/paper/coordinator-state"));
}

#[test]
fn every_shipped_role_config_parses_with_its_loader() {
    let tmp = tempfile::tempdir().unwrap();
    let mut seen = 0;
    for dir in ["configs/paper-1.5b", "deploy/launch/templates", "deploy/k8s/base/config", "deploy/k8s/overlays/cpu-demo/config"] {
        for role in ["coordinator", "learner", "actor"] {
            let file = repo().join(dir).join(format!("{role}.toml"));
            if !file.is_file() {
                continue;
            }
            let sub = tmp.path().join(dir.replace('/', "_"));
            std::fs::create_dir_all(&sub).unwrap();
            let path = filled(&file, &sub);
            let what = format!("{}", file.display());
            match role {
                "coordinator" => drop(crate::cmd_coordinator::load(&path, &[]).unwrap_or_else(|e| panic!("{what}: {e:#}"))),
                "learner" => drop(crate::cmd_learner::load(&path, &[]).unwrap_or_else(|e| panic!("{what}: {e:#}"))),
                _ => drop(ActorFileConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{what}: {e:#}"))),
            }
            seen += 1;
        }
    }
    assert!(seen >= 9, "expected the three roles in the paper templates, the launch templates and the k8s base, found {seen} files");
}
