"""GGUF export for llama.cpp (and llama-cpp-python, Ollama, LM Studio), through the `gguf` package.

    youtu export runs/tiny/sft out/tiny.gguf --export.format=gguf     # dtype = the checkpoint's
    python -c "from llama_cpp import Llama; print(Llama('out/tiny.gguf')('The', max_tokens=8))"

The file is what llama.cpp's own converter (`convert_hf_to_gguf.py`, which maps
`YoutuForCausalLM` to its `deepseek2` architecture) writes for a Youtu checkpoint, without its
tokenizer check: the converter recognises a tokenizer by the hash of a test encoding, so any
tokenizer we train is "unknown" to it. We write the pre-tokenizer name `youtu` directly: llama.cpp's
`youtu` pre-tokenizer is the same o200k word regex with single digits that ours uses, after a CJK
split (its CJK classes are narrower than ours, so tokens can differ inside CJK runs, never in
other text). Layout, as llama.cpp's `deepseek2` expects:

- MLA as MQA over the latent: head_count_kv = 1, key_length = kv_lora_rank + rope dim,
  value_length = kv_lora_rank; the per-head sizes in key/value_length_mla.
- `kv_b_proj` split into `attn_k_b` (transposed, [H, C, nope]) and `attn_v_b` ([H, v, C]), the
  absorbed decode path; RoPE is llama.cpp's NORM (interleaved pairs), our layout, so no permute.
- Dense: leading_dense_block_count = every layer, no expert count (an expert count of 1 aborts
  llama.cpp: GGML_ASSERT(n_expert_groups < n_expert)). A tied lm_head is not stored (llama.cpp
  reuses token_embd). Vectors (norms) stay float32, as the converter writes them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from youtu.model.transformer import YoutuForCausalLM

ARCH = "deepseek2"
PRE_TOKENIZER = "youtu"


def _gguf():
    try:
        import gguf
    except ImportError as e:  # a core dependency, but say what to do if it is missing
        raise ImportError("GGUF export needs the `gguf` package: pip install gguf") from e
    return gguf


def gguf_path(out: str | Path) -> Path:
    """`out` itself when it names a .gguf file, else `out/model.gguf`."""
    out = Path(out)
    return out if out.suffix == ".gguf" else out / "model.gguf"


def _tokenizer_metadata(folder: Path, vocab_size: int) -> dict[str, Any]:
    """Tokens, types, merges and special ids from an HF `tokenizer.json` + config."""
    gguf = _gguf()
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no tokenizer.json; GGUF embeds the tokenizer")
    data = json.loads(path.read_text(encoding="utf-8"))
    model = data["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"{path}: GGUF export handles byte-level BPE, got {model.get('type')!r}")
    by_id: dict[int, tuple[str, int]] = {i: (t, gguf.TokenType.NORMAL) for t, i in model["vocab"].items()}
    for added in data.get("added_tokens", []):
        kind = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
        by_id[added["id"]] = (added["content"], kind)
    if max(by_id) >= vocab_size:
        raise ValueError(f"{path} has token id {max(by_id)} but the model's vocab_size is {vocab_size}")
    tokens, types = [], []
    for i in range(vocab_size):  # embedding rows past the tokenizer: unused placeholders
        token, kind = by_id.get(i, (f"[PAD{i}]", gguf.TokenType.UNUSED))
        tokens.append(token)
        types.append(kind)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    config_path = folder / "tokenizer_config.json"
    tok_cfg = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    ids = {t: i for i, (t, _) in by_id.items()}

    def special(name: str) -> int | None:
        value = tok_cfg.get(name)
        value = value.get("content") if isinstance(value, dict) else value
        return ids.get(value) if value else None

    return {"tokens": tokens, "types": types, "merges": merges, "bos": special("bos_token"),
            "eos": special("eos_token"), "pad": special("pad_token"),
            "add_bos": bool(tok_cfg.get("add_bos_token", False)),
            "chat_template": tok_cfg.get("chat_template")}


def _tensors(model: YoutuForCausalLM) -> list[tuple[str, torch.Tensor]]:
    """(HF name, tensor) in llama.cpp's layout: kv_b_proj split into k_b (transposed) and v_b."""
    cfg = model.config
    state = model.state_dict()
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    out = []
    for name, t in state.items():
        t = t.detach().float().cpu()
        if name.endswith("self_attn.kv_b_proj.weight"):
            H, nope, v = cfg.num_attention_heads, cfg.qk_nope_head_dim, cfg.v_head_dim
            kv_b = t.view(H, nope + v, t.shape[-1])  # [H, nope + v, C]
            k_b, v_b = kv_b.split([nope, v], dim=1)
            out.append((name.replace("kv_b_proj", "k_b_proj"), k_b.transpose(1, 2).contiguous()))
            out.append((name.replace("kv_b_proj", "v_b_proj"), v_b.contiguous()))
        else:
            out.append((name, t))
    return out


