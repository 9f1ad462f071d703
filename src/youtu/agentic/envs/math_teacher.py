"""The scripted teacher of the math environment (`math.MathEnv.teach`).

    text = teach(env, task, builder, random.Random(0), mistake=True)

Phrasing banks per phase, plans as numbered lists or prose, with the verification placed
first ("what must hold") or last, reflections that quote each calculator result, and a
catalogue of mistakes whose failure is really observed:

- wrong_method: the family's typical wrong route (order of operations, a dropped solution...)
  and its nonzero verification residuals;
- premature_answer: the first intermediate result taken as the answer, refuted by substituting
  it back (the residuals are not 0);
- arithmetic_slip: a step done in the head that the calculator then contradicts.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from youtu.agentic.trajectory import Task

if TYPE_CHECKING:
    from youtu.agentic.envs.math import MathEnv
    from youtu.agentic.teachers import TrajectoryBuilder

_ANALYSIS = [
    "{prompt} The result must be exact ({kind}); I will compute with the calculator.",
    "Given: {prompt} I need an exact {kind} answer.",
    "Let me restate: {prompt} Exact arithmetic matters here, so every step goes through the "
    "calculator.",
    "{prompt} This takes {n} computation(s) and a check by substitution.",
    "The task: {prompt} Answer type: {kind}.",
]
_STEP = ["Step {i}: {d}.", "{d}.", "Now: {d}.", "Next, {dl}.", "{i}) {d}."]
_SEEN = ["That gives {r}.", "Result: {r}.", "The calculator returns {r}.", "So this is {r}.",
         "{r}."]
_VERIFY_INTRO = ["The steps give {a}. Verifying:", "Candidate answer {a}; substitute it back.",
                 "Check {a} before answering.", "{a} it is, if the check gives 0."]
_SUMMARY = ["Every check evaluates to 0, so the answer {a} is verified.",
            "The residuals are all 0: {a} is correct.",
            "Verified by substitution: {a}.",
            "{a} satisfies every condition."]
_FINAL = ["The answer is \\boxed{{{a}}}.", "\\boxed{{{a}}}", "So the result is \\boxed{{{a}}}.",
          "Final answer: \\boxed{{{a}}}"]


def _plan(task: Task, rng: random.Random) -> str:
    steps = [s.description for s in task.steps]
    check = rng.choice(["Verify the result by substituting it back.",
                        "Check the answer with the calculator.",
                        "Confirm it satisfies the problem."])
    lines = [check, *steps] if rng.random() < 0.25 else [*steps, check]
    if rng.random() < 0.35:
        return "I will " + "; then ".join(x[0].lower() + x[1:].rstrip(".") for x in lines) + "."
    return "\n".join(f"{i + 1}. {x}" for i, x in enumerate(lines))


def teach(env: MathEnv, task: Task, b: TrajectoryBuilder, rng: random.Random,
          mistake: bool) -> str:
    meta = task.meta
    fill = {"prompt": task.prompt, "kind": meta["kind"], "n": len(task.steps)}
    b.think("analysis", rng.choice(_ANALYSIS).format(**fill))
    b.think("plan", _plan(task, rng))
    options = []
    if mistake and meta["mistake"]:
        options.append("wrong_method")
    first = task.steps[0].result if task.steps else ""
    if mistake and len(task.steps) > 1 and meta["kind"] == "number" and not env.check(
            task, first).correct:
        options.append("premature_answer")
    last = task.steps[-1].result if task.steps else ""
    if mistake and last and env.check(task, last).correct:  # the last step yields the answer
        options.append("arithmetic_slip")
    slip = rng.choice(options) if options else ""
    if slip in ("wrong_method", "premature_answer"):
        wrong = meta["mistake"]["wrong"] if slip == "wrong_method" else first
        why = meta["mistake"]["why"] if slip == "wrong_method" else "I stopped at an " \
            "intermediate result"
        b.think("action", rng.choice([f"Quick route: I get {wrong}. Let me verify it.",
                                      f"Shortcut: {wrong}? Check it first."]), mistake=True)
        if slip == "premature_answer":
            b.think("action", "Compute the first quantity.", mistake=True)
            b.call(task.steps[0].tool, task.steps[0].arguments, mistake=True)
            b.think("action", f"That is {wrong}; take it as the answer and check it.",
                    mistake=True)
        residuals = b.call_parallel([("calculator", {"expression": e})
                                     for e in env.verification_calls(task, wrong)], mistake=True)
        b.mistake(slip, answer=wrong, note=why)
        fix = meta["mistake"]["fix"] if slip == "wrong_method" else "finish every step of the plan"
        b.think("reflection", f"The check gives {', '.join(residuals)} instead of 0, so {wrong} "
                f"is wrong: {why}. Fix: {fix}.")
    slip_step = len(task.steps) - 1 if slip == "arithmetic_slip" else -1
    for i, step in enumerate(task.steps):
        d = step.description
        if i == slip_step:
            right = step.result
            guess = _off(right, rng)
            while env.check(task, guess).correct:
                guess = _off(guess, rng)
            b.think("action", f"In my head: {d.lower()} gives {guess}. Let me confirm.",
                    mistake=True)
            result = b.call(step.tool, step.arguments)
            b.mistake("arithmetic_slip", answer=guess,
                      note=f"mental arithmetic: {guess} instead of {right}")
            b.think("reflection", f"The calculator says {result}, not {guess}: I slipped. "
                    f"Continue with {result}.")
            continue
        b.think("action", rng.choice(_STEP).format(i=i + 1, d=d, dl=d[0].lower() + d[1:]))
        result = b.call(step.tool, step.arguments)
        assert result == step.result, (result, step.result)
        if rng.random() < 0.5 and i < len(task.steps) - 1:
            b.think("reflection", rng.choice(_SEEN).format(r=result))
    b.think("reflection", rng.choice(_VERIFY_INTRO).format(a=task.answer))
    checks = b.call_parallel([("calculator", {"expression": e})
                              for e in env.verification_calls(task, task.answer)])
    assert all(c == "0" for c in checks), checks
    b.think("summary", rng.choice(_SUMMARY).format(a=task.answer))
    return rng.choice(_FINAL).format(a=task.answer)


def _off(value: str, rng: random.Random) -> str:
    """A plausible mental-arithmetic result that is not `value`."""
    try:
        n = int(value)
        return str(n + rng.choice([1, -1, 2, 10]))
    except ValueError:
        return value + "0" if value[-1].isdigit() else f"-({value})"
