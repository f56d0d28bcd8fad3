"""The one selection loop every host drives: candidate stream, selector, ledger of predictions,
evidence, metrics, dynamic sampling (``Refill``), and their state."""

from mopps.loop.evidence_log import EvidenceLog, EvidenceStream, read_evidence_log
from mopps.loop.ledger import PredictionLedger
from mopps.loop.refill import AT_CAP, Refill, RefillResult, RefillRound, TrainedGroups
from mopps.loop.selection_loop import RUNNING_TOTALS, Batch, Evidence, SelectionLoop
from mopps.loop.stream import CandidateStream

__all__ = ["AT_CAP", "Batch", "CandidateStream", "Evidence", "EvidenceLog", "EvidenceStream", "PredictionLedger",
           "Refill", "RefillResult", "RefillRound", "RUNNING_TOTALS", "SelectionLoop", "TrainedGroups",
           "read_evidence_log"]
