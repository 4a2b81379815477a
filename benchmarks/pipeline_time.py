"""Per-stage seconds of the last ``dvc repro``, with the CPU and the dtype / thread choices.

    .venv/bin/python benchmarks/pipeline_time.py [--root .] [--all]

DVC keeps no durations of its own (dvc.lock holds hashes only), so the times come from the
records every stage script leaves when it succeeds (``modc_data.pipeline.record_time``:
``artifacts/cache/time/<stage>.json``, wall seconds from process start, imports included) and
the choices from the stages' metrics: ``artifacts/metrics/train/<job>.json`` (bf16, threads)
and ``artifacts/metrics/sample/<job>.json`` (dtype, decoder, threads). "The last repro" is the
stages run under the dvc process that finished last; stages it found up to date keep their
older records (``--all`` lists them too). The total is the sum of the stages' seconds; the
span is first start to last finish (it also counts DVC's own work between stages).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from modc_data.pipeline import last_repro, read_times


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _threads(rec) -> str:
    if isinstance(rec, dict):
        return f"{rec.get('threads')}{'' if rec.get('source') == 'user' else ' (auto)'}"
    return "" if rec is None else str(rec)


def choices(stage: str, metrics: Path) -> str:
    """What the stage chose: bf16 / threads (train), dtype / decoder / threads (sample)."""
    kind, _, key = stage.partition("@")
    if kind == "train":
        models = {k: v for k, v in _read(metrics / "train" / f"{key}.json").items() if k != "total"}
        parts = []
        for name, m in models.items():
            verdict = (m.get("autotune") or {}).get("bf16") or {}
            source = verdict.get("source", "?")
            parts.append(f"{name}: {'bf16' if m.get('bf16') else 'fp32'} ({source}), "
                         f"threads {_threads((m.get('autotune') or {}).get('threads', m.get('threads')))}")
        return "; ".join(parts)
    if kind == "sample":
        m = _read(metrics / "sample" / f"{key}.json")
        if not m:
            return ""
        source = (m.get("autotune") or {}).get("source", "?")
        return (f"{m.get('dtype')}/{m.get('decoder')} ({source}), threads {_threads(m.get('threads'))}, "
                f"{m.get('samples_per_s', '?')} samples/s")
    if kind == "gradient_cluster":
        reps = _read(metrics / "gradient_cluster.json")
        threads = {_threads(r.get("threads")) for r in reps.values() if isinstance(r, dict)}
        return f"threads {', '.join(sorted(threads))}" if threads else ""
    return ""


def machine_line() -> str:
    import torch

    from modc_data.autotune import cpu_model, onednn_isa_cap

    try:
        bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        bf16 = False
    amx = "amx_bf16" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else False
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cap = onednn_isa_cap()
    capped = f" (oneDNN capped at {cap}: kernels above it off)" if cap else ""
    return (f"CPU {cpu_model()}: torch capability {torch.backends.cpu.get_cpu_capability()}, "
            f"native bf16 {bf16}, AMX {amx}{capped}, {cpus} cpus; torch {torch.__version__}")


def table(records: list[dict], metrics: Path) -> list[str]:
    """Markdown rows: stage | seconds | finished | choices, then the total and the span."""
    lines = ["| stage | seconds | finished (UTC) | choices |", "|---|---:|---|---|"]
    for r in records:
        lines.append(f"| {r['stage']} | {r['wall_s']:.1f} | {r.get('finished', '')} | "
                     f"{choices(r['stage'], metrics)} |")
    total = sum(r["wall_s"] for r in records)
    span = max(r["finished_at"] for r in records) - min(r["finished_at"] - r["wall_s"] for r in records)
    lines.append(f"| **total ({len(records)} stages)** | **{total:.1f}** | | span {span:.1f}s = {span / 60:.1f} min |")
    by_kind: dict[str, float] = {}
    for r in records:
        kind = r["stage"].partition("@")[0]
        by_kind[kind] = by_kind.get(kind, 0.0) + r["wall_s"]
    lines.append("")
    lines.append("by kind: " + ", ".join(f"{k} {v:.0f}s" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=".", help="repo where dvc repro ran")
    ap.add_argument("--all", action="store_true", help="every stage's last record, not only the last repro's")
    args = ap.parse_args()
    root = Path(args.root)
    records = read_times(root / "artifacts" / "cache" / "time")
    print(machine_line())
    if not records:
        print(f"no stage time records under {root / 'artifacts/cache/time'}: run `dvc repro` first")
        return
    shown = records if args.all else last_repro(records)
    if not args.all and len(shown) < len(records):
        print(f"last repro: {len(shown)} stages ran; {len(records) - len(shown)} others were up to "
              "date (--all lists their older times)")
    print("\n".join(table(shown, root / "artifacts" / "metrics")))
    print(f"load average now {os.getloadavg()[0]:.1f} (times above were taken under their own load)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
