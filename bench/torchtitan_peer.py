"""The torchtitan peer of bench/train_throughput.py: torchtitan's own DeepSeek-V3 model at our
shape, through its own parallelize / compile / loss / optimizer / clipping path, on one GPU.

    pip install --no-deps torchtitan==0.3.0 tyro docstring-parser typeguard shtab spmd_types==0.2.3
    python bench/train_throughput.py --preset youtu_2b --seq 4096 --batch 4 --compile --peer torchtitan

torchtitan is a peer, not a dependency (its own requirements pin datasets < 4.8 and pull wandb,
none of which this path imports). 0.3.0 needs a torch newer than 2.11: on 2.11 it fails at
import (`DataParallelMeshDims` is missing from torch.distributed.fsdp); on 2.13 it runs.

What is torchtitan's and what is set to match us:
- Model: `torchtitan.models.deepseek_v3` built by its own `build_mla_moe_layers` with
  `n_dense_layers = n_layers` (every layer a dense SwiGLU MLP: our architecture), our dims
  (hidden, MLP, heads, q/kv LoRA ranks, nope/rope/v head dims, vocab), tied embeddings
  (`enable_weight_tying`), RMSNorm eps and RoPE theta ours, no YaRN. Our initial weights are
  copied in by torchtitan's own HF name map (`DeepSeekV3StateDictAdapter.from_hf_map`), so
  the first-step losses of both must agree (a parity check of the shape and the math).
- Attention: torchtitan's `ScaledDotProductAttention` (it pins cuDNN first, the same kernel
  ours runs). Its LM default is FlexAttention with `max_autotune` + coordinate descent, whose
  autotuning costs minutes per shape on a fresh machine; the rows are unpacked (one document
  each), where causal SDPA is exact.
- Parallelism: `parallelize_deepseekv3` with `ParallelDims` of one process (FSDP2 over a
  one-GPU mesh, bf16 params, fp32 reduce: torchtitan's single-GPU setup), torchtitan's
  per-block `torch.compile(fullgraph=True)` when `compile`, its `ChunkedLossWrapper` +
  `CrossEntropyLoss` (the loss compiled too), `FullAC` / `SelectiveAC` for `ac`.
- Step: torchtitan's `_forward_backward_body` and `train_step` in order: forward, chunked
  loss / global valid tokens, backward, `dist_utils.clip_grad_norm_` (1.0), its AdamW
  container (`default_adamw`: betas 0.9/0.95, wd 0.1) step.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch


@dataclass
class TitanRun:
    seconds_per_step: float
    first_loss: float
    peak_mem_gb: float | None
    flops_per_token: float
    """torchtitan's own count (`get_nparams_and_flops`), for comparison with ours."""


def _titan_config(cfg, seq_len: int, attention_config):
    """A DeepSeekV3Model.Config with our dims, every layer dense."""
    import torchtitan.models.deepseek_v3 as dsv3
    from torchtitan.models.common import ComplexRoPE, Embedding, Linear, RMSNorm
    from torchtitan.models.deepseek_v3.model import DeepSeekV3Model

    eps = cfg.rms_norm_eps
    norm_init = {"weight": torch.nn.init.ones_}
    layers = dsv3._build_dsv3_layers(
        n_layers=cfg.num_hidden_layers, n_dense_layers=cfg.num_hidden_layers,
        dim=cfg.hidden_size, n_heads=cfg.num_attention_heads, q_lora_rank=cfg.q_lora_rank,
        kv_lora_rank=cfg.kv_lora_rank, qk_nope_head_dim=cfg.qk_nope_head_dim,
        qk_rope_head_dim=cfg.qk_rope_head_dim, v_head_dim=cfg.v_head_dim, mscale=1.0,
        dense_hidden_dim=cfg.intermediate_size, moe_hidden_dim=cfg.intermediate_size,
        num_experts=1, num_shared_experts=1, router_top_k=1, router_score_func="softmax",
        attn_backend="flex", moe_comm_backend="standard", non_blocking_capacity_factor=None,
        rope=ComplexRoPE.Config(dim=cfg.qk_rope_head_dim, max_seq_len=seq_len,
                                theta=cfg.rope_theta, scaling="none"))
    for layer in layers:
        layer.attention.inner_attention = attention_config
        for norm in (layer.attention_norm, layer.ffn_norm, layer.attention.q_norm,
                     layer.attention.kv_norm):
            norm.eps = eps
    std = 0.02
    return DeepSeekV3Model.Config(
        vocab_size=cfg.vocab_size, dim=cfg.hidden_size,
        tok_embeddings=Embedding.Config(num_embeddings=cfg.vocab_size,
                                        embedding_dim=cfg.hidden_size,
                                        param_init={"weight": lambda w: torch.nn.init.normal_(w, std=std)}),
        norm=RMSNorm.Config(normalized_shape=cfg.hidden_size, eps=eps, param_init=norm_init),
        lm_head=Linear.Config(in_features=cfg.hidden_size, out_features=cfg.vocab_size,
                              param_init={"weight": lambda w: torch.nn.init.normal_(w, std=std)}),
        layers=layers, mtp_layers=[], enable_weight_tying=cfg.tie_word_embeddings)


