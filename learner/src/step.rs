//! The training step, top to bottom like nanoGPT's `train.py` (spec §6):
//!
//! 1. plan: the step's groups → mini-batches → this rank's micro-batches ([`StepBatch::plan`]);
//! 2. π_old: log-probs of every micro-batch recomputed without gradients (and π_ref for the KL);
//! 3. for each epoch and mini-batch: zero grads; per micro-batch forward with gradients, loss
//!    ([`crate::loss::policy_loss`], weights from global counts), backward (gradient accumulation);
//!    all-reduce the gradients; clip the global norm; AdamW;
//! 4. the policy version advances by one per step.
//!
//! The [`Learner`] owns the model, the optimizer, the collective and the RNG; it is driven by the
//! runtime (one thread owns it: tensor work never runs on the async runtime).

use crate::batch::{build_step, IngestLimits, IngestReport, MiniBatchPlan, StepBatch, TrainSample};
use crate::collective::Collective;
use crate::config::{LearnerConfig, Precision};
use crate::error::{LearnerError, Result};
use crate::loss::{policy_loss, token_weight, ClipParams, LossInputs, LossParams};
use crate::optim::{AdamParams, AdamW};
use deepsearch_policy::logprobs::{token_logprobs, LogprobOptions};
use deepsearch_policy::{PolicyModel, Qwen2};
use deepsearch_search::Group;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::{nn::VarStore, Device, Kind, Tensor};

/// What one step did (rank-local counts; losses are this rank's share).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    pub step: u64,
    /// Policy version after the step.
    pub policy_version: u64,
    pub optimizer_updates: u32,
    /// Updates skipped for a non-finite gradient norm.
    pub skipped_updates: u32,
    /// Learning rate of the last update.
    pub lr: f64,
    /// Sum over updates of this rank's loss share (Σ w·ℓ), averaged over updates.
    pub loss: f64,
    /// Gradient norms before clipping, one per update.
    pub grad_norms: Vec<f64>,
    /// Fraction of this rank's response tokens whose ratio left [1 − ε_low, 1 + ε_high].
    pub clip_fraction: f64,
    pub sequences: usize,
    pub response_tokens: usize,
    /// Prompt + response tokens run through forward and backward.
    pub tokens: usize,
    pub old_logprob_s: f64,
    pub update_s: f64,
    /// `tokens` / (`old_logprob_s` + `update_s`).
    pub tokens_per_s: f64,
}

/// Padded tensors of one micro-batch.
#[derive(Debug)]
pub struct MicroTensors {
    pub ids: Tensor,
    pub mask: Tensor,
    /// `[B, T-1]` per target position.
    pub adv: Tensor,
    pub weight: Tensor,
    pub sampling: Tensor,
    pub has_sampling: Tensor,
    pub response_tokens: usize,
    pub tokens: usize,
}

/// Builds the padded tensors of `idx` (response token j of a sample with prompt length p sits at
/// log-prob position p + j − 1). `weight_of(len)` is the aggregation weight of a response.
pub fn micro_tensors(
    samples: &[TrainSample],
    idx: &[usize],
    weight_of: &dyn Fn(usize) -> f64,
    device: Device,
) -> MicroTensors {
    let b = idx.len();
    let t = idx.iter().map(|&i| samples[i].len()).max().unwrap_or(2).max(2);
    let mut ids = vec![0i64; b * t];
    let mut mask = vec![0f32; b * t];
    let n = t - 1;
    let (mut adv, mut weight, mut samp, mut has) = (
        vec![0f32; b * n],
        vec![0f32; b * n],
        vec![0f32; b * n],
        vec![0f32; b * n],
    );
    let (mut resp, mut toks) = (0, 0);
    for (r, &i) in idx.iter().enumerate() {
        let s = &samples[i];
        let p = s.prompt.len();
        for (j, &id) in s.prompt.iter().chain(&s.response).enumerate() {
            ids[r * t + j] = id;
            mask[r * t + j] = 1.0;
        }
        let w = weight_of(s.response.len()) as f32;
        for j in 0..s.response.len() {
            let k = r * n + p + j - 1;
            adv[k] = s.advantages[j];
            weight[k] = w;
            if let Some(lp) = &s.sampling_logprobs {
                samp[k] = lp[j];
                has[k] = 1.0;
            }
        }
        resp += s.response.len();
        toks += s.len();
    }
    let mk = |v: &[f32], cols: usize| Tensor::from_slice(v).view([b as i64, cols as i64]).to_device(device);
    MicroTensors {
        ids: Tensor::from_slice(&ids).view([b as i64, t as i64]).to_device(device),
        mask: mk(&mask, t),
        adv: mk(&adv, n),
        weight: mk(&weight, n),
        sampling: mk(&samp, n),
        has_sampling: mk(&has, n),
        response_tokens: resp,
        tokens: toks,
    }
}

