"""PyTorch reference of the learner step, for `learner/examples/bench_learner.rs throughput`.

The same work per step as the Rust learner: pi_old log-probs of every micro-batch without
gradients, then per mini-batch: forward + backward of the PPO clip-higher/dual-clip token-mean
loss over micro-batches (gradient accumulation), grad-norm clip 1.0, AdamW (torch.optim.AdamW,
weight decay on >= 2-D weights only). Same model (transformers Qwen2ForCausalLM, eager SDPA),
same sizes, same thread count. Prints training tokens/s.

Run: /work/pyref/bin/python bench/learner/step_ref.py [--hidden 256 --layers 4 ...]
"""
import argparse
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

p = argparse.ArgumentParser()
for name, default in [("hidden", 256), ("layers", 4), ("vocab", 512), ("prompts", 8), ("k", 8),
                      ("prompt-len", 32), ("resp-len", 96), ("micro", 16), ("minis", 2),
                      ("steps", 3), ("threads", 2)]:
    p.add_argument(f"--{name}", type=int, default=default)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

cfg = Qwen2Config(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.hidden * 11 // 4,
                  num_hidden_layers=a.layers, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=a.prompt_len + a.resp_len + 8, rope_theta=10000.0,
                  rms_norm_eps=1e-6, tie_word_embeddings=True, attn_implementation="sdpa")
model = Qwen2ForCausalLM(cfg).float()
decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                        lr=1e-5, betas=(0.9, 0.999), eps=1e-8)

n_seq = a.prompts * a.k
T = a.prompt_len + a.resp_len
ids = torch.randint(3, a.vocab, (n_seq, T))
for g in range(a.prompts):  # a group shares its prompt
    ids[g * a.k:(g + 1) * a.k, :a.prompt_len] = ids[g * a.k, :a.prompt_len]
adv_seq = torch.where(torch.rand(n_seq) < 0.5, 1.0, -1.0)
# target position t predicts ids[:, t+1]; response targets are positions prompt_len-1 .. T-2
resp_mask = torch.zeros(n_seq, T - 1)
resp_mask[:, a.prompt_len - 1:] = 1.0
adv = adv_seq[:, None] * resp_mask


def logprobs(x):
    logits = model(input_ids=x).logits[:, :-1].float()
    return torch.log_softmax(logits, -1).gather(-1, x[:, 1:, None]).squeeze(-1)


def ppo(logp, old, A):
    ratio = torch.exp(logp - old)
    l = torch.maximum(-A * ratio, -A * torch.clamp(ratio, 0.8, 1.28))
    return torch.where(A < 0, torch.minimum(l, -A * 10.0), l)


def step():
    minis = [list(range(i * n_seq // a.minis, (i + 1) * n_seq // a.minis)) for i in range(a.minis)]
    micro = [[m[j:j + a.micro] for j in range(0, len(m), a.micro)] for m in minis]
    with torch.no_grad():
        old = [[logprobs(ids[mb]) for mb in mm] for mm in micro]
    for mm, oo in zip(micro, old):
        opt.zero_grad(set_to_none=False)
        denom = sum(resp_mask[mb].sum() for mb in mm)
        for mb, o in zip(mm, oo):
            loss = (ppo(logprobs(ids[mb]), o, adv[mb]) * resp_mask[mb]).sum() / denom
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()


step()  # warm-up
t0 = time.perf_counter()
for _ in range(a.steps):
    step()
s = time.perf_counter() - t0
params = sum(p.numel() for p in model.parameters())
print(f"pytorch learner step: params {params}, {n_seq} seqs x {T} tokens, {a.steps} steps: "
      f"{n_seq * T * a.steps / s:.0f} training tokens/s ({s / a.steps:.3f} s/step)")
