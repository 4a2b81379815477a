"""Markdown sections about where the labels came from, appended to ``results.md``.

In: the gradient-cluster stage's report (``{mix: {n_clusters, silhouette, cluster_sizes,
agreement: {split: {ari, contingency, n}}}}``) and the distillation report (``{teachers:
{mode: {samples, correct, pass_rate, kept, rejected_*}}, unsolved_problems, problems}``), either
possibly None when the profile has no such label source. Out: markdown text.
"""

from __future__ import annotations

from typing import Any


def _contingency(table: dict[str, dict[str, int]], what: str) -> list[str]:
    truths = sorted({t for row in table.values() for t in row})
    lines = ["", f"Contingency (train rows): cluster × {what}", "",
             "| cluster | " + " | ".join(truths) + " |", "|---|" + "---|" * len(truths)]
    for cluster, row in sorted(table.items()):
        lines.append(f"| {cluster} | " + " | ".join(str(row.get(t, 0)) for t in truths) + " |")
    return lines


def _baselines(baselines: dict[str, Any]) -> list[str]:
    """ARI [CI] of the gradient clusters beside TF-IDF, length and random partitions."""
    methods = list(next(iter(baselines.values()))["ari"]) if baselines else []
    lines = ["", "Agreement on the train rows: adjusted Rand index [95% interval over half-samples "
             "of the rows, without replacement] of the gradient clusters and of baselines with as many clusters (TF-IDF + "
             "k-means on the completion, k-means on its length; random: a random partition of "
             "the same sizes, mean and 95% range over permutations)", "",
             "| partition compared with | rows | " + " | ".join(methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    for ref, b in baselines.items():
        cells = []
        for m in methods:
            s = b["ari"].get(m)
            cells.append("" if s is None else
                         f"{s['value']:+.3f} [{s['low']:+.3f}, {s['high']:+.3f}]")
        lines.append(f"| {ref} | {b['n']} | " + " | ".join(cells) + " |")
    for ref, b in baselines.items():
        if not ref.startswith("original mode"):
            lines += _contingency(b["contingency"], ref)
    return lines


# what the rows' own labels are, by their label source, for the gradient-cluster section
TRUTH_WORDS = {"search_algorithm": "search algorithm", "teacher_id": "teacher"}


def gradient_cluster_section(report: dict[str, Any] | None) -> str:
    """C, silhouette scores, and agreement of discovered clusters with the rows' original modes
    (search algorithm or teacher), other meta partitions and text baselines."""
    if not report:
        return ""
    lines = ["## Gradient-cluster labels: what the clusters found", ""]
    for mix, rep in sorted(report.items()):
        source = rep.get("true_mode_source", "")
        truth = f"{TRUTH_WORDS.get(source, 'original mode')} (`{source}`)" if source else "original mode"
        sil = ", ".join(f"C={c}: {s:.3f}" for c, s in sorted(rep.get("silhouette", {}).items()))
        lines += [
            f"### mix `{mix}`: C = {rep.get('n_clusters')} "
            f"({rep.get('n_train_rows', '?')} train rows featurised; silhouette {sil or 'n/a'})",
            "",
            f"| split | rows | adjusted Rand index vs the rows' {truth} |",
            "|---|---|---|",
        ]
        agreement = rep.get("agreement") or {}
        for split, a in sorted(agreement.items()):
            lines.append(f"| {split} | {a.get('n', '')} | {a.get('ari', float('nan')):+.3f} |")
        train = agreement.get("train", {}).get("contingency")
        if train:
            lines += _contingency(train, truth)
        if rep.get("baselines"):
            lines += _baselines(rep["baselines"])
        lines.append("")
    return "\n".join(lines) + "\n"


def distill_section(report: dict[str, Any] | None, mix: str = "distilled") -> str:
    """Per-teacher pass rates, kept rows and rejections of the teacher-ID distillation."""
    if not report:
        return ""
    lines = [
        f"## Teacher-ID labels: distillation (`teacher_id/{mix}`)",
        "",
        f"{report.get('problems', '?')} problems, n = {report.get('n', '?')} samples per "
        f"(problem, teacher), keep ≤ {report.get('keep_per_teacher', '?')} per teacher, "
        f"balance `{report.get('balance', '?')}`; {report.get('unsolved_problems', 0)} problems "
        "solved by no teacher (counted, not silently dropped).",
        "",
        "| teacher | samples | correct | pass rate | kept | rejected (incorrect / unverifiable / too long / duplicate / over cap) | dropped by balance |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, t in sorted((report.get("teachers") or {}).items()):
        lines.append(
            f"| {mode} | {t.get('samples')} | {t.get('correct')} | {t.get('pass_rate', 0):.3f} | "
            f"{t.get('kept')} | {t.get('rejected_incorrect')} / "
            f"{t.get('rejected_unverifiable', 0)} / {t.get('rejected_too_long', 0)} / "
            f"{t.get('rejected_duplicate')} / "
            f"{t.get('rejected_over_cap')} | {t.get('dropped_by_balance')} |"
        )
    return "\n".join(lines) + "\n"
