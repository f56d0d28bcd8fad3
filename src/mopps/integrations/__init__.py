"""Adapters that plug mopps selectors into trainers people already run.

- ``mopps.integrations.trl``: ``MoPPSGRPOTrainer`` + ``MoPPSConfig`` for TRL's ``GRPOTrainer``.

Each adapter imports its framework only when it is imported itself; ``import mopps`` stays numpy-only.
Adapters translate between a trainer's data and the selector protocol; the selection logic lives in
``mopps.selectors``.
"""
