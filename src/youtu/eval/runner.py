"""`youtu eval [checkpoint]`: run the configured task groups on one model and write the results.

    youtu eval runs/tiny/sft --eval.aptbench_limit=20
    youtu eval Qwen3-1.7B-Base --eval.backend=openai --eval.base_url=http://127.0.0.1:8000/v1
    youtu eval runs/tiny/sft --eval.compare='["base=runs/tiny/eval/base/results.json"]'

    results = evaluate(cfg.eval, "runs/tiny/sft", "runs/tiny/eval/sft")
    results["scores"]["aptbench/math"], results["scores"]["bpb/code"]

Writes into the output folder: `results.json` (flat namespaced scores, per-task details, the
resolved `[eval]` config, the checkpoint and timings), `report.md` with PNG plots
(`youtu.eval.report`; with `eval.compare`, earlier results.json files are put beside the new
checkpoint's scores there, e.g. before/after agentic mid-training), and the per-item
predictions of every task under `predictions/`.
APTBench and probe predictions are resumable: rerunning after an interruption only evaluates
what is missing. Score keys: `aptbench/<category>/<task>` and `aptbench/<category>`,
`probe/<env>/<kind>` and `probe/<env>`, `cloze/<env>/<kind>`, `cloze/<env>` and `cloze` (chance
rates in the details), `bpb/<domain>`, `math_word/exact_match`,
`humaneval/pass@1`, `function_calling/<source>`, `needle/accuracy`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from youtu.errors import ConfigError
from youtu.eval.aptbench import aptbench_dir, load_task_specs, read_items, run_tasks
from youtu.eval.config import EvalConfig, split_compare
from youtu.eval.harness import LM, load_lm
from youtu.model.checkpoints import latest_checkpoint  # the one finder (train and serve use it)

if TYPE_CHECKING:
    from youtu.config import RunConfig

logger = logging.getLogger(__name__)


def _fingerprint(cfg: EvalConfig, checkpoint: str) -> str:
    """Identifies the model whose predictions are cached (path + weights' size and mtime)."""
    if cfg.backend == "openai":
        return f"openai:{checkpoint}@{cfg.base_url}"
    weights = sorted(Path(checkpoint).glob("*.safetensors"))
    stamp = ",".join(f"{w.name}:{w.stat().st_size}:{w.stat().st_mtime_ns}" for w in weights)
    return f"{cfg.backend}:{Path(checkpoint).resolve()}:{stamp}:{cfg.dtype}"


def open_model(cfg: EvalConfig, checkpoint: str, device: str = "auto") -> LM:
    """The harness backend `cfg` names, on `device` ('auto' = cuda if available)."""
    from youtu.model.device import resolve_device

    return load_lm(checkpoint, backend=cfg.backend, device=str(resolve_device(device)),
                   dtype=cfg.dtype,
                   batch_size=cfg.batch_size, max_length=cfg.max_length, base_url=cfg.base_url,
                   api_key=os.environ.get(cfg.api_key_env, ""),
                   add_bos={"auto": None, "yes": True, "no": False}[cfg.add_bos],
                   max_batch_tokens=cfg.max_batch_tokens, compile_decode=cfg.compile_decode)


def _save_rows(out: Path, name: str, rows: list[dict[str, Any]]) -> str:
    path = out / "predictions" / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))
    return str(path)


def _aptbench(lm: LM, cfg: EvalConfig, out: Path, fingerprint: str) -> dict[str, Any]:
    root = Path(cfg.aptbench_dir) if cfg.aptbench_dir else aptbench_dir()
    if not (root / "data").is_dir():
        logger.warning("APTBench data not found at %s: skipped (set YOUTU_APTBENCH_DIR or "
                       "--eval.aptbench_dir)", root)
        return {"scores": {}, "details": {"skipped": f"no APTBench data at {root}"}}
    specs = load_task_specs(cfg.aptbench_tasks) if cfg.aptbench_tasks else load_task_specs()
    return run_tasks(lm, specs, root, out / "predictions" / "aptbench", limit=cfg.aptbench_limit,
                     batch_size=cfg.batch_size, max_prompt_tokens=cfg.max_prompt_tokens,
                     fingerprint=fingerprint)


