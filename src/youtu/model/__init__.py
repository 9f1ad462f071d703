"""youtu.model: the Youtu-LLM MLA transformer, its latent KV cache and Hugging Face interop.

    from youtu.model import ModelConfig, YoutuForCausalLM, LatentCache
    from youtu.model.hf import load_pretrained, save_pretrained
"""

from youtu.model.cache import LatentCache
from youtu.model.config import ModelConfig
from youtu.model.transformer import YoutuForCausalLM

__all__ = ["LatentCache", "ModelConfig", "YoutuForCausalLM"]
