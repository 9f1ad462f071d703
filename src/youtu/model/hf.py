"""Hugging Face interop: config.json <-> ModelConfig, safetensors save/load (the `youtu export`
command is `youtu.model.export`).

    from youtu.model.hf import load_pretrained, save_pretrained
    save_pretrained(model, "runs/tiny/final", dtype=torch.bfloat16)
    model = load_pretrained("runs/tiny/final")          # or an official Youtu-LLM-2B folder
    youtu export runs/tiny/final out/ds3 --export.format=deepseek_v3

A folder we write (`config.json` with `model_type: youtu` + `model.safetensors`) loads in
transformers >= 5.1 with `AutoModelForCausalLM.from_pretrained`, and we load folders written by
transformers (single file or sharded with `model.safetensors.index.json`), the official
Youtu-LLM-2B(-Base) release (whose base checkpoint carries a redundant `lm_head.weight`) and the
legacy remote-code config (`model_type: youtu_llm`, `rope_theta` + an identity YaRN block).

The `deepseek_v3` export is the same weights under a DeepSeek-V3 config made dense
(first_k_dense_replace = num_hidden_layers, so no layer is MoE, and no MoE field) with an
untied lm_head, which vLLM, SGLang, llama.cpp's converter and transformers'
DeepseekV3ForCausalLM all run.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from youtu.model.config import ModelConfig, RopeScaling
from youtu.model.transformer import YoutuForCausalLM


logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "generation_config.json", "tokenizer.model")
ACCEPTED_MODEL_TYPES = ("youtu", "youtu_llm")
_ARCH_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
              "num_attention_heads", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
              "v_head_dim", "rms_norm_eps", "max_position_embeddings", "tie_word_embeddings",
              "bos_token_id", "eos_token_id", "pad_token_id")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# ---- config.json ---------------------------------------------------------------------------------


def _rope_dict(cfg: ModelConfig) -> dict[str, Any] | None:
    rs = cfg.rope_scaling
    if rs is None:
        return None
    return {"rope_type": "yarn", "factor": rs.factor,
            "original_max_position_embeddings": rs.original_max_position_embeddings,
            "beta_fast": rs.beta_fast, "beta_slow": rs.beta_slow, "mscale": rs.mscale,
            "mscale_all_dim": rs.mscale_all_dim}


def config_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    """ModelConfig -> transformers `youtu` config.json dict (official Youtu-LLM-2B key names)."""
    d: dict[str, Any] = {"architectures": ["YoutuForCausalLM"], "model_type": "youtu"}
    d.update({k: getattr(cfg, k) for k in _ARCH_KEYS})
    d.update(num_key_value_heads=cfg.num_attention_heads,
             q_lora_rank=cfg.q_lora_rank or None,  # HF spells "no query compression" as null
             hidden_act="silu", attention_bias=False, attention_dropout=0.0,
             rope_interleave=True, use_cache=True,
             rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta,
                              **(_rope_dict(cfg) or {})})
    if cfg.initializer_range:
        d["initializer_range"] = cfg.initializer_range
    _drop_pad_if_eos(d, cfg)
    return d


def _drop_pad_if_eos(d: dict[str, Any], cfg: ModelConfig) -> None:
    """transformers builds nn.Embedding(padding_idx=pad_token_id) and zeroes that row even after
    loading weights (seen in 5.24, youtu and deepseek_v3); with pad == EOS (Youtu's convention)
    that would erase the EOS embedding (and, tied, its logit). Null pad = EOS pads for us."""
    if cfg.pad_token_id == cfg.eos_token_id:
        d["pad_token_id"] = None


def _rope_from_hf(d: dict[str, Any]) -> tuple[float, RopeScaling | None]:
    """(rope_theta, YaRN or None) from `rope_parameters` (transformers 5) or the legacy
    top-level `rope_theta` + `rope_scaling`."""
    params = dict(d.get("rope_parameters") or {})
    legacy = d.get("rope_scaling") or {}
    params = {**legacy, **params}
    theta = params.get("rope_theta", d.get("rope_theta", ModelConfig().rope_theta))
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type == "default":
        return float(theta), None
    if rope_type != "yarn":
        raise ValueError(f"config.json: rope type {rope_type!r} is not supported; youtu implements "
                         f"plain RoPE and DeepSeek-style 'yarn'")
    factor = float(params.get("factor") or 1.0)
    if factor == 1.0:  # the legacy remote-code config ships an identity YaRN block
        return float(theta), None
    defaults = RopeScaling()
    scaling = RopeScaling(
        factor=factor,
        original_max_position_embeddings=int(params.get("original_max_position_embeddings")
                                             or d.get("max_position_embeddings")),
        beta_fast=float(params.get("beta_fast") or defaults.beta_fast),
        beta_slow=float(params.get("beta_slow") or defaults.beta_slow),
        # absent mscale = None in transformers, which then uses mscale(factor) alone
        mscale=float(params.get("mscale") or 0.0),
        mscale_all_dim=float(params.get("mscale_all_dim", defaults.mscale_all_dim) or 0.0))
    return float(theta), scaling


def config_from_hf(d: dict[str, Any]) -> ModelConfig:
    """transformers config.json dict -> ModelConfig.

    Accepts `model_type` 'youtu' and the legacy remote-code 'youtu_llm'. Raises ValueError for
    another model type or for settings this implementation does not have (bias, GQA, ...).
    """
    model_type = d.get("model_type")
    if model_type not in ACCEPTED_MODEL_TYPES:
        raise ValueError(f"config.json has model_type {model_type!r}; youtu loads only Youtu-LLM "
                         f"checkpoints (model_type 'youtu', or the legacy 'youtu_llm')")
    heads = d.get("num_attention_heads", ModelConfig().num_attention_heads)
    unsupported = {
        "hidden_act": (d.get("hidden_act", "silu"), "silu"),
        "attention_bias": (d.get("attention_bias", False), False),
        "rope_interleave": (d.get("rope_interleave", True), True),
        "num_key_value_heads": (d.get("num_key_value_heads") or heads, heads),
    }
    for key, (got, want) in unsupported.items():
        if got != want:
            raise ValueError(f"config.json: {key}={got!r} is not supported (Youtu MLA needs {want!r})")
    kwargs = {k: d[k] for k in _ARCH_KEYS if d.get(k) is not None}
    for key in ("eos_token_id", "bos_token_id", "pad_token_id"):
        if isinstance(kwargs.get(key), list):  # HF allows several EOS ids; the first is the main one
            kwargs[key] = kwargs[key][0]
    kwargs.setdefault("pad_token_id", kwargs.get("eos_token_id", ModelConfig().eos_token_id))
    if "q_lora_rank" in d:
        kwargs["q_lora_rank"] = d["q_lora_rank"] or 0  # null = plain q_proj
    kwargs["rope_theta"], kwargs["rope_scaling"] = _rope_from_hf(d)
    init = d.get("initializer_range")
    hidden = kwargs.get("hidden_size", ModelConfig().hidden_size)
    vendor = ((2 / (5 * hidden)) ** 0.5, 2 / (5 * hidden) ** 0.5)  # ours, transformers' spelling
    if init and not any(math.isclose(init, v, rel_tol=1e-6) for v in vendor):
        kwargs["initializer_range"] = float(init)
    return ModelConfig(**kwargs)


def config_to_deepseek_v3(cfg: ModelConfig) -> dict[str, Any]:
    """A dense DeepSeek-V3 config.json for the same weights (vLLM / SGLang / llama.cpp)."""
    d: dict[str, Any] = {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3"}
    d.update({k: getattr(cfg, k) for k in _ARCH_KEYS})
    d.update(
        tie_word_embeddings=False,  # runtimes expect lm_head.weight; we save it untied
        num_key_value_heads=cfg.num_attention_heads,
        q_lora_rank=cfg.q_lora_rank or None,
        hidden_act="silu", attention_bias=False, attention_dropout=0.0, rope_interleave=True,
        # Dense: every layer < first_k_dense_replace uses the plain MLP, so no MoE field is
        # written. Each runtime fills its own defaults for them and builds no expert: vLLM and
        # SGLang (DeepseekV3Config: 256 experts, only used in the expert name mapping), llama.cpp
        # (leading_dense_block_count = all layers; a one-expert placeholder made it abort with
        # GGML_ASSERT(n_expert_groups < n_expert)), transformers (DeepseekV3MLP in every layer).
        first_k_dense_replace=cfg.num_hidden_layers, num_nextn_predict_layers=0, use_cache=True,
        # Legacy top-level RoPE keys: what vLLM, SGLang and llama.cpp's converter read;
        # transformers 5 converts them to rope_parameters.
        rope_theta=cfg.rope_theta, rope_scaling=_rope_dict(cfg), initializer_range=cfg.init_std)
    if d["rope_scaling"] is not None:
        d["rope_scaling"]["type"] = "yarn"  # the pre-transformers-4.45 spelling some runtimes read
    _drop_pad_if_eos(d, cfg)
    return d


def read_config(folder: str | Path) -> ModelConfig:
    """ModelConfig from `folder/config.json`."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a model folder: no config.json")
    return config_from_hf(_read_json(path))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); re-export or re-download it") from e


