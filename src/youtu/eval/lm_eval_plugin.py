"""lm-evaluation-harness plugin: our checkpoints (or any harness backend) as lm-eval model `youtu`.

    youtu-lm-eval --model youtu --model_args pretrained=runs/tiny/sft --tasks hellaswag
    python -m youtu.eval.lm_eval_plugin --model youtu --model_args pretrained=runs/tiny/sft ...

    import youtu.eval.lm_eval_plugin  # registers "youtu"
    lm_eval.simple_evaluate(model="youtu", model_args="pretrained=runs/tiny/sft", tasks=[...])

How lm-eval 0.4.13 finds models: `lm_eval.api.registry.get_model(name)` looks the name up in
a registry filled by `lm_eval.models` (a fixed MODEL_MAPPING) and by `@register_model` when a
module is imported. It does not read the `lm_eval.models` entry-point group, so the entry point
alone leaves `lm_eval --model youtu` failing with "no model for this name". Importing this
module registers the model; `cli()` (the `youtu-lm-eval` script, or `python -m` this module)
does that and then runs lm-eval's own command line with the same arguments.

Every request goes through `youtu.eval.harness`, so lm-eval scores and our own tasks' scores
come from the same code (continuation boundaries, BOS, rolling windows, stop strings).

Parity with lm-eval's own `--model hf` (`PARITY_MODEL_ARGS`, tested with real lm-eval):

    youtu-lm-eval --model hf    --model_args pretrained=CKPT,dtype=float32 ...
    youtu-lm-eval --model youtu --model_args pretrained=CKPT,add_bos=False ...

give the same multiple-choice log-likelihoods, rolling log-likelihoods and greedy generations
(`--model hf` needs `accelerate`, in the dev extra). The saved tokenizer config says
`add_bos_token: false`, so `hf` puts BOS only where lm-eval always does: as the prefix of the
first rolling window and of empty contexts, which is what `youtu` does with add_bos=False.
Our default (add_bos on: BOS before every context, as the model was trained) scores multiple
choice higher, and `hf` with `add_bos_token=True` matches it on multiple choice and generation,
but there lm-eval also prepends BOS to the rolling text after its BOS prefix, scoring BOS
twice (tiny checkpoint: -99.9 vs -93.4 nats per document); no `hf` argument avoids that in
lm-eval 0.4.13, so the no-BOS setting is the one that agrees on all three.
"""

from __future__ import annotations

import logging
from typing import Any

try:
    from lm_eval.api.model import LM as LMEvalLM
    from lm_eval.api.registry import register_model
    from lm_eval.models.utils import normalize_gen_kwargs
except ImportError as e:  # pragma: no cover - exercised only without the dev extra
    raise ImportError("the lm-eval plugin needs lm-evaluation-harness: "
                      "pip install 'lm_eval==0.4.13' (or pip install -e '.[dev]')") from e
import torch
from tqdm import tqdm

from youtu.eval.harness import GenerationRequest, load_lm

logger = logging.getLogger(__name__)

PARITY_MODEL_ARGS = {"hf": "dtype=float32", "youtu": "add_bos=False"}
"""model_args (besides `pretrained=`) under which `--model hf` and `--model youtu` agree."""


def _batch_size(value: Any) -> int:
    """lm-eval passes '8', 8, 'auto' or 'auto:4'; we batch by a fixed size."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if value not in (None, "auto") and not str(value).startswith("auto"):
        raise ValueError(f"batch_size must be an integer or 'auto', got {value!r}")
    return 8


def _device(value: str | None) -> str:
    """lm-eval's CLI asks for 'cuda' by default; fall back to the CPU where there is none."""
    if not value:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if value.startswith("cuda") and not torch.cuda.is_available():
        logger.warning("device %s requested but CUDA is not available: using the CPU", value)
        return "cpu"
    return value


@register_model("youtu")
class YoutuLM(LMEvalLM):
    """lm-eval `LM` over a harness backend.

    Model args: `pretrained` (checkpoint folder, HF folder or served model name), `backend`
    ('youtu' | 'hf' | 'openai'), `dtype`, `max_length` (0 = the model's), `max_gen_toks`
    (default generation budget), `add_bos` (default: yes for Youtu models, else the
    tokenizer's default), `base_url` and `api_key` (openai). lm-eval's `--device` and
    `--batch_size` apply.
    """

    def __init__(self, pretrained: str, backend: str = "youtu", device: str | None = None,
                 dtype: str = "float32", batch_size: Any = 8, max_length: int = 0,
                 max_gen_toks: int = 256, base_url: str = "", api_key: str = "",
                 add_bos: bool | None = None, **unused: Any):
        super().__init__()
        unused = {k: v for k, v in unused.items() if v is not None}
        if unused:
            logger.warning("youtu lm-eval model ignores arguments %s", sorted(unused))
        self.lm = load_lm(str(pretrained), backend=backend, device=_device(device), dtype=dtype,
                          batch_size=_batch_size(batch_size), max_length=int(max_length),
                          base_url=base_url, api_key=api_key, add_bos=add_bos)
        self.max_gen_toks = int(max_gen_toks)

    @property
    def tokenizer_name(self) -> str:
        return self.lm.name

    def loglikelihood(self, requests: list[Any],
                      disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [tuple(r.args) for r in requests]
        out = []
        for r in tqdm(self.lm.loglikelihood(pairs), disable=disable_tqdm, desc="loglikelihood"):
            out.append((r.logprob, r.is_greedy))
        for pair, res in zip(pairs, out):
            self.cache_hook.add_partial("loglikelihood", pair, res)
        return out

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        texts = [r.args[0] for r in requests]
        out = [r.logprob for r in self.lm.loglikelihood_rolling(texts)]
        for text, res in zip(texts, out):
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), res)
        return out

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        reqs = []
        for r in requests:
            context, gen_kwargs = r.args
            kw = normalize_gen_kwargs(dict(gen_kwargs), self.max_gen_toks)
            reqs.append(GenerationRequest(context, max_new_tokens=int(kw["max_gen_toks"]),
                                          until=tuple(kw.get("until") or ()),
                                          temperature=float(kw.get("temperature", 0.0)),
                                          top_p=float(kw.get("top_p", 1.0)),
                                          seed=int(kw.get("seed", 0) or 0)))
        out = self.lm.generate_until(reqs)
        for r, text in zip(requests, out):
            self.cache_hook.add_partial("generate_until", r.args, text)
        return out


def cli() -> None:
    """`youtu-lm-eval`: lm-eval's command line with the `youtu` model registered."""
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    cli()
