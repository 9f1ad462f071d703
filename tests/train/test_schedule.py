"""WSD schedule and stage plan: values at every boundary, continued decay across stages."""

from __future__ import annotations

import math

import pytest

from youtu.data.config import StageConfig
from youtu.train.schedule import (WSD, decay_factor, decay_range, plan_stages, select_stages,
                                  stage_at, total_steps, wsd_for_plan, wsd_lr)


def _lr(step, decay="linear", **kw):
    args = dict(peak_lr=1.0, warmup_steps=4, decay_start=10, decay_end=20, decay=decay,
                min_lr_ratio=0.1)
    args.update(kw)
    return wsd_lr(step, **args)


def test_warmup_boundaries():
    assert _lr(0) == pytest.approx(0.25)  # first update already moves: peak / warmup_steps
    assert _lr(2) == pytest.approx(0.75)
    assert _lr(3) == 1.0  # last warmup update reaches the peak
    assert _lr(4) == 1.0  # stable


def test_stable_until_decay_start():
    assert _lr(9) == 1.0
    assert _lr(10) < 1.0  # first decay update is below the peak


@pytest.mark.parametrize("decay", ["linear", "cosine", "1-sqrt"])
def test_decay_ends_at_floor_and_stays(decay):
    assert _lr(19, decay) == pytest.approx(0.1)  # the last decay update sits on the floor
    assert _lr(20, decay) == pytest.approx(0.1)
    assert _lr(1000, decay) == pytest.approx(0.1)
    values = [_lr(s, decay) for s in range(9, 21)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # monotone non-increasing


def test_decay_shapes_midpoint():
    # progress 0.5 at step 14 ((14 - 10 + 1) / 10)
    assert _lr(14, "linear") == pytest.approx(0.1 + 0.9 * 0.5)
    assert _lr(14, "cosine") == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert _lr(14, "1-sqrt") == pytest.approx(0.1 + 0.9 * (1 - math.sqrt(0.5)))
    assert decay_factor(0.0, "cosine") == 1.0 and decay_factor(1.0, "1-sqrt") == 0.0


def test_warmup_overlapping_decay_takes_the_smaller():
    lr = wsd_lr(1, peak_lr=1.0, warmup_steps=4, decay_start=0, decay_end=4, decay="linear")
    assert lr == pytest.approx(min(2 / 4, 1 - 2 / 4))


def test_no_decay_range_stays_at_peak():
    assert wsd_lr(50, peak_lr=2.0, warmup_steps=0, decay_start=100, decay_end=100) == 2.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="step must be >= 0"):
        _lr(-1)
    with pytest.raises(ValueError, match="decay_end"):
        _lr(0, decay_start=10, decay_end=5)
    with pytest.raises(ValueError, match="decay must be one of"):
        _lr(15, decay="exp")


def _stages():
    return [
        StageConfig(name="commonsense", tokens=1000, seq_len=10, batch_tokens=100, lr_phase="warmup_stable"),
        StageConfig(name="stem", tokens=1050, seq_len=10, batch_tokens=100, lr_phase="stable"),
        StageConfig(name="general", tokens=400, seq_len=20, batch_tokens=200, lr_phase="decay",
                    rope_theta=5e4),
        StageConfig(name="agent", tokens=600, seq_len=40, batch_tokens=200, lr_phase="decay"),
    ]


def test_plan_step_ranges_rows_and_theta():
    plan = plan_stages(_stages(), base_rope_theta=1e4)
    assert [(s.start_step, s.end_step) for s in plan] == [(0, 10), (10, 21), (21, 23), (23, 26)]
    assert plan[1].steps == 11 and plan[1].tokens == 1100  # 1050 tokens rounded up to whole batches
    assert [s.rows for s in plan] == [10, 10, 10, 5]
    assert [s.rope_theta for s in plan] == [1e4, 1e4, 5e4, 5e4]  # carried into 'agent'
    assert total_steps(plan) == 26
    assert decay_range(plan) == (21, 26)


def test_plan_carries_yarn_and_takes_the_original_length_from_the_previous_stage():
    from youtu.model.config import RopeScaling

    stages = _stages()
    stages[2].yarn_factor = 4.0  # 'general' extends 'stem''s seq_len 10
    plan = plan_stages(stages, base_rope_theta=1e4)
    assert [(s.yarn_factor, s.yarn_original_seq_len) for s in plan] == [
        (1.0, 0), (1.0, 0), (4.0, 10), (4.0, 10)]  # carried into 'agent'
    stages[3].yarn_factor, stages[3].yarn_original_seq_len = 8.0, 16
    assert (plan_stages(stages, 1e4)[3].yarn_factor,
            plan_stages(stages, 1e4)[3].yarn_original_seq_len) == (8.0, 16)
    stages[3].yarn_factor, stages[3].yarn_original_seq_len = 1.0, 0  # back to plain RoPE
    assert plan_stages(stages, 1e4)[3].yarn_factor == 1.0
    # the model's own scaling is the base; a stage without yarn_factor keeps it
    base = RopeScaling(factor=2.0, original_max_position_embeddings=32)
    plan = plan_stages(_stages(), 1e4, base_rope_scaling=base)
    assert {(s.yarn_factor, s.yarn_original_seq_len) for s in plan} == {(2.0, 32)}
    first = _stages()
    first[0].yarn_factor = 2.0
    with pytest.raises(ValueError, match="first stage needs yarn_original_seq_len"):
        plan_stages(first, 1e4)
    first[0].yarn_original_seq_len = 5
    assert plan_stages(first, 1e4)[0].yarn_original_seq_len == 5