def _probes(lm: LM, cfg: EvalConfig, out: Path, fingerprint: str) -> dict[str, Any]:
    from youtu.eval.probes import generate_probes

    root = out / "probes"
    specs = generate_probes(root, list(cfg.probe_envs), list(cfg.probe_kinds), cfg.probe_items,
                            seed=cfg.probe_seed)
    return run_tasks(lm, specs, root, out / "predictions" / "probes", prefix="probe",
                     batch_size=cfg.batch_size, max_prompt_tokens=cfg.max_prompt_tokens,
                     fingerprint=fingerprint)


# ---- inputs built in the background ---------------------------------------------------------
# The cloze items and the built-in bpb documents are CPU work (the code environment's scripted
# trajectories run in the sandbox, the pydocs corpus is indexed): on the H100 of 2026-12-07 the
# first model's cloze group spent ~12.8 s building items and its bpb group ~9.8 s building
# documents, while aptbench and probes before them kept the GPU busy for ~27 s. On a machine
# with the cores for it (`item_workers() > 1`) `evaluate` starts both builds in worker processes
# first; the groups then take the results. Built once per process, like the serial builds.

_PREFETCH: dict[tuple, Any] = {}  # key -> concurrent.futures.Future


def _cloze_key(cfg: EvalConfig) -> tuple:
    return ("cloze", tuple(cfg.probe_envs), tuple(cfg.cloze_kinds), cfg.cloze_items, cfg.cloze_seed)


def _bpb_key(cfg: EvalConfig) -> tuple:
    return ("bpb", cfg.bpb_docs, cfg.bpb_doc_chars)


def prefetch_inputs(cfg: EvalConfig) -> list[str]:
    """Start building the inputs of the cloze and bpb groups `cfg.tasks` runs, in worker
    processes, unless this machine has too few cores (`cloze.item_workers()`) or they are
    built already; returns the groups started. The groups wait for their results (an error in
    a build raises there, as the serial build would)."""
    import concurrent.futures as cf
    import multiprocessing

    from youtu.eval.tasks.bpb import heldout_documents
    from youtu.eval.tasks.cloze import build_items, item_workers

    if item_workers() <= 1:
        return []
    started = []
    if "cloze" in cfg.tasks and _cloze_key(cfg) not in _PREFETCH:
        # build_items runs its own worker processes; this thread only collects their items
        pool = cf.ThreadPoolExecutor(1, thread_name_prefix="youtu-cloze-items")
        _PREFETCH[_cloze_key(cfg)] = pool.submit(build_items, *_cloze_key(cfg)[1:])
        pool.shutdown(wait=False)
        started.append("cloze")
    if "bpb" in cfg.tasks and not cfg.bpb_data and _bpb_key(cfg) not in _PREFETCH:
        # forkserver, not fork: inside `youtu run` this process holds CUDA and threads
        procs = cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver"))
        _PREFETCH[_bpb_key(cfg)] = procs.submit(heldout_documents, cfg.bpb_docs, cfg.bpb_doc_chars)
        procs.shutdown(wait=False)
        started.append("bpb")
    return started


def _prefetched(key: tuple, build: Callable[[], Any]) -> Any:
    """The background build's result for `key` (waiting for it), else `build()`."""
    import concurrent.futures as cf

    from youtu.errors import RunError

    future = _PREFETCH.get(key)
    if future is None:
        return build()
    try:
        return future.result()
    except cf.process.BrokenProcessPool as e:
        del _PREFETCH[key]
        raise RunError(f"the process building the {key[0]} inputs died ({e}; most often out of "
                       "memory): re-run with YOUTU_EVAL_WORKERS=1 to build them in this one") from e
    except BaseException:
        del _PREFETCH[key]  # a later evaluate builds again instead of re-raising a stale error
        raise


def _cloze(lm: LM, cfg: EvalConfig, out: Path) -> dict[str, Any]:
    from youtu.eval.tasks.cloze import build_items, run_cloze

    items = _prefetched(_cloze_key(cfg), lambda: build_items(*_cloze_key(cfg)[1:]))
    res = run_cloze(lm, items, max_tokens=cfg.cloze_max_tokens)
    details = {"chance": res["chance"], "tasks": res["tasks"],
               "predictions": _save_rows(out, "cloze", res["rows"])}
    return {"scores": res["scores"], "details": details}


