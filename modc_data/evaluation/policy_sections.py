"""The allocation-policy section of results.md: per policy arm and (test, validation) pair.

    text, rows = policy_sections(samples, {"search_algorithm-skewed": (prefix, standard, modes)},
                                 {"test_adversarial": "validation_adversarial"}, ks,
                                 figures_dir=Path("artifacts/eval/figures"))

What goes in: the evaluate stage's samples (every split the sample stage drew, including the
validation splits of ``sample.policies.pairs``), per arm the prefix model's key, the standard
model's key and the modes. The arms of the allocation (``allocation.py``) are the prefix model's
forced modes plus a free arm. Prefix models here cannot sample without a mode token, so the free
arm is the *standard* model's own samples (same data, same steps) and q(m|x) is the share of its
samples whose detected mode is m: the policies split k between "sample the standard model" and
"force mode m on the prefix model". What comes out: the Markdown (tables, validation choices,
the verdict against the issue's bar) and the JSON rows for ``details.json``; one PNG per arm and
split under ``figures_dir``.

Nothing is fit on test: static and preference are fit on the validation split of the pair, and
"chosen" is the best validation candidate per k (``allocation_report.evaluate_policies``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from modc_data.evaluation.allocation_report import (
    PolicyEvaluation,
    arm_counts,
    evaluate_policies,
    policies_markdown,
    write_policies_figure,
)

TOLERANCE = 0.01  # "never loses": the paired CI's lower end may not fall below -TOLERANCE


def never_loses(ev: PolicyEvaluation, tol: float = TOLERANCE) -> dict[str, Any]:
    """The issue's bar for the validated choice on one test split.

    ``holds``: at every k the paired CI of chosen − standard and of chosen − uniform has its
    lower end >= -tol. ``strictly_better_at``: the ks where both lower ends are > 0.
    ``worst``: the lowest of those lower ends, and where it is.
    """
    chosen = ev.policies["chosen"]
    worst = (float("inf"), None, None)
    better = []
    for j, k in enumerate(ev.ks):
        lows = {"standard": chosen.vs_standard["ci_low"][j]}
        if chosen.vs_uniform is not None:
            lows["uniform"] = chosen.vs_uniform["ci_low"][j]
        for ref, low in lows.items():
            if low < worst[0]:
                worst = (low, k, ref)
        if all(low > 0 for low in lows.values()):
            better.append(k)
    return {
        "holds": worst[0] >= -tol,
        "tolerance": tol,
        "worst_ci_low": worst[0],
        "worst_at_k": worst[1],
        "worst_against": worst[2],
        "strictly_better_at": better,
    }


def _verdict_line(v: dict[str, Any]) -> str:
    head = (
        f"**Never loses: {'yes' if v['holds'] else 'no'}** (chosen vs standard and vs uniform, "
        f"paired CI lower end ≥ −{v['tolerance']:g} at every k; worst {v['worst_ci_low']:+.3f} "
        f"against {v['worst_against']} at k={v['worst_at_k']})."
    )
    if v["strictly_better_at"]:
        return head + f" Strictly better than both (CI above 0) at k = {v['strictly_better_at']}."
    return head + " Strictly better than both at no k."


def policy_sections(
    samples: pl.DataFrame,
    arms: Mapping[str, tuple[str, str, Sequence[str]]],
    pairs: Mapping[str, str],
    ks: Sequence[int],
    *,
    figures_dir: str | Path | None = None,
    n_resamples: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> tuple[str, list[dict[str, Any]]]:
    """Markdown and rows of every (arm, pair); a pair without samples is listed as not scored.

    ``arms``: arm key -> (prefix model key, standard model key, modes). ``pairs``: test split ->
    validation split. ``ks``: budgets (each at most the samples per arm and problem).
    """
    lines = [
        "## Allocation policies",
        "",
        "Budget k split per problem between the standard model's own sampling (`free`: the "
        "prefix models cannot sample without a mode token yet) and each forced mode of the "
        "prefix model; q(m|x) = the detected-mode shares of the standard model's samples. "
        "static and preference are fit on the validation split, chosen = best validation "
        "candidate per k; never on test. Bar: chosen never below the better of standard and "
        f"uniform (paired CI lower end ≥ −{TOLERANCE:g}).",
        "",
    ]
    rows: list[dict[str, Any]] = []
    have = set(samples["split"].unique().to_list()) if samples.height else set()
    for arm, (prefix, standard, modes) in arms.items():
        for test, val in pairs.items():
            title = f"{arm} on {test} (fit on {val})"
            if test not in have or val not in have:
                lost = [s for s in (test, val) if s not in have]
                lines += [f"### {title}", "", f"Not scored: no samples on {lost}.", ""]
                rows.append({"arm": arm, "test": test, "validation": val, "scored": False})
                continue

            def counts(split: str, pids: Sequence[str] | None = None):
                return arm_counts(samples, split, prefix, modes, free_model=standard,
                                  q_model=standard, problem_ids=pids)

            validation, _ = counts(val)
            test_counts, _ = counts(test)
            ev = evaluate_policies(
                validation, test_counts, ks, test_counts.n[:, 0], test_counts.c[:, 0],
                standard_validation=(validation.n[:, 0], validation.c[:, 0]),
                n_resamples=n_resamples, ci=ci, seed=seed,
            )
            verdict = never_loses(ev)
            lines += [policies_markdown(ev, title), _verdict_line(verdict), ""]
            figure = None
            if figures_dir is not None:
                path = Path(figures_dir) / f"policies-{arm}-{test}.png"
                write_policies_figure(ev, f"{arm}: {test}", path)
                figure = path.name
                lines += [f"![policies {arm} {test}](figures/{path.name})", ""]
            rows.append({"arm": arm, "test": test, "validation": val, "scored": True,
                         "prefix": prefix, "standard": standard, "figure": figure,
                         "verdict": verdict, **ev.to_dict()})
    return "\n".join(lines) + "\n", rows
