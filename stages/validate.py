"""Stage `validate@<arm>`: great-expectations suite over one labeled dataset.

    python stages/validate.py search_algorithm-skewed   # reads params.yaml: validation, arms.<arm>
Writes artifacts/validation/<arm>.json (report; a DVC metric), GX data docs under
artifacts/validation/<arm>_docs/, and artifacts/validation/<arm>.ok (the dataset's hash: what
training depends on, so changing a validation-only param never retrains). A failing suite exits
non-zero, naming each failed expectation, and `dvc repro` stops before training. The shares the
dataset must show come from <mix>.declared.json, written beside it by the stage that made it.
"""

import sys

import polars as pl

from modc_data import pipeline
from modc_data.artifacts import frame_hash, write_text
from modc_data.labeling.declared import read_declared
from modc_data.pipeline import StageError
from modc_data.validation import validate_dataset
from modc_data.validation_report import exit_code, format_summary, write_report


def main(params, argv):
    if len(argv) != 1 or argv[0] not in params.arms:
        raise StageError(f"usage: validate.py <arm>; arms are {sorted(params.arms)}")
    key = argv[0]
    arm = params.arms[key]
    path = pipeline.ARTIFACTS / "datasets" / arm.label_source / f"{arm.mix}.parquet"
    rows = pl.read_parquet(path)
    cfg = params.validation
    shares, modes = read_declared(path)
    report = validate_dataset(
        rows,
        shares,
        cfg.source_tolerance.get(arm.label_source, cfg.tolerance),
        cfg.min_rows_per_mode,
        key,
        modes=modes,  # what must appear when the mix fixes no shares (the rejection mix)
    )
    out = pipeline.ARTIFACTS / "validation"
    write_report(report, out / f"{key}.json", html_dir=out / f"{key}_docs" if cfg.data_docs else None)
    print(format_summary(report))
    code = exit_code(report)
    if code:
        print(f"[validate] {path}: validation failed; fix the data or params before training",
              file=sys.stderr)
        sys.exit(code)
    write_text(frame_hash(rows) + "\n", out / f"{key}.ok")


if __name__ == "__main__":
    pipeline.run(main)
