"""Markdown helpers shared by the results.md sections: an estimate with its CI as one table
cell, and rows grouped by key for one table per group.

What it leaves out: the sections themselves (``report``, ``allocation_report``,
``objective_sections``, ``rl_sections``, ``quality_sections``, ``policy_sections``) and every
computation behind their numbers.
"""

from __future__ import annotations


def cell(v: float, lo: float, hi: float, signed: bool = False) -> str:
    """``v [lo, hi]`` to three decimals (``signed``: with a leading + or −, for differences)."""
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(v)} [{f.format(lo)}, {f.format(hi)}]"


def group_rows(rows: list[dict], *keys: str) -> dict[tuple, list[dict]]:
    """Rows grouped by the values of ``keys``, groups and rows in first-seen order."""
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out
