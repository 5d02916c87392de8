//! Parity with Hugging Face transformers on tiny random Qwen2 checkpoints written by
//! `fixtures/gen_parity.py` (GQA, rope_theta ≠ 10000, non-zero q/k/v biases, untied and tied):
//! greedy tokens equal `generate(do_sample=False)`, per-token log-probs and entropies within
//! 1e-4, and logits of a batch with a left-padded row close to transformers'. No Python needed.

mod common;

use common::*;
use deepsearch_policy::{build_char_tokenizer, AttnMask, PolicyModel};
use tch::{Device, Kind, Tensor};

fn check_greedy(name: &str) {
    let m = PolicyModel::load(&fixture(name), Device::Cpu, Kind::Float).unwrap();
    // transformers 5 writes rope_theta only inside `rope_parameters`
    let theta = if name == "untied" { 1e6 } else { 5e5 };
    assert_eq!(m.cfg.rope_theta, theta);
    assert_eq!(m.eos_ids, vec![0]);
    let reference = reference(name);
    for row in reference["rows"].as_array().unwrap() {
        let prompt = ids_of(&row["prompt_ids"]);
        // the loaded tokenizer encodes the prompt text to the same ids as transformers
        assert_eq!(m.tokenizer.encode(row["prompt"].as_str().unwrap(), false).unwrap(), prompt);
        m.check_token_ids(&prompt).unwrap();
        let want = ids_of(&row["greedy"]);
        let (got, logp) = greedy(&m.model, &prompt, want.len());
        assert_eq!(got, want, "{name}: greedy tokens differ for {:?}", row["prompt"]);
        let want_lp = floats_of(&row["greedy_logprobs"]);
        let want_ent = floats_of(&row["greedy_entropies"]);
        for (i, &tok) in got.iter().enumerate() {
            let lp = logp.get(i as i64).double_value(&[tok]);
            let ent = -(logp.get(i as i64).exp() * logp.get(i as i64)).sum(Kind::Double).double_value(&[]);
            assert!((lp - want_lp[i]).abs() < 1e-4, "{name} step {i}: logprob {lp} vs {}", want_lp[i]);
            assert!((ent - want_ent[i]).abs() < 1e-4, "{name} step {i}: entropy {ent} vs {}", want_ent[i]);
        }
    }
}

fn check_batch_logits(name: &str) {
    let m = PolicyModel::load(&fixture(name), Device::Cpu, Kind::Float).unwrap();
    let reference = reference(name);
    let rows = reference["rows"].as_array().unwrap();
    let prompts: Vec<Vec<i64>> = rows.iter().map(|r| ids_of(&r["prompt_ids"])).collect();
    let (ids, valid, pos) = left_pad(&prompts, reference["pad_id"].as_i64().unwrap());
    let w = ids.size()[1];
    let mask = padded_causal_mask(&valid, 0, w);
    let logits = tch::no_grad(|| {
        let (h, _) = m.model.forward(&ids, &pos, None, AttnMask::Custom(&mask));
        m.model.logits(&h)
    });
    for (r, row) in rows.iter().enumerate() {
        let pad = row["left_pad"].as_i64().unwrap();
        let want: Vec<Vec<f64>> =
            row["batch_logits"].as_array().unwrap().iter().map(floats_of).collect();
        let want = Tensor::from_slice(&want.concat()).view([w - pad, -1]);
        let got = logits.get(r as i64).narrow(0, pad, w - pad);
        let diff = max_abs_diff(&got, &want);
        assert!(diff < 1e-4, "{name} row {r}: max |logit diff| {diff}");
        // the unpadded forward agrees with the padded one
        let alone = logits_of(&m.model, &prompts[r]);
        assert!(max_abs_diff(&alone, &want) < 1e-4);
    }
}

/// Batched greedy decoding of the left-padded batch with the KV cache and a custom mask
/// reproduces each row's unbatched transformers greedy continuation.
fn check_batched_greedy(name: &str) {
    let m = PolicyModel::load(&fixture(name), Device::Cpu, Kind::Float).unwrap();
    let reference = reference(name);
    let rows = reference["rows"].as_array().unwrap();
    let prompts: Vec<Vec<i64>> = rows.iter().map(|r| ids_of(&r["prompt_ids"])).collect();
    let n = rows[0]["greedy"].as_array().unwrap().len();
    let (ids, mut valid, pos) = left_pad(&prompts, reference["pad_id"].as_i64().unwrap());
    let (b, w) = (ids.size()[0], ids.size()[1]);
    let mut out: Vec<Vec<i64>> = vec![Vec::new(); b as usize];
    tch::no_grad(|| {
        let mask = padded_causal_mask(&valid, 0, w);
        let (h, mut cache) = m.model.forward(&ids, &pos, None, AttnMask::Custom(&mask));
        let mut next = m.model.logits(&h.narrow(1, w - 1, 1)).argmax(-1, false); // [B, 1]
        let last_pos = pos.narrow(1, w - 1, 1);
        for step in 0..n {
            for (r, o) in out.iter_mut().enumerate() {
                o.push(next.int64_value(&[r as i64, 0]));
            }
            if step + 1 == n {
                break;
            }
            valid = Tensor::cat(&[&valid, &Tensor::ones([b, 1], (Kind::Bool, Device::Cpu))], 1);
            let mask = padded_causal_mask(&valid, cache.len(), 1);
            let pos = &last_pos + (step as i64 + 1);
            let h = m.model.forward_into(&next, &pos, &mut cache, AttnMask::Custom(&mask));
            next = m.model.logits(&h).argmax(-1, false);
        }
    });
    for (r, row) in rows.iter().enumerate() {
        assert_eq!(out[r], ids_of(&row["greedy"]), "{name}: batched greedy row {r}");
    }
}