/// The learner of one rank.
pub struct Learner {
    pub cfg: LearnerConfig,
    pub policy: PolicyModel,
    /// Frozen copy of the initial weights, only when `kl_coef > 0`.
    reference: Option<(VarStore, Qwen2)>,
    pub opt: AdamW,
    collective: Box<dyn Collective>,
    pub rng: ChaCha8Rng,
    /// Steps completed.
    pub step: u64,
    /// Version of the current weights (starts at 0, +1 per step).
    pub policy_version: u64,
    /// Opaque position of the data feeding this learner, saved with checkpoints.
    pub data_cursor: serde_json::Value,
}

impl std::fmt::Debug for Learner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Learner")
            .field("step", &self.step)
            .field("policy_version", &self.policy_version)
            .finish()
    }
}

impl Learner {
    /// A learner over `policy`; rank 0's weights are broadcast so every rank starts identical.
    pub fn new(cfg: LearnerConfig, mut policy: PolicyModel, mut collective: Box<dyn Collective>) -> Result<Self> {
        cfg.validate()?;
        if cfg.precision == Precision::Bf16 && policy.dtype != Kind::BFloat16 {
            policy.vs.set_kind(Kind::BFloat16);
            policy.dtype = Kind::BFloat16;
        }
        let mut vars: Vec<Tensor> = crate::weights::named_tensors(&policy.vs)
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        collective.broadcast(&mut vars, 0)?;
        let reference = if cfg.kl_coef > 0.0 {
            let mut vs = VarStore::new(policy.device);
            let model = tch::no_grad(|| Qwen2::new(&vs.root(), &policy.cfg));
            vs.set_kind(policy.dtype);
            vs.copy(&policy.vs)?;
            vs.freeze();
            Some((vs, model))
        } else {
            None
        };
        let opt = AdamW::new(&policy.vs, AdamParams::from_config(&cfg));
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        Ok(Learner {
            cfg,
            policy,
            reference,
            opt,
            collective,
            rng,
            step: 0,
            policy_version: 0,
            data_cursor: serde_json::Value::Null,
        })
    }

    pub fn rank(&self) -> usize {
        self.collective.rank()
    }

    pub fn world(&self) -> usize {
        self.collective.world()
    }

    /// Validates groups against this learner's version, vocabulary and context ([`build_step`]).
    pub fn ingest(&self, groups: &[Group]) -> (StepBatch, IngestReport) {
        let lim = IngestLimits {
            learner_version: self.policy_version,
            vocab_size: self.policy.cfg.vocab_size,
            max_context: self.policy.cfg.max_position_embeddings as usize,
        };
        build_step(groups, &self.cfg, &lim)
    }

    fn lp_opts(&self) -> LogprobOptions {
        LogprobOptions {
            chunk_len: self.cfg.logprob_chunk,
            entropy: false,
        }
    }

