"""Reinforcement learning after SFT, on TRL's GRPO: rewards from the task's verifier and pass@k.

What it handles: reward functions in TRL's calling convention (``rewards``: the verifier, and the
binding-kept reward that also asks the completion to follow the requested mode), the closed-form
pass@k advantages and the GRPO trainer that uses them (``passk``). What it leaves out: sampling
and evaluating the RL'd checkpoints, which are ordinary checkpoints to the rest of the package.
"""