def _bpb(lm: LM, cfg: EvalConfig, out: Path) -> dict[str, Any]:
    from youtu.eval.tasks.bpb import heldout_documents, load_documents, run_bpb

    docs = (load_documents(cfg.bpb_data, cfg.bpb_docs) if cfg.bpb_data
            else _prefetched(_bpb_key(cfg), lambda: heldout_documents(cfg.bpb_docs, cfg.bpb_doc_chars)))
    res = run_bpb(lm, docs)
    return {"scores": {f"bpb/{d}": r["bits_per_byte"] for d, r in res.items()}, "details": res}


def _math_word(lm: LM, cfg: EvalConfig, out: Path) -> dict[str, Any]:
    from youtu.eval.tasks.math_word import run_math_word

    res = run_math_word(lm, n=cfg.math_items, shots=cfg.math_shots)
    res["predictions"] = _save_rows(out, "math_word", res.pop("rows"))
    return {"scores": {"math_word/exact_match": res["score"]}, "details": res}


def _humaneval(lm: LM, cfg: EvalConfig, out: Path) -> dict[str, Any]:
    from youtu.eval.tasks.humaneval import run_humaneval

    res = run_humaneval(lm, limit=cfg.humaneval_items, max_new_tokens=cfg.humaneval_max_new_tokens,
                        timeout_s=cfg.humaneval_timeout_s)
    res["predictions"] = _save_rows(out, "humaneval", res.pop("rows"))
    return {"scores": {"humaneval/pass@1": res["score"]}, "details": res}


def _function_calling(lm: LM, cfg: EvalConfig, out: Path) -> dict[str, Any]:
    from youtu.eval.tasks.function_calling import bfcl_items, env_items, run_function_calling

    sources: dict[str, list[dict[str, Any]]] = {}
    root = Path(cfg.aptbench_dir) if cfg.aptbench_dir else aptbench_dir()
    if (root / "data").is_dir():
        sources["bfcl"] = bfcl_items(root, cfg.function_calling_items)
    try:
        from youtu.agentic.envs import ENVIRONMENTS

        if "tools" in ENVIRONMENTS:  # 0 items = all BFCL items, and 200 from the environment
            sources["env_tools"] = env_items(ENVIRONMENTS["tools"],
                                             cfg.function_calling_items or 200)
    except ImportError as e:
        logger.warning("function calling: no agentic environments (%s)", e)
    scores, details = {}, {}
    for name, items in sources.items():
        if not items:
            continue
        res = run_function_calling(lm, items)
        res["predictions"] = _save_rows(out, f"function_calling_{name}", res.pop("rows"))
        scores[f"function_calling/{name}"] = res["score"]
        details[name] = res
    return {"scores": scores, "details": details}


def _bfcl(lm: LM, cfg: EvalConfig, out: Path, checkpoint: str) -> dict[str, Any]:
    """BFCL through a chat backend: our engine on the harness's own model (youtu backend) or
    the served model (openai backend); greedy, non-thinking (BFCL's FC mode scores calls)."""
    from youtu.eval.tasks.bfcl import ALL_CATEGORIES, run_bfcl

    unknown = sorted(set(cfg.bfcl_categories) - set(ALL_CATEGORIES))
    if unknown:
        raise ConfigError(f"eval.bfcl_categories: {unknown} are not BFCL categories scored here; "
                          f"valid: {', '.join(ALL_CATEGORIES)}")
    if cfg.backend == "openai":
        from youtu.serve.client import OpenAIChat

        backend = OpenAIChat(cfg.base_url, api_key=os.environ.get(cfg.api_key_env, ""),
                             model=checkpoint, temperature=0.0)
    elif cfg.backend == "youtu":
        from youtu.serve.client import EngineChat
        from youtu.serve.engine import Engine
        from youtu.tokenizer import Tokenizer

        tok = Tokenizer.load(checkpoint)
        model = lm.model  # the harness's model: no second copy of the weights
        # BFCL's multi-turn prompts (two APIs' functions + the conversation): thousands of tokens
        context = min(32768, model.config.max_position_embeddings)
        engine = Engine(model, max_batch=1, max_seq_len=context, eos_ids=[tok.eos_id],
                        detokenize=tok.decode)
        backend = EngineChat(engine, tok, temperature=0.0)
    else:
        raise ConfigError("the bfcl task needs eval.backend = 'youtu' or 'openai' (it scores "
                          "tool calls through a chat template)")
    res = run_bfcl(backend, cfg.bfcl_categories, limit=cfg.bfcl_limit)
    return {"scores": res["scores"], "details": {"n": res["n"],
                                                 "predictions": _save_rows(out, "bfcl", res["rows"])}}


