"""PNG figures of an ``EvaluationResult``: pass@k curves with CI bands, and mode-collapse histograms.

What goes in: the result of ``estimates.evaluate`` and an output folder. What comes out: one
``passk_<key>_<split>.png`` per (key, split) and one ``collapse_<key>_<split>.png`` per (key, split)
with detected modes; ``replicates_figure``: ModC − standard per training seed and pooled, one
``replicates_<arm>_<split>.png`` per replicated arm and split. Uses matplotlib's object API on the Agg canvas (no pyplot global state, no
display needed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from modc_data.artifacts import write_atomic
from modc_data.evaluation.comparisons import ARMS, EvaluationResult, SplitEvaluation
from modc_data.schema import mode_slug

_COLORS = {"standard": "#444444", "experts": "#1f77b4", "prefix": "#d62728"}


def save_figure(fig: Figure, path: Path) -> Path:
    """Render ``fig`` to ``path`` atomically (temp file in the same folder, then replace)."""
    FigureCanvasAgg(fig)
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    return path


def passk_figure(key: str, ev: SplitEvaluation) -> Figure:
    """pass@k vs k (log2 axis) for standard / experts / prefix with CI bands, plus dashed
    full-budget curves of each single mode ("best single teacher")."""
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    for arm in ARMS:
        cur = ev.curves.get(arm)
        if cur is None:
            continue
        color = _COLORS[arm]
        label = arm if arm == "standard" else f"{arm} (ModC split)"
        ax.plot(cur.k, cur.pass_at_k, marker="o", ms=3, color=color, label=label)
        ax.fill_between(cur.k, cur.ci_low, cur.ci_high, color=color, alpha=0.2, linewidth=0)
    styles = ["--", ":", "-.", (0, (5, 1, 1, 1))]
    for variant, per in ev.single_modes.items():
        for j, (mode, cur) in enumerate(per.items()):
            if cur.k:
                ax.plot(
                    cur.k,
                    cur.pass_at_k,
                    ls=styles[j % len(styles)],
                    lw=1.2,
                    color=_COLORS[variant],
                    alpha=0.7,
                    label=f"{variant}: {mode} only, full k",
                )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples per problem)")
    ax.set_ylabel("pass@k")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(f"{key} — {ev.split} ({ev.n_problems} problems)")
    ax.legend(fontsize=8, loc="best")
    return fig


def collapse_figure(key: str, ev: SplitEvaluation) -> Figure:
    """Histogram over problems of the share of samples in the collapse mode, per model."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    bins = np.linspace(0, 1, 11)
    arms = [a for a in ARMS if ev.shares.get(a)]
    # Grouped bars (one per model in each bin) so that no model's histogram hides another's.
    ax.hist(
        [ev.shares[a] for a in arms],
        bins=bins,
        color=[_COLORS[a] for a in arms],
        label=[f"{a} ({len(ev.shares[a])} problems)" for a in arms],
    )
    mode = ev.collapse.get("mode", "?")
    ax.set_xlabel(f"per-problem share of samples with detected mode '{mode}'")
    ax.set_ylabel("problems")
    ax.set_title(f"Mode collapse: {key} — {ev.split}")
    ax.legend(fontsize=8)
    return fig


def write_figures(result: EvaluationResult, out_dir: str | Path) -> list[Path]:
    """Write every figure of ``result`` under ``out_dir``; returns the PNG paths."""
    out = Path(out_dir)
    paths = []
    for key, per_split in result.keys.items():
        for split, ev in per_split.items():
            stem = f"{mode_slug(key)}_{mode_slug(split)}"
            paths.append(save_figure(passk_figure(key, ev), out / f"passk_{stem}.png"))
            if ev.shares:
                paths.append(save_figure(collapse_figure(key, ev), out / f"collapse_{stem}.png"))
    return paths


def replicates_figure(rows: list[dict]) -> Figure:
    """ModC − standard at each k, one panel per ModC variant of one (arm, split): each seed's
    difference with its paired CI (error bars), the pooled one as a line with its two-level
    bootstrap band, and 0 dashed. ``rows``: ``replicates.replicate_rows`` of that arm and split."""
    fig = Figure(figsize=(5.2 * len(rows), 4.0))
    axes = fig.subplots(1, len(rows), squeeze=False)[0]
    for ax, r in zip(axes, rows, strict=True):
        k = np.asarray(r["k"], dtype=float)
        n = len(r["per_seed"])
        for i, s in enumerate(r["per_seed"]):
            x = k * 2 ** ((i - (n - 1) / 2) * 0.06)  # seeds side by side on the log axis
            est = np.asarray(s["estimate"])
            ax.errorbar(x, est, yerr=[est - np.asarray(s["low"]), np.asarray(s["high"]) - est],
                        fmt="o", ms=3, capsize=2, alpha=0.7, label=f"seed {s['seed']}")
        p = r["pooled"]
        ax.plot(k, p["estimate"], color="black", lw=2, label="pooled")
        ax.fill_between(k, p["low"], p["high"], color="black", alpha=0.15, linewidth=0)
        ax.axhline(0, color="grey", ls="--", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k (samples per problem)")
        ax.set_ylabel(f"{r['variant']} − standard (pass@k)")
        ax.set_title(f"{r['variant']}: {len(r['seeds'])} seeds, {r['n_problems']} problems",
                     fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"{rows[0]['arm']} — {rows[0]['split']}: across training seeds")
    return fig


def write_replicates_figures(rows: list[dict], out_dir: str | Path) -> dict[tuple[str, str], str]:
    """One ``replicates_<arm>_<split>.png`` per (arm, split) of ``rows``; returns its file name
    per (arm, split)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["arm"], r["split"]), []).append(r)
    out = {}
    for (arm, split), rs in groups.items():
        name = f"replicates_{mode_slug(arm)}_{mode_slug(split)}.png"
        save_figure(replicates_figure(rs), Path(out_dir) / name)
        out[(arm, split)] = name
    return out
