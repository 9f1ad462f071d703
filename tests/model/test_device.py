"""The one 'auto' device rule (youtu.model.device), used by train, RL, serve and eval."""

from __future__ import annotations

import pytest
import torch

from youtu.model.device import resolve_device


def test_auto_is_this_processes_gpu_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto", local_rank=3) == torch.device("cuda", 3)
    assert resolve_device("cuda:1", local_rank=3) == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto", local_rank=3) == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available.*--device=cpu"):
        resolve_device("cuda")


def test_every_consumer_uses_the_one_rule():
    from youtu.eval import runner
    from youtu.serve import engine
    from youtu.train import parallel

    assert parallel.resolve_device is resolve_device and engine.resolve_device is resolve_device
    assert "resolve_device" in runner.open_model.__code__.co_names
