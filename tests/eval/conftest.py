"""Fixtures for eval tests: the APTBench folder (skip when absent) and scripted fake models."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from youtu.eval.aptbench import aptbench_dir
from youtu.eval.harness import LM, GenerationRequest


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared, loaded 2-core machine
    OpenMP threads spin-wait for each other: the eval tests ran 9x slower with 2 threads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def aptbench_root():
    root = aptbench_dir()
    if not (root / "data").is_dir():
        pytest.skip(f"APTBench data not found at {root} (set YOUTU_APTBENCH_DIR)")
    return root


class ScriptedLM(LM):
    """A fake model: `reply(prompt) -> generated text`; keeps the prompts it saw and the
    size of each `generate_until` call."""

    def __init__(self, reply: Callable[[str], str], max_length: int = 1 << 20):
        self.reply, self.max_length, self.name = reply, max_length, "scripted"
        self.seen: list[str] = []
        self.calls: list[int] = []

    def generate_until(self, requests: Sequence[GenerationRequest]) -> list[str]:
        self.seen += [r.prompt for r in requests]
        self.calls.append(len(requests))
        return [self.reply(r.prompt) for r in requests]


@pytest.fixture
def scripted_lm():
    return ScriptedLM


def _corpus() -> list[str]:
    """A few hundred KB of English prose and Python: the stdlib's own source."""
    import glob
    import json
    import os

    root = os.path.dirname(os.path.dirname(json.__file__))
    return [open(f, encoding="utf-8").read() for f in sorted(glob.glob(f"{root}/*.py"))[:40]]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A random tiny YoutuForCausalLM + a 1024-token tokenizer, saved as a checkpoint folder."""
    import torch

    from youtu.model import ModelConfig, YoutuForCausalLM
    from youtu.model.hf import save_pretrained
    from youtu.tokenizer.train import train_from_texts

    folder = tmp_path_factory.mktemp("tiny_ckpt")
    tok = train_from_texts(_corpus(), 1024)
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(vocab_size=tok.vocab_size)
    model = YoutuForCausalLM(cfg)
    model.init_weights()
    with torch.no_grad():  # a random model would mostly predict the 256 reserved special tokens,
        # which decode to nothing; keep it to ordinary text (and EOS) so outputs are visible
        model.model.embed_tokens.weight[tok.bos_id:].zero_()
        model.model.embed_tokens.weight[tok.eos_id].normal_(0, 0.02)
    save_pretrained(model, folder)
    tok.save(folder)
    return folder