#[test]
fn untied_greedy_logprobs_entropies_match_transformers() {
    check_greedy("untied");
}

#[test]
fn tied_greedy_logprobs_entropies_match_transformers() {
    check_greedy("tied");
}

#[test]
fn left_padded_batch_logits_match_transformers() {
    check_batch_logits("untied");
    check_batch_logits("tied");
}

#[test]
fn left_padded_batched_greedy_with_cache_matches() {
    check_batched_greedy("untied");
}

#[test]
fn bf16_load_on_cpu_is_close_to_f32() {
    let dir = fixture("untied");
    let f32m = PolicyModel::load(&dir, Device::Cpu, Kind::Float).unwrap();
    let bf16m = PolicyModel::load(&dir, Device::Cpu, Kind::BFloat16).unwrap();
    assert_eq!(bf16m.vs.variables()["model.norm.weight"].kind(), Kind::BFloat16);
    let prompt = ids_of(&reference("untied")["rows"][0]["prompt_ids"]);
    let a = logits_of(&f32m.model, &prompt);
    let b = logits_of(&bf16m.model, &prompt);
    let scale = a.abs().max().double_value(&[]);
    let diff = max_abs_diff(&a, &b);
    // bf16 keeps 8 mantissa bits; two layers of rounding stay within a few percent of the range
    assert!(diff < 0.05 * scale, "bf16 max diff {diff} vs logit scale {scale}");
    let agree = a.argmax(-1, false).eq_tensor(&b.argmax(-1, false)).to_kind(Kind::Float).mean(Kind::Float);
    assert!(agree.double_value(&[]) >= 0.8, "bf16 argmax agreement {agree}");
}

#[test]
fn chat_template_renders_like_transformers() {
    let m = PolicyModel::load(&fixture("tied"), Device::Cpu, Kind::Float).unwrap();
    let ex = &reference("tied")["chat_example"];
    let got = m.tokenizer.prompt_text(ex["content"].as_str().unwrap()).unwrap();
    assert_eq!(got, ex["rendered"].as_str().unwrap());
}

#[test]
fn rust_char_tokenizer_matches_the_python_built_one() {
    let m = PolicyModel::load(&fixture("tied"), Device::Cpu, Kind::Float).unwrap();
    let ours = build_char_tokenizer("0123456789+-*/=() abcdefghijklmnopqrstuvwxyz\n").unwrap();
    assert_eq!(ours.get_vocab(true), m.tokenizer.inner().get_vocab(true));
    let text = "(7*8)-9 = 47\nok<|endoftext|>";
    let a = ours.encode(text, false).unwrap().get_ids().to_vec();
    let b = m.tokenizer.inner().encode(text, false).unwrap().get_ids().to_vec();
    assert_eq!(a, b);
    assert_eq!(ours.decode(&a, false).unwrap(), text);
}

/// The same parity on a GPU (f32 tight, bf16 loose): `cargo test -p deepsearch-policy
/// --features cuda-tests --test hf_parity cuda`.
#[cfg(feature = "cuda-tests")]
#[test]
fn cuda_load_matches_transformers_logits() {
    let device = deepsearch_policy::device::parse_device("cuda:0").unwrap();
    let reference = reference("untied");
    let row = &reference["rows"][0];
    let prompt = ids_of(&row["prompt_ids"]);
    let want: Vec<Vec<f64>> = row["batch_logits"].as_array().unwrap().iter().map(floats_of).collect();
    let want = Tensor::from_slice(&want.concat()).view([prompt.len() as i64, -1]);
    for (dtype, tol) in [(Kind::Float, 1e-3), (Kind::BFloat16, 0.5)] {
        let m = PolicyModel::load(&fixture("untied"), device, dtype).unwrap();
        let t = prompt.len() as i64;
        let input = Tensor::from_slice(&prompt).view([1, t]).to_device(device);
        let pos = Tensor::arange(t, (Kind::Int64, device)).view([1, t]);
        let logits = tch::no_grad(|| {
            let (h, _) = m.model.forward(&input, &pos, None, AttnMask::Causal);
            m.model.logits(&h).squeeze_dim(0).to_kind(Kind::Float).to_device(Device::Cpu)
        });
        let diff = max_abs_diff(&logits, &want);
        assert!(diff < tol, "{dtype:?} on cuda: max |logit diff| {diff}");
    }
}
