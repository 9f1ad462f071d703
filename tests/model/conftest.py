"""Fixtures for youtu.model tests: tiny configs (2 layers, vocab 512), fp32 on CPU.

`make_config(variant)` gives 'qlora' (q_a/q_b path), 'noqlora' (plain q_proj) or 'yarn'
(q-LoRA + YaRN x4); `make_model(cfg_or_variant)` builds and initialises one in eval mode.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

import pytest
import torch

from youtu.model import ModelConfig, YoutuForCausalLM
from youtu.model.config import RopeScaling

VOCAB = 512


def _config(variant: str = "qlora") -> ModelConfig:
    cfg = ModelConfig.tiny(vocab_size=VOCAB)
    cfg.num_hidden_layers = 2
    cfg.max_position_embeddings = 256
    if variant == "noqlora":
        cfg.q_lora_rank = 0
    elif variant == "yarn":
        cfg.rope_scaling = RopeScaling(factor=4.0, original_max_position_embeddings=64,
                                       beta_fast=32.0, beta_slow=1.0, mscale=1.0, mscale_all_dim=0.707)
    else:
        assert variant == "qlora", variant
    return cfg


def _model(cfg: ModelConfig | str = "qlora", seed: int = 0) -> YoutuForCausalLM:
    if isinstance(cfg, str):
        cfg = _config(cfg)
    torch.manual_seed(seed)
    model = YoutuForCausalLM(cfg)
    model.init_weights()
    return model.eval()


@pytest.fixture
def make_config() -> Callable[..., ModelConfig]:
    return _config


@pytest.fixture
def make_model() -> Callable[..., YoutuForCausalLM]:
    return _model


@pytest.fixture
def model() -> YoutuForCausalLM:
    return _model("qlora")


@pytest.fixture(scope="module")
def interpreter():
    """Triton's interpreter for this process, or a skip (the kernel tests' CPU path).

    It has to be switched on before triton is first imported (its standard library is built
    at import); it does nothing on a machine with a GPU (the gpu tests there need the compiled
    kernels), sets TRITON_INTERPRET only around the import (so subprocesses never inherit it)
    and skips when triton was already imported in compiled mode. numpy >= 2.4 refuses int() of
    a 1-element array, which the interpreter does for a loop bound: patched for the fixture's
    duration. Known limits are in tests/model/test_decode_gemv.py's docstring."""
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the gpu-marked tests cover the compiled kernels")
    if "triton" not in sys.modules:
        before = os.environ.get("TRITON_INTERPRET")
        os.environ["TRITON_INTERPRET"] = "1"
        try:
            import triton
        except ImportError:
            pytest.skip("triton is not installed: the interpreter tests need it")
        finally:
            if before is None:
                del os.environ["TRITON_INTERPRET"]
            else:
                os.environ["TRITON_INTERPRET"] = before
        triton.knobs.runtime.interpret = True  # our kernels are built after the import
    import triton
    import triton.runtime.interpreter as interp

    if not triton.knobs.runtime.interpret:
        pytest.skip("triton was imported in compiled mode earlier in this process: run this "
                    "file on its own")
    original = interp._patch_lang_tensor

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(interp, "_patch_lang_tensor", patched)
        yield


@pytest.fixture
def compiled_mode_run():
    """Run a script in a subprocess with triton in compiled mode (no TRITON_INTERPRET, this
    process's sys.path) and return its stdout; skips without triton (looked up, not imported,
    so this process's mode stays). For the tests that build kernels for sm_90 without a GPU."""
    import importlib.util
    import subprocess

    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")

    def run(script: str) -> str:
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        env["PYTHONPATH"] = os.pathsep.join(sys.path)
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    return run