# ---- weights --------------------------------------------------------------------------------------


def _checkpoint_files(folder: Path) -> dict[str, Path]:
    """tensor name -> safetensors file holding it."""
    single = folder / WEIGHTS_NAME
    if single.is_file():
        try:
            with safe_open(single, framework="pt") as f:
                return {name: single for name in f.keys()}
        except SafetensorError as e:
            raise _unreadable(single, e) from e
    index = folder / WEIGHTS_INDEX_NAME
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index} has no 'weight_map'; re-export or re-download it")
        files = {name: folder / file for name, file in weight_map.items()}
        absent = sorted({str(p) for p in files.values() if not p.is_file()})
        if absent:
            raise FileNotFoundError(f"{index} names shard files that are missing: {absent}")
        return files
    raise FileNotFoundError(f"{folder} has no {WEIGHTS_NAME} or {WEIGHTS_INDEX_NAME}")


def _read_tensors(files: dict[str, Path]) -> dict[str, torch.Tensor]:
    by_file: dict[Path, list[str]] = {}
    for name, path in files.items():
        by_file.setdefault(path, []).append(name)
    out = {}
    for path, names in by_file.items():
        try:
            with safe_open(path, framework="pt") as f:
                for name in names:
                    out[name] = f.get_tensor(name)
        except SafetensorError as e:
            raise _unreadable(path, e) from e
    return out


