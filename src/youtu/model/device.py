"""The one device rule of every command: `resolve_device("auto")` is the GPU when there is one.

    device = resolve_device(cfg.device)                 # train, SFT, RL, serve, eval
    device = resolve_device("auto", local_rank=3)       # under torchrun: this process's GPU

It lives in youtu.model (which every package that runs a model may import) so that training,
serving and evaluation resolve `device = "auto"` the same way.
"""

from __future__ import annotations

import torch


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda:<local_rank> when CUDA is available, else cpu; other names as given
    ('cuda' without an index = cuda:<local_rank>). Raises ValueError when a CUDA device is
    asked for and there is none."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but CUDA is not available; use "
                             "--device=cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device
