"""Shared fixtures: a small tokenizer, token shards written by `youtu.data.prepare` from
generated documents (four pretraining domains + chat), and a tiny run config on top of them.

Everything is session-scoped and built once (~2 s). The documents are generated from a fixed
seed so runs are reproducible; they have enough structure (templates, arithmetic) for a model
to learn in a few steps.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from youtu.config import RunConfig, load_config

VOCAB = 576  # 256 bytes + 64 merges + 256 specials: trains in well under a second

WORDS = ("the river stone light house bird garden winter market road child music paper "
         "mountain window story bread morning cloud forest").split()


def _commonsense(rng: random.Random) -> str:
    sents = []
    for _ in range(rng.randint(4, 9)):
        a, b, c = rng.sample(WORDS, 3)
        sents.append(f"The {a} near the {b} was quiet, and the {c} waited.")
    return " ".join(sents)


def _stem(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(3, 7)):
        x, y = rng.randint(2, 60), rng.randint(2, 60)
        lines.append(f"Problem: {x} + {y} = ? Answer: {x + y}.")
    return "\n".join(lines)


def _code(rng: random.Random) -> str:
    n = rng.randint(1, 30)
    return (f"def scale_{n}(values):\n    out = []\n    for v in values:\n"
            f"        out.append(v * {n} + {n % 7})\n    return out\n")


def _agent(rng: random.Random) -> str:
    x, y = rng.randint(2, 40), rng.randint(2, 40)
    return (f"<analysis>Need {x} times {y}.</analysis><plan>Call the calculator.</plan>"
            f"<action>multiply({x}, {y})</action> -> {x * y}<summary>The product is {x * y}."
            "</summary>")


def chat_conversation(rng: random.Random, with_tools: bool) -> dict:
    """A user question and an assistant answer; with tools, a tool call and its result."""
    a, b = rng.randint(1, 50), rng.randint(1, 50)
    if not with_tools:
        return {"messages": [{"role": "user", "content": f"What is {a} plus {b}?"},
                             {"role": "assistant", "content": f"It is {a + b}."}]}
    return {"messages": [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": f"Add {a} and {b}."},
        {"role": "assistant", "content": "", "reasoning_content": "I should call add.",
         "tool_calls": [{"id": "c0", "type": "function",
                         "function": {"name": "add", "arguments": f'{{"a": {a}, "b": {b}}}'}}]},
        {"role": "tool", "tool_call_id": "c0", "content": f"RESULT {a + b}"},
        {"role": "assistant", "content": f"The sum is {a + b}."}],
        "tools": [ADD_TOOL]}


ADD_TOOL = {"type": "function", "function": {
    "name": "add", "description": "Add two integers.",
    "parameters": {"type": "object", "properties": {"a": {"type": "integer"},
                                                    "b": {"type": "integer"}},
                   "required": ["a", "b"]}}}


def _documents(seed: int = 0):
    from youtu.data.document import TRUSTED_SPECIAL, Document

    rng = random.Random(seed)
    makers = {"commonsense": _commonsense, "stem": _stem, "code": _code, "agent": _agent}
    docs = []
    for domain, make in makers.items():
        for i in range(120):
            # Like the pipeline's trajectories, generated agent text keeps its markup as specials.
            meta = {TRUSTED_SPECIAL: True} if domain == "agent" else {}
            docs.append(Document(text=make(rng), domain=domain, source=f"gen-{domain}", meta=meta))
    for i in range(60):
        conv = chat_conversation(rng, with_tools=i % 2 == 0)
        docs.append(Document(text="", domain="chat", source="gen-chat",
                             meta={"messages": conv["messages"], "tools": conv.get("tools")}))
    return docs


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    from youtu.tokenizer.train import train_from_texts

    tok = train_from_texts([d.text for d in _documents(1) if d.text], vocab_size=VOCAB)
    return tok.save(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory, tokenizer_dir) -> Path:
    """Token shards built by youtu.data.prepare (quality/near-dedup off: generated text)."""
    from youtu.data.config import DataConfig, DedupConfig, EmbeddedConfig, QualityConfig
    from youtu.data.prepare import prepare
    from youtu.tokenizer import Tokenizer

    out = tmp_path_factory.mktemp("data")
    cfg = DataConfig(workers=0, embedded=EmbeddedConfig(enabled=False),
                     quality=QualityConfig(enabled=False), dedup=DedupConfig(near=False))
    prepare(cfg, Tokenizer.load(tokenizer_dir), out, extra=_documents(0))
    held = DataConfig(workers=0, embedded=EmbeddedConfig(enabled=False),
                      quality=QualityConfig(enabled=False), dedup=DedupConfig(near=False))
    prepare(held, Tokenizer.load(tokenizer_dir), out / "heldout",
            extra=[d for d in _documents(12345) if d.domain != "chat"])
    return out


TINY_TOML = """
name = "t"
seed = 0
device = "cpu"
[model]
vocab_size = {vocab}
hidden_size = 32
intermediate_size = 64
num_hidden_layers = 2
num_attention_heads = 2
q_lora_rank = 16
kv_lora_rank = 16
qk_nope_head_dim = 8
qk_rope_head_dim = 8
v_head_dim = 8
max_position_embeddings = 256
rope_theta = 10000.0
bos_token_id = {bos}
eos_token_id = {eos}
pad_token_id = {eos}
[train]
lr = 0.01
warmup_steps = 2
checkpoint_every = 4
keep_last = 2
tensorboard = false
heldout_tokens = 256
[[train.stages]]
name = "commonsense"
tokens = 512
seq_len = 32
batch_tokens = 128
mix = {{commonsense = 0.75, stem = 0.125, code = 0.125}}
lr_phase = "warmup_stable"
[[train.stages]]
name = "stem"
tokens = 512
seq_len = 32
batch_tokens = 128
mix = {{commonsense = 0.4, stem = 0.3, code = 0.3}}
[[train.stages]]
name = "general"
tokens = 512
seq_len = 64
batch_tokens = 128
mix = {{commonsense = 0.4, stem = 0.25, code = 0.25, agent = 0.1}}
lr_phase = "decay"
rope_theta = 40000.0
[[train.stages]]
name = "agent"
tokens = 512
seq_len = 64
batch_tokens = 128
mix = {{agent = 0.6, commonsense = 0.2, stem = 0.1, code = 0.1}}
lr_phase = "decay"
yarn_factor = 2.0
"""
"""16 steps: 4 per stage, 4 rows of 32 tokens then 2 rows of 64; theta changes at 'general',
YaRN x2 (over general's 64 tokens) switches on at 'agent'."""


@pytest.fixture(scope="session")
def tiny_toml(tmp_path_factory, tokenizer_dir, data_dir) -> Path:
    """The tiny run config as a TOML file (data and tokenizer paths filled in)."""
    path = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    text = TINY_TOML.format(vocab=VOCAB, bos=VOCAB - 256, eos=VOCAB - 255)
    text = text.replace("[train]", f'[tokenizer]\npath = "{tokenizer_dir}"\n[data]\n'
                                   f'dir = "{data_dir}"\n[train]', 1)
    path.write_text(text)
    return path


@pytest.fixture
def make_cfg(tiny_toml, tmp_path):
    """make_cfg(*overrides) -> RunConfig with out_dir under this test's tmp_path."""

    def make(*overrides: str) -> RunConfig:
        return load_config(tiny_toml, [f"--out_dir={tmp_path / 'runs'}", *overrides])

    return make


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: tiny matmuls gain nothing from more, and on a busy machine thread
    hand-offs dominate (5x slower with 2 threads under load). Subprocesses get OMP_NUM_THREADS=1
    so their numerics match this process bit for bit."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory, tiny_toml, data_dir, tokenizer_dir):
    """One uninterrupted run of the tiny config (shared by the resume / stage / golden tests):
    (run dir, losses by step)."""
    import torch

    from .train_helpers import run_train
    from youtu.train.metrics import read_metrics

    out = tmp_path_factory.mktemp("reference")
    cfg = load_config(tiny_toml, [f"--out_dir={out}"])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_train(cfg, data_dir, tokenizer_dir, cfg.run_dir / "train")
    finally:
        torch.set_num_threads(before)
    return cfg.run_dir / "train", read_metrics(cfg.run_dir / "train" / "metrics.jsonl", "train/loss")
