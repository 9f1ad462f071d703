"""The torchtitan peer of bench/train_throughput.py: torchtitan's own DeepSeek-V3 model at our
shape, through its own parallelize / compile / loss / optimizer / clipping path, on one GPU.

    # torchtitan 0.2.2 (runs on torch 2.11, the H200 image's): carry these wheels
    bash ../shared/device/fetch-wheels.sh torchtitan==0.2.2 tyro==1.0.17 docstring-parser==0.18.0 \
        typeguard==4.6.1 shtab==1.13.0 torchdata==0.11.0 datasets==5.2.0 dill==0.4.1 \
        multiprocess==0.70.19
    # torchtitan 0.3.0 (needs a torch newer than 2.11)
    pip install --no-deps torchtitan==0.3.0 tyro docstring-parser typeguard shtab spmd_types==0.2.3
    python bench/train_throughput.py --preset youtu_2b --seq 4096 --batch 4 --compile --peer torchtitan

The path is picked by the installed version (`importlib.metadata.version("torchtitan")`):
0.3.x's Config objects, or 0.2.x's `JobConfig` API. torchtitan is a peer, not a dependency:
its own requirements pull wandb and more, none of which this path imports; 0.2.2's
`torchtitan.models.deepseek_v3` imports its dataloader (datasets, torchdata), its config
manager (tyro) and its MoE kernels (triton, on the device image), hence the wheels above.
0.3.0 fails at import on torch 2.11 (`DataParallelMeshDims` is missing from
torch.distributed.fsdp); 0.2.2 has no such import.

What is torchtitan's and what is set to match us (both versions):
- Model: `torchtitan.models.deepseek_v3` with `n_dense_layers = n_layers` (every layer a dense
  SwiGLU MLP: our architecture), our dims (hidden, MLP, heads, q/kv LoRA ranks, nope/rope/v
  head dims, vocab), tied embeddings when ours are, RMSNorm eps and RoPE theta ours, no YaRN
  (0.2.2 applies YaRN and its mscale whenever `max_seq_len > original_seq_len`: set equal).
  0.3.0 ties by `enable_weight_tying`; 0.2.2's DSv3 has no such switch, so `output.weight` is
  made `tok_embeddings.weight` (what its Qwen3 does) and its final norm, built without an eps
  (dtype epsilon), gets ours. Our initial weights are copied in through torchtitan's own HF
  name map (`DeepSeekV3StateDictAdapter.from_hf_map`), so the first-step losses of both must
  agree (a parity check of the shape and the math).
- Attention: SDPA (cuDNN first, the kernel ours runs): 0.3.0's `ScaledDotProductAttention`,
  0.2.2's `attn_type = "sdpa"`. FlexAttention with `max_autotune` costs minutes of autotuning
  per shape on a fresh machine; the rows are unpacked (one document each), where causal SDPA
  is exact.
- Parallelism and precision: `parallelize_deepseekv3` on a one-process `ParallelDims`.
  0.3.0 applies FSDP2 at any size (bf16 params, fp32 reduce). 0.2.2 applies FSDP only when
  `dp_shard > 1` (and its `apply_fsdp` would shard a tied embedding twice, untying it), so
  on one GPU its trainer runs bf16 autocast (`dist_utils.maybe_enable_amp`) over fp32
  weights: that is what this peer does, the same precision as our trainer. Both: its
  per-block `torch.compile` (and the loss compiled) when `compile`; full AC / per-op
  selective AC for `ac` (0.2.2: `mode = "selective"`, `selective_ac_option = "op"`).
- Step: its trainer's `train_step` in order: forward, loss sum / global valid tokens (0.3.0:
  `ChunkedLossWrapper`; 0.2.2: full-logit `cross_entropy_loss`), backward,
  `dist_utils.clip_grad_norm_` (1.0), its AdamW container step (lr 1e-4, betas 0.9/0.95,
  eps 1e-8, wd 0.1 on every parameter, fused).
On CPU both run fp32 (0.2.2 without autocast; 0.3.0 with FSDP params in fp32), as ours does.

CPU parity check (torch 2.13, gloo, eager, fp32; tests/train/test_torchtitan_peer.py), the
wheels in a folder of their own (add datasets, dill and multiprocess where they are missing):
    pip install --no-deps --target /tmp/tt22 torchtitan==0.2.2 tyro docstring-parser typeguard \
        shtab torchdata triton
    PYTHONPATH=src:/tmp/tt22 python bench/train_throughput.py --peer torchtitan --steps 1 --warmup 1
gave first-step losses 9.0635915 (ours) and 9.0635910 (0.2.2; 0.3.0 the same).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import TypeAlias

import torch

Step: TypeAlias = Callable[[], torch.Tensor]
"""One training step; returns its loss on the device."""


@dataclass
class TitanRun:
    seconds_per_step: float
    first_loss: float
    peak_mem_gb: float | None
    flops_per_token: float
    """torchtitan's own count (`get_nparams_and_flops`), for comparison with ours."""
    version: str = ""
    """The torchtitan version that ran."""


