"""lm-eval through the plugin gives the same per-item numbers as our harness."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("lm_eval")

from youtu.eval.harness import CheckpointLM, GenerationRequest  # noqa: E402

DOCS = [
    {"question": "The capital of France is", "choices": ["Paris", "London", "a city"], "label": 0},
    {"question": "def add(a, b):\n    return", "choices": ["a + b", "a - b"], "label": 0},
    {"question": "2 + 2 =", "choices": ["4", "5", "22"], "label": 2},
]

MC_TASK = """task: youtu_local_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
"""

ROLLING_TASK = """task: youtu_local_ppl
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{question}}}}"
metric_list:
  - metric: word_perplexity
"""

GEN_TASK = """task: youtu_local_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{choices[0]}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 5
  do_sample: false
metric_list:
  - metric: exact_match
"""


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm_eval_tasks")
    data = folder / "docs.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    for name, text in [("mc", MC_TASK), ("ppl", ROLLING_TASK), ("gen", GEN_TASK)]:
        (folder / f"{name}.yaml").write_text(text.format(data=data))
    return folder


def test_lm_eval_reads_no_entry_points_but_the_import_registers_youtu():
    from lm_eval.api.registry import get_model

    import youtu.eval.lm_eval_plugin as plugin

    assert get_model("youtu") is plugin.YoutuLM


def test_plugin_matches_harness(tiny_checkpoint, task_dir):
    import lm_eval
    from lm_eval.tasks import TaskManager

    import youtu.eval.lm_eval_plugin  # noqa: F401  (registers "youtu")

    out = lm_eval.simple_evaluate(
        model="youtu", model_args=f"pretrained={tiny_checkpoint}", batch_size=2,
        tasks=["youtu_local_mc", "youtu_local_ppl", "youtu_local_gen"],
        task_manager=TaskManager(include_path=str(task_dir), include_defaults=False),
        log_samples=True)
    lm = CheckpointLM(tiny_checkpoint)
    mc = sorted(out["samples"]["youtu_local_mc"], key=lambda s: s["doc_id"])
    for sample, doc in zip(mc, DOCS):
        got = [float(r[0][0]) for r in sample["resps"]]
        # lm-eval's default target delimiter puts one space between question and choice
        want = lm.loglikelihood([(doc["question"], " " + c) for c in doc["choices"]])
        assert got == pytest.approx([w.logprob for w in want], abs=1e-5)
    # rolling, as lm-eval's hf lays it out with BOS: the text encoded with BOS, conditioned on
    # the BOS prefix (each document fits one window)
    ppl = sorted(out["samples"]["youtu_local_ppl"], key=lambda s: s["doc_id"])
    bos = lm.codec.bos_id
    want = lm.score_tokens([([bos], [bos] + lm.encode(d["question"])) for d in DOCS])
    assert [float(s["resps"][0][0]) for s in ppl] == pytest.approx([w[0] for w in want], abs=1e-5)
    gen = sorted(out["samples"]["youtu_local_gen"], key=lambda s: s["doc_id"])
    want = lm.generate_until([GenerationRequest(d["question"], 5, until=("\n",)) for d in DOCS])
    assert [s["resps"][0][0] for s in gen] == want
    assert 0.0 <= out["results"]["youtu_local_mc"]["acc,none"] <= 1.0


@pytest.mark.slow  # ~20 s: lm-eval's CLI indexes its thousands of built-in task files
def test_youtu_lm_eval_command_line(tiny_checkpoint, task_dir, tmp_path):
    """The wrapper command runs lm-eval's CLI with `--model youtu` (what `lm_eval` can't)."""
    cmd = [sys.executable, "-m", "youtu.eval.lm_eval_plugin", "--model", "youtu",
           "--model_args", f"pretrained={tiny_checkpoint}", "--tasks", "youtu_local_mc",
           "--include_path", str(task_dir), "--output_path", str(tmp_path / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "youtu_local_mc" in proc.stdout


def _samples(out: dict, task: str) -> list:
    return [[r[0] for r in s["resps"]] for s in sorted(out["samples"][task], key=lambda s: s["doc_id"])]


@pytest.mark.parametrize("setting", ["PARITY_MODEL_ARGS", "NO_BOS_MODEL_ARGS"])
def test_documented_model_args_make_hf_and_youtu_agree(tiny_checkpoint, task_dir, setting):
    """The parity setting in the plugin's docstring: `--model hf` with add_bos_token=True and
    `--model youtu` (BOS, as the checkpoints were trained) give the same numbers on all three
    request types, rolling log-likelihood included (lm-eval's hf scores the text encoded with
    BOS after its BOS prefix); without BOS on both sides they agree too."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    import youtu.eval.lm_eval_plugin as plugin

    tasks = ["youtu_local_mc", "youtu_local_ppl", "youtu_local_gen"]
    runs = {}
    for model, args in getattr(plugin, setting).items():
        runs[model] = lm_eval.simple_evaluate(
            model=model, model_args=f"pretrained={tiny_checkpoint},{args}", batch_size=2,
            device="cpu", tasks=tasks, log_samples=True,
            task_manager=TaskManager(include_path=str(task_dir), include_defaults=False))
    hf, ours = runs["hf"], runs["youtu"]
    for task in ("youtu_local_mc", "youtu_local_ppl"):
        got, want = _samples(ours, task), _samples(hf, task)
        flat = lambda rows: [float(x[0] if isinstance(x, (list, tuple)) else x) for r in rows for x in r]
        assert flat(got) == pytest.approx(flat(want), abs=1e-4), task
    assert _samples(ours, "youtu_local_gen") == _samples(hf, "youtu_local_gen")


def test_a_text_that_starts_with_bos_gets_no_second_bos(tiny_checkpoint):
    """lm-eval's hf `tok_encode` adds no BOS to a text already starting with it; an explicit
    add_special_tokens wins; empty contexts are conditioned on BOS alone."""
    import youtu.eval.lm_eval_plugin as plugin

    model = plugin.YoutuLM(str(tiny_checkpoint), device="cpu")
    bos = model.lm.codec.bos_id
    body = model.lm.encode("hello world")
    assert model.tok_encode("hello world") == [bos] + body
    assert model.tok_encode("<|begin_of_text|>hello world") == [bos] + body
    assert model.tok_encode("hello world", add_special_tokens=False) == body
    assert model.prefix_token_id == bos
    no_bos = plugin.YoutuLM(str(tiny_checkpoint), device="cpu", add_bos=False)
    assert no_bos.tok_encode("hello world") == body
