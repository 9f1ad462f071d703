"""Model configuration: the Youtu-LLM architecture as a typed dataclass, with presets.

Defaults are Youtu-LLM-2B's published config (DESIGN.md). Presets are functions:
`ModelConfig.youtu_2b()`, `.small()` (~100M, one GPU), `.tiny()` (CPU demo and tests).
Field names follow the Hugging Face `youtu` config.json so conversion is a rename-free copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(kw_only=True)
class RopeScaling:
    """DeepSeek-style YaRN RoPE scaling for context extension."""

    type: Literal["yarn"] = "yarn"
    """Only YaRN is supported (the scheme DeepSeek-V2/V3 and Youtu configs use)."""
    factor: float = 4.0
    """Context multiplier over `original_max_position_embeddings`."""
    original_max_position_embeddings: int = 32768
    """Context length the model was trained at before scaling."""
    beta_fast: float = 32.0
    """YaRN ramp: dimensions rotating faster than this many turns keep their frequency."""
    beta_slow: float = 1.0
    """YaRN ramp: dimensions rotating slower than this are fully interpolated."""
    mscale: float = 1.0
    """Attention temperature coefficient (numerator)."""
    mscale_all_dim: float = 0.0
    """Attention temperature coefficient (denominator); 0 = off."""

    def __post_init__(self):
        if self.factor < 1.0:
            raise ValueError(f"rope_scaling.factor must be >= 1, got {self.factor}")


@dataclass(kw_only=True)
class ModelConfig:
    """Youtu-LLM architecture (MLA transformer). Defaults: Youtu-LLM-2B."""

    vocab_size: int = 128256
    """Vocabulary size (tokens), including the 256 reserved special tokens at the end."""
    hidden_size: int = 2048
    """Residual stream width."""
    intermediate_size: int = 6144
    """SwiGLU MLP inner width."""
    num_hidden_layers: int = 32
    """Transformer blocks."""
    num_attention_heads: int = 16
    """Attention heads (query heads = key/value heads in MLA)."""
    q_lora_rank: int = 1536
    """Low-rank query bottleneck; 0 = plain `q_proj` (no query compression)."""
    kv_lora_rank: int = 512
    """KV latent width C: what the decode cache stores (plus the rope key)."""
    qk_nope_head_dim: int = 128
    """Per-head query/key dims without position information."""
    qk_rope_head_dim: int = 64
    """Per-head query/key dims carrying RoPE (key part shared across heads)."""
    v_head_dim: int = 128
    """Per-head value dims."""
    rms_norm_eps: float = 1e-6
    """RMSNorm epsilon."""
    rope_theta: float = 1.6e6
    """RoPE base."""
    rope_scaling: RopeScaling | None = None
    """Optional YaRN scaling (context extension); None = plain RoPE."""
    max_position_embeddings: int = 131072
    """Longest sequence the positions cover."""
    tie_word_embeddings: bool = True
    """lm_head shares the embedding matrix."""
    initializer_range: float = 0.0
    """Init std; 0 = the vendor rule sqrt(2 / (5 * hidden_size)) (embeddings 2x)."""
    bos_token_id: int = 128000
    """`<|begin_of_text|>` id."""
    eos_token_id: int = 128001
    """`<|end_of_text|>` id (also padding)."""
    pad_token_id: int = 128001
    """Padding id."""

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "kv_lora_rank", "qk_nope_head_dim", "v_head_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.q_lora_rank < 0:
            raise ValueError(f"q_lora_rank must be >= 0 (0 = plain q_proj), got {self.q_lora_rank}")
        if self.qk_rope_head_dim <= 0 or self.qk_rope_head_dim % 2:
            raise ValueError(f"qk_rope_head_dim must be positive and even, got {self.qk_rope_head_dim}")
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if not 0 <= getattr(self, name) < self.vocab_size:
                raise ValueError(f"{name}={getattr(self, name)} is outside the vocabulary "
                                 f"(vocab_size={self.vocab_size})")

    @property
    def qk_head_dim(self) -> int:
        """Per-head query/key width (nope + rope): 192 for the 2B."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def init_std(self) -> float:
        """Weight init std (the vendor's rule unless `initializer_range` is set)."""
        return self.initializer_range or (2.0 / (5.0 * self.hidden_size)) ** 0.5

    # ---- presets -------------------------------------------------------------------------

    @classmethod
    def youtu_2b(cls) -> "ModelConfig":
        """Youtu-LLM-2B: 1,961,560,064 parameters."""
        return cls()

    @classmethod
    def small(cls, vocab_size: int = 32768) -> "ModelConfig":
        """~100M parameters: one GPU, minutes to an hour."""
        return cls(vocab_size=vocab_size, hidden_size=768, intermediate_size=2048,
                   num_hidden_layers=12, num_attention_heads=12, q_lora_rank=384,
                   kv_lora_rank=256, qk_nope_head_dim=64, qk_rope_head_dim=32, v_head_dim=64,
                   max_position_embeddings=8192, rope_theta=1e5,
                   bos_token_id=vocab_size - 256, eos_token_id=vocab_size - 255,
                   pad_token_id=vocab_size - 255)

    @classmethod
    def tiny(cls, vocab_size: int = 4096) -> "ModelConfig":
        """A few hundred thousand parameters: CPU demo and tests, fp32."""
        return cls(vocab_size=vocab_size, hidden_size=128, intermediate_size=384,
                   num_hidden_layers=4, num_attention_heads=4, q_lora_rank=64,
                   kv_lora_rank=32, qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32,
                   max_position_embeddings=2048, rope_theta=1e4,
                   bos_token_id=vocab_size - 256, eos_token_id=vocab_size - 255,
                   pad_token_id=vocab_size - 255)


@dataclass(kw_only=True)
class ExportConfig:
    """`youtu export`: write a checkpoint as an HF folder for other runtimes."""

    checkpoint: str = ""
    """Source checkpoint folder (ours or any HF Youtu folder)."""
    out: str = ""
    """Destination folder (for 'gguf': a `.gguf` file, or a folder to hold `model.gguf`)."""
    format: Literal["youtu", "deepseek_v3", "gguf"] = "youtu"
    """'youtu' (transformers' YoutuForCausalLM), 'deepseek_v3' (vLLM / SGLang) or 'gguf'
    (llama.cpp, llama-cpp-python, Ollama)."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weight dtype written; auto = the checkpoint's (an fp32 model written as bf16 moved the
    tiny model's logits by 0.17)."""
