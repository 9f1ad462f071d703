"""Evaluation reports: markdown tables and PNG bar charts comparing labelled result sets.

    write_report({"with agent stage": res_a, "without": res_b}, "runs/tiny/report", "Agentic
                 mid-training ablation")          # -> runs/tiny/report/report.md (+ *.png)

A result set is what `youtu.eval.runner.evaluate` returns (or any dict with a flat `scores`
mapping, or the flat mapping itself). Scores are grouped by their key's first part: APTBench
and probe accuracies (per task, with the per-category means first), the agentic cloze
accuracies (with their chance rates from the result's details), bits per byte (lower is better)
and the general tasks. With two result sets the tables gain a delta column (second
minus first); every group with scores gets a grouped bar chart, one bar per result set.
Plots use matplotlib's object API on the Agg canvas (no display, no global pyplot state).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

GROUPS = [  # (key prefix, section title, higher is better, file stem)
    ("aptbench", "APTBench (accuracy)", True, "aptbench"),
    ("probe", "Agentic probes from our environments (accuracy)", True, "probes"),
    ("cloze", "Agentic cloze: multiple choice by log-likelihood (accuracy)", True, "cloze"),
    ("bpb", "Bits per byte on held-out text (lower is better)", False, "bpb"),
    ("", "General tasks", True, "general"),
]


def _scores(result: dict[str, Any]) -> dict[str, float]:
    scores = result.get("scores", result)
    return {k: float(v) for k, v in scores.items() if isinstance(v, (int, float))}


ACCURACY_GROUPS = ("aptbench", "probe", "cloze")


def _group_of(key: str) -> str:
    head = key.split("/", 1)[0]
    return head if head in (*ACCURACY_GROUPS, "bpb") else ""


def _ordered(keys: set[str], prefix: str) -> list[str]:
    """The overall mean ('cloze'), then category means ('aptbench/math') before their tasks;
    otherwise alphabetical."""
    if prefix not in ACCURACY_GROUPS:
        return sorted(keys)
    return sorted(keys, key=lambda k: (k.count("/") > 0, (k.split("/") + [""])[1],
                                       k.count("/"), k))


def _chance(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Chance rates that result sets carry in `details[group]['chance']` (same items: the
    first one found wins)."""
    out: dict[str, float] = {}
    for res in results.values():
        details = res.get("details") if isinstance(res.get("details"), dict) else {}
        for group in details.values():
            if isinstance(group, dict) and isinstance(group.get("chance"), dict):
                for key, value in group["chance"].items():
                    out.setdefault(key, float(value))
    return out


def _fmt(value: float | None, pct: bool) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{100 * value:.1f}" if pct else f"{value:.4f}"


