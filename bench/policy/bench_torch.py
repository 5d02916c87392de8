"""PyTorch / transformers side of bench/policy: the same measurements as
policy/examples/bench_policy.rs on the same HF folder, printed as JSON lines.

  decode: transformers generate() (sampling, temperature 1, top_p 1, top_k off, KV cache),
          every row generating exactly --new tokens (EOS disabled), best of --reps.
  train:  forward + backward of the mean token log-prob (lm_head -> log_softmax -> gather),
          best of --reps.

Run with /work/pyref/bin/python (torch + transformers); threads set by --threads (default 2).
"""

import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM


def load(path):
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32, attn_implementation="sdpa")
    model.eval()
    model.generation_config.eos_token_id = None
    return model


def random_ids(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 512, shape, generator=g)


def bench_decode(args):
    model = load(args.model)
    prompt = random_ids((1, args.prompt_len), 1).repeat(args.batch, 1)
    mask = torch.ones_like(prompt)
    kw = dict(do_sample=True, temperature=1.0, top_p=1.0, top_k=0, pad_token_id=1, use_cache=True)
    with torch.no_grad():
        model.generate(prompt, attention_mask=mask, max_new_tokens=4, min_new_tokens=4, **kw)
        best = float("inf")
        for _ in range(args.reps):
            t = time.perf_counter()
            out = model.generate(prompt, attention_mask=mask, max_new_tokens=args.new, min_new_tokens=args.new, **kw)
            best = min(best, time.perf_counter() - t)
            assert out.shape == (args.batch, args.prompt_len + args.new), out.shape
    tps = args.batch * args.new / best
    print(json.dumps(dict(bench="decode", impl="torch", batch=args.batch, new=args.new, secs=round(best, 4), tokens_per_s=round(tps, 1))))


def bench_train(args):
    model = load(args.model)
    model.train()
    ids = random_ids((args.batch, args.seq), 3)

    def step():
        model.zero_grad(set_to_none=False)
        logits = model(ids).logits[:, :-1].float()
        logp = logits.log_softmax(-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        loss = -logp.mean()
        loss.backward()

    step()
    best = float("inf")
    for _ in range(args.reps):
        t = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t)
    tps = args.batch * args.seq / best
    print(json.dumps(dict(bench="train", impl="torch", batch=args.batch, seq=args.seq, secs=round(best, 4), tokens_per_s=round(tps, 1))))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("bench", choices=["decode", "train"])
    p.add_argument("--model", required=True)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new", type=int, default=128)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    {"decode": bench_decode, "train": bench_train}[args.bench](args)


if __name__ == "__main__":
    main()
