"""The data card's plots: token lengths per source, and the source mixture by split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medllm.config import SPLITS
from medllm.io import save_figure


def plot_token_lengths(report: dict, path: Path) -> str | None:
    """Token-length histogram, one line per source (log x); None when the report has no lengths."""
    histogram = (report.get("token_lengths") or {}).get("histogram")
    if not histogram:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for source, counts in histogram["counts"].items():
        ax.stairs(counts, histogram["edges"], label=f"{source} (n = {sum(counts)})", lw=1.5)
    ax.set(
        xlabel="tokens (prompt + reference, chat template)",
        ylabel="records",
        title="Token length per source (curated records)",
    )
    edges = histogram["edges"]
    if edges[-1] >= 10 * edges[0]:  # log bins read best on a log axis, in plain numbers
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_mixture(report: dict, path: Path) -> str | None:
    """Records per source, stacked by split (horizontal bars); None when nothing was kept."""
    splits = report.get("splits") or {}
    sources = sorted({s for counts in splits.values() for s in counts})
    if not sources:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(sources) + 1.6))
    left = np.zeros(len(sources))
    for split in [s for s in SPLITS if s in splits]:
        values = np.array([splits[split].get(s, 0) for s in sources], dtype=float)
        ax.barh(sources, values, left=left, label=split)
        left += values
    train = sum(splits.get("train", {}).values()) or 1
    for y, source in enumerate(sources):
        share = splits.get("train", {}).get(source, 0) / train
        ax.annotate(f" {share:.0%} of train", (left[y], y), va="center", fontsize=8)
    ax.set(xlabel="records", title="Source mixture by split", xlim=(0, 1.25 * max(left.max(), 1)))
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, frameon=False)
    return save_figure(fig, path)