def _needle(lm: LM, cfg: EvalConfig, out: Path) -> dict[str, Any]:
    from youtu.eval.tasks.needle import run_needle

    res = run_needle(lm, cfg.needle_max_tokens or lm.max_length, lengths=cfg.needle_lengths,
                     depths=cfg.needle_depths)
    res["predictions"] = _save_rows(out, "needle", res.pop("rows"))
    return {"scores": {"needle/accuracy": res["score"], "needle/code_logprob": res["code_logprob"]},
            "details": res}


def decontamination_texts(cfg: EvalConfig) -> Iterator[str]:
    """The text of every item our tasks evaluate (APTBench inputs, HumanEval prompts, word
    problems), for `youtu.data.prepare.prepare(..., eval_texts=...)` to filter training data."""
    root = Path(cfg.aptbench_dir) if cfg.aptbench_dir else aptbench_dir()
    if (root / "data").is_dir():
        specs = load_task_specs(cfg.aptbench_tasks) if cfg.aptbench_tasks else load_task_specs()
        for spec in specs:
            for item in read_items(root / spec.data):
                yield from (str(item[f]) for f in spec.fields.values() if f in item)
    try:
        from youtu.eval.tasks.humaneval import load_problems

        yield from (p["prompt"] for p in load_problems())
    except ImportError:
        pass
    from youtu.eval.tasks.math_word import EVAL_SEED, make_problem

    yield from (make_problem(EVAL_SEED + i).question for i in range(cfg.math_items))


def load_comparisons(entries: list[str], taken: str = "") -> dict[str, dict[str, Any]]:
    """Earlier result sets named by `eval.compare` entries, {label: results}, in entry order.

    Args:
        entries: 'label=path' or 'path' (a results.json or its folder; label = folder name).
        taken: The label of the checkpoint being evaluated (a comparison may not reuse it).

    Raises:
        ConfigError: naming `eval.compare` for a missing or malformed file or a repeated label.
    """
    out: dict[str, dict[str, Any]] = {}
    for entry in entries:
        label, where = split_compare(entry)
        path = Path(where)
        if path.is_dir():
            path = path / "results.json"
        if not path.is_file():
            raise ConfigError(f"eval.compare: {path} does not exist; give an earlier `youtu eval` "
                              f"results.json (or the folder holding it)")
        try:
            res = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"eval.compare: {path} is not a JSON results file ({e}); give the "
                              f"results.json an earlier `youtu eval` wrote") from e
        scores = res.get("scores") if isinstance(res, dict) else None
        if not isinstance(scores, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values()):
            raise ConfigError(f"eval.compare: {path} has no 'scores' mapping of numbers, so it is "
                              f"not a `youtu eval` results.json")
        label = label or path.parent.resolve().name
        if label == taken or label in out:
            whose = "the checkpoint being evaluated" if label == taken else "an earlier entry"
            raise ConfigError(f"eval.compare: the label {label!r} of {path} is already "
                              f"{whose}'s; give it another: 'before={where}'")
        out[label] = {**res, "checkpoint": str(res.get("checkpoint") or path)}
    return out