def save_gguf(model: YoutuForCausalLM, tokenizer_folder: str | Path, path: str | Path,
              dtype: torch.dtype = torch.float32) -> Path:
    """Write `model` with the tokenizer of `tokenizer_folder` as one GGUF file (atomically).

    Args:
        model: the model (any device).
        tokenizer_folder: folder with tokenizer.json (+ tokenizer_config.json: special tokens,
            add_bos_token, chat template).
        path: the .gguf file to write.
        dtype: float32, bfloat16 or float16 for matrices (vectors stay float32).

    Returns:
        The path written.
    """
    gguf = _gguf()
    qtypes = {torch.float32: (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
              torch.bfloat16: (gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
              torch.float16: (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16)}
    if dtype not in qtypes:
        raise ValueError(f"GGUF export dtype must be float32, bfloat16 or float16, got {dtype}")
    qtype, ftype = qtypes[dtype]
    cfg = model.config
    tok = _tokenizer_metadata(Path(tokenizer_folder), cfg.vocab_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")

    w = gguf.GGUFWriter(tmp, ARCH)
    w.add_name(Path(tokenizer_folder).name or "youtu")
    w.add_file_type(ftype)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(1)  # MLA decodes as MQA over the shared latent
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_leading_dense_block_count(cfg.num_hidden_layers)  # dense: no MoE layer
    w.add_vocab_size(cfg.vocab_size)
    if cfg.q_lora_rank:
        w.add_q_lora_rank(cfg.q_lora_rank)
    w.add_kv_lora_rank(cfg.kv_lora_rank)
    w.add_key_length(cfg.kv_lora_rank + cfg.qk_rope_head_dim)
    w.add_value_length(cfg.kv_lora_rank)
    w.add_key_length_mla(cfg.qk_nope_head_dim + cfg.qk_rope_head_dim)
    w.add_value_length_mla(cfg.v_head_dim)
    w.add_expert_feed_forward_length(cfg.intermediate_size)  # read unconditionally by deepseek2
    w.add_expert_shared_count(0)
    w.add_rope_dimension_count(cfg.qk_rope_head_dim)
    if cfg.rope_scaling is not None:
        rs = cfg.rope_scaling
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(rs.factor)
        w.add_rope_scaling_orig_ctx_len(rs.original_max_position_embeddings)
        w.add_rope_scaling_yarn_beta_fast(rs.beta_fast)
        w.add_rope_scaling_yarn_beta_slow(rs.beta_slow)
        if rs.mscale_all_dim:
            # llama.cpp divides this by 0.1 again (its TAG_DEEPSEEK2_YARN_LOG_MUL_FIX)
            w.add_rope_scaling_yarn_log_mul(0.1 * rs.mscale_all_dim)

    w.add_tokenizer_model("gpt2")  # byte-level BPE
    w.add_tokenizer_pre(PRE_TOKENIZER)
    w.add_token_list(tok["tokens"])
    w.add_token_types(tok["types"])
    w.add_token_merges(tok["merges"])
    for key, add in (("bos", w.add_bos_token_id), ("eos", w.add_eos_token_id),
                     ("pad", w.add_pad_token_id)):
        if tok[key] is not None:
            add(tok[key])
    w.add_add_bos_token(tok["add_bos"])
    w.add_add_eos_token(False)
    if tok["chat_template"]:
        w.add_chat_template(tok["chat_template"])

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.DEEPSEEK2, cfg.num_hidden_layers)
    for hf_name, t in _tensors(model):
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ValueError(f"no GGUF name for tensor {hf_name}")
        data = t.numpy()
        if t.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, data.astype("float32"))
        elif qtype == gguf.GGMLQuantizationType.F16:
            w.add_tensor(name, data.astype("float16"))
        else:
            w.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)  # a crash never leaves a half-written file under the real name
    return path