    /// One training step over `batch` (every rank passes the same batch).
    pub fn train_step(&mut self, batch: &StepBatch) -> Result<StepReport> {
        let cfg = self.cfg.clone();
        let (rank, world) = (self.rank(), self.world());
        let device = self.policy.device;
        let mut rep = StepReport {
            step: self.step + 1,
            ..Default::default()
        };

        // 1. plan: mini-batches of prompts, this rank's micro-batches
        let plans: Vec<MiniBatchPlan> = batch.plan(&cfg, rank, world, &mut self.rng);
        let weights_of = |p: &MiniBatchPlan| {
            let c = p.counts;
            move |len: usize| token_weight(cfg.loss_agg, len, c, cfg.loss_norm_tokens)
        };

        // 2. π_old (and π_ref) without gradients, before any update of this step
        let t0 = Instant::now();
        let mut olds: Vec<Vec<(Tensor, Option<Tensor>)>> = Vec::with_capacity(plans.len());
        for plan in &plans {
            let w = weights_of(plan);
            let mut per_micro = Vec::with_capacity(plan.micro.len());
            for idx in &plan.micro {
                let mt = micro_tensors(&batch.samples, idx, &w, device);
                let _g = tch::no_grad_guard();
                let old = token_logprobs(&self.policy.model, &mt.ids, &mt.mask, self.lp_opts())?.logprobs;
                let reference = match &self.reference {
                    Some((_, m)) => Some(token_logprobs(m, &mt.ids, &mt.mask, self.lp_opts())?.logprobs),
                    None => None,
                };
                per_micro.push((old, reference));
            }
            olds.push(per_micro);
        }
        rep.old_logprob_s = t0.elapsed().as_secs_f64();

        // 3. updates: one per mini-batch and epoch
        let t1 = Instant::now();
        let params = LossParams {
            clip: ClipParams {
                low: cfg.clip_low,
                high: cfg.clip_high,
                dual: cfg.dual_clip,
            },
            kl_coef: cfg.kl_coef,
            tis_cap: cfg.tis_cap,
        };
        let mut clipped_total = Tensor::zeros([], (Kind::Float, device));
        let mut loss_total = Tensor::zeros([], (Kind::Float, device));
        for _epoch in 0..cfg.epochs {
            for (plan, old) in plans.iter().zip(&olds) {
                self.opt.zero_grad();
                let w = weights_of(plan);
                for (idx, (old_lp, ref_lp)) in plan.micro.iter().zip(old) {
                    let mt = micro_tensors(&batch.samples, idx, &w, device);
                    let logp = token_logprobs(&self.policy.model, &mt.ids, &mt.mask, self.lp_opts())?.logprobs;
                    let inputs = LossInputs {
                        logp: &logp,
                        old_logp: old_lp,
                        adv: &mt.adv,
                        weight: &mt.weight,
                        ref_logp: ref_lp.as_ref(),
                        sampling: Some((&mt.sampling, &mt.has_sampling)),
                    };
                    let (loss, clipped) = policy_loss(&inputs, params);
                    loss.backward();
                    loss_total += loss.detach();
                    clipped_total += clipped;
                    rep.sequences += idx.len();
                    rep.response_tokens += mt.response_tokens;
                    rep.tokens += mt.tokens;
                }
                let mut grads = self.opt.grads();
                self.collective.all_reduce_sum(&mut grads)?;
                // host/device sync: the gradient norm
                let norm = self.opt.clip_grad_norm(&grads, cfg.grad_clip);
                rep.grad_norms.push(norm);
                if norm == 0.0 && cfg.skip_zero_grad_updates {
                    // no signal in this mini-batch (all advantages zero): Adam would still move
                    // every weight along its momentum; skip instead (every rank sees the same norm)
                    rep.skipped_updates += 1;
                    continue;
                }
                if !norm.is_finite() {
                    // every rank sees the same reduced norm, so every rank skips together
                    tracing::warn!(step = rep.step, norm, "non-finite gradient norm: update skipped");
                    rep.skipped_updates += 1;
                    continue;
                }
                rep.lr = self.opt.step();
                rep.optimizer_updates += 1;
            }
        }
        // host/device sync: step statistics
        let updates = (cfg.epochs * plans.len()).max(1) as f64;
        rep.loss = loss_total.double_value(&[]) / updates;
        rep.clip_fraction = clipped_total.double_value(&[]) / rep.response_tokens.max(1) as f64;
        rep.update_s = t1.elapsed().as_secs_f64();
        rep.tokens_per_s = rep.tokens as f64 / (rep.old_logprob_s + rep.update_s).max(1e-9);

        // 4. a new policy version
        self.step += 1;
        self.policy_version += 1;
        rep.policy_version = self.policy_version;
        if rank == 0 {
            tracing::info!(step = rep.step, loss = rep.loss, lr = rep.lr, grad_norm = ?rep.grad_norms.last(), clip_fraction = rep.clip_fraction, tokens_per_s = rep.tokens_per_s, "learner step");
        }
        Ok(rep)
    }

    /// Ingest + step in one call; the ingest report is returned with the step's.
    pub fn train_on_groups(&mut self, groups: &[Group]) -> Result<(StepReport, IngestReport)> {
        let (batch, ingest) = self.ingest(groups);
        if batch.samples.is_empty() && ingest.unsolved_groups > 0 && ingest.unsolved_groups + ingest.empty_groups == ingest.groups_in {
            return Err(LearnerError::NoSignal { unsolved: ingest.unsolved_groups });
        }
        if batch.samples.is_empty() {
            return Err(LearnerError::InvalidArgument {
                arg: "groups".into(),
                msg: format!("no usable trajectory in the step: {ingest:?}"),
            });
        }
        Ok((self.train_step(&batch)?, ingest))
    }
}