def evaluate(eval_cfg: EvalConfig, checkpoint: str | Path, out_dir: str | Path, *,
             device: str = "auto", lm: LM | None = None, label: str = "",
             compare: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run every task group of `eval_cfg.tasks` on one model; write results and a report.

    Args:
        eval_cfg: The `[eval]` section.
        checkpoint: Checkpoint / HF folder, or the served model name (openai backend).
        out_dir: Output folder (results.json, report.md, plots, predictions/).
        device: Torch device for local backends ('auto' = cuda if available, else cpu).
        lm: An already-open model (skips loading; tests pass fakes).
        label: Name of this model in the report; default the checkpoint folder name.
        compare: Earlier result sets {label: results} (`load_comparisons`) that the report
            shows before this model's; results.json holds this model's scores only.

    Returns:
        {'scores': {key: float}, 'details': {group: ...}, 'checkpoint', 'label', 'config',
        'seconds': {group: float}}.
    """
    from youtu.configlib import to_dict
    from youtu.eval.report import write_report

    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = str(checkpoint)
    label = label or Path(checkpoint).name or checkpoint
    compare = compare or {}
    if label in compare:
        raise ValueError(f"label {label!r} names both the new results and a comparison")
    prefetch_inputs(eval_cfg)  # CPU builds in the background while the model loads and runs
    lm = lm or open_model(eval_cfg, checkpoint, device)
    fingerprint = _fingerprint(eval_cfg, checkpoint)
    groups = {"aptbench": lambda: _aptbench(lm, eval_cfg, out, fingerprint),
              "probes": lambda: _probes(lm, eval_cfg, out, fingerprint),
              "cloze": lambda: _cloze(lm, eval_cfg, out),
              "bpb": lambda: _bpb(lm, eval_cfg, out),
              "math_word": lambda: _math_word(lm, eval_cfg, out),
              "humaneval": lambda: _humaneval(lm, eval_cfg, out),
              "function_calling": lambda: _function_calling(lm, eval_cfg, out),
              "needle": lambda: _needle(lm, eval_cfg, out),
              "bfcl": lambda: _bfcl(lm, eval_cfg, out, checkpoint)}
    results: dict[str, Any] = {"label": label, "checkpoint": checkpoint, "scores": {},
                               "details": {}, "seconds": {}, "config": to_dict(eval_cfg)}
    threads = torch.get_num_threads()
    if eval_cfg.cpu_threads:
        torch.set_num_threads(eval_cfg.cpu_threads)
    try:
        timing = getattr(lm, "timing", None)
        for i, name in enumerate(eval_cfg.tasks, 1):
            start = time.perf_counter()
            before = dict(timing) if timing is not None else {}
            res = groups[name]()
            results["seconds"][name] = round(time.perf_counter() - start, 3)
            results["scores"].update(res["scores"])
            results["details"][name] = res["details"]
            logger.info("eval [%d/%d] %s done in %.1fs: %s", i, len(eval_cfg.tasks), name,
                        results["seconds"][name], {k: round(v, 4) for k, v in res["scores"].items()})
            if timing is not None:
                spent = {k: round(v - before.get(k, 0), 2) for k, v in timing.items()
                         if v != before.get(k, 0)}
                if spent:
                    results.setdefault("timing", {})[name] = spent
                    logger.info("eval [%d/%d] %s time: %s", i, len(eval_cfg.tasks), name, spent)
    finally:
        torch.set_num_threads(threads)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    title = f"Evaluation of {label}" + (f" (compared with {', '.join(compare)})" if compare else "")
    write_report({**compare, label: results}, out, title)
    return results


def main(cfg: RunConfig) -> int:
    """`youtu eval [checkpoint]`: evaluate one checkpoint with the `[eval]` section (and report
    it beside the earlier results `eval.compare` names)."""
    from youtu.configlib import save_config

    ev = cfg.eval
    checkpoint = ev.checkpoint
    if not checkpoint:
        if ev.backend == "openai":
            raise ConfigError("backend 'openai' needs the served model name: youtu eval <name>")
        found = latest_checkpoint(cfg.run_dir, recursive=True)
        if found is None:
            raise ConfigError(f"no checkpoint under {cfg.run_dir}; pass one: youtu eval <folder>")
        checkpoint = str(found)
    elif ev.backend != "openai" and not Path(checkpoint).is_dir():
        raise ConfigError(f"checkpoint {checkpoint} is not a folder")
    label = Path(checkpoint).name or checkpoint
    compare = load_comparisons(ev.compare, taken=label)  # before any model is loaded
    out = Path(ev.out) if ev.out else cfg.run_dir / "eval" / Path(checkpoint).name
    save_config(cfg, out / "config.toml")
    results = evaluate(ev, checkpoint, out, device=cfg.device, label=label, compare=compare)
    width = max((len(k) for k in results["scores"]), default=0)
    for key, value in results["scores"].items():
        print(f"{key.ljust(width)}  {value:.4f}")
    print(f"results: {out / 'results.json'}  report: {out / 'report.md'}")
    return 0
