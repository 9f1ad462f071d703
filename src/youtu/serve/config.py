"""Serving configuration (owned by youtu.serve): engine, server, agent, chat."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

# Below this many parameters `cpu_threads = 0` means one thread (see ServeConfig.cpu_threads).
SMALL_MODEL_PARAMS = 100_000_000
DecodeGemv = Literal["auto", "cublas", "triton", "auto+pdl", "triton+pdl"]
"""`decode_gemv`'s values: `youtu.model.decode_gemv.IMPLEMENTATIONS`, named here so reading a
config needs no torch."""
DECODE_GEMVS = get_args(DecodeGemv)


@dataclass(kw_only=True)
class ServeConfig:
    """Engine, OpenAI-compatible server, terminal chat and agent runtime (`[serve]`)."""

    checkpoint: str = ""
    """Checkpoint folder to serve; empty = the run's latest."""
    host: str = "127.0.0.1"
    """Bind address."""
    port: int = 8000
    """Bind port."""
    served_model_name: str = ""
    """Model id clients send as `model`; empty = the checkpoint folder's name."""
    api_key: str = ""
    """Required Bearer key; empty = the YOUTU_API_KEY environment variable, else no auth."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weight and cache dtype; auto = bfloat16 on CUDA, float32 on CPU."""
    max_request_bytes: int = 4 * 2**20
    """Largest request body the server reads, in bytes; larger ones get HTTP 413 unread. 4 MiB
    holds a 128k-token conversation (~4 bytes a token) with room for tool schemas; a 10 MiB body
    once froze every client for 15-30 s and a 120 MB one grew the server to 23 GB."""
    cpu_threads: int = 0
    """Torch intra-op threads for serve, chat and agent on CPU; 0 = auto: 1 for models under
    `SMALL_MODEL_PARAMS` (their matmuls are too small to split, and OpenMP threads spin-waiting
    on a shared host made tiny-model decode 5-9 tok/s with the default threads vs 238-328 with
    one, on 2 cores), else torch's default (one per core)."""

    # ---- engine
    max_batch: int = 32
    """Most concurrent sequences (latent cache rows)."""
    max_seq_len: int = 4096
    """Context per sequence (prompt + output), in tokens."""
    cache_memory_mb: int = 0
    """Cap on the latent cache slab in MiB (rows are reduced to fit); 0 = max_batch x max_seq_len."""
    max_queue: int = 1024
    """Most requests waiting for a cache row; more get HTTP 503."""
    prefill_chunk_tokens: int = 2048
    """Most tokens (rows x padded prompt length) per prefill forward."""
    use_cuda_graph: bool = True
    """Capture the decode step in CUDA graphs (CUDA only; ignored on the CPU)."""
    compile_decode: bool = True
    """Also fuse the graphed decode step's elementwise work with torch.compile (needs
    use_cuda_graph): compiled once for batch 1 and once for all larger batches, shared by all
    layers."""
    fuse_decode_weights: bool = True
    """Decode with gate+up and q_a+kv_a as one GEMV each: the weights are laid out in place
    (parameters become views of the fused tensors; names, checkpoints and memory unchanged).
    On an H100 the batch-1 GEMVs took 2.04 ms a step fused against 2.33 ms separate
    (bench/results/2026-12-07_h100_gemv.md)."""
    decode_gemv: DecodeGemv = "auto+pdl"
    """Decode GEMVs: 'cublas' (F.linear); 'triton' (`youtu.model.decode_gemv` at batch <= 8:
    five GEMV kernels per layer carry three RMSNorms (prologues), the SwiGLU and both residual
    adds; needs fuse_decode_weights); 'auto' = those kernels where they were measured faster
    (batch 1: the engine step 1.12x on an H100; `decode_gemv.AUTO_MAX_ROWS`) and cuBLAS above,
    or everywhere when they cannot run. '+pdl' (the default) launches those kernels
    dependently (Hopper: each loads its first weights while the kernel before it drains;
    elsewhere it only prefetches): on an H100, 1.007-1.041x the engine's batch-1 step in six
    runs from 128 to 131k context, 0.999x at batch 32 where cuBLAS runs
    (2026-12-07_h100_decode_kernels.md); the H200 is unmeasured. CUDA only; ignored on the
    CPU."""
    overlap_decode: bool = True
    """Launch each decode step from the previous step's tokens kept on the GPU and read those
    back while it runs (stops checked one step late, the extra token discarded; same tokens).
    CUDA only; ignored on the CPU. On an H100 it was faster in every row measured: 315.7 vs
    296.8 tok/s at batch 1, 8,324 vs 5,577 at batch 32 (2026-12-07_h100_engine.md)."""

    # ---- request defaults (a request's own values win)
    max_new_tokens: int = 1024
    """Default max_tokens when a request gives none."""
    temperature: float = 0.7
    """Default sampling temperature (0 = greedy)."""
    top_p: float = 0.95
    """Default nucleus mass (1 = off)."""
    enable_thinking: bool = True
    """Default thinking mode (`<think>` block) for chat; requests override it with
    `chat_template_kwargs: {enable_thinking: ...}`."""

    # ---- chat and agent
    tools: list[str] = field(default_factory=list)
    """Tools `youtu chat` and `youtu agent` offer: 'python' (sandbox), 'search' (local docs; needs
    `docs`), 'env' (the tools of `agent_env`; `youtu agent` only). Empty for chat = no tools; for
    agent = 'env' with `agent_env`, else 'python', plus 'search' when `docs` is set."""
    docs: str = ""
    """Folder of .txt/.md documents the 'search' tool searches."""
    agent_task: str = ""
    """The task `youtu agent "<task>"` runs; empty with `agent_env` = a generated env task."""
    agent_env: str = ""
    """Synthesis environment (math, code, tools, research) giving the task, tools and checker."""
    agent_seed: int = 1_000_000
    """Seed of the env task (>= 1,000,000 are held out from synthesis)."""
    agent_endpoint: str = ""
    """OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1); empty = our engine in-process."""
    agent_model: str = ""
    """Model id at `agent_endpoint`; empty = the endpoint's first model."""
    agent_max_steps: int = 8
    """Most model calls in one agent run."""
    agent_max_tokens: int = 8192
    """Most generated tokens over the whole agent run."""
    agent_out: str = ""
    """Trajectory JSONL file to append to; empty = <run_dir>/agent/trajectories.jsonl."""

    def __post_init__(self):
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        for name in ("max_batch", "max_queue", "prefill_chunk_tokens", "max_new_tokens",
                     "agent_max_steps", "agent_max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_request_bytes < 1024:
            raise ValueError(f"max_request_bytes must be >= 1024, got {self.max_request_bytes}")
        if self.cpu_threads < 0:
            raise ValueError(f"cpu_threads must be >= 0 (0 = auto), got {self.cpu_threads}")
        if self.max_seq_len < 2:
            raise ValueError(f"max_seq_len must be >= 2, got {self.max_seq_len}")
        if self.cache_memory_mb < 0:
            raise ValueError(f"cache_memory_mb must be >= 0 (0 = no cap), got {self.cache_memory_mb}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.compile_decode and not self.use_cuda_graph:
            raise ValueError("compile_decode needs use_cuda_graph = true (or set compile_decode = false)")
        if self.decode_gemv not in DECODE_GEMVS:
            raise ValueError(f"decode_gemv must be one of {', '.join(map(repr, DECODE_GEMVS))}, "
                             f"got {self.decode_gemv!r}")
        if self.decode_gemv.startswith("triton") and not self.fuse_decode_weights:
            raise ValueError(f"decode_gemv = {self.decode_gemv!r} reads the fused decode weights: "
                             "set fuse_decode_weights = true (or decode_gemv = 'cublas')")
        for tool in self.tools:
            if tool not in ("python", "search", "env"):
                raise ValueError(f"tools: unknown tool {tool!r}; choose from python, search, env")

    def threads_for(self, num_params: int) -> int:
        """Intra-op CPU threads to set for a model of `num_params`; 0 = leave torch's default."""
        if self.cpu_threads:
            return self.cpu_threads
        return 1 if num_params < SMALL_MODEL_PARAMS else 0
