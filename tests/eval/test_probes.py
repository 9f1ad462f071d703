"""Probes from our environments: held-out seeds, APTBench format, oracle = 100%, base rates."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from youtu.eval.aptbench import read_items, render_prompt, run_tasks
from youtu.eval.config import PROBE_KINDS
from youtu.eval.probes import BLOCKS, SOLVED, generate_probes

N = 12


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    root = tmp_path_factory.mktemp("probes")
    return root, generate_probes(root, ["math"], list(PROBE_KINDS), N)


def test_probe_kinds_cover_the_config():
    assert set(BLOCKS) == set(SOLVED) == set(PROBE_KINDS)


def test_items_are_held_out_deterministic_and_in_aptbench_format(probes, tmp_path):
    root, specs = probes
    # math has one tool (calculator): no tool_select items, whose answer would be constant
    assert [s.key for s in specs] == [f"math/{k}" for k in PROBE_KINDS if k != "tool_select"]
    for spec in specs:
        items = read_items(root / spec.data)
        assert len(items) == N and len({it["uuid"] for it in items}) == N
        assert all(int(it["uuid"].rsplit("-", 1)[1]) >= 1_000_000 for it in items)
        template = (root / spec.prompt).read_text()
        assert template.count(BLOCKS[spec.name][-12:]) == 3  # two solved examples, then the item
        prompt = render_prompt(template, spec.fields, items[0])
        assert not any(p in prompt for p in spec.fields)
    again = generate_probes(tmp_path, ["math"], ["planning"], N)
    assert (tmp_path / again[0].data).read_text() == (root / specs[0].data).read_text()
    assert (root / "tasks.toml").is_file()


def test_feedback_is_balanced_and_planning_answers_vary(probes):
    root, specs = probes
    by_kind = {s.name: read_items(root / s.data) for s in specs}
    labels = [it["answer"] for it in by_kind["feedback"]]
    assert 0.2 < labels.count("correct") / len(labels) < 0.8
    assert len({it["answer"] for it in by_kind["planning"]}) >= 3
    for it in by_kind["action"]:
        assert isinstance(json.loads(it["answer"]), dict)


def test_oracle_scores_100_and_constant_scores_the_base_rate(probes, scripted_lm, tmp_path):
    root, specs = probes
    fmt = {"planning": "{})", "action": "{}\n```", "feedback": "{}##", "tool_select": "{}\n```",
           "tool_param": "{}\n```"}
    replies = {}
    for spec in specs:
        template = (root / spec.prompt).read_text()
        for it in read_items(root / spec.data):
            replies[render_prompt(template, spec.fields, it)] = fmt[spec.name].format(it["answer"])
    scores = run_tasks(scripted_lm(replies.__getitem__), specs, root, tmp_path / "oracle",
                       prefix="probe")["scores"]
    assert all(v == 1.0 for v in scores.values()) and "probe/math" in scores
    fixed = run_tasks(scripted_lm(lambda p: "correct## A)"), specs, root, tmp_path / "fixed",
                      prefix="probe")["scores"]
    by_kind = {s.name: read_items(root / s.data) for s in specs}
    for kind, target in [("feedback", "correct"), ("planning", "A")]:
        want = sum(it["answer"] == target for it in by_kind[kind]) / N
        assert fixed[f"probe/math/{kind}"] == pytest.approx(want)


def test_no_probe_task_can_be_passed_with_a_constant_answer(tmp_path):
    """Across the four environments x kinds: every task has several answers, and the most
    common one is at most 80% of the items (so a constant reply cannot score near 100%)."""
    n = 24
    envs = ["math", "code", "tools", "research"]
    specs = generate_probes(tmp_path, envs, list(PROBE_KINDS), n)
    assert {s.key for s in specs} == {f"{e}/{k}" for e in envs for k in PROBE_KINDS} - {
        "math/tool_select"}
    for spec in specs:
        answers = Counter(it["answer"] for it in read_items(tmp_path / spec.data))
        assert len(answers) >= 2, (spec.key, answers)
        assert answers.most_common(1)[0][1] <= 0.8 * n, (spec.key, answers.most_common(3))


def test_training_seeds_are_refused(tmp_path):
    with pytest.raises(ValueError, match="held out"):
        generate_probes(tmp_path, ["math"], ["planning"], 2, seed=5)


def test_every_probe_family_spans_its_difficulties(tmp_path):
    from youtu.agentic.envs import ENVIRONMENTS

    names = ["math", "tools", "research", "pydocs", "swe"]
    specs = generate_probes(tmp_path, names, list(PROBE_KINDS), 8)
    assert {s.category for s in specs} == set(names)
    for spec in specs:
        items = read_items(tmp_path / spec.data)
        levels = {it["difficulty"] for it in items}
        assert levels == set(range(1, ENVIRONMENTS[spec.category].max_difficulty + 1)), \
            (spec.key, levels)
    tools_kinds = {it["task_kind"] for s in specs if s.category == "tools"
                   for it in read_items(tmp_path / s.data)}
    assert {"single", "parallel", "multi_step", "irrelevance"} <= tools_kinds