def _titan_state(state: dict[str, torch.Tensor], model_config) -> dict[str, torch.Tensor]:
    """Our (= HF) parameter names -> torchtitan's, through torchtitan's own adapter map."""
    import re

    from torchtitan.models.deepseek_v3.state_dict_adapter import DeepSeekV3StateDictAdapter

    mapping = DeepSeekV3StateDictAdapter(model_config, None).from_hf_map
    out = {}
    for key, value in state.items():
        abstract = re.sub(r"\.(\d+)\.", ".{}.", key, count=1)
        layer = re.search(r"\.(\d+)\.", key)
        target = mapping[abstract]
        out[target.format(layer.group(1)) if layer else target] = value
    if model_config.enable_weight_tying:  # one tensor, torchtitan keeps it as lm_head.weight
        out["lm_head.weight"] = out.pop("tok_embeddings.weight")
    return out


def bench_torchtitan(cfg, state: dict[str, torch.Tensor], input_ids: torch.Tensor,
                     targets: torch.Tensor, device: torch.device, steps: int, warmup: int,
                     compile: bool, ac: str = "off") -> TitanRun:
    """Time torchtitan's step on (input_ids, targets) [B, T] with our initial weights.

    Imported lazily and run last: importing torchtitan patches FakeTensorMode and its compile
    sets dynamo flags for the whole process."""
    import torch.distributed as tdist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    from torchtitan.components.loss import ChunkedLossWrapper, CrossEntropyLoss
    from torchtitan.components.optimizer import default_adamw
    from torchtitan.config import CompileConfig, ParallelismConfig, TrainingConfig
    from torchtitan.distributed import ParallelDims
    from torchtitan.distributed import utils as dist_utils
    from torchtitan.distributed.activation_checkpoint import FullAC, SelectiveAC
    from torchtitan.models.common.attention import ScaledDotProductAttention
    from torchtitan.models.deepseek_v3 import parallelize_deepseekv3

    if not tdist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29517")
        tdist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0,
                                 world_size=1)
    B, T = input_ids.shape
    model_config = _titan_config(cfg, T, ScaledDotProductAttention.Config())
    with torch.device("meta"):
        model = model_config.build()
    _, titan_flops = model_config.get_nparams_and_flops(model, T)
    parallelism = ParallelismConfig()
    dims = ParallelDims.from_config(parallelism, world_size=1)
    dims.build_mesh()
    training = TrainingConfig(local_batch_size=B, seq_len=T, max_norm=1.0)
    compile_config = CompileConfig(enable=compile)
    ac_config = {"off": None, "full": FullAC.Config(), "selective": SelectiveAC.Config()}[ac]
    model = parallelize_deepseekv3(model, parallel_dims=dims, training=training,
                                   parallelism=parallelism, compile_config=compile_config,
                                   ac_config=ac_config, dump_folder="/tmp/torchtitan-peer")
    model.to_empty(device=device)
    with torch.no_grad():
        model.init_weights(buffer_device=None)
    set_model_state_dict(model, _titan_state(state, model_config),
                         options=StateDictOptions(full_state_dict=True, strict=False))
    model.train()
    loss_fn = ChunkedLossWrapper.Config(
        loss_fn=CrossEntropyLoss.Config(global_vocab_size=cfg.vocab_size)).build(
        compile_config=compile_config)
    loss_fn.set_lm_head(model.lm_head)
    model._skip_lm_head = True
    optimizers = default_adamw(lr=1e-4).build(model_parts=[model])
    ids, labels = input_ids.to(device), targets.to(device)
    global_valid = (labels != -100).sum()

    def step() -> float:
        optimizers.zero_grad()
        pred = model(ids)
        loss, _ = loss_fn(pred, labels, global_valid)
        del pred
        loss.backward()
        dist_utils.clip_grad_norm_([p for p in model.parameters()], 1.0, foreach=True)
        optimizers.step()
        return float(loss.detach())

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    first = step()
    for _ in range(warmup - 1):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dt = (time.perf_counter() - t0) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return TitanRun(dt, first, peak, float(titan_flops))
