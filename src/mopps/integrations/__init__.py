"""Adapters that plug mopps selectors into trainers people already run.

- ``mopps.integrations.trl``: ``MoPPSGRPOTrainer`` + ``MoPPSGRPOConfig`` for TRL's ``GRPOTrainer``.

Each adapter imports its framework only when it is used; ``import mopps`` stays numpy-only.
Adapters translate between a trainer's rows and rewards and ``mopps.SelectionLoop``; the selection
logic lives in ``mopps.loop`` and ``mopps.selectors``.
"""
