"""The allocation-policy section of results.md: per policy arm and (test, validation) pair.

    text, rows = policy_sections(samples, {"search_algorithm-skewed": (prefix, standard, modes)},
                                 {"test_adversarial": "validation_adversarial"}, ks,
                                 figures_dir=Path("artifacts/eval/figures"))

What goes in: the evaluate stage's samples (every split the sample stage drew, including the
validation splits of ``sample.policies.pairs``), per arm the prefix model's key, the standard
model's key and the modes. The arms of the allocation (``allocation.py``) are the prefix model's
forced modes, the standard model's samples (``STANDARD``: the product publishes both models, so
a split may use both) and, where the prefix model can sample freely, a free arm. Where it was trained to sample freely (``free_share``;
its free samples are model ``<prefix>:free``), the free arm is its own sampling with no mode token
and q(m|x) its first-token distribution over the mode tokens (``q_tables``, from the sample stage;
else the shares of its declared modes): one model, so the validated allocation ships in its
``modc.json`` (row key ``allocation``, ``allocation_report.shipped_policy``: the choice over its
own arms). Otherwise there is no free arm, q(m|x) is the share of the standard model's samples
whose detected mode is m, and nothing is shipped. What comes out: the
Markdown (tables, validation choices, the verdict against the issue's bar) and the JSON rows for
``details.json``; one PNG per arm and split under ``figures_dir``.

Nothing is fit on test: static and preference are fit on the validation split of the pair, and
"chosen" per k is the best of free, uniform and standard on validation, replaced by static or
preference only where its out-of-fold validation gain is significant
(``allocation_selection.select_policies``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from modc_data.evaluation.allocation_counts import arm_counts
from modc_data.evaluation.allocation_report import (
    policies_markdown,
    shipped_policy,
    write_policies_figure,
)
from modc_data.evaluation.allocation_scores import PolicyEvaluation, evaluate_policies
from modc_data.schema import FREE_MODEL_SUFFIX

TOLERANCE = 0.01  # "never loses": the paired CI's lower end may not fall below -TOLERANCE


def never_loses(ev: PolicyEvaluation, tol: float = TOLERANCE) -> dict[str, Any]:
    """The issue's bar for the validated choice on one test split.

    ``holds``: at every k the paired CI of chosen − standard and of chosen − uniform has its
    lower end >= -tol. ``strictly_better_at``: the ks where both lower ends are > 0.
    ``worst``: the lowest of those lower ends, and where it is.
    ``holds_vs_better`` / ``worst_vs_better_ci_low``: the same against only the better of the two
    on test at each k (by test mean). It differs from ``holds`` where chosen *is* the better one
    and its CI against the worse one reaches below -tol: a close pair that no validation choice
    could separate, not a loss. Reported beside the bar, which stays ``holds``.
    """
    chosen = ev.policies["chosen"]
    std_mean = ev.policies["standard"].mean
    worst = (float("inf"), None, None)
    worst_better = (float("inf"), None, None)
    better = []
    for j, k in enumerate(ev.ks):
        lows = {"standard": chosen.vs_standard["ci_low"][j]}
        if chosen.vs_uniform is not None:
            lows["uniform"] = chosen.vs_uniform["ci_low"][j]
        for ref, low in lows.items():
            if low < worst[0]:
                worst = (low, k, ref)
        # chosen has a uniform difference exactly when uniform was scored
        top = ("uniform" if "uniform" in lows and ev.policies["uniform"].mean[j] > std_mean[j]
               else "standard")
        if lows[top] < worst_better[0]:
            worst_better = (lows[top], k, top)
        if all(low > 0 for low in lows.values()):
            better.append(k)
    return {
        "holds": worst[0] >= -tol,
        "tolerance": tol,
        "worst_ci_low": worst[0],
        "worst_at_k": worst[1],
        "worst_against": worst[2],
        "strictly_better_at": better,
        "holds_vs_better": worst_better[0] >= -tol,
        "worst_vs_better_ci_low": worst_better[0],
        "worst_vs_better_at_k": worst_better[1],
        "worst_vs_better_against": worst_better[2],
    }


def _verdict_line(v: dict[str, Any]) -> str:
    head = (
        f"**Never loses: {'yes' if v['holds'] else 'no'}** (chosen vs standard and vs uniform, "
        f"paired CI lower end ≥ −{v['tolerance']:g} at every k; worst {v['worst_ci_low']:+.3f} "
        f"against {v['worst_against']} at k={v['worst_at_k']})."
    )
    if v["strictly_better_at"]:
        head += f" Strictly better than both (CI above 0) at k = {v['strictly_better_at']}."
    else:
        head += " Strictly better than both at no k."
    if v["holds_vs_better"] != v["holds"]:
        head += (
            f" Against only the better of the two on test at each k: "
            f"{'holds' if v['holds_vs_better'] else 'misses'} (worst "
            f"{v['worst_vs_better_ci_low']:+.3f} against {v['worst_vs_better_against']} at "
            f"k={v['worst_vs_better_at_k']}); the bar above is the one reported."
        )
    return head


def free_sampling_stats(
    samples: pl.DataFrame, free_model: str, split: str, modes: Sequence[str],
    q_table: pl.DataFrame | None,
) -> dict[str, Any]:
    """How a free-sampling prefix model chose its modes on one split: the share of its free
    samples that declared each mode (first token), how often the declared mode is the detected
    one, and, with first-token q, the mean mass on mode tokens and the mean over problems of
    |q(m|x) − declared share| (against its sampling error, the mean of sqrt(q(1 − q)/n))."""
    rows = samples.filter((pl.col("model") == free_model) & (pl.col("split") == split))
    out: dict[str, Any] = {"samples": rows.height}
    if rows.height == 0:
        return out
    declared = rows["declared_mode"]
    out["declared"] = {m: float((declared == m).sum()) / rows.height for m in modes}
    out["declared_none"] = float(declared.is_null().sum()) / rows.height
    both = rows.filter(pl.col("declared_mode").is_not_null() & pl.col("detected_mode").is_not_null())
    out["declared_is_detected"] = (
        float((both["declared_mode"] == both["detected_mode"]).mean()) if both.height else None
    )
    if q_table is not None:
        q = q_table.filter(pl.col("split") == split)
        if q.height:
            n = rows.group_by("problem_id").len().rename({"len": "n"})
            freq = (rows.group_by("problem_id", "declared_mode").len()
                    .rename({"declared_mode": "mode", "len": "hits"}))
            joined = (q.join(n, on="problem_id").join(freq, on=["problem_id", "mode"], how="left")
                      .with_columns(pl.col("hits").fill_null(0)))
            diff = (joined["q"] - joined["hits"] / joined["n"]).abs()
            err = (joined["q"] * (1 - joined["q"]) / joined["n"]).sqrt()
            out["mass_mean"] = float(q.group_by("problem_id").agg(pl.col("mass").first())["mass"].mean())
            out["q_vs_declared_abs_diff"] = float(diff.mean())
            out["q_sampling_error"] = float(err.mean())
            out["q_mean"] = {m: float(q.filter(pl.col("mode") == m)["q"].mean()) for m in modes}
    return out


def _free_line(st: dict[str, Any], split: str) -> str:
    if not st.get("samples"):
        return ""
    declared = ", ".join(f"{m} {v:.1%}" for m, v in st["declared"].items())
    line = (f"Free sampling on `{split}` ({st['samples']} samples): declared modes {declared}"
            f" (none {st['declared_none']:.1%})")
    if st.get("declared_is_detected") is not None:
        line += f"; declared = detected mode in {st['declared_is_detected']:.1%}"
    if "q_mean" in st:
        qm = ", ".join(f"{m} {v:.3f}" for m, v in st["q_mean"].items())
        line += (f". First-token q(m|x): mean {qm}, mass on mode tokens {st['mass_mean']:.3f}; "
                 f"mean |q − declared share| {st['q_vs_declared_abs_diff']:.3f} against a "
                 f"sampling error of {st['q_sampling_error']:.3f}")
    return line + "."


def standard_nc(samples: pl.DataFrame, standard: str, split: str, pids: Sequence[str]):
    """(n, c) per problem of the standard model's samples on ``split``, in ``pids`` order."""
    got = (samples.filter((pl.col("model") == standard) & (pl.col("split") == split)
                          & (pl.col("mode") == ""))
           .group_by("problem_id").agg(pl.len().alias("n"), pl.col("correct").sum().alias("c")))
    table = {p: (n, c) for p, n, c in got.select("problem_id", "n", "c").iter_rows()}
    lost = [p for p in pids if p not in table]
    if lost:
        raise ValueError(f"standard model {standard!r} has no samples for {len(lost)} problems "
                         f"of split {split!r} (e.g. {lost[0]!r}); sample it on that split")
    return (np.array([table[p][0] for p in pids], dtype=np.int64),
            np.array([table[p][1] for p in pids], dtype=np.int64))


