"""The pass@N training objective (compute-aligned training): train for the budget the model is scored at.

    loss = pass_at_n_loss(logp, N=32).mean()   # logp: (B,) summed token log-probs of the targets

With p = π(y*|x), the probability of a whole target completion (``logp`` = the sum of its token
log-probabilities, exact, no sampling), pass@N of one sampler is ``S(p) = 1 - (1 - p)^N`` and the
per-example loss is ``-log S(p)``. Its gradient is cross-entropy's (``-log p``) scaled by

    w(p, N) = N p (1 - p)^(N-1) / S(p)        (d(-log S)/d(log p) = -w; CE's is -1)

w -> 1 as p -> 0 (an unlearnt example pulls like CE) and w -> 0 as p -> 1 (a solved example stops
pulling, so the model is not pushed to collapse onto it). N = 1 is cross-entropy.

Why by hand: torch has ``log1p``/``expm1`` but no ``log1mexp`` nor a log-space ``1-(1-p)^N``, and
the direct formula fails at both ends in fp32: ``log(1 - exp(logp))`` is ``log 0`` once
``exp(logp)`` underflows (sequence log-probs of -100 and below are common), and ``1 - (1 - p)^N``
rounds to 0 or 1. Everything is done in log-log space instead, with the two exact asymptotic
series where the closed form loses precision (see ``pass_at_n_loss``). Inputs in bf16/fp16 are
computed in fp32.
"""

from __future__ import annotations

import math

import torch

from modc_data.modeling.format import IGNORE_INDEX

# Below this log p the series log(-log(1-p)) = log p + p/2 + O(p^2) is exact to ~1e-13.
_SERIES_LOGP = -14.0
# Below this v = log(-N log(1-p)) the series log(1-exp(-t)) = v - t/2 + t^2/24 - t^4/2880 (t = e^v)
# is exact to ~1e-13 (next term t^6/181440 at t = e^-3).
_SERIES_V = -3.0
_LOG2 = math.log(2)


def _check_n(N: float) -> float:
    if not (isinstance(N, (int, float)) and math.isfinite(N) and N >= 1):
        raise ValueError(f"pass@N objective: N must be a number >= 1, got {N!r}")
    return float(N)


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.promote_types(t.dtype, torch.float32) if t.is_floating_point() else torch.float32


def _log1mexp(y: torch.Tensor) -> torch.Tensor:
    """``log(1 - e^y)`` for y < 0 (Maechler 2012): expm1 above -log 2, log1p below, each branch
    fed an input clamped to its range so neither yields inf/nan in the backward pass."""
    near, far = y.clamp(min=-_LOG2), y.clamp(max=-_LOG2)
    return torch.where(y > -_LOG2, torch.log(-torch.expm1(near)), torch.log1p(-torch.exp(far)))


def pass_at_n_loss(logp: torch.Tensor, N: float) -> torch.Tensor:
    """Per-example ``-log(1 - (1 - p)^N)`` from ``logp = log p`` (any shape, values <= 0).

    Returns a tensor of ``logp``'s shape in fp32 (fp64 for fp64 input), >= 0 and finite for every
    finite ``logp``: -> ``-log N - logp`` as p -> 0, -> 0 as p -> 1. Differentiable by autograd
    with finite gradients everywhere (the gradient w.r.t. ``logp`` is ``-pass_at_n_weight``).

    Computation, with x = log p: ``l = log(-log(1 - p))`` (``x + e^x/2`` below x = -14, else
    ``log(-log1mexp(x))``), ``v = log N + l = log(-N log(1-p))``, and ``log S = log(1 - e^(-e^v))``
    (its series ``v - t/2 + t^2/24 - t^4/2880``, t = e^v, below v = -3, else ``log1mexp(-e^v)``).
    Each branch gets an input clamped to its own range, so the branch ``torch.where`` discards
    never produces inf/nan in the backward pass. ``logp`` is clamped to ``<= -tiny`` (p = 1
    exactly would give log 0); there the loss is 0 and its gradient 0.
    """
    n = _check_n(N)
    dt = _compute_dtype(logp)
    x = logp.to(dt).clamp(max=-torch.finfo(dt).tiny)
    # l = log(-log(1 - p)), the log of one sample's cumulative hazard.
    xa = x.clamp(max=_SERIES_LOGP)
    xb = x.clamp(min=_SERIES_LOGP)
    ell = torch.where(x < _SERIES_LOGP, xa + torch.exp(xa) / 2, torch.log(-_log1mexp(xb)))
    v = math.log(n) + ell
    va = v.clamp(max=_SERIES_V)
    vb = v.clamp(min=_SERIES_V)
    t = torch.exp(va)
    log_s = torch.where(
        v < _SERIES_V, va - t / 2 + t**2 / 24 - t**4 / 2880, _log1mexp(-torch.exp(vb))
    )
    return -log_s


def pass_at_n_weight(p: torch.Tensor, N: float) -> torch.Tensor:
    """``w(p, N) = N p (1 - p)^(N-1) / (1 - (1 - p)^N)``, elementwise for p in [0, 1].

    The factor by which pass@N's gradient scales cross-entropy's: d(-log S)/d(log p) = -w. Returns
    fp32 (fp64 for fp64 input); w(0) = 1, w(1) = 0 for N > 1, and w = 1 everywhere for N = 1.
    Below N p = 1e-3, where numerator and denominator both vanish, it uses the series
    ``1 - a p/2 + a (a - 4) p^2 / 12`` with a = N - 1 (error O((N p)^3)).
    """
    n = _check_n(N)
    dt = _compute_dtype(p)
    p = p.to(dt)
    a = torch.full_like(p, n - 1)
    log_q = torch.special.xlog1py(a, -p)  # (N-1) log(1-p), 0 when N = 1 even at p = 1
    s = -torch.expm1(n * torch.log1p(-p))
    direct = n * p * torch.exp(log_q) / s
    series = 1 - a * p / 2 + a * (a - 4) * p**2 / 12
    return torch.where(n * p < 1e-3, series, direct)


def completion_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(completion | prompt): logits (..., T, V), labels (..., T) -> (...), in fp32.

    The causal shift is applied here (position t predicts label t+1); labels equal to
    IGNORE_INDEX (prompt, padding) contribute 0. Summed, not averaged: the sum is the log
    probability of the whole completion.
    """
    logits = logits[..., :-1, :].float()
    target = labels[..., 1:]
    keep = target != IGNORE_INDEX
    logp = torch.log_softmax(logits, dim=-1)
    tok = logp.gather(-1, torch.where(keep, target, 0).unsqueeze(-1)).squeeze(-1)
    return torch.where(keep, tok, 0.0).sum(-1)