def titan_version() -> tuple[int, ...]:
    """The installed torchtitan's (major, minor, patch), without importing it."""
    try:
        text = metadata.version("torchtitan")
    except metadata.PackageNotFoundError as e:
        raise ImportError("--peer torchtitan needs torchtitan: carry the wheels this module's "
                          "docstring lists (0.2.2 on torch 2.11, 0.3.0 on newer)") from e
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def _titan_state(state: dict[str, torch.Tensor], mapping: dict[str, str],
                 tied_into_lm_head: bool = False) -> dict[str, torch.Tensor]:
    """Our (= HF) parameter names -> torchtitan's, through torchtitan's own adapter map."""
    out = {}
    for key, value in state.items():
        abstract = re.sub(r"\.(\d+)\.", ".{}.", key, count=1)
        layer = re.search(r"\.(\d+)\.", key)
        target = mapping[abstract]
        out[target.format(layer.group(1)) if layer else target] = value
    if tied_into_lm_head:  # one tensor, torchtitan 0.3.0 keeps it as lm_head.weight
        out["lm_head.weight"] = out.pop("tok_embeddings.weight")
    return out


# --- torchtitan 0.3.x: Config objects -------------------------------------------------------

def _titan_config(cfg, seq_len: int, attention_config):
    """A 0.3.0 DeepSeekV3Model.Config with our dims, every layer dense."""
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


