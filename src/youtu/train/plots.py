"""Training plots from `metrics.jsonl`: loss per step (stage boundaries marked) and tokens served
per domain, for one or several runs side by side.

    paths = plot_training({"with agent": Path("runs/tiny/train/metrics.jsonl")}, Path("out"))
"""

from __future__ import annotations

import json
from pathlib import Path


def read_metrics(path: str | Path) -> dict[int, dict]:
    """step -> row; a resumed run appends, so the later line of a repeated step wins."""
    rows: dict[int, dict] = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                rows[int(row["step"])] = {**rows.get(int(row["step"]), {}), **row}
    return dict(sorted(rows.items()))


def _series(rows: dict[int, dict], key: str) -> tuple[list[int], list[float]]:
    steps = [s for s, r in rows.items() if key in r]
    return steps, [rows[s][key] for s in steps]


def plot_training(runs: dict[str, Path], out_dir: Path) -> list[Path]:
    """Write `loss.png` and `tokens_per_domain.png` for the runs whose metrics file exists.

    Args:
        runs: label -> metrics.jsonl (the trainer's `train/*` or SFT's `sft/*` keys).
        out_dir: destination folder.

    Returns:
        The PNG paths written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = {label: read_metrics(p) for label, p in runs.items() if Path(p).is_file()}
    if not data:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, rows in data.items():
        for ns in ("train", "sft"):
            steps, loss = _series(rows, f"{ns}/loss")
            if steps:
                ax.plot(steps, loss, label=f"{label}", linewidth=1.2)
        steps, stage = _series(rows, "train/stage")
        for i in range(1, len(steps)):
            if stage[i] != stage[i - 1]:
                ax.axvline(steps[i], color="grey", alpha=0.3, linestyle="--")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (nats/token)")
    ax.set_title("Loss per step (dashed: stage boundaries)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path = out_dir / "loss.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    totals = {}
    for label, rows in data.items():
        last = {}
        for row in rows.values():
            last.update({k.split("/")[-1]: v for k, v in row.items() if k.startswith("data/tokens/")})
        if last:
            totals[label] = last
    if totals:
        domains = sorted({d for t in totals.values() for d in t})
        fig, ax = plt.subplots(figsize=(8, 1.2 + 0.6 * len(totals)))
        labels = list(totals)
        left = [0.0] * len(labels)
        for domain in domains:
            vals = [totals[label].get(domain, 0) / 1e6 for label in labels]
            ax.barh(labels, vals, left=left, label=domain)
            left = [a + b for a, b in zip(left, vals)]
        ax.set_xlabel("tokens served (millions, cumulative over the run)")
        ax.set_title("Tokens per domain")
        ax.legend(fontsize="small", ncol=min(len(domains), 5), loc="lower right")
        fig.tight_layout()
        path = out_dir / "tokens_per_domain.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
