"""`youtu export`: a checkpoint as an HF folder (`youtu` or dense `deepseek_v3`) or a GGUF file.

    youtu export runs/tiny/sft/stage_sft out/youtu
    youtu export runs/tiny/sft/stage_sft out/ds3 --export.format=deepseek_v3
    youtu export runs/tiny/sft/stage_sft out/ --export.format=gguf      # for llama.cpp

The folder formats are `youtu.model.hf`'s writers (the `deepseek_v3` one: the same weights under
a dense DeepSeek-V3 config); `gguf` is `youtu.model.gguf`. Every export keeps the checkpoint's
dtype unless `--export.dtype` says otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open

from youtu.errors import ConfigError
from youtu.model.hf import (_DTYPES, _checkpoint_files, copy_tokenizer_files, load_pretrained,
                            save_deepseek_v3, save_pretrained)

if TYPE_CHECKING:
    from youtu.config import RunConfig

logger = logging.getLogger(__name__)


def checkpoint_dtype(folder: str | Path) -> torch.dtype:
    """The dtype the checkpoint's weights are stored in (of its first floating tensor)."""
    files = _checkpoint_files(Path(folder))
    name, path = next(iter(files.items()))
    with safe_open(path, framework="pt") as f:
        for name in f.keys():
            dtype = f.get_slice(name).get_dtype()
            if dtype in ("F32", "BF16", "F16"):
                return {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}[dtype]
    return torch.float32


def export_main(cfg: RunConfig) -> int:
    """`youtu export <checkpoint> <out> [--export.format=deepseek_v3|gguf] [--export.dtype=...]`."""
    ex = cfg.export
    if not ex.checkpoint or not ex.out:
        raise ConfigError("export needs a source and a destination: youtu export <checkpoint> <out>")
    if Path(ex.out).resolve() == Path(ex.checkpoint).resolve():
        raise ConfigError(f"export.out must differ from export.checkpoint ({ex.out})")
    try:
        dtype = checkpoint_dtype(ex.checkpoint) if ex.dtype == "auto" else _DTYPES[ex.dtype]
        model = load_pretrained(ex.checkpoint, dtype=dtype)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"export.checkpoint: {e}") from e
    dtype_name = str(dtype).removeprefix("torch.")
    if ex.format == "gguf":
        from youtu.model.gguf import gguf_path, save_gguf

        out = gguf_path(ex.out)
        save_gguf(model, ex.checkpoint, out, dtype)
        logger.info("exported %s (gguf, %s, %.1fM params) to %s", ex.checkpoint, dtype_name,
                    model.num_params() / 1e6, out)
        return 0
    if ex.format == "deepseek_v3":
        save_deepseek_v3(model, ex.out, dtype)
    else:
        save_pretrained(model, ex.out, dtype)
    copied = copy_tokenizer_files(ex.checkpoint, ex.out)
    logger.info("exported %s (%s, %s, %.1fM params) to %s; tokenizer files: %s", ex.checkpoint,
                ex.format, dtype_name, model.num_params() / 1e6, ex.out, ", ".join(copied) or "none")
    return 0
