"""Render a ``PolicyEvaluation`` (``allocation_scores``): the results.md tables
(``policies_markdown``), pass@k per policy as a figure (``policies_figure`` /
``write_policies_figure``, matplotlib object API, Agg canvas), and the validated allocation as
written into ``modc.json`` (``shipped_policy``).

What it leaves out: computing anything it shows — the policies (``allocation``), their fitting
and the validated choice (``allocation_selection``), the test scores (``allocation_scores``) —
and the results.md section around these tables (``policy_sections``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from modc_data.budget import FREE, STANDARD, split_budget
from modc_data.evaluation.allocation_scores import POLICY_ORDER, PolicyEvaluation
from modc_data.evaluation.allocation_selection import CV_FOLDS
from modc_data.evaluation.figures import save_figure
from modc_data.evaluation.markdown import cell

_COLORS = {
    "standard": "#444444",
    "free": "#2ca02c",
    "uniform": "#d62728",
    "static": "#1f77b4",
    "preference": "#9467bd",
    "chosen": "#ff7f0e",
    "oracle": "#7f7f7f",
}


def policies_markdown(ev: PolicyEvaluation, title: str) -> str:
    """Markdown for results.md: pass@k per policy and k, paired differences against standard
    and uniform, and the validation choices."""
    names = [n for n in POLICY_ORDER if n in ev.policies]
    head = [("oracle (upper bound)" if n == "oracle" else n) for n in names]
    lines = [
        f"### {title}",
        "",
        f"{ev.n_test} test problems, policies fit on {ev.n_validation} validation problems; "
        f"brackets: {ev.ci:.0%} percentile bootstrap CIs over problems ({ev.bootstrap} "
        "resamples). chosen = the best of free, uniform and standard (all k on the standard "
        "model's samples, where that is an arm) on validation, replaced by static "
        f"or preference only where its out-of-fold validation score ({CV_FOLDS} folds: fit on "
        "the others) beats that with the paired CI above zero; oracle reads the test samples "
        "and only bounds what any allocation could reach.",
        "",
        "| k | " + " | ".join(head) + " |",
        "|---|" + "---|" * len(names),
    ]
    for j, k in enumerate(ev.ks):
        cells = [
            cell(ev.policies[n].mean[j], ev.policies[n].ci_low[j], ev.policies[n].ci_high[j])
            for n in names
        ]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    diffs = [n for n in names if n not in ("standard", "oracle")]
    lines += [
        "",
        "Paired differences (same resampled problems): Δ vs standard / Δ vs uniform.",
        "",
        "| k | " + " | ".join(diffs) + " |",
        "|---|" + "---|" * len(diffs),
    ]
    for j, k in enumerate(ev.ks):
        cells = []
        for n in diffs:
            s, u = ev.policies[n].vs_standard, ev.policies[n].vs_uniform
            text = cell(s["diff"][j], s["ci_low"][j], s["ci_high"][j], signed=True)
            if u is not None:
                text += " / " + cell(u["diff"][j], u["ci_low"][j], u["ci_high"][j], signed=True)
            cells.append(text)
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += ["", "Validation choices:", ""]
    for k in ev.ks:
        static = ", ".join(f"{a}={m}" for a, m in ev.static[k].items())
        pref = ""
        if ev.preference is not None:
            f, b = ev.preference[k]
            pref = f"; preference free share {f:g}, β = {b:g}"
        val = ev.policies["chosen"].validation
        sel = ev.selection.get(k, {})
        gains = "; ".join(
            f"{n} out-of-fold {cell(g['oof_gain'], g['ci_low'], g['ci_high'], signed=True)}"
            for n, g in sel.get("fitted", {}).items()
        )
        versus = f" (vs {sel['baseline']}: {gains})" if gains else ""
        lines.append(
            f"- k={k}: chosen **{ev.chosen[k]}** (validation {val[ev.ks.index(k)]:.3f}){versus}; "
            f"static {static}{pref}"
        )
    for name, why in ev.skipped.items():
        lines.append(f"- {name} not scored: {why}")
    return "\n".join(lines) + "\n"


def policies_figure(ev: PolicyEvaluation, title: str) -> Figure:
    """pass@k vs k (log2 axis) for every policy with CI bands; the oracle dashed, no band."""
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    for name in POLICY_ORDER:
        s = ev.policies.get(name)
        if s is None:
            continue
        color = _COLORS[name]
        if s.upper_bound:
            ax.plot(ev.ks, s.mean, ls="--", color=color, label=f"{name} (upper bound)")
            continue
        ax.plot(
            ev.ks,
            s.mean,
            marker="o",
            ms=3,
            color=color,
            label=name,
            lw=2.2 if name == "chosen" else 1.2,
        )
        ax.fill_between(ev.ks, s.ci_low, s.ci_high, color=color, alpha=0.15, linewidth=0)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples per problem)")
    ax.set_ylabel("pass@k")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(f"{title} ({ev.n_test} problems)")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def write_policies_figure(ev: PolicyEvaluation, title: str, path: str | Path) -> Path:
    """Render ``policies_figure`` to ``path`` (PNG, written atomically)."""
    return save_figure(policies_figure(ev, title), Path(path))


# --------------------------------------------------------------------------- shipping to modc.json
def shipped_policy(
    ev: PolicyEvaluation, modes: Sequence[str], *, with_preference: bool = False
) -> dict[str, dict[str, Any]]:
    """The allocation to write into ``modc.json`` (``ModcInfo.allocation``), per k.

    At each k, the policy ``select_policies`` picks on validation among those ``ModCSampler`` can
    apply to any prompt (``SHIPPABLE``: one count per arm, no q(m|x) needed; ``ev.shippable``), as
    ``{"policy": name, "counts": {arm: samples}, "validation": mean}``. Uniform ships its
    representative split (remainder to the first modes, as ``sampler.split_budget``): at k not
    divisible by M that is one of the allocations its score averages over.

    ``with_preference`` (q(m|x) came from the model's own first-token distribution, which the
    sampler can read per prompt): the choice is ``ev.chosen`` over every candidate; where that is
    ``preference`` the entry also carries ``free_share`` and ``beta``, and ``counts`` /
    ``fallback`` are the counts policy's, for backends that cannot give first-token
    probabilities. Where the validated choice over every arm spends samples on the standard
    model (``STANDARD``), the entry also carries it as ``with_standard`` (``policy``, ``counts``
    over all arms, ``validation``): ``ModCSampler`` follows it when the arm's standard model is
    loaded beside this one.
    """
    out: dict[str, dict[str, Any]] = {}
    own = [a for a in ev.arms if a != STANDARD]  # one model's arms: the standard model is another
    for j, k in enumerate(ev.ks):
        best = ev.shippable[k]
        if best == "static":
            counts = {a: int(m) for a, m in ev.static_own[k].items()}
        elif best == "free":
            counts = {a: (k if a == FREE else 0) for a in own}
        else:
            counts = dict.fromkeys(own, 0) | split_budget(k, modes, "uniform")
        entry: dict[str, Any] = {
            "policy": best,
            "counts": counts,
            "validation": ev.shippable_validation[k],
        }
        if with_preference and ev.chosen[k] == "preference" and ev.preference is not None:
            f, beta = ev.preference[k]
            entry = {
                "policy": "preference",
                "free_share": float(f),
                "beta": float(beta),
                "validation": ev.policies["preference"].validation[j],
                "counts": counts,
                "fallback": best,
            }
        # the choice over both models' arms, for a sampler that loads the standard model beside
        # this one (ModCSampler.from_pretrained(..., standard=...)); only where it differs
        both = ev.chosen[k]
        if STANDARD in ev.arms and both in ("standard", "static"):
            table = ({a: (k if a == STANDARD else 0) for a in ev.arms} if both == "standard"
                     else {a: int(m) for a, m in ev.static[k].items()})
            if table.get(STANDARD, 0) > 0:
                entry["with_standard"] = {"policy": both, "counts": table,
                                          "validation": ev.policies["chosen"].validation[j]}
        out[str(k)] = entry
    return out
