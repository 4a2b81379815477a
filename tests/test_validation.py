"""Tests for modc_data.validation: real great-expectations runs on small labeled datasets."""

from __future__ import annotations

import json

import great_expectations as gx
import polars as pl
import pytest

from modc_data.labeling.mixes import apply_mix, mode_shares
from modc_data.schema import make_rows, problem_id
from modc_data.validation import validate_dataset
from modc_data.validation_report import (
    DatasetValidationError,
    ValidationReport,
    exit_code,
    format_summary,
    raise_for_report,
    write_report,
)

BALANCED = {"dfs": 0.5, "bfs": 0.5}
SIZES = {"train": 200, "validation": 60, "test": 40}


@pytest.fixture(scope="module")
def context():
    """One ephemeral GX context for the module: creating data sources is cheap, import is not."""
    return gx.get_context(mode="ephemeral")


def labeled_rows(
    shares: dict[str, float] = BALANCED, sizes: dict[str, int] = SIZES
) -> pl.DataFrame:
    """One row per problem; each split's modes follow ``shares`` exactly (by rounding)."""
    recs = []
    for split, n in sizes.items():
        modes = [m for m, s in shares.items() for _ in range(round(s * n))]
        for i, mode in enumerate(modes):
            key = f"{split} {i}"
            recs.append(
                {
                    "problem_id": problem_id("countdown", key),
                    "task": "countdown",
                    "prompt": f"Use {key}",
                    "completion": f"{mode} trace {key}\nANS {i}",
                    "answer": str(i),
                    "mode": mode,
                    "label_source": "search_algorithm",
                    "split": split,
                    "correct": True,
                    "meta": {"budget": 8, "nodes_expanded": 3, "category": "both"},
                }
            )
    return make_rows(recs)


def set_cell(column: str, row: int, value) -> pl.Expr:
    """Expression that replaces ``column``'s value in one row (to corrupt a dataset)."""
    at_row = pl.int_range(pl.len()) == row
    return pl.when(at_row).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)


def failed_names(report: ValidationReport) -> set[str]:
    return {o.name for o in report.failed}


def test_good_dataset_passes(context):
    rows = labeled_rows()
    report = validate_dataset(rows, BALANCED, 0.1, 20, "good", context=context)
    assert report.success, format_summary(report)
    assert exit_code(report) == 0
    raise_for_report(report)  # does not raise
    assert report.shares["train"] == {"bfs": 0.5, "dfs": 0.5}
    assert report.counts["validation"] == {"bfs": 30, "dfs": 30}
    assert report.n_rows == rows.height
    names = {o.name for o in report.results}
    assert {
        "share of mode 'dfs' in train",
        "no leakage: problem in one split",
        "unique id",
    } <= names
    assert "PASSED" in format_summary(report)


def test_unbalanced_dataset_fails_naming_share_and_mode(context):
    rows = labeled_rows({"dfs": 0.8, "bfs": 0.2})
    report = validate_dataset(rows, BALANCED, 0.1, 20, "skewed", context=context)
    assert not report.success and exit_code(report) == 1
    assert "share of mode 'dfs' in train" in failed_names(report)
    assert "share of mode 'bfs' in validation" in failed_names(report)
    share = next(o for o in report.failed if o.name == "share of mode 'dfs' in train")
    assert share.observed["observed_value"] == pytest.approx(0.8)
    assert share.expectation == "expect_column_mean_to_be_between"
    summary = format_summary(report)
    assert "FAILED share of mode 'dfs' in train" in summary and "observed 0.800" in summary
    with pytest.raises(DatasetValidationError, match="share of mode 'bfs' in train"):
        raise_for_report(report)


def test_leaked_problem_fails_naming_leakage(context):
    rows = labeled_rows()
    leaked = rows.filter(pl.col("split") == "train").head(1)
    leaked = leaked.with_columns(
        pl.lit("test").alias("split"), pl.lit("another trace\nANS 0").alias("completion")
    ).with_columns(pl.lit("fresh-id").alias("id"))
    report = validate_dataset(pl.concat([rows, leaked]), BALANCED, 0.1, 20, "leak", context=context)
    assert failed_names(report) == {"no leakage: problem in one split"}
    summary = format_summary(report)
    assert "no leakage" in summary and leaked["problem_id"][0] in summary


