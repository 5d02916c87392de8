//! AdamW written over tensors (spec §6: lr 1e-6, 10 warm-up steps then constant, weight decay 0.1,
//! grad-norm clip 1.0), so that its state is plain named tensors a checkpoint can hold and every
//! data-parallel rank applies bit-identical updates.
//!
//! Same math as `torch.optim.AdamW`: decoupled decay `w ← w·(1 − lr·wd)` (only on ≥ 2-D weights:
//! not biases, not norms), `m ← β1·m + (1 − β1)·g`, `v ← β2·v + (1 − β2)·g²`,
//! `w ← w − lr/(1 − β1^t) · m / (sqrt(v/(1 − β2^t)) + ε)`. Parameters kept in bf16 get an fp32
//! master copy inside the optimizer (an update of 1e-6 would vanish in bf16).

use crate::error::{LearnerError, Result};
use tch::{nn::VarStore, Kind, Tensor};

/// AdamW hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamParams {
    pub lr: f64,
    pub warmup_steps: u64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl AdamParams {
    /// The learner's AdamW settings.
    pub fn from_config(c: &crate::config::LearnerConfig) -> Self {
        AdamParams {
            lr: c.lr,
            warmup_steps: c.warmup_steps,
            weight_decay: c.weight_decay,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.adam_eps,
        }
    }
}

/// Learning rate of optimizer update `update` (0-based): linear warm-up over `warmup` updates to
/// `peak` (update 0 uses peak/warmup), then constant.
pub fn lr_at(update: u64, peak: f64, warmup: u64) -> f64 {
    if warmup == 0 {
        return peak;
    }
    peak * ((update + 1).min(warmup) as f64 / warmup as f64)
}

/// Whether a parameter gets weight decay: matrices and embeddings yes, biases and norms no.
pub fn decays(name: &str, dims: usize) -> bool {
    dims >= 2 && !name.ends_with(".bias") && !name.contains("norm")
}

#[derive(Debug)]
struct Param {
    name: String,
    var: Tensor,
    /// fp32 master weights when `var` is not fp32.
    master: Option<Tensor>,
    m: Tensor,
    v: Tensor,
    decay: bool,
}

/// AdamW over the variables of a `VarStore`, in name order.
#[derive(Debug)]
pub struct AdamW {
    params: Vec<Param>,
    pub hp: AdamParams,
    /// Updates applied so far (AdamW's t).
    pub updates: u64,
}

impl AdamW {
    /// Zero moments for every variable of `vs`.
    pub fn new(vs: &VarStore, hp: AdamParams) -> Self {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let params = vars
            .into_iter()
            .map(|(name, var)| {
                let f32_zeros = || Tensor::zeros(var.size(), (Kind::Float, var.device()));
                let master = (var.kind() != Kind::Float).then(|| var.detach().to_kind(Kind::Float));
                Param {
                    decay: decays(&name, var.dim()),
                    m: f32_zeros(),
                    v: f32_zeros(),
                    master,
                    name,
                    var,
                }
            })
            .collect();
        AdamW { params, hp, updates: 0 }
    }

    /// Parameter names in optimizer order.
    pub fn names(&self) -> Vec<&str> {
        self.params.iter().map(|p| p.name.as_str()).collect()
    }

    /// Sets every gradient to zero (allocating zero gradients where none exist yet, so a rank
    /// with no data still joins the all-reduce with well-defined tensors).
    pub fn zero_grad(&self) {
        for p in &self.params {
            let mut g = p.var.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// The gradient tensors (shared storage with the variables' `.grad`), zeros where undefined.
    pub fn grads(&self) -> Vec<Tensor> {
        self.params
            .iter()
            .map(|p| {
                let g = p.var.grad();
                if g.defined() {
                    g
                } else {
                    // first use: give the variable a zero gradient through a dummy backward
                    let z = (&p.var * 0.0).sum(Kind::Float);
                    z.backward();
                    p.var.grad()
                }
            })
            .collect()
    }

    /// Global L2 norm of the gradients, and scales them to at most `max_norm` (0 = no clip).
    /// Host sync: reads the norm.
    pub fn clip_grad_norm(&self, grads: &[Tensor], max_norm: f64) -> f64 {
        let _g = tch::no_grad_guard();
        let sq: Vec<Tensor> = grads
            .iter()
            .map(|g| g.to_kind(Kind::Float).square().sum(Kind::Float))
            .collect();
        // host/device sync: the norm decides the scale
        let norm = Tensor::stack(&sq, 0).sum(Kind::Float).sqrt().double_value(&[]);
        if max_norm > 0.0 && norm.is_finite() && norm > max_norm {
            let scale = max_norm / (norm + 1e-6);
            for g in grads {
                let _ = g.shallow_clone().g_mul_scalar_(scale);
            }
        }
        norm
    }

    /// Applies one AdamW update from the current gradients; returns the learning rate used.
    pub fn step(&mut self) -> f64 {
        let hp = self.hp;
        let lr = lr_at(self.updates, hp.lr, hp.warmup_steps);
        self.updates += 1;
        let t = self.updates as i32;
        let bc1 = 1.0 - hp.beta1.powi(t);
        let bc2 = 1.0 - hp.beta2.powi(t);
        let _g = tch::no_grad_guard();
        for p in &mut self.params {
            let grad = p.var.grad();
            if !grad.defined() {
                continue;
            }
            let g = grad.to_kind(Kind::Float);
            let mut w = p
                .master
                .as_ref()
                .map(|m| m.shallow_clone())
                .unwrap_or_else(|| p.var.shallow_clone());
            if p.decay && hp.weight_decay > 0.0 {
                let _ = w.g_mul_scalar_(1.0 - lr * hp.weight_decay);
            }
            let _ = p.m.g_mul_scalar_(hp.beta1);
            let _ = p.m.g_add_(&(&g * (1.0 - hp.beta1)));
            let _ = p.v.g_mul_scalar_(hp.beta2);
            let _ = p.v.g_add_(&(g.square() * (1.0 - hp.beta2)));
            let denom = (&p.v / bc2).sqrt() + hp.eps;
            let _ = w.g_sub_(&((&p.m / &denom) * (lr / bc1)));
            if p.master.is_some() {
                p.var.copy_(&w);
            }
        }
        lr
    }

    /// The optimizer state as named fp32 tensors: `exp_avg.<name>`, `exp_avg_sq.<name>` and,
    /// for non-fp32 parameters, `master.<name>`.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for p in &self.params {
            out.push((format!("exp_avg.{}", p.name), p.m.shallow_clone()));
            out.push((format!("exp_avg_sq.{}", p.name), p.v.shallow_clone()));
            if let Some(m) = &p.master {
                out.push((format!("master.{}", p.name), m.shallow_clone()));
            }
        }
        out
    }

