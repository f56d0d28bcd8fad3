"""The embedded RL testbed: reversed-digit addition with exact success rates, a small transformer
policy, a cached supervised warm start and a one-file GRPO loop (``grpo.py``).

Modules import torch (``drift``, the drifting-rate simulator, does not); nothing here is imported by
``import mopps``.
"""
