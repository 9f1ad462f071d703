"""Bounded load test on loopback: many concurrent streaming clients against the tiny model all get
exactly their greedy answer, the cache stays inside its budget, and a client that disconnects
mid-stream frees its row."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai

from youtu.serve.config import ServeConfig
from youtu.serve.engine import Engine
from youtu.serve.sampling import SamplingParams
from youtu.serve.server import create_app
from youtu.tokenizer.chat import encode_chat

MODEL = "tiny-chat"
ROWS, CONTEXT = 16, 256


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _engine(model, tok) -> Engine:
    per_token = model.kv_cache_bytes_per_token(next(model.parameters()).dtype)
    budget = ROWS * CONTEXT * per_token  # the configured budget: exactly ROWS full-length rows
    return Engine(model, max_batch=64, max_seq_len=CONTEXT, eos_ids=[tok.eos_id],
                  detokenize=tok.decode, cache_memory_bytes=budget)


def _messages(i: int) -> list[dict]:
    return [{"role": "user", "content": f"Question {i}: what is {i} times 7?"}]


async def _stream_all(url: str, n: int, max_tokens: int) -> list[str]:
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)

    async def one(i: int) -> str:
        stream = await client.chat.completions.create(
            model=MODEL, messages=_messages(i), max_tokens=max_tokens, temperature=0, stream=True,
            extra_body={"chat_template_kwargs": {"enable_thinking": False}})
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    try:
        return await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await client.close()


def _load(model, tok, live_server, clients: int, max_tokens: int):
    engine = _engine(model, tok)
    assert engine.max_batch == ROWS
    slab, slab_bytes = engine.cache.kv.data_ptr(), engine.cache.nbytes
    # Expected answers: greedy through the engine one request at a time (no HTTP, no batching).
    prompts = [encode_chat(tok, _messages(i), enable_thinking=False, add_generation_prompt=True)[0]
               for i in range(clients)]
    expected = []
    for p in prompts:
        [c] = engine.generate([p], SamplingParams(temperature=0, max_tokens=max_tokens))
        expected.append(tok.decode([t for t in c.token_ids if t != tok.eos_id]).strip())
    engine.peak_running = 0

    with live_server(create_app(engine, tok, ServeConfig(served_model_name=MODEL))) as server:
        rss_before = _rss_bytes()
        got = asyncio.run(_stream_all(server.url, clients, max_tokens))
        rss_growth = _rss_bytes() - rss_before
        assert [g.strip() for g in got] == expected
        m = engine.metrics()
        assert m["peak_running"] == ROWS and m["running"] == 0 and m["free_rows"] == ROWS
        assert m["requests_error_total"] == 0
        assert engine.cache.kv.data_ptr() == slab and engine.cache.nbytes == slab_bytes
        assert slab_bytes <= ROWS * CONTEXT * engine.cache.bytes_per_token()
        # no per-request growth beyond transient buffers (64 x 24 tokens of text is kilobytes)
        assert rss_growth < 64 * 2**20, rss_growth

        # A client that goes away mid-stream frees its row.
        aborted = m["requests_abort_total"]
        body = {"model": MODEL, "messages": _messages(0), "max_tokens": CONTEXT - 40,
                "ignore_eos": True, "stream": True}
        with httpx.Client(timeout=30) as http:
            with http.stream("POST", server.url + "/v1/chat/completions", json=body) as r:
                lines = r.iter_lines()
                for _ in range(4):
                    next(lines)
                assert engine.metrics()["running"] == 1
        deadline = time.monotonic() + 10
        while engine.metrics()["running"] and time.monotonic() < deadline:
            time.sleep(0.05)
        m = engine.metrics()
        assert m["running"] == 0 and m["free_rows"] == ROWS
        assert m["requests_abort_total"] == aborted + 1


def test_64_concurrent_streaming_clients(model, tok, live_server):
    # 18 s on a 2-core machine at load average 10 (under the 30 s line for `slow`)
    _load(model, tok, live_server, clients=64, max_tokens=24)
