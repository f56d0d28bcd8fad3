"""The one selection loop every host drives: candidate stream, selector, ledger of predictions,
evidence, metrics, dynamic sampling (``Refill``), rollout allocation (``Allocation``), and their state."""

from mopps.loop.allocation import (
    Allocation,
    AllocationResult,
    PilotCommit,
    PosteriorPilot,
    ReinforceAda,
    RolloutRequest,
    SpeedScreen,
)
from mopps.loop.evidence_log import EvidenceLog, EvidenceStream, read_evidence_log
from mopps.loop.ledger import PredictionLedger
from mopps.loop.refill import AT_CAP, Refill, RefillResult, RefillRound, TrainedGroups
from mopps.loop.selection_loop import RUNNING_TOTALS, Batch, Evidence, SelectionLoop
from mopps.loop.stream import CandidateStream

__all__ = ["AT_CAP", "Allocation", "AllocationResult", "PilotCommit", "PosteriorPilot", "ReinforceAda",
           "RolloutRequest", "SpeedScreen", "Batch", "CandidateStream", "Evidence", "EvidenceLog", "EvidenceStream", "PredictionLedger",
           "Refill", "RefillResult", "RefillRound", "RUNNING_TOTALS", "SelectionLoop", "TrainedGroups",
           "read_evidence_log"]
