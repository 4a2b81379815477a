"""Great-expectations validation of a mode-labeled dataset (the ``validate`` stage's logic).

What goes in: schema rows (``modc_data.schema.ROW_SCHEMA``) of one labeled dataset, the mix it
declares (``{mode: share}``, or None with the list of its modes for a mix with no fixed shares,
such as the rejection mix), a share tolerance and a minimum row count per (mode, split).
What comes out: a ``ValidationReport`` (one ``Outcome`` per expectation, mode shares and counts
per split) that ``modc_data.validation_report`` saves as JSON (+ GX data docs HTML) and turns
into the stage's message and exit status.

Every check is a great-expectations 1.x expectation run on an in-memory pandas batch through an
ephemeral context; checks that GX has no expectation for are phrased as GX expectations on a
derived batch instead of hand-written:
- mode share within tolerance  -> ``ExpectColumnMeanToBeBetween`` on a 0/1 "row is mode m" column
  of one split's rows (the mean of an indicator is the share); skipped when no shares are
  declared, and the realised shares are reported instead;
- rows per mode and split      -> ``ExpectColumnSumToBeBetween`` on the same indicator;
- no problem in two splits     -> ``ExpectColumnValuesToBeUnique(problem_id)`` on the distinct
  (problem_id, split) pairs.

What it leaves out: the report's classes, its summary text, exit status and writing
(``modc_data.validation_report``).

Usage (the stage does this; the last two lines are ``modc_data.validation_report``'s)::

    report = validate_dataset(rows, {"dfs": .5, "bfs": .5}, 0.1, 20, "search_algorithm-balanced")
    write_report(report, "artifacts/validation/x.json", html_dir="artifacts/validation/x_docs")
    print(format_summary(report)); sys.exit(exit_code(report))
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from modc_data.labeling.mixes import MIXED_SPLITS, check_shares, mode_shares
from modc_data.schema import LABEL_SOURCES, ROW_SCHEMA, SPLITS, mode_slug
from modc_data.validation_report import Outcome, ValidationReport, gx_context

# Python type names GX checks object-dtype pandas columns against, per polars dtype.
_GX_TYPE = {pl.String(): "str", pl.Boolean(): "bool"}
_KEEP_RESULT_KEYS = (
    "observed_value",
    "element_count",
    "unexpected_count",
    "unexpected_percent",
    "partial_unexpected_list",
    "missing_count",
    "details",
)
_MAX_EXAMPLES = 10


# --------------------------------------------------------------------------- building suites
@dataclass
class _Check:
    name: str
    description: str
    expectation: Any  # a gx.expectations.Expectation


def _table_checks(declared: dict[str, float], columns: list[str]) -> list[_Check]:
    import great_expectations.expectations as gxe

    checks = [
        _Check(
            "schema: column set",
            f"columns are exactly {list(ROW_SCHEMA)}",
            gxe.ExpectTableColumnsToMatchSet(column_set=list(ROW_SCHEMA), exact_match=True),
        )
    ]
    for col, dtype in ROW_SCHEMA.items():
        if col not in columns:
            continue  # reported by the column-set check; a type check would only add noise
        checks.append(
            _Check(
                f"schema: type of {col}",
                f"column {col!r} holds {_GX_TYPE[dtype]} values ({dtype})",
                gxe.ExpectColumnValuesToBeOfType(column=col, type_=_GX_TYPE[dtype]),
            )
        )
        checks.append(
            _Check(
                f"no nulls in {col}",
                f"column {col!r} has no null values",
                gxe.ExpectColumnValuesToNotBeNull(column=col),
            )
        )
    have = set(columns)
    if "id" in have:
        checks.append(
            _Check(
                "unique id",
                "no two rows share an id (hash of task, prompt, completion)",
                gxe.ExpectColumnValuesToBeUnique(column="id"),
            )
        )
    if "split" in have:
        checks.append(
            _Check(
                "split in known splits",
                f"every split is one of {list(SPLITS)}",
                gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
            )
        )
        checks.append(
            _Check(
                "splits present",
                f"splits {list(MIXED_SPLITS)} both have rows",
                gxe.ExpectColumnDistinctValuesToContainSet(
                    column="split", value_set=list(MIXED_SPLITS)
                ),
            )
        )
    if "label_source" in have:
        checks.append(
            _Check(
                "label source known",
                f"label_source is one of {list(LABEL_SOURCES)}",
                gxe.ExpectColumnValuesToBeInSet(
                    column="label_source", value_set=list(LABEL_SOURCES)
                ),
            )
        )
    if "meta" in have:
        checks.append(
            _Check(
                "meta is JSON",
                "meta holds a JSON document in every row",
                gxe.ExpectColumnValuesToBeJsonParseable(column="meta"),
            )
        )
    return checks


def _indicator(mode: str) -> str:
    return f"is_mode[{mode}]"


def _split_checks(
    split: str, declared: dict[str, float | None], tolerance: float, min_rows: int
) -> list[_Check]:
    """Checks on one mixed split; a mode whose share is None has no share check (no fixed
    shares), only the row count."""
    import great_expectations.expectations as gxe

    # Only the mixed splits must use declared modes: test splits keep every mode's rows, so a
    # mix such as {dfs: 1.0} still evaluates on bfs rows.
    checks = [
        _Check(
            f"mode in declared set in {split}",
            f"every {split} mode is one of the declared modes {sorted(declared)}",
            gxe.ExpectColumnDistinctValuesToBeInSet(column="mode", value_set=sorted(declared)),
        )
    ]
    for mode, share in sorted(declared.items()):
        if share is None:
            checks.append(_rows_check(split, mode, min_rows))
            continue
        lo, hi = max(0.0, share - tolerance), min(1.0, share + tolerance)
        checks.append(
            _Check(
                f"share of mode {mode!r} in {split}",
                f"mode {mode!r} is {share:.3f} ± {tolerance:.3f} of {split} rows "
                f"(between {lo:.3f} and {hi:.3f})",
                gxe.ExpectColumnMeanToBeBetween(
                    column=_indicator(mode), min_value=lo, max_value=hi
                ),
            )
        )
        if share > 0:  # a mode declared absent needs no rows
            checks.append(_rows_check(split, mode, min_rows))
    if split == "train":
        checks.append(
            _Check(
                "all train rows correct",
                "every train row's completion was verified correct (correct == true)",
                gxe.ExpectColumnValuesToBeInSet(column="correct", value_set=[True]),
            )
        )
    return checks


def _rows_check(split: str, mode: str, min_rows: int) -> _Check:
    import great_expectations.expectations as gxe

    return _Check(
        f"rows of mode {mode!r} in {split}",
        f"at least {min_rows} {split} rows have mode {mode!r}",
        gxe.ExpectColumnSumToBeBetween(column=_indicator(mode), min_value=min_rows),
    )


def _leakage_checks(column: str = "problem_id", what: str = "problem") -> list[_Check]:
    import great_expectations.expectations as gxe

    return [
        _Check(
            f"no leakage: {what} in one split",
            f"no {column} appears in more than one split",
            gxe.ExpectColumnValuesToBeUnique(column=column),
        )
    ]


def _json_safe(value: Any) -> Any:
    """GX results hold numpy scalars; round-trip through json with a str fallback."""
    return json.loads(
        json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    )


def _run_batch(
    context: Any, source: Any, batch_label: str, frame: Any, checks: list[_Check], dataset: str
) -> tuple[list[Outcome], tuple[str, str, Any]]:
    """Validate ``checks`` (one GX suite) on ``frame`` (pandas); outcomes in ``checks`` order."""
    import great_expectations as gx

    # GX store keys become file names in data docs: no '/', spaces or ':' allowed.
    key = f"{mode_slug(batch_label)}-{uuid.uuid4().hex[:8]}"
    batch = (
        source.add_dataframe_asset(key)
        .add_batch_definition_whole_dataframe(key)
        .get_batch(batch_parameters={"dataframe": frame})
    )
    suite = gx.ExpectationSuite(name=f"{mode_slug(dataset)}.{mode_slug(batch_label)}")
    for i, c in enumerate(checks):
        c.expectation.description = c.description
        c.expectation.meta = {"check": i}
        suite.add_expectation(c.expectation)
    result = batch.validate(suite, result_format="SUMMARY")
    # GX may reorder results; the index stored in meta maps each back to its check.
    by_index = {r.expectation_config.meta["check"]: r for r in result.results}
    outcomes = []
    for i, c in enumerate(checks):
        r = by_index[i]
        exc = r.exception_info or {}
        raw = r.to_json_dict().get("result") or {}
        observed = {k: raw[k] for k in _KEEP_RESULT_KEYS if raw.get(k) is not None}
        if "partial_unexpected_list" in observed:
            observed["partial_unexpected_list"] = observed["partial_unexpected_list"][
                :_MAX_EXAMPLES
            ]
        outcomes.append(
            Outcome(
                name=c.name,
                description=c.description,
                batch=batch_label,
                expectation=r.expectation_config.type,
                success=bool(r.success),
                observed=_json_safe(observed),
                error=exc.get("exception_message") if exc.get("raised_exception") else None,
            )
        )
    return outcomes, (suite.name, str(batch.id), result)


def validate_dataset(
    rows: pl.DataFrame,
    declared_shares: Mapping[str, float] | None,
    tolerance: float,
    min_rows_per_mode: int,
    dataset_name: str,
    context: Any | None = None,
    *,
    modes: Sequence[str] | None = None,
) -> ValidationReport:
    """Run every expectation on ``rows`` and collect a report.

    Args:
        rows: the labeled dataset (should match ``ROW_SCHEMA``; a mismatch is reported, not
            raised, so the report lists every problem at once).
        declared_shares: the mix the dataset declares, ``{mode: share}`` summing to 1, or None
            for a mix with no fixed shares (the rejection mix): then no share is checked and
            the report carries the realised shares only.
        tolerance: allowed ``|realised share - declared share|`` in train and validation.
        min_rows_per_mode: rows required per (declared mode with share > 0, train/validation);
            with no fixed shares, per mode in ``modes``.
        dataset_name: names the report and GX suites (e.g. ``search_algorithm-balanced``).
        context: a GX data context to reuse (tests share one); default a new ephemeral one.
        modes: with ``declared_shares=None``, the modes the mixed splits may use and must each
            have ``min_rows_per_mode`` rows of; default the modes present in them (then a mode
            absent altogether goes unnoticed). Ignored when shares are declared (their keys).
    Returns:
        ``ValidationReport``; ``success`` is true only when every expectation passed.
    """
    if not isinstance(rows, pl.DataFrame):
        raise TypeError(f"rows must be a polars DataFrame, got {type(rows).__name__}")
    if declared_shares is None:
        if modes is None and {"split", "mode"} <= set(rows.columns):
            # Weaker: a mode missing from the data altogether goes unnoticed; pass modes.
            modes = rows.filter(pl.col("split").is_in(MIXED_SPLITS))["mode"].unique().to_list()
        declared: dict[str, float | None] = dict.fromkeys(sorted(set(modes or ())))
    else:
        declared = check_shares(declared_shares, f"{dataset_name}: declared shares")
    if not 0.0 <= tolerance <= 1.0:
        raise ValueError(f"tolerance must lie in [0, 1] (validation.tolerance), got {tolerance}")
    if min_rows_per_mode < 0:
        raise ValueError(f"min_rows_per_mode must be >= 0, got {min_rows_per_mode}")

    import great_expectations as gx

    context = gx_context(context)
    source_name = f"modc-{uuid.uuid4().hex[:12]}"
    source = context.data_sources.add_pandas(source_name)
    outcomes: list[Outcome] = []
    raw: list[tuple[str, str, Any]] = []
    try:
        cols = rows.columns
        runs = [("all rows", rows.to_pandas(), _table_checks(declared, cols))]
        if {"split", "mode"} <= set(cols):
            for split in MIXED_SPLITS:
                part = rows.filter(pl.col("split") == split)
                if not part.height:
                    continue  # the "splits present" check reports it
                part = part.with_columns(
                    (pl.col("mode") == m).cast(pl.Int64).alias(_indicator(m)) for m in declared
                )
                checks = _split_checks(split, declared, tolerance, min_rows_per_mode)
                if "correct" not in cols:
                    checks = [c for c in checks if c.name != "all train rows correct"]
                runs.append((f"split={split}", part.to_pandas(), checks))
        if {"split", "problem_id"} <= set(cols):
            pairs = rows.select("problem_id", "split").unique().sort("problem_id", "split")
            runs.append(("problem-split pairs", pairs.to_pandas(), _leakage_checks()))
        if {"split", "meta"} <= set(cols):
            # Problems made from one template (gsm: GSM-Symbolic variants) share its structure,
            # so a template must stay in one split too.
            templates = rows.select(
                pl.col("meta").str.json_path_match("$.template_id").alias("template_id"), "split"
            ).drop_nulls("template_id").unique().sort("template_id", "split")
            if templates.height:
                runs.append(("template-split pairs", templates.to_pandas(),
                             _leakage_checks("template_id", "template")))
        for label, frame, checks in runs:
            got, res = _run_batch(context, source, label, frame, checks, dataset_name)
            outcomes.extend(got)
            raw.append(res)
    finally:
        context.data_sources.delete(source_name)

    shares, counts = {}, {}
    if {"split", "mode"} <= set(rows.columns):
        present = tuple(s for s in SPLITS if s in set(rows["split"].to_list()))
        for split, info in mode_shares(rows, present).items():
            shares[split], counts[split] = info["shares"], info["counts"]
    return ValidationReport(
        dataset=dataset_name,
        success=all(o.success for o in outcomes),
        n_rows=rows.height,
        declared_shares=None if declared_shares is None else declared,
        tolerance=float(tolerance),
        min_rows_per_mode=int(min_rows_per_mode),
        shares=shares,
        counts=counts,
        results=outcomes,
        gx_version=gx.__version__,
        gx_results=raw,
        declared_modes=sorted(declared),
    )
