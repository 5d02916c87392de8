//! The generation engine on a tiny random Qwen2 (f32, CPU): KV-cache and prefix-reuse
//! correctness against a full forward, batch independence, sampling controls, stops, seeds and
//! the search `Policy` implementation.

use deepsearch_policy::engine::{
    Engine, EngineConfig, Finish, GenRequest, PrefixKey, SamplingParams, Segment, TokenDecoder,
};
use deepsearch_policy::search_policy::EnginePolicy;
use deepsearch_policy::{AttnMask, PolicyError, PolicyModel, PolicyTokenizer, Qwen2, Qwen2Config};
use deepsearch_search::policy::{ExpandRequest, Policy, PolicyError as SearchError};
use std::sync::Arc;
use tch::{nn, Device, Kind, Tensor};

const VOCAB: i64 = 64;

/// A tiny random model; weights come from a ChaCha stream (not libtorch's global RNG, which
/// tests running in parallel would share), so equal seeds give equal weights.
fn model(seed: u64) -> (nn::VarStore, Qwen2) {
    let mut cfg = Qwen2Config::tiny(VOCAB);
    // a larger init spreads the next-token distributions so sampling tests are informative
    cfg.initializer_range = 0.2;
    let tok = PolicyTokenizer::char_level("abcdefghijklmnopqrstuvwxyz").unwrap();
    let pm = PolicyModel::init_random(&cfg, tok, seed).unwrap();
    (pm.vs, pm.model)
}

/// Two engines over the same weights (one to test, one as the reference model).
fn engine_and_reference(cfg: EngineConfig, eos: &[i64]) -> (Engine, nn::VarStore, Qwen2) {
    let (vs, m) = model(0);
    let (vs2, m2) = model(0);
    drop(vs);
    (Engine::new(m, Device::Cpu, eos, cfg).with_decoder(letters()), vs2, m2)
}

fn engine(cfg: EngineConfig, eos: &[i64]) -> Engine {
    engine_and_reference(cfg, eos).0
}

/// Token i decodes to one letter.
fn letters() -> Arc<dyn TokenDecoder> {
    Arc::new(|ids: &[u32]| ids.iter().map(|&i| (b'a' + (i % 26) as u8) as char).collect::<String>())
}

fn key(node: u32) -> PrefixKey {
    PrefixKey { tree: 1, node }
}

fn prompt(len: usize, salt: u32) -> Vec<u32> {
    (0..len as u32).map(|i| (i * 7 + salt * 13 + 1) % VOCAB as u32).collect()
}

fn req<'a>(tokens: &'a [u32], n: usize, max_new: usize, params: &'a SamplingParams, seed: u64) -> GenRequest<'a> {
    GenRequest { key: None, reuse: None, tokens, n, max_new_tokens: max_new, params, seed }
}

fn sampling(t: f32) -> SamplingParams {
    SamplingParams { temperature: t, ..SamplingParams::default() }
}

/// Full-forward log-probs and entropies of `seq[from..]` given everything before.
fn reference(m: &Qwen2, seq: &[u32], from: usize) -> (Vec<f32>, Vec<f32>) {
    let _g = tch::no_grad_guard();
    let n = seq.len() as i64;
    let ids = Tensor::from_slice(&seq.iter().map(|&t| t as i64).collect::<Vec<_>>()).view([1, n]);
    let pos = Tensor::arange(n, (Kind::Int64, Device::Cpu)).view([1, n]);
    let (h, _) = m.forward(&ids, &pos, None, AttnMask::Causal);
    let logp = m.logits(&h).log_softmax(-1, Kind::Float);
    let ent = -(logp.exp() * &logp).sum_dim_intlist(-1, false, Kind::Float);
    let mut lps = Vec::new();
    let mut ents = Vec::new();
    for (t, &tok) in seq.iter().enumerate().skip(from) {
        lps.push(logp.double_value(&[0, t as i64 - 1, tok as i64]) as f32);
        ents.push(ent.double_value(&[0, t as i64 - 1]) as f32);
    }
    (lps, ents)
}

fn assert_matches_reference(m: &Qwen2, prefix: &[u32], seg: &Segment) {
    let seq: Vec<u32> = prefix.iter().chain(&seg.tokens).copied().collect();
    let (lps, ents) = reference(m, &seq, prefix.len());
    for i in 0..seg.tokens.len() {
        assert!((lps[i] - seg.logprobs[i]).abs() < 1e-4, "logprob {i}: {} vs {}", lps[i], seg.logprobs[i]);
        assert!((ents[i] - seg.entropies[i]).abs() < 1e-4, "entropy {i}: {} vs {}", ents[i], seg.entropies[i]);
    }
}