def _build_v030(cfg, state: dict[str, torch.Tensor], ids: torch.Tensor, labels: torch.Tensor,
                device: torch.device, compile: bool, ac: str) -> tuple[Step, float]:
    """torchtitan 0.3.x's model, parallelize, chunked loss and AdamW; returns (step, flops)."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
    )
    from torchtitan.components.loss import ChunkedLossWrapper, CrossEntropyLoss
    from torchtitan.components.optimizer import default_adamw
    from torchtitan.config import CompileConfig, ParallelismConfig, TrainingConfig
    from torchtitan.distributed import ParallelDims
    from torchtitan.distributed import utils as dist_utils
    from torchtitan.distributed.activation_checkpoint import FullAC, SelectiveAC
    from torchtitan.models.common.attention import ScaledDotProductAttention
    from torchtitan.models.deepseek_v3 import parallelize_deepseekv3
    from torchtitan.models.deepseek_v3.state_dict_adapter import (
        DeepSeekV3StateDictAdapter,
    )

    B, T = ids.shape
    model_config = _titan_config(cfg, T, ScaledDotProductAttention.Config())
    with torch.device("meta"):
        model = model_config.build()
    _, titan_flops = model_config.get_nparams_and_flops(model, T)
    parallelism = ParallelismConfig()
    dims = ParallelDims.from_config(parallelism, world_size=1)
    dims.build_mesh()
    precision = "bfloat16" if device.type == "cuda" else "float32"
    training = TrainingConfig(local_batch_size=B, seq_len=T, max_norm=1.0,
                              mixed_precision_param=precision)
    compile_config = CompileConfig(enable=compile)
    ac_config = {"off": None, "full": FullAC.Config(), "selective": SelectiveAC.Config()}[ac]
    model = parallelize_deepseekv3(model, parallel_dims=dims, training=training,
                                   parallelism=parallelism, compile_config=compile_config,
                                   ac_config=ac_config, dump_folder="/tmp/torchtitan-peer")
    model.to_empty(device=device)
    with torch.no_grad():
        model.init_weights(buffer_device=None)
    mapping = DeepSeekV3StateDictAdapter(model_config, None).from_hf_map
    set_model_state_dict(model, _titan_state(state, mapping, model_config.enable_weight_tying),
                         options=StateDictOptions(full_state_dict=True, strict=False))
    model.train()
    loss_fn = ChunkedLossWrapper.Config(
        loss_fn=CrossEntropyLoss.Config(global_vocab_size=cfg.vocab_size)).build(
        compile_config=compile_config)
    loss_fn.set_lm_head(model.lm_head)
    model._skip_lm_head = True
    optimizers = default_adamw(lr=1e-4).build(model_parts=[model])
    global_valid = (labels != -100).sum()

    def step() -> torch.Tensor:
        optimizers.zero_grad()
        pred = model(ids)
        loss, _ = loss_fn(pred, labels, global_valid)
        del pred
        loss.backward()
        dist_utils.clip_grad_norm_([p for p in model.parameters()], 1.0, foreach=True)
        optimizers.step()
        return loss.detach()

    return step, float(titan_flops)


# --- torchtitan 0.2.x: JobConfig --------------------------------------------------------------

def _titan_args_v022(cfg, seq_len: int):
    """A 0.2.2 DeepSeekV3ModelArgs with our dims, every layer dense, SDPA, no YaRN."""
    from torchtitan.models.deepseek_v3 import DeepSeekV3ModelArgs

    return DeepSeekV3ModelArgs(
        vocab_size=cfg.vocab_size, dim=cfg.hidden_size, inter_dim=cfg.intermediate_size,
        moe_inter_dim=cfg.intermediate_size, n_layers=cfg.num_hidden_layers,
        n_dense_layers=cfg.num_hidden_layers, n_heads=cfg.num_attention_heads,
        norm_eps=cfg.rms_norm_eps, q_lora_rank=cfg.q_lora_rank, kv_lora_rank=cfg.kv_lora_rank,
        qk_nope_head_dim=cfg.qk_nope_head_dim, qk_rope_head_dim=cfg.qk_rope_head_dim,
        v_head_dim=cfg.v_head_dim, attn_type="sdpa", attn_mask_type="causal",
        rope_theta=cfg.rope_theta, max_seq_len=seq_len,
        original_seq_len=seq_len, rope_factor=1.0, mscale=1.0)  # YaRN only above original


def _job_config_v022(batch: int, seq_len: int, compile: bool, ac: str, device: torch.device):
    """The JobConfig torchtitan 0.2.2's trainer would read for this run."""
    from torchtitan.config import ActivationCheckpoint, JobConfig, Optimizer, Training
    from torchtitan.config.job_config import Compile

    job = JobConfig()
    job.job.dump_folder = "/tmp/torchtitan-peer"
    precision = "bfloat16" if device.type == "cuda" else "float32"
    job.training = Training(local_batch_size=batch, seq_len=seq_len, max_norm=1.0,
                            mixed_precision_param=precision)
    job.compile = Compile(enable=compile)  # components: model (per block) and loss
    job.activation_checkpoint = {
        "off": ActivationCheckpoint(mode="none"),
        "full": ActivationCheckpoint(mode="full"),
        "selective": ActivationCheckpoint(mode="selective", selective_ac_option="op"),
    }[ac]
    job.optimizer = Optimizer(name="AdamW", lr=1e-4, beta1=0.9, beta2=0.95, eps=1e-8,
                              weight_decay=0.1, implementation="fused")
    return job