@pytest.mark.parametrize("kwargs, message", [
    ({"yarn_factor": 0.5}, "yarn_factor must be >= 1"),
    ({"yarn_original_seq_len": -1}, "yarn_original_seq_len must be >= 0"),
    ({"yarn_original_seq_len": 64}, "yarn_original_seq_len needs a yarn_factor"),
])
def test_bad_yarn_settings_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StageConfig(name="x", **kwargs)


def test_max_steps_shrinks_every_stage_alike():
    plan = plan_stages(_stages(), base_rope_theta=1e4, max_steps=13)  # 26 steps -> half
    assert [(s.start_step, s.end_step) for s in plan] == [(0, 5), (5, 10), (10, 11), (11, 12)]
    assert plan_stages(_stages(), 1e4, max_steps=100) == plan_stages(_stages(), 1e4)
    tiny = plan_stages(_stages(), 1e4, max_steps=2)
    assert [s.steps for s in tiny] == [1, 1, 1, 1]  # never below one step per stage


def test_stage_at_boundaries():
    plan = plan_stages(_stages(), base_rope_theta=1e4)
    assert stage_at(plan, 0).name == "commonsense"
    assert stage_at(plan, 9).name == "commonsense"
    assert stage_at(plan, 10).name == "stem"
    assert stage_at(plan, 20).name == "stem"
    assert stage_at(plan, 21).name == "general"
    assert stage_at(plan, 25).name == "agent"
    with pytest.raises(ValueError, match="outside the plan"):
        stage_at(plan, 26)


def test_decay_continues_across_stages_3_and_4():
    plan = plan_stages(_stages(), base_rope_theta=1e4)
    sched = wsd_for_plan(plan, peak_lr=1.0, warmup_steps=3, decay="linear", min_lr_ratio=0.0)
    assert isinstance(sched, WSD)
    assert sched.lr(20) == 1.0  # last stem step: plateau
    assert sched.lr(21) == pytest.approx(0.8)  # general: 1/5 of the decay done
    assert sched.lr(22) == pytest.approx(0.6)  # last general step, still above the floor
    assert sched.lr(23) == pytest.approx(0.4)  # agent continues the same line
    assert sched.lr(25) == pytest.approx(0.0)


def test_select_stages():
    plan = plan_stages(_stages(), base_rope_theta=1e4)
    assert [s.name for s in select_stages(plan, [])] == ["commonsense", "stem", "general", "agent"]
    assert [s.name for s in select_stages(plan, ["agent", "general"])] == ["general", "agent"]
    with pytest.raises(ValueError, match="not contiguous"):
        select_stages(plan, ["commonsense", "general"])
    with pytest.raises(ValueError, match="unknown stage"):
        select_stages(plan, ["sft"])


def test_plan_rejects_bad_stages():
    bad = _stages()
    bad[1] = StageConfig(name="stem", tokens=1000, seq_len=30, batch_tokens=100)
    with pytest.raises(ValueError, match=r"stage 1 \('stem'\): batch_tokens \(100\) must be a positive multiple"):
        plan_stages(bad, 1e4)
    bad = _stages()
    bad[3] = StageConfig(name="agent", tokens=100, seq_len=10, batch_tokens=100, lr_phase="stable")
    with pytest.raises(ValueError, match="decay stages must be the trailing ones"):
        plan_stages(bad, 1e4)
    bad = _stages()
    bad[1] = StageConfig(name="stem", tokens=100, seq_len=10, batch_tokens=100, lr_phase="cooldown")
    with pytest.raises(ValueError, match="lr_phase must be one of"):
        plan_stages(bad, 1e4)
    bad[1] = StageConfig(name="stem", tokens=100, seq_len=10, batch_tokens=100, lr_phase="warmup_stable")
    with pytest.raises(ValueError, match="only for the first stage"):
        plan_stages(bad, 1e4)
    with pytest.raises(ValueError, match="runs into the decay"):
        wsd_for_plan(plan_stages(_stages(), 1e4), peak_lr=1.0, warmup_steps=22, decay="linear",
                     min_lr_ratio=0.0)