def test_template_in_two_splits_fails_naming_template_leakage(context):
    """Problems made from one template (gsm variants) share its structure: a template seen in
    train and in validation is leakage even when every problem_id differs."""
    rows = labeled_rows()
    template = pl.format('{{"template_id": {}}}', pl.col("split").rank("dense"))
    clean = rows.with_columns(template.alias("meta"))
    report = validate_dataset(clean, BALANCED, 0.1, 20, "templates", context=context)
    assert report.success and "no leakage: template in one split" in {o.name for o in report.results}
    shared = clean.with_columns(set_cell("meta", clean.height - 1, clean["meta"][0]))
    report = validate_dataset(shared, BALANCED, 0.1, 20, "templates", context=context)
    assert failed_names(report) == {"no leakage: template in one split"}
    assert "template_id" in format_summary(report)


def test_duplicate_id_fails(context):
    rows = labeled_rows()
    report = validate_dataset(
        pl.concat([rows, rows.slice(5, 1)]), BALANCED, 0.1, 20, "dupe", context=context
    )
    assert "unique id" in failed_names(report)
    assert rows["id"][5] in format_summary(report)


@pytest.mark.parametrize(
    ("declared", "passes"), [({"dfs": 0.9, "bfs": 0.1}, True), ({"dfs": 0.5, "bfs": 0.5}, False)]
)
def test_declared_mix_checked_against_realised_mix(context, declared, passes):
    # Two rows (dfs, bfs) per problem, mixed 0.9/0.1 by apply_mix.
    both = labeled_rows(BALANCED, {"train": 1200, "validation": 800, "test": 20})
    paired = both.with_columns(
        pl.concat_str(pl.col("split"), pl.lit(" "), (pl.int_range(pl.len()) // 2).cast(pl.String))
        .map_elements(lambda k: problem_id("countdown", k), return_dtype=pl.String)
        .over("split")
        .alias("problem_id")
    )
    mixed = apply_mix(paired, {"dfs": 0.9, "bfs": 0.1}, seed=3)
    realised = mode_shares(mixed)["train"]["shares"]["dfs"]
    assert abs(realised - 0.9) < 0.05
    report = validate_dataset(mixed, declared, 0.1, 10, "mix", context=context)
    assert report.success is passes, format_summary(report)
    if not passes:
        assert "share of mode 'dfs' in train" in failed_names(report)


@pytest.mark.parametrize(
    ("corrupt", "expected_failure"),
    [
        (lambda r: r.with_columns(pl.col("answer").cast(pl.Int64)), "schema: type of answer"),
        (lambda r: r.drop("meta"), "schema: column set"),
        (lambda r: r.with_columns(extra=pl.lit(1)), "schema: column set"),
        (lambda r: r.with_columns(set_cell("answer", 3, None)), "no nulls in answer"),
        (
            lambda r: r.with_columns(set_cell("mode", 0, "cluster:9")),
            "mode in declared set in train",
        ),
        (lambda r: r.with_columns(set_cell("correct", 0, False)), "all train rows correct"),
        (lambda r: r.with_columns(pl.lit("{not json").alias("meta")), "meta is JSON"),
        (lambda r: r.filter(pl.col("split") != "validation"), "splits present"),
    ],
)
def test_each_corruption_fails_its_expectation(context, corrupt, expected_failure):
    rows = corrupt(labeled_rows())
    report = validate_dataset(rows, BALANCED, 0.1, 20, "corrupt", context=context)
    assert expected_failure in failed_names(report), format_summary(report)
    assert f"FAILED {expected_failure}" in format_summary(report)


def test_mix_without_a_mode_still_keeps_that_mode_in_test(context):
    rows = labeled_rows({"dfs": 1.0})
    bfs_test = labeled_rows({"bfs": 1.0}, {"test": 10})
    report = validate_dataset(pl.concat([rows, bfs_test]), {"dfs": 1.0}, 0.05, 20, "dfs-only")
    assert report.success, format_summary(report)
    assert report.shares["test"] == {"bfs": 0.2, "dfs": 0.8}


def test_too_few_rows_per_mode_fails(context):
    report = validate_dataset(labeled_rows(), BALANCED, 0.1, 31, "small", context=context)
    # validation has 30 rows per mode, train 100
    assert failed_names(report) == {
        "rows of mode 'dfs' in validation",
        "rows of mode 'bfs' in validation",
    }


def test_bad_arguments_raise_before_validation():
    rows = labeled_rows()
    with pytest.raises(ValueError, match="sum to"):
        validate_dataset(rows, {"dfs": 0.7, "bfs": 0.7}, 0.1, 20, "x")
    with pytest.raises(ValueError, match="tolerance"):
        validate_dataset(rows, BALANCED, 1.5, 20, "x")
    with pytest.raises(TypeError, match="polars DataFrame"):
        validate_dataset(rows.to_pandas(), BALANCED, 0.1, 20, "x")


def test_write_report_round_trip_and_data_docs(context, tmp_path):
    rows = labeled_rows({"dfs": 0.8, "bfs": 0.2})
    report = validate_dataset(rows, BALANCED, 0.1, 20, "search_algorithm:skewed", context=context)
    json_path = tmp_path / "reports" / "skewed.json"
    html_dir = tmp_path / "reports" / "skewed_docs"
    write_report(report, json_path, html_dir=html_dir)
    loaded = json.loads(json_path.read_text())
    assert loaded == json.loads(json.dumps(report.to_dict()))
    assert loaded["success"] is False
    assert {r["name"] for r in loaded["results"] if not r["success"]} == failed_names(report)
    assert (html_dir / "index.html").exists()
    pages = list((html_dir / "validations").rglob("*.html"))
    assert len(pages) == 4  # all rows, train, validation, problem-split pairs
    train_page = next(p for p in pages if "split-train" in p.name).read_text()
    assert "mode 'dfs' is 0.500 ± 0.100 of train rows" in train_page  # our description, rendered
    # Rewriting replaces both in place and leaves no temporary files behind.
    write_report(report, json_path, html_dir=html_dir)
    assert sorted(p.name for p in json_path.parent.iterdir()) == ["skewed.json", "skewed_docs"]
    stripped = ValidationReport(**{**loaded, "results": []})
    with pytest.raises(ValueError, match="no GX results"):
        write_report(stripped, tmp_path / "x.json", html_dir=tmp_path / "docs")


def test_mix_with_no_fixed_shares_reports_realised_shares(context, tmp_path):
    # A rejection-mix dataset whose realised shares (0.8 / 0.2) are far from any declared mix.
    rows = labeled_rows({"dfs": 0.8, "bfs": 0.2})
    assert not validate_dataset(rows, BALANCED, 0.1, 20, "as balanced", context=context).success
    report = validate_dataset(rows, None, 0.1, 10, "rejection", context=context, modes=["dfs", "bfs"])
    assert report.success, format_summary(report)
    assert report.declared_shares is None and report.declared_modes == ["bfs", "dfs"]
    assert report.shares["train"] == {"bfs": pytest.approx(0.2), "dfs": pytest.approx(0.8)}
    assert not any(o.name.startswith("share of mode") for o in report.results)
    assert "rows of mode 'bfs' in validation" in {o.name for o in report.results}
    assert "no fixed shares" in format_summary(report)
    write_report(report, tmp_path / "r.json")
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["declared_shares"] is None and saved["shares"]["train"]["dfs"] == pytest.approx(0.8)


def test_mix_with_no_fixed_shares_still_checks_modes_and_rows(context):
    rows = labeled_rows({"dfs": 0.95, "bfs": 0.05})  # 10 train bfs rows, 3 validation
    report = validate_dataset(rows, None, 0.1, 20, "thin", context=context, modes=["dfs", "bfs"])
    assert failed_names(report) == {"rows of mode 'bfs' in train", "rows of mode 'bfs' in validation"}
    stray = labeled_rows().with_columns(set_cell("mode", 0, "cluster:9"))
    report = validate_dataset(stray, None, 0.1, 20, "stray", context=context, modes=["dfs", "bfs"])
    assert failed_names(report) == {"mode in declared set in train"}
    # without the list of modes, the modes present are the declared set
    only_dfs = labeled_rows({"dfs": 1.0})
    report = validate_dataset(only_dfs, None, 0.1, 20, "present", context=context)
    assert report.success and report.declared_modes == ["dfs"]
    report = validate_dataset(only_dfs, None, 0.1, 20, "all", context=context, modes=["dfs", "bfs"])
    assert "rows of mode 'bfs' in train" in failed_names(report)