def _unreadable(path: Path, e: Exception) -> ValueError:
    return ValueError(f"{path} is not a readable safetensors file ({e}); it may be truncated: "
                      "re-export or re-download it")


def load_pretrained(folder: str | Path, device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32) -> YoutuForCausalLM:
    """Load an HF Youtu folder (ours, transformers', or the official release) as our model.

    Raises:
        FileNotFoundError: no config.json or weights.
        ValueError: wrong model type, or a missing, unexpected or mis-shaped tensor (named).
    """
    folder = Path(folder)
    cfg = read_config(folder)
    tensors = _read_tensors(_checkpoint_files(folder))
    with torch.device("meta"):
        model = YoutuForCausalLM(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        del expected["lm_head.weight"]
        extra = tensors.pop("lm_head.weight", None)
        embed = tensors.get("model.embed_tokens.weight")
        if extra is not None and embed is not None and not torch.equal(extra, embed):
            logger.warning("%s: lm_head.weight differs from model.embed_tokens.weight but the config "
                           "ties them (tie_word_embeddings=true); using embed_tokens", folder)
    tensors = {k: v for k, v in tensors.items() if not k.endswith("rotary_emb.inv_freq")}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(f"checkpoint {folder} does not match its config.json: "
                         f"missing tensors {missing[:8]}{' ...' if len(missing) > 8 else ''}, "
                         f"unexpected tensors {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise ValueError(f"checkpoint {folder}: tensor {name} has shape "
                             f"{tuple(tensors[name].shape)} but config.json implies {shape}")
    state = {k: v.to(device=device, dtype=dtype) for k, v in tensors.items()}
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    model.init_rope()
    return model.eval()


def _state_for_saving(model: YoutuForCausalLM, dtype: torch.dtype | None,
                      untie: bool = False) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight")
        if untie:
            state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()
    return {k: v.detach().to(device="cpu", dtype=dtype or v.dtype).contiguous() for k, v in state.items()}


def _write(folder: Path, config: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    config = {**config, "dtype": str(next(iter(state.values())).dtype).removeprefix("torch.")}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(state, folder / WEIGHTS_NAME, metadata={"format": "pt"})
    stale = folder / WEIGHTS_INDEX_NAME
    if stale.exists():  # a single file now holds everything; an old index would shadow nothing
        stale.unlink()


def save_pretrained(model: YoutuForCausalLM, folder: str | Path, dtype: torch.dtype | None = None) -> None:
    """Write `config.json` + `model.safetensors` (tied lm_head not stored, as transformers does).

    Args:
        model: the model to save (any device).
        folder: destination (created).
        dtype: weight dtype on disk; None keeps the model's.
    """
    _write(Path(folder), config_to_hf(model.config), _state_for_saving(model, dtype))


def save_deepseek_v3(model: YoutuForCausalLM, folder: str | Path, dtype: torch.dtype | None = None) -> None:
    """Write the model as a dense DeepSeek-V3 folder (untied lm_head.weight stored)."""
    _write(Path(folder), config_to_deepseek_v3(model.config), _state_for_saving(model, dtype, untie=True))


def copy_tokenizer_files(src: str | Path, dst: str | Path) -> list[str]:
    """Copy the tokenizer / generation files that exist in `src` to `dst`; returns their names."""
    copied = []
    for name in TOKENIZER_FILES:
        if (Path(src) / name).is_file():
            shutil.copy2(Path(src) / name, Path(dst) / name)
            copied.append(name)
    return copied