def score_pair(
    samples: pl.DataFrame, prefix: str, standard: str, modes: Sequence[str], test: str, val: str,
    ks: Sequence[int], *, q_table: pl.DataFrame | None, n_resamples: int, ci: float, seed: int,
) -> tuple[PolicyEvaluation, bool, pl.DataFrame | None, list[str]]:
    """The policies of one prefix model (and its standard model) fit on ``val``, scored on
    ``test``: (evaluation, whether the prefix model is its own free arm, the q table used, the
    test problems in the evaluation's order)."""
    own = prefix + FREE_MODEL_SUFFIX
    free_splits = set(samples.filter(pl.col("model") == own)["split"].unique().to_list())
    self_free = {test, val} <= free_splits
    if q_table is not None and q_table.height == 0:
        q_table = None
    # the standard model is an arm of its own: the product publishes both models
    how = {"free_model": own if self_free else None, "standard_model": standard,
           "q_model": own if self_free else standard,
           "q_table": q_table if self_free else None,
           "q_column": "declared_mode" if self_free else "detected_mode"}
    validation, val_pids = arm_counts(samples, val, prefix, modes, **how)
    test_counts, test_pids = arm_counts(samples, test, prefix, modes, **how)
    # the reference is always the standard model (with a free-sampling prefix model the free
    # arm is that prefix model, not the standard one)
    ev = evaluate_policies(
        validation, test_counts, ks, *standard_nc(samples, standard, test, test_pids),
        standard_validation=standard_nc(samples, standard, val, val_pids),
        n_resamples=n_resamples, ci=ci, seed=seed,
    )
    return ev, self_free, q_table, list(test_pids)


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
    q_tables: Mapping[str, pl.DataFrame] | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """Markdown and rows of every (arm, pair); a pair without samples is listed as not scored.

    ``arms``: arm key -> (prefix model key, standard model key, modes). ``pairs``: test split ->
    validation split. ``ks``: budgets (each at most the samples per arm and problem).
    ``q_tables``: prefix model key -> its first-token q(m|x) table (``sampling.run.Q_SCHEMA``).
    """
    lines = [
        "## Allocation policies",
        "",
        "Budget k split per problem between the prefix model's free sampling (`free`, where it "
        "was trained to sample freely: no mode token, q(m|x) its first-token distribution over "
        "the mode tokens), the standard model's samples (`standard`: same rows and steps; the "
        "product publishes both) and each forced mode of the prefix model. Without a `free` arm "
        "q(m|x) is the standard model's detected-mode shares (each section says which). static "
        "and preference are fit on the validation split; chosen = the best of free, uniform and "
        "standard on validation, replaced by static or preference only where its out-of-fold "
        "validation gain has its paired CI above zero; never on test. What ships in the prefix "
        "model's modc.json is the same choice over its own arms (no standard model). Bar: chosen "
        "never below the better of standard and "
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

            own = prefix + FREE_MODEL_SUFFIX
            ev, self_free, q_table, _ = score_pair(
                samples, prefix, standard, modes, test, val, ks, q_table=(q_tables or {}).get(prefix),
                n_resamples=n_resamples, ci=ci, seed=seed)
            verdict = never_loses(ev)
            if self_free:
                source = (f"`free` = the prefix model `{prefix}` sampled with no mode token; "
                          "q(m|x) = " + ("its first-token distribution over the mode tokens."
                                         if q_table is not None else "its declared-mode shares."))
            else:
                source = (f"No `free` arm: the prefix model was not trained to sample freely; "
                          f"q(m|x) = the detected-mode shares of the standard model `{standard}`, "
                          "whose samples are the `standard` arm.")
            stats = (free_sampling_stats(samples, own, test, modes, q_table) if self_free else {})
            free_line = _free_line(stats, test)
            lines += [policies_markdown(ev, title), source, "",
                      *([free_line, ""] if free_line else []), _verdict_line(verdict), ""]
            figure = None
            if figures_dir is not None:
                path = Path(figures_dir) / f"policies-{arm}-{test}.png"
                write_policies_figure(ev, f"{arm}: {test}", path)
                figure = path.name
                lines += [f"![policies {arm} {test}](figures/{path.name})", ""]
            rows.append({"arm": arm, "test": test, "validation": val, "scored": True,
                         "prefix": prefix, "standard": standard, "figure": figure,
                         "free_source": "prefix" if self_free else "standard",
                         "free_sampling": stats,
                         # one model only: what ModCSampler.sample(split="auto") applies
                         "allocation": shipped_policy(ev, modes, with_preference=q_table is not None)
                         if self_free else None,
                         "verdict": verdict, **ev.to_dict()})
    return "\n".join(lines) + "\n", rows
