"""Per-rollout rewards of a verl batch -> per-prompt evidence for the selector.

Rows are grouped by ``uid`` (one uid = the n rollouts of one prompt in one step), never by row
position: ``balance_batch`` reorders rows, and groups may be unequal (failed sessions, multi-output
agent loops). Each uid's prompt key comes from the caller's ``uid -> key`` map or from the rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mopps.core.evidence import SuccessRule, aggregate_rollouts


@dataclass(frozen=True)
class GroupEvidence:
    """One entry per rollout group (uid), aligned: ``uids`` list of str (g,), ``keys`` list of str
    (g,) prompt keys, ``successes`` float (g,) and ``trials`` float (g,) counted with the rule."""

    uids: list
    keys: list
    successes: np.ndarray
    trials: np.ndarray


def group_evidence(uids: Sequence, rewards, rule: SuccessRule, key_of_uid: Mapping) -> GroupEvidence:
    """Sum successes per uid and attach each uid's prompt key.

    ``uids``: (r,) the uid of each rollout, any order; ``rewards``: float (r,) the judged value of
    each rollout (e.g. ``acc``); ``key_of_uid``: uid -> prompt key. Raises ``ValueError`` naming a uid
    the map lacks.
    """
    observations = aggregate_rollouts([str(uid) for uid in uids], rewards, rule)
    keys = []
    for uid in observations.ids:
        if uid not in key_of_uid:
            raise ValueError(f"uid {uid!r} has no prompt key; every rolled-out uid must come from a selection")
        keys.append(key_of_uid[uid])
    return GroupEvidence(list(observations.ids), keys, observations.successes, observations.trials)


def key_of_uid_from_rows(uids: Sequence, keys: Sequence[str]) -> dict[str, str]:
    """``uid -> key`` from aligned rows; raises ``ValueError`` if one uid's rows carry two keys."""
    if len(uids) != len(keys):
        raise ValueError(f"len(uid) = {len(uids)} but {len(keys)} row keys; they must align")
    mapping: dict[str, str] = {}
    for row, (uid, key) in enumerate(zip(uids, keys)):
        uid = str(uid)
        if mapping.setdefault(uid, key) != key:
            raise ValueError(f"row {row}: uid {uid!r} has prompt key {key!r} but earlier rows have {mapping[uid]!r}")
    return mapping
