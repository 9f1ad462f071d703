"""APTBench runner on the real data with fake models: oracle = 100%, constant = base rate."""

from __future__ import annotations

import json

import pytest

from youtu.config import ConfigError
from youtu.eval.aptbench import (TASKS_FILE, load_task_specs, render_prompt, run_task, run_tasks)

LIMIT = 40
# How a model that knows the answer writes it after each task's prompt (APTBench few-shot style).
ANSWER_FORMAT = {"letter_a_e": "{})\n", "letter_a_d": "{})", "correct_wrong": "{}##",
                 "first_line": "{}\n```\n"}


def _items(root, spec, limit=LIMIT):
    lines = (root / spec.data).read_text().splitlines()[:limit]
    return [json.loads(line) for line in lines]


def test_shipped_tasks_are_the_readme_table():
    specs = {s.key: s for s in load_task_specs()}
    assert set(specs) == {"math/planning_single", "math/action_cal", "math/feedback_tf",
                          "tool/acebench_api_select", "tool/bfcl_v4_api_select",
                          "tool/bfcl_v4_api_param"}
    assert specs["math/action_cal"].extract == "letter_a_d"
    assert specs["tool/bfcl_v4_api_param"].fields["$PARA_NAME$"] == "param_name"
    assert specs["tool/bfcl_v4_api_param"].answer == "answer4param"
    assert {s.max_new_tokens for s in specs.values() if s.category == "tool"} == {30}


def test_every_placeholder_is_filled(aptbench_root):
    for spec in load_task_specs():
        template = (aptbench_root / spec.prompt).read_text()
        item = _items(aptbench_root, spec, 1)[0]
        prompt = render_prompt(template, spec.fields, item)
        assert not any(p in prompt for p in spec.fields), spec.key
        assert item[next(iter(spec.fields.values()))].strip() in prompt


def test_oracle_scores_100_and_constant_scores_the_base_rate(aptbench_root, scripted_lm, tmp_path):
    specs = load_task_specs()
    replies = {}
    for spec in specs:
        template = (aptbench_root / spec.prompt).read_text()
        for item in _items(aptbench_root, spec):
            replies[render_prompt(template, spec.fields, item)] = \
                ANSWER_FORMAT[spec.extract].format(item[spec.answer])
    oracle = run_tasks(scripted_lm(replies.__getitem__), specs, aptbench_root,
                       tmp_path / "oracle", limit=LIMIT, batch_size=7)["scores"]
    assert all(v == 1.0 for v in oracle.values()), oracle
    assert set(oracle) >= {"aptbench/math", "aptbench/tool", "aptbench/math/feedback_tf"}

    constant = {"letter_a_e": "A)", "letter_a_d": "A)", "correct_wrong": "**correct**##",
                "first_line": "calculate_area\n```"}
    for spec in specs:
        out = constant[spec.extract]
        res = run_task(scripted_lm(lambda _p, out=out: out), spec, aptbench_root,
                       tmp_path / "constant", limit=LIMIT)
        target = {"A)": "A", "**correct**##": "correct"}.get(out, "calculate_area")
        base = sum(it[spec.answer] == target for it in _items(aptbench_root, spec)) / LIMIT
        assert res["n"] == LIMIT
        assert res["score"] == pytest.approx(base), spec.key
    # The data is balanced: a constant letter is near chance, not near 0 or 1.
    planning = [s for s in specs if s.key == "math/planning_single"][0]
    rate = sum(it["answer"] == "A" for it in _items(aptbench_root, planning)) / LIMIT
    assert 0.05 < rate < 0.5


def test_resume_skips_done_items_and_restarts_for_another_model(aptbench_root, scripted_lm,
                                                                  tmp_path):
    spec = [s for s in load_task_specs() if s.key == "math/feedback_tf"][0]
    first = scripted_lm(lambda _p: "wrong##")
    a = run_task(first, spec, aptbench_root, tmp_path, limit=5, fingerprint="m1")
    second = scripted_lm(lambda _p: "wrong##")
    b = run_task(second, spec, aptbench_root, tmp_path, limit=9, fingerprint="m1")
    assert len(first.seen) == 5 and len(second.seen) == 4
    assert (a["n"], b["n"]) == (5, 9)
    rows = [json.loads(x) for x in open(b["predictions"])]
    assert len(rows) == 9 and {"id", "output", "pred", "answer", "correct"} <= set(rows[0])
    third = scripted_lm(lambda _p: "correct##")
    c = run_task(third, spec, aptbench_root, tmp_path, limit=9, fingerprint="m2")
    assert len(third.seen) == 9
    assert c["correct"] == 9 - b["correct"]


def test_tasks_share_generation_batches_and_resume_across_them(aptbench_root, scripted_lm,
                                                               tmp_path):
    """Six tasks of 5 items fill batches of 16 (not six calls of 5); a run that dies in its
    second batch keeps the first batch's predictions, and the rerun asks only for the rest."""
    specs = load_task_specs()
    lm = scripted_lm(lambda _p: "A)")
    whole = run_tasks(lm, specs, aptbench_root, tmp_path / "a", limit=5, batch_size=16)
    assert lm.calls == [16, 14]

    class Dies(RuntimeError):
        pass

    def reply(_p, seen=[]):
        seen.append(_p)
        if len(seen) > 16:
            raise Dies
        return "A)"

    with pytest.raises(Dies):
        run_tasks(scripted_lm(reply), specs, aptbench_root, tmp_path / "b", limit=5,
                  batch_size=16)
    rerun = scripted_lm(lambda _p: "A)")
    resumed = run_tasks(rerun, specs, aptbench_root, tmp_path / "b", limit=5, batch_size=16)
    assert rerun.calls == [14]
    assert resumed["scores"] == whole["scores"]


def test_empty_output_counts_as_wrong(aptbench_root, scripted_lm, tmp_path):
    spec = load_task_specs()[0]
    res = run_task(scripted_lm(lambda _p: ""), spec, aptbench_root, tmp_path, limit=3)
    assert res == {**res, "score": 0.0, "n": 3}


def test_bad_task_file_names_the_key(tmp_path):
    bad = tmp_path / "t.toml"
    bad.write_text(TASKS_FILE.read_text().replace('extract = "letter_a_d"', 'extract = "nope"', 1))
    with pytest.raises(ConfigError, match=r"task\[1\].*extract: 'nope' is not a rule"):
        load_task_specs(bad)
    bad.write_text('[[task]]\nname = "x"\ncategory = "c"\ndata = "d"\nprompt = "p"\ntypo = 1\n')
    with pytest.raises(ConfigError, match="unknown config key .*typo"):
        load_task_specs(bad)


def test_missing_data_is_a_clear_error(scripted_lm, tmp_path):
    spec = load_task_specs()[0]
    with pytest.raises(FileNotFoundError, match="YOUTU_APTBENCH_DIR"):
        run_task(scripted_lm(lambda _p: ""), spec, tmp_path, tmp_path)