def _build_v022(cfg, state: dict[str, torch.Tensor], ids: torch.Tensor, labels: torch.Tensor,
                device: torch.device, compile: bool, ac: str) -> tuple[Step, float]:
    """torchtitan 0.2.2's model, parallelize, loss and AdamW, in its trainer's order."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
    )
    from torchtitan.components.loss import IGNORE_INDEX, build_cross_entropy_loss
    from torchtitan.components.optimizer import build_optimizers_with_moe_load_balancing
    from torchtitan.distributed import ParallelDims
    from torchtitan.distributed import utils as dist_utils
    from torchtitan.models.deepseek_v3 import (
        DeepSeekV3Model,
        DeepSeekV3StateDictAdapter,
        parallelize_deepseekv3,
    )

    B, T = ids.shape
    job = _job_config_v022(B, T, compile, ac, device)
    args = _titan_args_v022(cfg, T)
    args.update_from_config(job)
    with torch.device("meta"):
        model = DeepSeekV3Model(args)
    _, titan_flops = args.get_nparams_and_flops(model, T)
    dims = ParallelDims(dp_replicate=1, dp_shard=-1, cp=1, tp=1, pp=1, ep=1, etp=1,
                        world_size=1)
    dims.build_mesh()
    model = parallelize_deepseekv3(model, dims, job)
    model.to_empty(device=device)
    with torch.no_grad():
        model.init_weights(buffer_device=None)
    if cfg.tie_word_embeddings:  # after to_empty, which gives each module its own tensor
        model.output.weight = model.tok_embeddings.weight
    model.norm.eps = cfg.rms_norm_eps  # 0.2.2 builds the final norm with eps=None
    mapping = DeepSeekV3StateDictAdapter(args, None).from_hf_map
    set_model_state_dict(model, _titan_state(state, mapping),
                         options=StateDictOptions(full_state_dict=True, strict=True))
    model.train()
    loss_fn = build_cross_entropy_loss(job)
    optimizers = build_optimizers_with_moe_load_balancing([model], job.optimizer, dims)
    train_context = dist_utils.get_train_context(False)  # no TP: no loss parallel
    # one process: no FSDP, so its trainer autocasts (bf16 on CUDA); CPU stays fp32 as ours
    amp = (dist_utils.maybe_enable_amp(dims, job.training.mixed_precision_param, "cuda")
           if device.type == "cuda" else contextlib.nullcontext())
    global_valid = (labels != IGNORE_INDEX).sum().float()
    pp_mesh = dims.get_optional_mesh("pp")

    def step() -> torch.Tensor:
        optimizers.zero_grad()
        with train_context():
            with amp:
                pred = model(ids)
                loss = loss_fn(pred, labels) / global_valid
            del pred
            loss.backward()
        dist_utils.clip_grad_norm_([p for p in model.parameters()], job.training.max_norm,
                                   foreach=True, pp_mesh=pp_mesh, ep_enabled=dims.ep_enabled)
        optimizers.step()
        return loss.detach()

    return step, float(titan_flops)


# --- the timed run ------------------------------------------------------------------------------

def bench_torchtitan(cfg, state: dict[str, torch.Tensor], input_ids: torch.Tensor,
                     targets: torch.Tensor, device: torch.device, steps: int, warmup: int,
                     compile: bool, ac: str = "off", after=None) -> TitanRun:
    """Time torchtitan's step on (input_ids, targets) [B, T] with our initial weights.

    Imported lazily and run last: importing torchtitan patches FakeTensorMode and its compile
    sets dynamo flags for the whole process. `after(step)`, when given, is called with the
    step function once the timing is done (the bench's profiler)."""
    import torch.distributed as tdist

    if cfg.rope_scaling is not None:
        raise ValueError("the torchtitan peer is built without YaRN; set model.rope_scaling "
                         "to None for a run with --peer torchtitan")
    if ac not in ("off", "full", "selective"):
        raise ValueError(f"ac must be off, full or selective, got {ac!r}")
    version = titan_version()
    if not tdist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29517")
        tdist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0,
                                 world_size=1)
    if device.type == "cpu":  # torchtitan falls back to "cuda" when no accelerator is found
        import torchtitan.distributed.parallel_dims as titan_dims
        titan_dims.device_type = "cpu"
    build = _build_v030 if version >= (0, 3) else _build_v022
    ids, labels = input_ids.to(device), targets.to(device)
    step, titan_flops = build(cfg, state, ids, labels, device, compile, ac)

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    # the loss stays on the device between steps (a .item() per step would sync, which its
    # trainer does only on logging steps)
    first = float(step())
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
    if after is not None:
        after(step)
    return TitanRun(dt, first, peak, titan_flops, ".".join(map(str, version)))
