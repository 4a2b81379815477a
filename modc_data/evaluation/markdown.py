"""Markdown helpers shared by the results.md sections: an estimate with its CI as one table
cell (a row of differences), and rows grouped by key for one table per group.

What it leaves out: the sections themselves (``report``, ``allocation_report``,
``objective_sections``, ``rl_sections``, ``quality_sections``, ``policy_sections``) and every
computation behind their numbers.
"""

from __future__ import annotations


def cell(v: float, lo: float, hi: float, signed: bool = False) -> str:
    """``v [lo, hi]`` to three decimals (``signed``: with a leading + or −, for differences)."""
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(v)} [{f.format(lo)}, {f.format(hi)}]"


def diff_cells(d: dict, bold: bool = False) -> str:
    """One table row's cells of differences with their CIs, ``d`` = {"estimate": [...], "low":
    [...], "high": [...]} (one per k): ``cell | cell | ... |``."""
    fmt = "**{}**" if bold else "{}"
    return " | ".join(fmt.format(cell(e, lo, hi, signed=True))
                      for e, lo, hi in zip(d["estimate"], d["low"], d["high"], strict=True)) + " |"


def k_header(columns: list[str], ks: list[int]) -> list[str]:
    """The two header lines of a table with ``columns`` and then one column per k."""
    cols = [*columns, *(f"k={k}" for k in ks)]
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]


def group_rows(rows: list[dict], *keys: str) -> dict[tuple, list[dict]]:
    """Rows grouped by the values of ``keys``, groups and rows in first-seen order."""
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out