fn assert_same(a: &[Segment], b: &[Segment]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.tokens, y.tokens);
        assert_eq!(x.finish, y.finish);
        for (p, q) in x.logprobs.iter().zip(&y.logprobs) {
            assert!((p - q).abs() < 1e-4, "{p} vs {q}");
        }
    }
}

#[test]
fn sampled_logprobs_match_a_full_forward_and_children_reuse_the_prefix() {
    let (mut e, _vs, m) = engine_and_reference(EngineConfig::default(), &[]);
    let root = prompt(10, 0);
    let params = sampling(1.0);
    let mut r = req(&root, 4, 12, &params, 5);
    r.key = Some(key(0));
    let segs = e.generate(&[r]).pop().unwrap().unwrap();
    assert_eq!(segs.len(), 4);
    for s in &segs {
        assert_eq!((s.tokens.len(), s.finish), (12, Some(Finish::Length)));
        assert_matches_reference(&m, &root, s);
    }
    let before = e.stats();
    assert_eq!(before.prefill_tokens, 10);
    // children of two different samples, in one call, reusing the root's cache
    let child_a: Vec<u32> = root.iter().chain(&segs[0].tokens).copied().collect();
    let child_b: Vec<u32> = root.iter().chain(&segs[2].tokens).copied().collect();
    let mut ra = req(&child_a, 3, 8, &params, 11);
    ra.key = Some(key(1));
    ra.reuse = Some(key(0));
    let mut rb = req(&child_b, 2, 8, &params, 12);
    rb.key = Some(key(2));
    rb.reuse = Some(key(0));
    let out = e.generate(&[ra.clone(), rb.clone()]);
    let (ca, cb) = (out[0].as_ref().unwrap(), out[1].as_ref().unwrap());
    // each child prefilled only the last token of its segment (the rest came from the cache)
    let after = e.stats();
    assert_eq!(after.prefill_tokens - before.prefill_tokens, 2);
    assert_eq!(after.reused_tokens - before.reused_tokens, (child_a.len() + child_b.len() - 2) as u64);
    for s in ca {
        assert_matches_reference(&m, &child_a, s);
    }
    for s in cb {
        assert_matches_reference(&m, &child_b, s);
    }
    // a grandchild from a child's cache
    let grand: Vec<u32> = child_a.iter().chain(&ca[1].tokens).copied().collect();
    let mut rg = req(&grand, 2, 6, &params, 13);
    rg.reuse = Some(key(1));
    let g = e.generate(&[rg.clone()]).pop().unwrap().unwrap();
    assert_eq!(e.stats().prefill_tokens - after.prefill_tokens, 1);
    for s in &g {
        assert_matches_reference(&m, &grand, s);
    }
    // the same requests without any cache give the same samples
    let mut cold = engine(EngineConfig { prefix_cache_bytes: 0, ..EngineConfig::default() }, &[]);
    let out2 = cold.generate(&[ra, rb]);
    assert_same(ca, out2[0].as_ref().unwrap());
    assert_same(cb, out2[1].as_ref().unwrap());
    assert_same(&g, &cold.generate(&[rg]).pop().unwrap().unwrap());
    // releasing the tree's keys frees the cache
    e.release(&[key(0), key(1), key(2)]);
    assert_eq!(e.cache_stats().bytes, 0);
}

#[test]
fn batched_requests_of_different_lengths_equal_each_alone() {
    let mut e = engine(EngineConfig::default(), &[]);
    let prompts = [prompt(3, 1), prompt(9, 2), prompt(17, 3)];
    let params = [sampling(1.0), sampling(0.7), sampling(0.0)];
    let reqs: Vec<GenRequest<'_>> = (0..3)
        .map(|i| req(&prompts[i], [2, 3, 1][i], 5 + 3 * i, &params[i], 100 + i as u64))
        .collect();
    let together = e.generate(&reqs);
    for (i, r) in reqs.iter().enumerate() {
        let mut alone_engine = engine(EngineConfig::default(), &[]);
        let alone = alone_engine.generate(std::slice::from_ref(r)).pop().unwrap().unwrap();
        assert_same(together[i].as_ref().unwrap(), &alone);
    }
    // lengths differ per request, the samples of a request differ from each other
    let t1 = together[1].as_ref().unwrap();
    assert!(t1.iter().all(|s| s.tokens.len() == 8));
    assert!(t1[0].tokens != t1[1].tokens || t1[1].tokens != t1[2].tokens);
}

