"""Pass@k RL: GRPO whose advantages optimise pass@k of a group instead of its mean reward.

Chen et al. 2025, "Pass@k Training for Adaptively Balancing Exploration and Exploitation"
(reference code: RUCAIBox/Passk_Training, ``code/passk_adv.py``). For a group of N completions
of one prompt, c of them correct, read every k-subset as one "attempt" whose reward is 1 when
any member is correct. The group's mean attempt reward is the pass@k estimate
ρ = 1 − C(N−c, k) / C(N, k); a completion's advantage is the mean, over the subsets that contain
it, of (attempt reward − ρ), divided by σ = sqrt(ρ(1 − ρ)):

- correct completion: every subset holding it succeeds, so A⁺ = (1 − ρ) / σ;
- incorrect one: its subsets fail only when the other k − 1 members are all incorrect, so
  A⁻ = (1 − ρ − C(N−c−1, k−1) / C(N−1, k−1)) / σ.

These advantages sum to zero over a group (c·A⁺ + (N−c)·A⁻ = 0), so TRL's own mean subtraction
leaves them unchanged when ``scale_rewards="none"``. ``PassAtKGRPOTrainer`` therefore only
replaces the gathered 0/1 verifier rewards by these advantages before TRL's advantage step; the
rest of GRPO (generation, clipping, KL, multi-process gathering) stays TRL's. Written here
because TRL ships no pass@k objective.
"""

from __future__ import annotations

from math import comb, sqrt

import numpy as np

_EPS = 1e-6  # as the reference code: a group all right or all wrong gets advantage 0


def passk_advantages(correct: np.ndarray, k: int) -> np.ndarray:
    """Closed-form pass@k advantages of one group's 0/1 rewards ``correct`` (shape (N,))."""
    r = np.asarray(correct, dtype=np.float64)
    n, c = r.size, int(r.sum())
    if not 1 <= k <= n:
        raise ValueError(f"pass@k advantages: need 1 <= k <= group size {n}, got k={k}")
    if not np.isin(r, (0.0, 1.0)).all():
        raise ValueError("pass@k advantages: rewards must be 0 or 1 (a verifier's verdicts)")
    rho = 1.0 - comb(n - c, k) / comb(n, k)
    sigma = sqrt(rho * (1.0 - rho))
    pos = (1.0 - rho) / (sigma + _EPS)
    # Chance that the other k - 1 members of an incorrect sample's subset are all incorrect
    # (no incorrect sample when c = n: its value is then unused).
    all_wrong = comb(n - c - 1, k - 1) / comb(n - 1, k - 1) if c < n else 0.0
    neg = (1.0 - rho - all_wrong) / (sigma + _EPS)
    return np.where(r == 1.0, pos, neg)


def grouped_passk_advantages(rewards: np.ndarray, group_size: int, k: int) -> np.ndarray:
    """``passk_advantages`` of consecutive groups of ``group_size`` (TRL's layout)."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.size % group_size:
        raise ValueError(f"{r.size} rewards do not split into groups of {group_size}")
    return np.concatenate([passk_advantages(g, k) for g in r.reshape(-1, group_size)])


def passk_trainer_class():
    """``GRPOTrainer`` subclass optimising pass@k (imported lazily: trl is heavy)."""
    import torch
    from trl import GRPOTrainer

    class PassAtKGRPOTrainer(GRPOTrainer):
        """GRPO on pass@``passk_k`` advantages; needs ``scale_rewards="none"`` and one reward."""

        def __init__(self, *args, passk_k: int, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            if self.scale_rewards != "none":
                raise ValueError("pass@k RL: set GRPOConfig(scale_rewards='none'); the pass@k "
                                 "advantages are already normalised")
            if len(self.reward_funcs) != 1:
                raise ValueError("pass@k RL takes one 0/1 reward function (the verifier)")
            if not 1 <= passk_k <= self.num_generations:
                raise ValueError(f"pass@k RL: k={passk_k} must be in [1, num_generations="
                                 f"{self.num_generations}]")
            self.passk_k = passk_k

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            # TRL gathers the rewards of every process here, so groups are whole.
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            group = (self.num_generations if self.model.training
                     else self.num_generations_eval)
            adv = grouped_passk_advantages(rewards[:, 0].float().cpu().numpy(), group,
                                           min(self.passk_k, group))
            out = rewards.clone()
            out[:, 0] = torch.as_tensor(adv, dtype=out.dtype, device=out.device)
            return out

    return PassAtKGRPOTrainer
