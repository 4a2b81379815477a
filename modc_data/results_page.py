"""A results page of the documentation, generated from a finished run.

    python -m modc_data.results_page default --command "make repro" --wall "30:40"

Reads ``artifacts/eval/results.md`` and the pass@k figures of the run in the current
directory, and writes ``docs/results/<profile>.md`` (the figures beside it, under
``docs/results/<profile>/``) headed by what a reader needs to repeat it: the date, the git
commit, the machine class (CPU model, core count, AVX-512 / bf16 / AMX), the command and its
wall time. Written to a temp file, then renamed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
from pathlib import Path

from modc_data.artifacts import cpu_model, revision_info, write_text


def machine_class() -> str:
    """'<CPU model>, <n> cores (AVX-512, bf16, AMX)': what decides this project's speeds."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    isa = [name for name, flag in (("AVX-512", "avx512f"), ("native bf16", "avx512_bf16"),
                                   ("AMX", "amx_bf16"), ("AVX2", "avx2")) if flag in flags]
    if "AVX-512" in isa:
        isa.remove("AVX2")
    return f"{cpu_model()}, {os.cpu_count()} cores ({', '.join(isa) or 'ISA unknown'})"


def results_page(profile: str, results_md: str, *, command: str, wall: str | None,
                 commit: str, machine: str, date: str, figures: list[str]) -> str:
    """The page's text: a provenance table, the figures, then results.md one heading level
    down (its own title dropped)."""
    body = re.sub(r"\A# .*\n", "", results_md)
    body = re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", body, flags=re.M)
    head = [
        f"# Results: the `{profile}` profile",
        "",
        "Generated from the run's `artifacts/eval/results.md` by "
        f"`python -m modc_data.results_page {profile}`.",
        "",
        "| | |",
        "|---|---|",
        f"| date | {date} |",
        f"| commit | `{commit}` |",
        f"| machine | {machine} |",
        f"| command | `{command}` |",
        *([f"| wall time | {wall} |"] if wall else []),
        "",
        *[f"![{Path(f).stem}]({f})" for f in figures],
        "",
    ]
    return "\n".join(head) + body


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("profile", help="the profile's name (default, smoke, ...): the page's name")
    ap.add_argument("--command", default="make repro", help="the command that made the run")
    ap.add_argument("--wall", default=None, help="its wall time, as measured (e.g. 30:40)")
    ap.add_argument("--figures", default="passk_*_test_adversarial.png",
                    help="glob of artifacts/eval/figures to show (default: %(default)s)")
    ap.add_argument("--docs", type=Path, default=Path("docs"))
    args = ap.parse_args(argv)
    results = Path("artifacts/eval/results.md")
    if not results.exists():
        raise SystemExit(f"{results} is missing: run `dvc repro` (the evaluate stage) first")
    out_dir = args.docs / "results"
    fig_dir = out_dir / args.profile
    shutil.rmtree(fig_dir, ignore_errors=True)
    figures = []
    for f in sorted(Path("artifacts/eval/figures").glob(args.figures)):
        fig_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, fig_dir / f.name)
        figures.append(f"{args.profile}/{f.name}")
    # figures results.md itself links (allocation policies): copied too, links pointed at them
    text_md = results.read_text()
    for name in sorted(set(re.findall(r"\]\(figures/([^)]+)\)", text_md))):
        src = Path("artifacts/eval/figures") / name
        if src.exists():
            fig_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, fig_dir / name)
    text_md = re.sub(r"\]\(figures/", f"]({args.profile}/", text_md)
    rev = revision_info()
    commit = (rev.get("git_commit") or "unknown")[:12] + (" (with local changes)" if rev.get("git_dirty") else "")
    text = results_page(args.profile, text_md, command=args.command, wall=args.wall,
                        commit=commit, machine=machine_class(),
                        date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"), figures=figures)
    out = out_dir / f"{args.profile}.md"
    write_text(text, out)
    print(f"wrote {out} ({len(figures)} figures)")


if __name__ == "__main__":
    main()
