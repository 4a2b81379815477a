"""The pass@N objective (modeling/objectives): gradient = -weight, CE limits, stability, precision."""

from __future__ import annotations

import math

import mpmath
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modc_data.modeling.objectives import pass_at_n_loss, pass_at_n_weight

LOGP = st.floats(min_value=-60.0, max_value=-1e-9, allow_nan=False)
NS = st.integers(1, 512)


def _grad(logp: torch.Tensor, n: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, d loss / d logp) by autograd."""
    x = logp.detach().clone().requires_grad_(True)
    loss = pass_at_n_loss(x, n)
    loss.sum().backward()
    return loss.detach(), x.grad


def _reference_loss(logp: float, n: float) -> float:
    """-log(1 - (1 - p)^N) at 60 significant digits (mpmath), the ground truth."""
    with mpmath.workdps(60):  # log1p/expm1: 1 - p would round to 1 at any fixed precision
        p = mpmath.exp(mpmath.mpf(logp))
        return float(-mpmath.log(-mpmath.expm1(n * mpmath.log1p(-p))))


@settings(max_examples=200, deadline=None)
@given(logp=st.lists(LOGP, min_size=1, max_size=8), n=NS)
def test_weight_is_minus_the_autograd_derivative(logp, n):
    """d(-log S)/d(log p) = -w(p, N): the loss's own gradient is CE's (-1) times the weight."""
    x = torch.tensor(logp, dtype=torch.float64)
    _, grad = _grad(x, n)
    torch.testing.assert_close(grad, -pass_at_n_weight(x.exp(), n), rtol=1e-7, atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(logp=st.lists(LOGP, min_size=1, max_size=8), n=NS)
def test_weight_matches_its_definition(logp, n):
    with mpmath.workdps(60):
        want = []
        for v in logp:
            p = mpmath.exp(mpmath.mpf(v))
            s = -mpmath.expm1(n * mpmath.log1p(-p))
            want.append(float(n * p * mpmath.exp((n - 1) * mpmath.log1p(-p)) / s))
    got = pass_at_n_weight(torch.tensor(logp, dtype=torch.float64).exp(), n)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-7, atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(logp=st.floats(min_value=-1e4, max_value=-1e-30, allow_nan=False), n=NS)
def test_loss_matches_high_precision_reference_in_fp32(logp, n):
    loss = pass_at_n_loss(torch.tensor([logp], dtype=torch.float32), n)
    want = _reference_loss(float(torch.tensor(logp, dtype=torch.float32)), n)
    assert loss.dtype == torch.float32
    # abs_tol: near p = 1 the loss is ~(1-p)^N = e^-t and fp32 rounding of t (~1e-7 t) is its
    # relative error, far below any loss that matters
    assert math.isclose(float(loss), want, rel_tol=2e-6, abs_tol=1e-10), (float(loss), want)


@settings(max_examples=100, deadline=None)
@given(logp=st.lists(LOGP, min_size=1, max_size=8))
def test_n_equal_one_is_cross_entropy(logp):
    x = torch.tensor(logp, dtype=torch.float64)
    loss, grad = _grad(x, 1)
    torch.testing.assert_close(loss, -x, rtol=1e-9, atol=1e-15)
    torch.testing.assert_close(grad, torch.full_like(x, -1.0), rtol=1e-9, atol=0)


@settings(max_examples=100, deadline=None)
@given(logp=LOGP, n=st.integers(2, 512))
def test_loss_is_between_ce_minus_log_n_and_ce_and_falls_with_n(logp, n):
    """p <= S(p) <= N p, so -log p - log N <= loss <= -log p; and more samples, less loss."""
    x = torch.tensor([logp], dtype=torch.float64)
    loss = float(pass_at_n_loss(x, n))
    assert -logp - math.log(n) - 1e-9 <= loss <= -logp + 1e-12
    assert float(pass_at_n_loss(x, n + 1)) <= loss


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n", [2, 32, 1000])
def test_gradient_reduces_to_cross_entropy_as_p_goes_to_zero(dtype, n):
    x = torch.tensor([-20.0, -50.0, -100.0, -200.0, -1e4, -1e6], dtype=dtype)
    loss, grad = _grad(x, n)
    ce = -x.float()
    torch.testing.assert_close(grad.float(), torch.full_like(ce, -1.0), rtol=0, atol=1e-5)
    # loss = -log N - log p + O(N p): the pass@N loss is CE shifted by log N
    torch.testing.assert_close(loss, ce - math.log(n), rtol=1e-6, atol=1e-5)
    gaps = (grad.float() + 1).abs()
    assert (gaps[1:] <= gaps[:-1]).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n", [1, 2, 64, 10_000])
def test_finite_values_and_gradients_at_both_ends(dtype, n):
    near_one = [0.0, -1e-38, -1e-30, -1e-12, -1e-7, -1e-4, -1e-2]
    near_zero = [-30.0, -88.0, -104.0, -200.0, -1e3, -1e5, -1e7]
    x = torch.tensor(near_one + near_zero, dtype=dtype)
    loss, grad = _grad(x, n)
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    assert (loss >= 0).all()
    assert (grad <= 0).all() and (grad >= -1 - 1e-3).all()  # |w| <= 1
    # p = 1: nothing left to learn; the loss only grows as p moves away from 1
    assert float(loss[0]) < 1e-30 and float(grad[0]) == 0.0
    head = loss[: len(near_one)]
    assert (head[1:] >= head[:-1]).all()


def test_loss_of_a_batch_trains_in_bf16_autocast():
    """The objective's output is fp32 even when logp comes out of bf16 autocast."""
    w = torch.nn.Parameter(torch.randn(4, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = torch.randn(3, 8) @ w.T
        logp = torch.log_softmax(logits.float(), -1)[:, 0]
        loss = pass_at_n_loss(logp, 16).mean()
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(w.grad).all()


@pytest.mark.parametrize("n", [0, 0.5, -1, float("nan"), float("inf"), "8"])
def test_bad_n_is_refused(n):
    with pytest.raises(ValueError, match="N must be a number >= 1"):
        pass_at_n_loss(torch.tensor([-1.0]), n)
    with pytest.raises(ValueError, match="N must be a number >= 1"):
        pass_at_n_weight(torch.tensor([0.5]), n)
