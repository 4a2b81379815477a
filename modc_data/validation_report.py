"""A validation report: its outcomes, the text and exit status made of it, its JSON and data docs.

What goes in: a ``ValidationReport`` (one ``Outcome`` per great-expectations expectation, mode
shares and counts per split), as ``modc_data.validation.validate_dataset`` builds it.
What comes out: ``format_summary`` (the stage's message), ``exit_code`` / ``raise_for_report``
(its verdict), and ``write_report`` (JSON, plus GX data docs HTML from the raw GX results).
``gx_context`` is the GX data context both the suites and the data docs run in.

What it leaves out: which expectations are checked and running them on a dataset
(``modc_data.validation``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modc_data.artifacts import replace_dir, write_text
from modc_data.errors import ModcError
from modc_data.schema import mode_slug


class DatasetValidationError(ModcError, RuntimeError):
    """A dataset that failed validation; the message names each failed expectation."""


@dataclass
class Outcome:
    """One expectation's result in readable form."""

    name: str  # short stable name, e.g. "share of mode 'dfs' in train"
    description: str  # what is expected, in words, with the bounds
    batch: str  # which rows it ran on: "all rows", "split=train", "problem-split pairs"
    expectation: str  # GX expectation type, e.g. "expect_column_mean_to_be_between"
    success: bool
    observed: dict[str, Any] = field(default_factory=dict)  # GX result fields, JSON-safe
    error: str | None = None  # GX's exception message when the expectation could not run


@dataclass
class ValidationReport:
    dataset: str
    success: bool
    n_rows: int
    declared_shares: dict[str, float] | None  # None: no fixed shares (e.g. the rejection mix)
    tolerance: float
    min_rows_per_mode: int
    shares: dict[str, dict[str, float]]  # split -> mode -> realised share (every split)
    counts: dict[str, dict[str, int]]  # split -> mode -> rows
    results: list[Outcome]
    gx_version: str = ""
    declared_modes: list[str] = field(default_factory=list)  # modes the mixed splits may use
    # Raw GX suite results (suite name, batch id, result) kept for data docs; not serialized.
    gx_results: list[tuple[str, str, Any]] = field(default_factory=list, repr=False, compare=False)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.results if not o.success]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("gx_results")
        return d


def gx_context(context: Any | None = None) -> Any:
    """``context`` (default a new ephemeral GX data context) with GX's progress bars off."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    if context is None:
        context = gx.get_context(mode="ephemeral")
    # GX draws a tqdm bar per suite; one line per batch is noise in a stage log.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context



# --------------------------------------------------------------------------- reading a report
def _observed_text(o: Outcome) -> str:
    obs = o.observed
    parts = []
    if "observed_value" in obs:
        v = obs["observed_value"]
        parts.append(f"observed {v:.3f}" if isinstance(v, float) else f"observed {v}")
    if obs.get("unexpected_count"):
        parts.append(f"{obs['unexpected_count']} unexpected")
        if obs.get("partial_unexpected_list"):
            parts.append(f"e.g. {obs['partial_unexpected_list'][:3]}")
    if "details" in obs and not o.success and "mismatched" in obs["details"]:
        parts.append(f"mismatch {obs['details']['mismatched']}")
    if o.error:
        parts.append(f"error: {o.error}")
    return ", ".join(parts) or "no observed value"


def format_summary(report: ValidationReport) -> str:
    """Readable text: verdict, mode shares per split vs. declared, then each failed expectation."""
    n_fail = len(report.failed)
    verdict = "PASSED" if report.success else f"FAILED ({n_fail} of {len(report.results)})"
    lines = [f"dataset {report.dataset}: {verdict}, {report.n_rows} rows"]
    if report.declared_shares is None:
        lines.append(
            f"  declared mix: no fixed shares over {report.declared_modes} (realised shares below)"
        )
    else:
        declared = ", ".join(f"{m}={s:.3f}" for m, s in sorted(report.declared_shares.items()))
        lines.append(f"  declared mix: {declared} (tolerance ±{report.tolerance:.3f})")
    for split, shares in report.shares.items():
        cells = ", ".join(
            f"{m}={s:.3f} ({report.counts[split][m]})" for m, s in sorted(shares.items())
        )
        lines.append(f"  {split}: {cells}")
    for o in report.failed:
        lines.append(
            f"  FAILED {o.name} [{o.batch}]: expected {o.description}; {_observed_text(o)}"
        )
    return "\n".join(lines)


def exit_code(report: ValidationReport) -> int:
    """Process exit status for the validate stage: 0 when every expectation passed, else 1."""
    return 0 if report.success else 1


def raise_for_report(report: ValidationReport) -> None:
    """Raise ``DatasetValidationError`` (message = ``format_summary``) unless the report passed."""
    if not report.success:
        raise DatasetValidationError(format_summary(report))


# --------------------------------------------------------------------------- writing a report
def write_report(
    report: ValidationReport, json_path: str | Path, html_dir: str | Path | None = None
) -> None:
    """Write ``report`` as JSON to ``json_path`` and, if ``html_dir``, GX data docs there.

    Both are written to a temporary sibling first and moved into place, so a crash never leaves
    a half-written report behind. Data docs need the raw GX results, which only a report fresh
    from ``validate_dataset`` holds (a report rebuilt from JSON has none: ValueError).
    """
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n", json_path)
    if html_dir is not None:
        _write_data_docs(report, Path(html_dir).resolve())  # GX wants an absolute path


def _write_data_docs(report: ValidationReport, html_dir: Path) -> None:
    if not report.gx_results:
        raise ValueError(
            f"report {report.dataset!r} holds no GX results (it was not made by "
            "validate_dataset in this process); data docs cannot be built from JSON"
        )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    html_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=html_dir.parent, prefix=f".{html_dir.name}."))
    try:
        context = gx_context(None)
        context.add_data_docs_site(
            site_name="modc",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(tmp),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        run_id = RunIdentifier(run_name=mode_slug(report.dataset))
        for suite_name, batch_id, result in report.gx_results:
            key = ValidationResultIdentifier(
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite_name),
                run_id=run_id,
                batch_identifier=batch_id,
            )
            context.validation_results_store.set(key, result)
        context.build_data_docs(site_names=["modc"])
        replace_dir(tmp, html_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
