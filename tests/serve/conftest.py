"""Serving fixtures: a tiny tokenizer, a tiny random model and its checkpoint, a scripted model
(emits given text, for deterministic tool-call round trips), and a live loopback server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest
import torch
from torch import nn

from youtu.model import ModelConfig, YoutuForCausalLM
from youtu.tokenizer.train import train_from_texts

CORPUS = [
    "The weather in Paris is sunny and warm today. What is the weather in Tokyo? It is raining.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n",
    "What is 12 times 7? The answer is 84. Let me check: 12 * 7 = 84.",
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    "Thinking step by step: first analyse the task, then plan, act, reflect and summarise.",
] * 40


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The tiny model's matmuls are far too small to gain from intra-op threads, and on a shared
    CPU OpenMP threads waiting on each other made decode steps 25x slower (measured: 16 x 30
    tokens in 10.6 s with 2 threads vs 0.40 s with 1 under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tok():
    return train_from_texts(CORPUS, vocab_size=1024)


@pytest.fixture(scope="session")
def model(tok):
    torch.manual_seed(0)
    m = YoutuForCausalLM(ModelConfig.tiny(vocab_size=tok.vocab_size))
    m.init_weights()
    return m.eval()


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, model, tok):
    from youtu.model.hf import save_pretrained

    folder = tmp_path_factory.mktemp("ckpt") / "tiny-chat"
    save_pretrained(model, folder)
    tok.save(folder)
    return folder


class ScriptedModel(nn.Module):
    """A stand-in for YoutuForCausalLM that the real `Engine` can drive: after the last
    `<|Assistant|>` token of a row it writes the assistant text `script(before, after)` token by
    token, then EOS (`before` = ids up to the trigger, `after` = ids since it, which include any
    pre-fill the prompt made). Where `after` leaves the script it emits EOS.

    It keeps each cache row's token history itself (written at `positions`, like the latent
    cache), and returns one-hot hidden states that an identity `lm_head` turns into logits
    peaked on the scripted token.
    """

    def __init__(self, tok, script: Callable[[list[int], list[int]], list[int]], max_batch: int = 64,
                 max_seq_len: int = 2048):
        super().__init__()
        V = tok.vocab_size
        self.config = ModelConfig.tiny(vocab_size=V)
        self.config.hidden_size = V
        self.lm_head = nn.Linear(V, V, bias=False)
        with torch.no_grad():
            self.lm_head.weight.copy_(torch.eye(V))
        self.trigger = tok.special("<|Assistant|>")
        self.eos = tok.eos_id
        self.script = script
        self.history = torch.full((max_batch + 1, max_seq_len), -1, dtype=torch.long)

    def kv_cache_bytes_per_token(self, dtype=torch.bfloat16) -> int:
        return 4

    def _next(self, seen: list[int]) -> int:
        starts = [i for i, x in enumerate(seen) if x == self.trigger]
        if not starts:
            return self.eos
        before, after = seen[:starts[-1] + 1], seen[starts[-1] + 1:]
        script = self.script(before, after) + [self.eos]
        if len(after) < len(script) and script[:len(after)] == after:
            return script[len(after)]
        return self.eos

    def hidden_states(self, input_ids, positions=None, doc_ids=None, cache=None, cache_rows=None):
        B, T = input_ids.shape
        rows = cache_rows if cache_rows is not None else torch.arange(B)
        out = torch.zeros(B, T, self.config.vocab_size)
        for b in range(B):
            row = int(rows[b])
            for t in range(T):
                self.history[row, int(positions[b, t])] = int(input_ids[b, t])
            for t in range(T):
                p = int(positions[b, t])
                out[b, t, self._next(self.history[row, :p + 1].tolist())] = 30.0
        return out

    def forward(self, input_ids, **kw):
        return self.lm_head(self.hidden_states(input_ids, **kw))


@pytest.fixture
def scripted(tok):
    """Factory: scripted(text_for) -> model, where text_for(before_ids, thinking) is the whole
    assistant text after `<|Assistant|>` (thinking=False when the prompt pre-filled the empty
    think block)."""
    empty_think = tok.encode("<think>\n\n</think>\n\n", allow_special=True)

    def make(text_for: Callable[[list[int], bool], str], **kw) -> ScriptedModel:
        def script(before, after):
            thinking = after[:len(empty_think)] != empty_think
            return tok.encode(text_for(before, thinking), allow_special=True)
        return ScriptedModel(tok, script, **kw)
    return make


class LiveServer:
    """uvicorn serving `app` on a free loopback port in a thread (lifespan included)."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def live_server():
    """live_server(app) -> context manager yielding a LiveServer (use `with`)."""
    return LiveServer