def _bar_chart(path: Path, keys: list[str], labels: list[str],
               table: dict[str, dict[str, float]], title: str,
               chance: float | None = None) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 0.45 * len(keys) * max(1, len(labels)) ** 0.5 + 1.5))
    ax = fig.add_subplot()
    height = 0.8 / len(labels)
    for j, label in enumerate(labels):
        ys = [i + (j - (len(labels) - 1) / 2) * height for i in range(len(keys))]
        xs = [table[label].get(k, math.nan) for k in keys]
        ax.barh(ys, [0.0 if math.isnan(x) else x for x in xs], height=height, label=label)
    prefix = keys[0].split("/", 1)[0] + "/"
    ax.set_yticks(range(len(keys)), [k.removeprefix(prefix) if all(x.startswith(prefix)
                                                                  for x in keys) else k
                                     for k in keys])
    ax.invert_yaxis()
    if chance is not None:
        ax.axvline(chance, color="0.3", linestyle="--", linewidth=1, label="chance")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    if len(labels) > 1 or chance is not None:
        ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_report(results: dict[str, dict[str, Any]], out_dir: str | Path, title: str) -> Path:
    """Write `report.md` and one PNG per score group comparing the labelled result sets.

    Args:
        results: {label: result set}; a result set holds `scores` (or is the flat mapping).
        out_dir: Destination folder (created).
        title: The report's heading.

    Returns:
        Path of `report.md`.
    """
    if not results:
        raise ValueError("write_report needs at least one labelled result set")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = list(results)
    table = {label: _scores(res) for label, res in results.items()}
    chance = _chance(results)
    lines = [f"# {title}", ""]
    for label, res in results.items():
        where = res.get("checkpoint", "") if isinstance(res.get("checkpoint"), str) else ""
        lines.append(f"- **{label}**" + (f": `{where}`" if where else ""))
    lines.append("")
    for prefix, heading, higher, stem in GROUPS:
        keys = {k for scores in table.values() for k in scores if _group_of(k) == prefix}
        if not keys:
            continue
        keys_sorted = _ordered(keys, prefix)
        pct = prefix in ACCURACY_GROUPS
        with_chance = any(k in chance for k in keys_sorted)
        header = ["score"] + labels + (["delta"] if len(labels) == 2 else []) + (
            ["chance"] if with_chance else [])
        lines += [f"## {heading}", "", "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]
        for key in keys_sorted:
            vals = [table[label].get(key) for label in labels]
            name = f"**{key}**" if pct and key.count("/") <= 1 else key
            row = [name] + [_fmt(v, pct) for v in vals]
            if len(labels) == 2:
                a, b = vals
                delta = None if a is None or b is None else round(b - a, 12) + 0.0  # no "-0.0"
                row.append("-" if delta is None else (f"{100 * delta:+.1f}" if pct
                                                      else f"{delta:+.4f}"))
            if with_chance:
                row.append(_fmt(chance.get(key), pct))
            lines.append("| " + " | ".join(row) + " |")
        if pct:
            lines.append("\nAccuracies in percent; bold rows are category means."
                         + (" Chance = the share a uniform random pick gets right."
                            if with_chance else ""))
        elif not higher:
            lines.append("\nLower is better.")
        # general tasks mix accuracies with log-probabilities: chart the accuracies only
        plotted = [k for k in keys_sorted if prefix or all(
            0.0 <= table[label].get(k, 0.0) <= 1.0 for label in labels)]
        if plotted:
            rates = {chance[k] for k in plotted if k in chance}
            _bar_chart(out / f"{stem}.png", plotted, labels, table, heading,
                       rates.pop() if len(rates) == 1 else None)
            lines += ["", f"![{heading}]({stem}.png)", ""]
    lines += paired_section(results)
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


PAIRED_GROUPS = (("probe", "agentic probes"), ("cloze", "agentic cloze"), ("aptbench", "APTBench"))


def paired_section(results: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown lines: each model's item accuracy with its 95% Wilson interval, and each later
    model's paired difference from the first one (95% interval, exact McNemar p) per group of
    per-item predictions. Empty when fewer than two result sets carry item predictions."""
    from youtu.eval.stats import item_outcomes, paired_difference, wilson_interval

    labels = list(results)
    lines: list[str] = []
    for group, title in PAIRED_GROUPS:
        items = {label: item_outcomes(res, group) for label, res in results.items()}
        base = labels[0]
        if len(labels) < 2 or not items[base] or not any(items[lb] for lb in labels[1:]):
            continue
        if not lines:
            lines += ["## Item-level accuracy with 95% intervals and paired differences", "",
                      f"Every model answers the same items; differences are paired by item "
                      f"against **{base}** (95% interval of the mean per-item difference; exact "
                      f"McNemar p on the items where the two disagree). A difference whose "
                      f"interval excludes 0 is beyond noise.", ""]
        lines += [f"### {title}", "",
                  f"| model | items | accuracy | 95% interval | vs {base} | 95% interval | "
                  f"gained / lost | p |", "|---|---|---|---|---|---|---|---|"]
        for label in labels:
            outcome = items[label]
            if not outcome:
                continue
            k, n = sum(outcome.values()), len(outcome)
            lo, hi = wilson_interval(k, n)
            row = [label, str(n), f"{100 * k / n:.1f}", f"[{100 * lo:.1f}, {100 * hi:.1f}]"]
            if label == base:
                row += ["", "", "", ""]
            else:
                d = paired_difference(items[base], outcome)
                mark = " *" if d.significant else ""
                row += [f"{100 * d.diff:+.1f}{mark}", f"[{100 * d.lo:+.1f}, {100 * d.hi:+.1f}]",
                        f"{d.gained} / {d.lost}", f"{d.p_value:.3g}"]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    if lines:
        lines += ["Percent; * = the paired 95% interval excludes 0.", ""]
    return lines