/// Batch KV buffers reserved for only 2 decode positions grow (doubling) while rows decode 20
/// tokens; the samples equal those of the default reserve and match a full forward.
#[test]
fn kv_buffers_grown_during_decoding_give_the_same_samples() {
    let (mut small, _vs, m) =
        engine_and_reference(EngineConfig { kv_reserve_tokens: 2, ..EngineConfig::default() }, &[]);
    let mut big = engine(EngineConfig::default(), &[]);
    let prompts = [prompt(5, 4), prompt(11, 5)];
    let params = sampling(1.0);
    let reqs: Vec<GenRequest<'_>> = (0..2).map(|i| req(&prompts[i], 3, 20, &params, 7 + i as u64)).collect();
    let (a, b) = (small.generate(&reqs), big.generate(&reqs));
    for i in 0..2 {
        let (a, b) = (a[i].as_ref().unwrap(), b[i].as_ref().unwrap());
        assert!(a.iter().all(|s| s.tokens.len() == 20));
        assert_same(a, b);
        for seg in a {
            assert_matches_reference(&m, &prompts[i], seg);
        }
    }
}

#[test]
fn greedy_is_argmax_and_top_k_top_p_restrict_support() {
    let (mut e, _vs, m) = engine_and_reference(EngineConfig::default(), &[]);
    let p = prompt(6, 4);
    let greedy = e.generate(&[req(&p, 2, 10, &sampling(0.0), 1)]).pop().unwrap().unwrap();
    // manual argmax loop with full forwards
    let mut seq = p.clone();
    for _ in 0..10 {
        let _g = tch::no_grad_guard();
        let n = seq.len() as i64;
        let ids = Tensor::from_slice(&seq.iter().map(|&t| t as i64).collect::<Vec<_>>()).view([1, n]);
        let pos = Tensor::arange(n, (Kind::Int64, Device::Cpu)).view([1, n]);
        let (h, _) = m.forward(&ids, &pos, None, AttnMask::Causal);
        seq.push(m.logits(&h).get(0).get(n - 1).argmax(-1, false).int64_value(&[]) as u32);
    }
    assert_eq!(greedy[0].tokens, seq[6..]);
    assert_eq!(greedy[1].tokens, seq[6..]);
    let top1 = SamplingParams { top_k: 1, ..sampling(1.0) };
    let tiny_p = SamplingParams { top_p: 1e-6, ..sampling(1.0) };
    for params in [&top1, &tiny_p] {
        let s = e.generate(&[req(&p, 3, 10, params, 9)]).pop().unwrap().unwrap();
        assert!(s.iter().all(|s| s.tokens == seq[6..]));
    }
    // top-k 3: every sampled token is among the 3 most likely under the full forward
    let top3 = SamplingParams { top_k: 3, ..sampling(1.5) };
    let s = e.generate(&[req(&p, 8, 10, &top3, 3)]).pop().unwrap().unwrap();
    for seg in &s {
        let seq: Vec<u32> = p.iter().chain(&seg.tokens).copied().collect();
        let _g = tch::no_grad_guard();
        let n = seq.len() as i64;
        let ids = Tensor::from_slice(&seq.iter().map(|&t| t as i64).collect::<Vec<_>>()).view([1, n]);
        let pos = Tensor::arange(n, (Kind::Int64, Device::Cpu)).view([1, n]);
        let (h, _) = m.forward(&ids, &pos, None, AttnMask::Causal);
        let logits = m.logits(&h).get(0);
        for (i, &tok) in seg.tokens.iter().enumerate() {
            let row = logits.get(p.len() as i64 - 1 + i as i64);
            let rank = row.gt(row.double_value(&[tok as i64])).sum(Kind::Int64).int64_value(&[]);
            assert!(rank < 3, "token {tok} has rank {rank}");
        }
    }
    let distinct: std::collections::HashSet<_> = s.iter().map(|s| s.tokens.clone()).collect();
    assert!(distinct.len() > 1, "top-k 3 at temperature 1.5 should vary");
}

