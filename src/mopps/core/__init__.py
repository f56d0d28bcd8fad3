"""Posterior arithmetic, selection rules, evidence aggregation and metrics: numpy only, no I/O."""
