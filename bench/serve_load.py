"""`youtu serve` under load: N concurrent streaming `openai` clients, aggregate tokens/s and TTFT.

    PYTHONPATH=src python bench/serve_load.py --preset youtu_2b --device cuda      # the H200 run
    PYTHONPATH=src python bench/serve_load.py --preset tiny --device cpu --clients 8 --max-tokens 16

A random-weight model of the preset and a tokenizer of the same vocabulary (the special ids at
the 2B's places; unused ids are filler tokens that decode to visible text, so every generated
token streams) are written as a checkpoint; `python -m youtu serve` serves it in a subprocess
with its defaults (on CUDA: CUDA graphs, the compiled decode step, the fused latent attention)
and `--serve.max_batch` = clients. One warm-up wave (compiles and captures the buckets the
measured wave uses), then the measured wave: every client sends a chat completion with
`stream=True`, `max_tokens`, `ignore_eos` (vLLM's extra: fixed lengths) and usage in the last
chunk. Time to first token = request start -> first chunk carrying content; aggregate tokens/s
= completion tokens of all clients / wall time of the wave. Last line: JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

CORPUS = ["The weather in Paris is sunny and warm today. What is 12 times 7? The answer is 84.",
          "def add(a, b):\n    return a + b\n", "Thinking step by step: plan, act, reflect."] * 20


def write_checkpoint(preset: str, folder: Path, device: str) -> None:
    from youtu.model import ModelConfig, YoutuForCausalLM
    from youtu.model.hf import save_pretrained
    from youtu.tokenizer.train import train_from_texts

    cfg = getattr(ModelConfig, preset)()
    tok = train_from_texts(CORPUS, vocab_size=cfg.vocab_size)
    torch.manual_seed(0)
    with torch.device("meta"):
        model = YoutuForCausalLM(cfg)
    model.to_empty(device=device)
    model.init_weights()
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    save_pretrained(model.to(dtype), folder)
    tok.save(folder)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"the server did not come up within {timeout_s} s")


async def one_client(client, model: str, i: int, max_tokens: int) -> dict:
    t0 = time.perf_counter()
    ttft, tokens = None, 0
    stream = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": f"Question {i}: what is {i} times 7?"}],
        max_tokens=max_tokens, stream=True, temperature=0.7, top_p=0.95,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
    async for chunk in stream:
        if ttft is None and chunk.choices and chunk.choices[0].delta.content:
            ttft = time.perf_counter() - t0
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return {"ttft_s": ttft if ttft is not None else float("nan"), "tokens": tokens,
            "latency_s": time.perf_counter() - t0}


async def wave(url: str, model: str, clients: int, max_tokens: int) -> tuple[list[dict], float]:
    import openai

    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
    t0 = time.perf_counter()
    results = await asyncio.gather(*(one_client(client, model, i, max_tokens)
                                     for i in range(clients)))
    wall = time.perf_counter() - t0
    await client.close()
    return list(results), wall


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="youtu_2b", choices=["tiny", "small", "youtu_2b"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--warmup-tokens", type=int, default=32)
    ap.add_argument("--startup-timeout-s", type=float, default=600)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / f"{args.preset}-random"
        t = time.perf_counter()
        write_checkpoint(args.preset, folder, args.device)
        print(f"# checkpoint written in {time.perf_counter() - t:.0f} s", flush=True)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH", "")]))
        cmd = [sys.executable, "-m", "youtu", "serve", f"--serve.checkpoint={folder}",
               f"--device={args.device}", f"--serve.max_batch={args.clients}",
               f"--serve.port={port}", f"--serve.max_queue={4 * args.clients}"]
        proc = subprocess.Popen(cmd, env=env)
        try:
            t = time.perf_counter()
            wait_up(url, proc, args.startup_timeout_s)
            print(f"# server up in {time.perf_counter() - t:.0f} s", flush=True)
            model = folder.name
            t = time.perf_counter()
            asyncio.run(wave(url, model, args.clients, args.warmup_tokens))
            asyncio.run(wave(url, model, args.clients, args.warmup_tokens))
            print(f"# warm-up waves in {time.perf_counter() - t:.0f} s", flush=True)
            results, wall = asyncio.run(wave(url, model, args.clients, args.max_tokens))
        finally:
            proc.terminate()
            proc.wait(30)
    ttfts = [r["ttft_s"] for r in results]
    tokens = sum(r["tokens"] for r in results)
    out = {"bench": "serve_load", "commit": os.environ.get("YOUTU_COMMIT", ""),
           "preset": args.preset, "device": args.device,
           "hardware": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
           "clients": args.clients, "max_tokens": args.max_tokens, "completion_tokens": tokens,
           "wall_s": wall, "aggregate_tok_s": tokens / wall,
           "ttft_p50_s": statistics.median(ttfts), "ttft_p99_s": pct(ttfts, 0.99),
           "latency_p50_s": statistics.median(r["latency_s"] for r in results)}
    print("| clients | max_tokens | tokens | wall s | aggregate tok/s | TTFT p50 s | TTFT p99 s |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.clients} | {args.max_tokens} | {tokens} | {wall:.2f} | "
          f"{out['aggregate_tok_s']:.0f} | {out['ttft_p50_s']:.3f} | {out['ttft_p99_s']:.3f} |")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
