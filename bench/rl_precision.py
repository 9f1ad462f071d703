"""Rollout/training log-prob mismatch by precision: the number behind `rl.precision`.

    PYTHONPATH=src python bench/rl_precision.py --model small --device cuda
    PYTHONPATH=src python bench/rl_precision.py --model youtu_2b --device cuda --prompts 16

The Youtu-LLM paper reports RL was stable only with fp16, not bf16, because the rollout engine
and the trainer must agree on the policy's probabilities. This measures that agreement in our
stack: a model (random init of a preset, its output sharpened to a language model's typical
next-token entropy by scaling the final norm gain) samples episodes through the serving
`Engine` (absorbed MLA over the latent cache) under each precision's autocast; the RL training
forward (`youtu.rl.policy.PolicyLogprobs`: expanded MLA, chunked lm_head) recomputes their
log-probs under the same autocast. Reported per precision: mean and max |log p_train -
log p_sampler| over sampled tokens, the k3 KL(sampler || trainer), the ratio range, and the
time of the two passes. fp32 is the reference ("peer"): the table gives each row's mean gap as
a multiple of fp32's. Prints the table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from youtu.model import ModelConfig, YoutuForCausalLM
from youtu.serve.engine import Engine, SamplingParams
from youtu.rl.policy import PolicyLogprobs
from youtu.train.trainer import autocast
from youtu.rl.loss import logprob_mismatch

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@torch.no_grad()
def mean_entropy(model: YoutuForCausalLM, ids: torch.Tensor) -> float:
    logp = model(ids).float().log_softmax(-1)
    return float(-(logp.exp() * logp).sum(-1).mean())


@torch.no_grad()
def sharpen(model: YoutuForCausalLM, ids: torch.Tensor, target_nats: float) -> float:
    """Scale the final norm gain until the mean next-token entropy is about `target_nats`."""
    base = model.model.norm.weight.clone()
    best = (float("inf"), 1.0)
    for factor in (1, 2, 4, 8, 16, 32, 64, 128):
        model.model.norm.weight.copy_(base * factor)
        h = mean_entropy(model, ids)
        best = min(best, (abs(h - target_nats), factor))
    model.model.norm.weight.copy_(base * best[1])
    return best[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="small", choices=["tiny", "small", "youtu_2b"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--entropy", type=float, default=1.5, help="target next-token entropy (nats)")
    ap.add_argument("--chunk-tokens", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    cfg = getattr(ModelConfig, args.model)()
    model = YoutuForCausalLM(cfg).to(device)
    model.init_weights()
    model.eval()
    special = cfg.vocab_size - 256
    prompts = torch.randint(0, special, (args.prompts, args.prompt_len), device=device)
    factor = sharpen(model, prompts[:4], args.entropy)
    entropy = mean_entropy(model, prompts[:4])
    engine = Engine(model, max_batch=args.prompts, max_seq_len=args.prompt_len + args.new_tokens,
                    eos_ids=[cfg.eos_token_id])
    root = PolicyLogprobs(model, args.chunk_tokens)
    rows = []
    for name, dtype in DTYPES.items():
        params = [SamplingParams(temperature=1.0, max_tokens=args.new_tokens, ignore_eos=True,
                                 seed=args.seed * 1000 + i) for i in range(args.prompts)]
        t0 = time.perf_counter()
        with autocast(device, dtype):
            outs = engine.generate(prompts.tolist(), params)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        seqs = torch.tensor([p + o.token_ids for p, o in zip(prompts.tolist(), outs)],
                            device=device)
        inputs, targets = seqs[:, :-1], seqs[:, 1:]
        mask = torch.zeros_like(targets, dtype=torch.float32)
        mask[:, args.prompt_len - 1:] = 1.0
        sampler_lp = torch.zeros_like(mask)
        sampler_lp[:, args.prompt_len - 1:] = torch.tensor([o.logprobs for o in outs],
                                                            device=device)
        with torch.no_grad(), autocast(device, dtype):
            train_lp = torch.cat([root(inputs[i:i + 4], targets[i:i + 4], 1.0)
                                  for i in range(0, len(inputs), 4)])
        if device.type == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        m = logprob_mismatch(train_lp, sampler_lp, mask)
        rows.append({"precision": name, "mean_abs": m.mean_abs, "max_abs": m.max_abs,
                     "kl": m.kl, "ratio_min": m.ratio_min, "ratio_max": m.ratio_max,
                     "tokens": m.tokens, "sample_s": round(t1 - t0, 2),
                     "train_s": round(t2 - t1, 2)})
    ref = rows[0]["mean_abs"] or 1e-30
    print(f"model {args.model} ({model.num_params() / 1e6:.1f}M params), device {device}, "
          f"entropy {entropy:.2f} nats (norm gain x{factor}), {args.prompts} x "
          f"{args.new_tokens} sampled tokens")
    print(f"{'precision':>9} {'mean |dlogp|':>13} {'vs fp32':>9} {'max |dlogp|':>12} "
          f"{'KL k3':>10} {'ratio range':>17} {'sample s':>9} {'train s':>8}")
    for r in rows:
        print(f"{r['precision']:>9} {r['mean_abs']:>13.2e} {r['mean_abs'] / ref:>8.0f}x "
              f"{r['max_abs']:>12.2e} {r['kl']:>10.2e} "
              f"{r['ratio_min']:>8.3f}-{r['ratio_max']:<8.3f} {r['sample_s']:>9} {r['train_s']:>8}")
    print(json.dumps({"bench": "rl_precision", "model": args.model, "device": str(device),
                      "entropy_nats": round(entropy, 3), "rows": rows}))


if __name__ == "__main__":
    main()