#[test]
fn seeds_replay_and_differ() {
    let mut e = engine(EngineConfig::default(), &[]);
    let p = prompt(5, 6);
    let params = sampling(1.0);
    let a = e.generate(&[req(&p, 4, 12, &params, 42)]).pop().unwrap().unwrap();
    let b = e.generate(&[req(&p, 4, 12, &params, 42)]).pop().unwrap().unwrap();
    assert_same(&a, &b);
    // sample i is the same stream whatever n is
    let one = e.generate(&[req(&p, 1, 12, &params, 42)]).pop().unwrap().unwrap();
    assert_same(&a[..1], &one);
    let c = e.generate(&[req(&p, 4, 12, &params, 43)]).pop().unwrap().unwrap();
    assert_ne!(a.iter().map(|s| &s.tokens).collect::<Vec<_>>(), c.iter().map(|s| &s.tokens).collect::<Vec<_>>());
}

#[test]
fn eos_and_stop_strings_end_a_sample() {
    let mut e = engine(EngineConfig::default(), &[]);
    let p = prompt(7, 8);
    let params = sampling(1.0);
    let free = e.generate(&[req(&p, 1, 16, &params, 7)]).pop().unwrap().unwrap().remove(0);
    assert_eq!(free.tokens.len(), 16);
    // EOS: the id generated at step 5 (first occurrence) ends the sample there, included
    let eos = free.tokens[5];
    let first = free.tokens.iter().position(|&t| t == eos).unwrap();
    let mut with_eos = engine(EngineConfig::default(), &[eos as i64]);
    let s = with_eos.generate(&[req(&p, 1, 16, &params, 7)]).pop().unwrap().unwrap().remove(0);
    assert_eq!(s.finish, Some(Finish::Eos));
    assert_eq!(s.tokens, free.tokens[..=first]);
    // stop string spanning tokens 6 and 7 (one letter per token)
    let text = letters().decode(&free.tokens);
    let stop = text[6..8].to_string();
    let end = text.find(&stop).unwrap() + 2;
    let stop_params = SamplingParams { stop: vec!["zzzzzz".into(), stop], ..sampling(1.0) };
    let s = e.generate(&[req(&p, 1, 16, &stop_params, 7)]).pop().unwrap().unwrap().remove(0);
    assert_eq!(s.finish, Some(Finish::Stop));
    assert_eq!(s.tokens, free.tokens[..end]);
    // without a tokenizer, stop strings are refused for that request only
    let (_vs, m) = model(0);
    let mut bare = Engine::new(m, Device::Cpu, &[], EngineConfig::default());
    let out = bare.generate(&[req(&p, 1, 4, &stop_params, 7), req(&p, 1, 4, &params, 7)]);
    assert!(matches!(&out[0], Err(PolicyError::InvalidArgument { arg, .. }) if arg == "stop"));
    assert_eq!(out[1].as_ref().unwrap()[0].tokens.len(), 4);
}

#[test]
fn policy_trait_expands_and_reports_overflow_per_request() {
    let cfg = EngineConfig { max_context: 32, ..EngineConfig::default() };
    let mut pol = EnginePolicy::new(engine(cfg, &[]));
    assert_eq!(pol.max_context(), 32);
    let params = Arc::new(SamplingParams::default());
    let mk = |node: u32, len: usize, reuse: Option<PrefixKey>| ExpandRequest {
        key: key(node),
        reuse,
        tokens: Arc::new(prompt(len, node)),
        n: 3,
        max_new_tokens: 8,
        params: params.clone(),
        seed: node as u64,
    };
    let out = pol.expand(&[mk(0, 10, None), mk(1, 40, None), mk(2, 28, None)]);
    assert_eq!(out[0].as_ref().unwrap().len(), 3);
    assert!(matches!(out[1], Err(SearchError::ContextOverflow { len: 40, max: 32 })));
    // 28 + 8 > 32: the budget is cut to the context
    let near = out[2].as_ref().unwrap();
    assert!(near.iter().all(|s| s.tokens.len() == 4 && s.finish == Some(Finish::Length)));
    // a child through the trait
    let child: Vec<u32> = prompt(10, 0).into_iter().chain(out[0].as_ref().unwrap()[0].tokens.clone()).collect();
    let c = ExpandRequest { tokens: Arc::new(child), ..mk(3, 0, Some(key(0))) };
    let before = pol.engine().stats().prefill_tokens;
    assert_eq!(pol.expand(&[c])[0].as_ref().unwrap().len(), 3);
    assert_eq!(pol.engine().stats().prefill_tokens - before, 1);
    assert_eq!(pol.decode(&[0, 1, 27]), "abb");
    pol.release(&[key(0), key(2), key(3)]);
    assert_eq!(pol.engine().cache_stats().entries, 0);
}
