"""`youtu eval`: the real APTBench math and tool data end to end on a tiny random model."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from youtu.cli import main as cli_main
from youtu.eval.config import EvalConfig
from youtu.eval.harness import CheckpointLM
from youtu.eval.runner import decontamination_texts, evaluate, latest_checkpoint, load_comparisons


class CountingLM(CheckpointLM):
    calls = 0

    def generate_until(self, requests):
        CountingLM.calls += len(requests)
        return super().generate_until(requests)


def test_aptbench_end_to_end_on_a_tiny_model(tiny_checkpoint, aptbench_root, tmp_path):
    cfg = EvalConfig(tasks=["aptbench"], aptbench_limit=2, aptbench_dir=str(aptbench_root),
                     max_length=1024)
    lm = CountingLM(tiny_checkpoint, max_length=1024)
    res = evaluate(cfg, tiny_checkpoint, tmp_path, lm=lm)
    scores = res["scores"]
    for key in ["aptbench/math/planning_single", "aptbench/math/action_cal",
                "aptbench/math/feedback_tf", "aptbench/tool/acebench_api_select",
                "aptbench/tool/bfcl_v4_api_select", "aptbench/tool/bfcl_v4_api_param",
                "aptbench/math", "aptbench/tool"]:
        assert 0.0 <= scores[key] <= 1.0, key
    assert CountingLM.calls == 12
    details = res["details"]["aptbench"]["aptbench/tool/acebench_api_select"]
    rows = [json.loads(x) for x in open(details["predictions"])]
    assert len(rows) == 2 and all(r["prompt_tokens"] <= 1024 - 30 for r in rows)
    assert details["truncated"] == 2  # 3-shot tool prompts exceed a 1k context: head + tail kept
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["scores"] == scores and saved["config"]["aptbench_limit"] == 2
    assert (tmp_path / "report.md").is_file() and (tmp_path / "aptbench.png").is_file()
    # resumed: nothing is generated again, the scores are the same
    again = evaluate(cfg, tiny_checkpoint, tmp_path, lm=lm)
    assert CountingLM.calls == 12 and again["scores"] == scores


def test_youtu_eval_command(tiny_checkpoint, tmp_path, capsys):
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text(json.dumps({"text": "The cat sat on the mat.", "domain": "commonsense"})
                       + "\n")
    before = tmp_path / "eval" / "before-agent"  # an earlier result, e.g. before mid-training
    before.mkdir(parents=True)
    (before / "results.json").write_text(json.dumps({"checkpoint": "runs/x/base", "scores": {
        "bpb/commonsense": 9.5, "math_word/exact_match": 0.25, "aptbench/math": 0.5}}))
    rc = cli_main(["eval", str(tiny_checkpoint), f"--out_dir={tmp_path}", "--device=cpu",
                   "--eval.tasks=['bpb', 'math_word']", "--eval.math_items=3",
                   f"--eval.bpb_data={heldout}", f"--eval.out={tmp_path / 'ev'}",
                   f"--eval.compare=['{before}']"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "bpb/commonsense" in out and "math_word/exact_match" in out
    res = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert set(res["scores"]) == {"bpb/commonsense", "math_word/exact_match"}  # its own only
    assert res["config"]["compare"] == [str(before)]
    # the report puts the earlier result first and the new checkpoint beside it, with deltas
    report = (tmp_path / "ev" / "report.md").read_text()
    new = tiny_checkpoint.name
    assert f"| score | before-agent | {new} | delta |" in report
    assert "- **before-agent**: `runs/x/base`" in report
    bpb = res["scores"]["bpb/commonsense"]
    assert f"| bpb/commonsense | 9.5000 | {bpb:.4f} | {bpb - 9.5:+.4f} |" in report
    assert "| **aptbench/math** | 50.0 | - | - |" in report
    assert (tmp_path / "ev" / "aptbench.png").is_file() and (tmp_path / "ev" / "bpb.png").is_file()
    assert (tmp_path / "ev" / "config.toml").is_file()
    assert len((tmp_path / "ev" / "predictions" / "math_word.jsonl").read_text().splitlines()) == 3
    # where each group's time went: 3 generations through the engine, its decode steps counted
    spent = res["timing"]["math_word"]
    assert spent["generated_requests"] == 3 and spent["generate_s"] > 0
    assert spent["decode_steps"] >= 1 and spent["prompt_tokens"] > 0
    assert "graph_captures" not in spent  # CPU: no CUDA graphs


def test_latest_checkpoint_and_missing_one(tiny_checkpoint, tmp_path, capsys):
    runs = tmp_path / "runs"  # a folder of its own: other tests write model folders beside ours
    for name, mtime in (("stage_a", 2_000_000_000), ("stage_b", 1_000_000_000)):
        shutil.copytree(tiny_checkpoint, runs / name)
        os.utime(runs / name, (mtime, mtime))  # the folder's time, as written last
    assert latest_checkpoint(runs) == runs / "stage_a"  # the most recently written
    assert latest_checkpoint(tmp_path / "empty") is None
    assert cli_main(["eval", f"--out_dir={tmp_path}", "--name=none"]) == 2
    assert "no checkpoint under" in capsys.readouterr().err
    assert cli_main(["eval", str(tmp_path / "nope"), f"--out_dir={tmp_path}"]) == 2


def test_decontamination_texts_cover_the_benchmarks(aptbench_root):
    from youtu.eval.tasks.humaneval import load_problems
    from youtu.eval.tasks.math_word import EVAL_SEED, make_problem

    texts = list(decontamination_texts(EvalConfig(aptbench_dir=str(aptbench_root), math_items=5)))
    first = json.loads((aptbench_root / "data/agentic_math/planning_single/input_data.jsonl")
                       .read_text().splitlines()[0])
    assert first["repo_info"] in texts and first["choices"] in texts
    assert load_problems(1)[0]["prompt"] in texts
    assert make_problem(EVAL_SEED + 4).question in texts
    assert len(texts) > 5000


def test_comparisons_are_labelled_by_name_or_folder(tmp_path):
    for name, score in [("base", 0.25), ("agent=mid", 0.5)]:  # a folder name may hold '='
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps({"scores": {"probe/math": score}}))
    mid = tmp_path / "agent=mid"
    got = load_comparisons([str(tmp_path / "base"), f"mid={mid / 'results.json'}", str(mid)],
                           taken="sft")
    assert list(got) == ["base", "mid", "agent=mid"]
    assert got["mid"]["scores"] == {"probe/math": 0.5}
    assert got["base"]["checkpoint"] == str(tmp_path / "base" / "results.json")


@pytest.mark.parametrize("content, entry, message", [
    (None, "{d}/nope.json", "eval.compare: .*nope.json does not exist"),
    (None, "{d}", "eval.compare: .*results.json does not exist"),
    ('{"scores": {"bpb/code": 1.0', "{d}", "eval.compare: .*results.json is not a JSON results"),
    ('{"bpb/code": 1.0}', "{d}", "eval.compare: .*has no 'scores' mapping of numbers"),
    ('{"scores": {"bpb/code": "high"}}', "{d}", "has no 'scores' mapping of numbers"),
    ('{"scores": {}}', "tiny_ckpt={d}", "label 'tiny_ckpt' .*the checkpoint being evaluated"),
    ('{"scores": {}}', "{d}/results.json', 'x={d}', 'x={d}", "label 'x' .*an earlier entry"),
])
def test_bad_comparisons_are_config_errors_before_the_model_loads(content, entry, message,
                                                                  tmp_path, capsys):
    d = tmp_path / "earlier"
    d.mkdir()
    if content is not None:
        (d / "results.json").write_text(content)
    ckpt = tmp_path / "tiny_ckpt"
    ckpt.mkdir()  # not a model: a comparison error must come first
    rc = cli_main(["eval", str(ckpt), f"--out_dir={tmp_path}", f"--eval.out={tmp_path / 'ev'}",
                   f"--eval.compare=['{entry.format(d=d)}']"])
    assert rc == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "ev").exists()
