"""Power and sample size for paired comparisons: the closed forms of evaluation/power.py against
simulation with the project's own paired bootstrap, and `modc power` on a real evaluation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from modc_data.cli import main
from modc_data.evaluation.bootstrap import paired_diff_interval, resample_indices
from modc_data.evaluation.power import detectable_difference, half_width, problems_needed


def _experiment(rng, n_problems: int, mean: float, sd: float, n_boot: int = 400):
    """One paired comparison: per-problem outcomes of two models whose difference has the given
    mean and sd; its 95% paired percentile-bootstrap interval."""
    base = rng.uniform(0.2, 0.8, n_problems)
    other = base + mean + rng.normal(0.0, sd, n_problems)
    return paired_diff_interval(other, base, resample_indices(n_problems, n_boot,
                                                              int(rng.integers(1 << 30))), 0.95)


def test_half_width_matches_the_bootstrap():
    rng = np.random.default_rng(0)
    for n_problems, sd in ((100, 0.3), (250, 0.15)):
        widths = []
        for _ in range(60):
            iv = _experiment(rng, n_problems, 0.0, sd)
            widths.append((float(iv.high) - float(iv.low)) / 2)
        # the sample sd of the simulated differences scatters around sd: compare to the mean
        assert np.mean(widths) == pytest.approx(half_width(sd, n_problems), rel=0.08)


def test_detectable_difference_is_found_with_80_percent_power():
    rng = np.random.default_rng(1)
    n_problems, sd = 120, 0.3
    delta = detectable_difference(sd, n_problems)
    found = [float(_experiment(rng, n_problems, delta, sd, 300).low) > 0 for _ in range(400)]
    # 400 experiments: the binomial sd of the rate is 0.02; tolerance 3 sd
    assert np.mean(found) == pytest.approx(0.80, abs=0.06)
    # and a true difference of zero is "found" about 2.5% of the time (one side)
    null = [float(_experiment(rng, n_problems, 0.0, sd, 300).low) > 0 for _ in range(400)]
    assert np.mean(null) < 0.06


def test_problems_needed_is_the_smallest_that_reaches_the_target():
    for sd, target, seeds, sd_seed in ((0.3, 0.02, 1, 0.0), (0.25, 0.03, 3, 0.01), (0.4, 0.05, 2, 0.0)):
        p = problems_needed(sd, target, seeds, sd_seed)
        assert half_width(sd, p, seeds, sd_seed) <= target + 1e-12
        assert p == 1 or half_width(sd, p - 1, seeds, sd_seed) > target
    # one seed with a seed-to-seed sd of 0.02 can never give a 0.02 half-width; more seeds can
    assert problems_needed(0.3, 0.02, 1, 0.02) is None
    assert problems_needed(0.3, 0.02, 8, 0.02) is not None
    assert math.isclose(half_width(0.3, 10**9, 4, 0.02), 1.959964 * 0.02 / 2, rel_tol=1e-4)


def test_modc_power_reads_an_evaluation(tmp_path, capsys):
    from modc_data.evaluation.estimates import evaluate
    from modc_data.evaluation.report import write_reports
    from tests.test_evaluation import SPEC, _planted

    samples, problems, _ = _planted()
    result = evaluate(samples, problems, SPEC, bootstrap=100, seed=0)
    write_reports(result, tmp_path)
    details = json.loads((tmp_path / "details.json").read_text())
    ev = details["keys"]["search_algorithm/balanced"]["test_adversarial"]
    assert set(ev["diff_sd"]) == {"experts", "prefix"} and len(ev["diff_sd"]["prefix"]) == 5
    assert main(["power", "--details", str(tmp_path / "details.json"), "--split",
                 "test_adversarial", "--half-width", "0.05", "--seeds", "1", "3"]) == 0
    out = capsys.readouterr().out
    sd = ev["diff_sd"]["prefix"][-1]
    need = problems_needed(sd, 0.05, 3)
    assert f"| 16 | {sd:.3f} |" in out and f"{need:,} |" in out
    assert "lower bounds" in out
    md = (tmp_path / "results.md").read_text()
    assert "Smallest difference detectable (prefix − standard" in md
    assert main(["power", "--details", str(tmp_path / "details.json"), "--group", "nope"]) == 2


def test_modc_power_uses_the_seed_spread_its_replicates_measured(tmp_path, capsys):
    from modc_data.evaluation.estimates import evaluate
    from modc_data.evaluation.report import write_reports
    from tests.test_evaluation import SPEC, _planted

    samples, problems, _ = _planted()
    write_reports(evaluate(samples, problems, SPEC, bootstrap=100, seed=0), tmp_path)
    path = tmp_path / "details.json"
    details = json.loads(path.read_text())
    ev = details["keys"]["search_algorithm/balanced"]["test_adversarial"]
    ks = [1, 2, 4, 8, 16]
    details["replicates"] = [{"groups": ["search_algorithm/balanced", "search_algorithm/balanced+seed1"],
                              "split": "test_adversarial", "variant": "prefix", "seeds": [0, 1, 2],
                              "k": ks, "sd_seed": [0.0, 0.01, 0.02, 0.03, 0.04]}]
    path.write_text(json.dumps(details))
    assert main(["power", "--details", str(path), "--split", "test_adversarial", "--half-width",
                 "0.05", "--seeds", "3"]) == 0
    out = capsys.readouterr().out
    assert "seed sd as measured over 3 seeds" in out and "lower bounds" not in out
    sd = ev["diff_sd"]["prefix"][-1]
    need = problems_needed(sd, 0.05, 3, 0.04)
    assert f"| 16 | {sd:.3f} | {half_width(sd, ev['n_problems'], 1, 0.04):.3f} |" in out
    assert ("unreachable" if need is None else f"{need:,}") in out.split("| 16 |")[-1]
