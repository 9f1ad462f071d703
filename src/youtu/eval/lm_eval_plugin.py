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

Every request is scored by `youtu.eval.harness` (its batching, latent-cache scoring and
engine generation); the tokens are laid out by lm-eval's own code, as its `--model hf` does:
`YoutuLM` is an lm-eval `TemplateLM`, so multiple choice goes through lm-eval's `_encode_pair`
and empty-context rule over our `tok_encode`, and rolling text through lm-eval's
`get_rolling_token_windows` / `make_disjoint_window` with the BOS prefix.

Parity with lm-eval's `--model hf` (`PARITY_MODEL_ARGS`, tested with real lm-eval):

    youtu-lm-eval --model hf    --model_args pretrained=CKPT,dtype=float32,add_bos_token=True ...
    youtu-lm-eval --model youtu --model_args pretrained=CKPT ...

give the same multiple-choice log-likelihoods, rolling log-likelihoods and greedy generations
(`--model hf` needs `accelerate`, in the dev extra). Youtu checkpoints are trained with BOS
at every document's start, so this is the honest setting; `youtu` adds BOS by default
(`add_bos=True`). lm-eval's `hf` with BOS, per request type (lm-eval 0.4.13,
models/huggingface.py), and so ours:
- multiple choice: BOS + context, the continuation is the tail of BOS + context +
  continuation beyond the context; an empty context is BOS alone;
- rolling log-likelihood: the text is encoded with BOS ([BOS] + text) and the first window is
  conditioned on the BOS prefix, so log p(BOS | BOS) is part of the score (tiny checkpoint:
  -99.9 nats per document where [BOS]-conditioned text alone gives -93.4). It is lm-eval's
  convention and every `--model hf` number carries it; our own tasks (`bpb`) do not;
- generation: BOS + context;
- a text that already starts with `<|begin_of_text|>` gets no second BOS.

`add_bos_token=True` has to be given to `hf`: transformers 5 ignores `add_bos_token` in
tokenizer_config.json when tokenizer.json is present (`PreTrainedTokenizerBase.from_pretrained`
pops it; only the tokenizer.json post-processor decides, and ours adds nothing since documents
and chats add BOS themselves), so no saved config makes `hf`'s default add it. Without BOS on
both sides (`hf` defaults, `youtu` with `add_bos=False`) the two agree as well (tested).
"""

from __future__ import annotations

import logging
from typing import Any

try:
    from lm_eval.api.model import TemplateLM
    from lm_eval.api.registry import register_model
    from lm_eval.models.utils import normalize_gen_kwargs
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
except ImportError as e:  # pragma: no cover - exercised only without the dev extra
    raise ImportError("the lm-eval plugin needs lm-evaluation-harness: "
                      "pip install 'lm_eval==0.4.13' (or pip install -e '.[dev]')") from e
import torch
from tqdm import tqdm

from youtu.eval.harness import GenerationRequest, TokenLM, load_lm

logger = logging.getLogger(__name__)

PARITY_MODEL_ARGS = {"hf": "dtype=float32,add_bos_token=True", "youtu": "add_bos=True"}
"""model_args (besides `pretrained=`) under which `--model hf` and `--model youtu` agree, with
BOS as the checkpoints were trained."""
NO_BOS_MODEL_ARGS = {"hf": "dtype=float32", "youtu": "add_bos=False"}
"""The same agreement without BOS (`hf`'s defaults for our tokenizer)."""


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


def _bos_text(lm: TokenLM) -> str | None:
    """The BOS token as text (what lm-eval's `has_bos_prefix` looks for), None without BOS."""
    codec = lm.codec
    if codec.bos_id is None:
        return None
    if codec.kind == "hf":
        return codec.tok.bos_token
    from youtu.tokenizer.special import BOS

    return BOS


@register_model("youtu")
class YoutuLM(TemplateLM):
    """lm-eval `TemplateLM` over a harness backend.

    Model args: `pretrained` (checkpoint folder, HF folder or served model name), `backend`
    ('youtu' | 'hf' | 'openai'), `dtype`, `max_length` (0 = the model's), `max_gen_toks`
    (default generation budget), `add_bos` (default: yes for Youtu models, else the
    tokenizer's default), `base_url` and `api_key` (openai). lm-eval's `--device` and
    `--batch_size` apply. The openai backend has no token access: its requests go to the
    harness as text (the server lays out the tokens).
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
        self.token_level = isinstance(self.lm, TokenLM)  # our checkpoints and HF folders
        self.bos_text = _bos_text(self.lm) if self.token_level else None

    @property
    def tokenizer_name(self) -> str:
        return self.lm.name

    # -- what TemplateLM builds requests from -----------------------------------------------

    @property
    def eot_token_id(self) -> int:
        return self.lm.codec.eos_id

    @property
    def prefix_token_id(self) -> int:
        return self.lm.prefix_id

    @property
    def max_length(self) -> int:
        return self.lm.max_length

    def tok_encode(self, string: str, add_special_tokens: bool | None = None,
                   **kwargs: Any) -> list[int]:
        """Text -> ids, with BOS first when the model adds it (lm-eval's `hf.tok_encode`: a
        text already starting with BOS gets none; an explicit flag wins)."""
        add = self.lm.adds_bos if add_special_tokens is None else add_special_tokens
        if add_special_tokens is None and self.bos_text and string.startswith(self.bos_text):
            add = False
        ids = self.lm.encode(string)
        return ([self.lm.codec.bos_id] + ids) if add and self.lm.codec.bos_id is not None else ids

    def _loglikelihood_tokens(self, requests: list[tuple[tuple[str, str], list[int], list[int]]],
                              disable_tqdm: bool = False,
                              **kwargs: Any) -> list[tuple[float, bool]]:
        out = self.lm.score_tokens([(ctx, cont) for _, ctx, cont in requests])
        for (key, _, _), res in zip(requests, out):
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, res)
        return out

    # -- requests -----------------------------------------------------------------------------

    def loglikelihood(self, requests: list[Any],
                      disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        if self.token_level:
            return super().loglikelihood(requests, disable_tqdm=disable_tqdm)
        pairs = [tuple(r.args) for r in requests]
        out = []
        for r in tqdm(self.lm.loglikelihood(pairs), disable=disable_tqdm, desc="loglikelihood"):
            out.append((r.logprob, r.is_greedy))
        for pair, res in zip(pairs, out):
            self.cache_hook.add_partial("loglikelihood", pair, res)
        return out

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        texts = [r.args[0] for r in requests]
        if self.token_level:  # lm-eval's hf windows: every token of tok_encode(text), BOS prefix
            windows, owner = [], []
            for i, text in enumerate(texts):
                for w in get_rolling_token_windows(token_list=self.tok_encode(text),
                                                   prefix_token=self.prefix_token_id,
                                                   max_seq_len=self.max_length, context_len=1):
                    windows.append(make_disjoint_window(w))
                    owner.append(i)
            out = [0.0] * len(texts)
            for i, (logprob, _) in zip(owner, self.lm.score_tokens(windows)):
                out[i] += logprob
        else:
            out = [r.logprob for r in self.lm.loglikelihood_rolling(texts)]
        for text, res in zip(texts, out):
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), res)
        return out

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        reqs = []
        for r in requests:
            context, gen_kwargs = r.args
            if self.token_level and self.lm.adds_bos and self.bos_text and \
                    context.startswith(self.bos_text):
                # the harness puts BOS first itself; lm-eval's hf adds none to such a text
                context = context[len(self.bos_text):]
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