    /// Restores the state written by [`Self::state_tensors`]; every tensor must be present with
    /// the parameter's shape (`origin` names the source in errors).
    pub fn load_state(
        &mut self,
        tensors: &std::collections::HashMap<String, Tensor>,
        updates: u64,
        origin: &std::path::Path,
    ) -> Result<()> {
        let get = |key: String, like: &Tensor| -> Result<Tensor> {
            let t = tensors.get(&key).ok_or_else(|| LearnerError::Format {
                path: origin.to_path_buf(),
                field: key.clone(),
                msg: "missing optimizer tensor".into(),
            })?;
            if t.size() != like.size() {
                return Err(LearnerError::Format {
                    path: origin.to_path_buf(),
                    field: key,
                    msg: format!("shape {:?}, expected {:?}", t.size(), like.size()),
                });
            }
            Ok(t.to_kind(Kind::Float).to_device(like.device()))
        };
        let _g = tch::no_grad_guard();
        for p in &mut self.params {
            let m = get(format!("exp_avg.{}", p.name), &p.m)?;
            let v = get(format!("exp_avg_sq.{}", p.name), &p.v)?;
            p.m.copy_(&m);
            p.v.copy_(&v);
            if let Some(master) = &mut p.master {
                let w = get(format!("master.{}", p.name), master)?;
                master.copy_(&w);
            }
        }
        self.updates = updates;
        Ok(())
    }

    /// Re-reads master weights from the variables (after weights were replaced from outside).
    pub fn sync_master_from_vars(&mut self) {
        let _g = tch::no_grad_guard();
        for p in &mut self.params {
            if let Some(m) = &mut p.master {
                m.copy_(&p.var.to_kind(Kind::Float));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lr_schedule_and_decay_groups() {
        assert!((lr_at(0, 1e-6, 10) - 1e-7).abs() < 1e-20);
        assert!((lr_at(4, 1e-6, 10) - 5e-7).abs() < 1e-20);
        assert_eq!(lr_at(9, 1e-6, 10), 1e-6);
        assert_eq!(lr_at(500, 1e-6, 10), 1e-6);
        assert_eq!(lr_at(0, 3e-4, 0), 3e-4);
        assert!(decays("model.layers.0.mlp.up_proj.weight", 2));
        assert!(decays("model.embed_tokens.weight", 2));
        assert!(!decays("model.layers.0.self_attn.q_proj.bias", 1));
        assert!(!decays("model.norm.weight", 1));
    }

    #[test]
    fn two_updates_by_hand() {
        // w = [1, -2] (decayed, 2-D [1, 2]), grads g1 = [0.5, -1], g2 = [0.5, -1]; lr 0.1, wd 0.1
        let vs = VarStore::new(tch::Device::Cpu);
        let w = vs.root().var_copy("w", &Tensor::from_slice(&[1f32, -2.0]).view([1, 2]));
        let hp = AdamParams {
            lr: 0.1,
            warmup_steps: 0,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        };
        let mut opt = AdamW::new(&vs, hp);
        for _ in 0..2 {
            opt.zero_grad();
            (&w * Tensor::from_slice(&[0.5f32, -1.0]).view([1, 2]))
                .sum(Kind::Float)
                .backward();
            opt.step();
        }
        // update 1: w·0.99 − 0.1·sign(g)  (m̂/sqrt(v̂) = ±1)
        // update 2: again m̂/sqrt(v̂) = ±1 (constant gradient)
        let w0 = (1.0f64 * 0.99 - 0.1) * 0.99 - 0.1;
        let w1 = (-2.0f64 * 0.99 + 0.1) * 0.99 + 0.1;
        assert!(
            (w.double_value(&[0, 0]) - w0).abs() < 1e-6,
            "{}",
            w.double_value(&[0, 0])
        );
        assert!((w.double_value(&[0, 1]) - w1).abs() < 1e-6);
        assert_eq!(opt.updates, 2);
        let grads = opt.grads();
        let n = opt.clip_grad_norm(&grads, 0.5);
        assert!((n - 1.25f64.sqrt()).abs() < 1e-6);
        let clipped = grads[0].square().sum(Kind::Float).sqrt().double_value(&[]);
        assert!((clipped - 0.5).abs() < 1e-5);
    }
}
