"""RL learning curve: a tiny SFT'd policy learns `digit_add` with `youtu rl` (CPU or GPU).

    PYTHONPATH=src python bench/rl_digit_add.py                   # CPU, 100 rounds, eval every 20
    PYTHONPATH=src python bench/rl_digit_add.py --device cuda --precision fp16 --out /tmp/rl

The whole recipe through the commands a user runs, at toy scale:
1. a 1,024-id tokenizer (`train_from_texts`) and a randomly initialised ~170k-parameter model;
2. `youtu sft` on conversations "a+b=" -> a RANDOM digit: the policy learns the answer format
   (one digit, then EOS), not the answers, so it starts near chance;
3. `youtu rl --rl.env=digit_add`: GRPO rounds of 16 prompts x 8 samples through the serving
   engine, reward 1 for the right digit; held-out tasks (seeds >= 1,000,000) scored greedily.

The "peer" is the starting policy: the table shows the held-out reward per round against it.
Prints the table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from youtu import cli
from youtu.model import ModelConfig, YoutuForCausalLM
from youtu.model.hf import save_pretrained
from youtu.tokenizer.train import train_from_texts
from youtu.train.metrics import read_metrics
from youtu.rl.envs import DigitAddEnv


def tiny_policy(folder: Path, seed: int) -> None:
    """Random-init tiny model + tokenizer, as a checkpoint folder."""
    torch.manual_seed(seed)
    texts = [f"{a}+{b}={a + b}. The sum of {a} and {b}. " for a in range(20) for b in range(20)]
    tok = train_from_texts(texts * 2, 1024)
    v = tok.vocab_size
    cfg = ModelConfig(vocab_size=v, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                      num_attention_heads=4, q_lora_rank=32, kv_lora_rank=16, qk_nope_head_dim=16,
                      qk_rope_head_dim=8, v_head_dim=16, max_position_embeddings=128,
                      rope_theta=1e4, bos_token_id=v - 256, eos_token_id=v - 255,
                      pad_token_id=v - 255)
    model = YoutuForCausalLM(cfg)
    model.init_weights()
    save_pretrained(model, folder)
    tok.save(folder)


def format_conversations(path: Path, n: int, seed: int) -> None:
    """digit_add prompts answered with random digits (format only)."""
    env, rng = DigitAddEnv(), random.Random(seed)
    with path.open("w") as f:
        for _ in range(n):
            task = env.generate(rng.randrange(10**6))
            messages = [{"role": "user", "content": task.prompt},
                        {"role": "assistant", "content": str(rng.randint(0, 9))}]
            f.write(json.dumps({"messages": messages}) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench_rl")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = [f"--out_dir={out}", "--name=digit_add", f"--device={args.device}",
              f"--seed={args.seed}"]

    t0 = time.perf_counter()
    tiny_policy(out / "init", args.seed)
    format_conversations(out / "format.jsonl", 4000, args.seed)
    assert cli.main(["sft", *common, f"--sft.init={out / 'init'}",
                     f"--sft.conversations={out / 'format.jsonl'}", "--sft.steps=60",
                     "--sft.lr=3e-3", "--sft.seq_len=64", "--sft.batch_tokens=2048",
                     "--sft.enable_thinking=false", "--sft.heldout_fraction=0.05",
                     "--sft.tensorboard=false", "--sft.precision=fp32"]) == 0
    t1 = time.perf_counter()
    assert cli.main(["rl", *common, "--rl.env=digit_add", "--rl.rewards={env = 1.0}",
                     f"--rl.steps={args.steps}", f"--rl.eval_every={args.eval_every}",
                     "--rl.lr=1e-3", "--rl.prompts_per_step=16", "--rl.group_size=8",
                     "--rl.max_new_tokens=2", "--rl.max_seq_len=64", "--rl.enable_thinking=false",
                     "--rl.eval_tasks=64", "--rl.rollout_batch=128", "--rl.tensorboard=false",
                     f"--rl.precision={args.precision}"]) == 0
    t2 = time.perf_counter()

    metrics = out / "digit_add" / "rl" / "metrics.jsonl"
    curve = read_metrics(metrics, "eval/rl/reward")
    train = read_metrics(metrics, "rl/reward")
    mismatch = read_metrics(metrics, "rl/mismatch/mean_abs")
    start = curve[0]
    print(f"{'round':>6} {'held-out reward':>16} {'vs start':>9} {'train reward (last 10)':>23}")
    for step, value in sorted(curve.items()):
        window = [train[s] for s in range(max(1, step - 9), step + 1) if s in train]
        mean = sum(window) / len(window) if window else float("nan")
        print(f"{step:>6} {value:>16.3f} {value - start:>+9.3f} {mean:>23.3f}")
    print(json.dumps({"bench": "rl_digit_add", "env": "digit_add", "rounds": args.steps,
                      "heldout_start": start, "heldout_end": curve[args.steps],
                      "curve": {str(k): round(v, 4) for k, v in sorted(curve.items())},
                      "max_mismatch_nats": max(mismatch.values()),
                      "sft_s": round(t1 - t0, 1), "rl_s": round(t2 - t1, 1),
                      "precision": args.precision, "device": args.device}))


if __name__ == "__main__":
    main()
