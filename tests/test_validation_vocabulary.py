"""One validation vocabulary: a check of a scalar setting ("must be one of", "must be an integer",
"must be >= n") is a function of ``mopps.core.validation``, not a hand-written message. ``tasks``
(which imports nothing of ours) is exempt; so are the few checks below, each for its stated reason.
A new hand-written check anywhere else fails here: call ``check_choice`` / ``check_integer`` instead.
"""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mopps"
HAND_WRITTEN = re.compile(r"must be one of|must be an int(eger)?\b|must be >= ?-?\d")
EXEMPT_FILES = {"core/validation.py"}  # the vocabulary itself
EXEMPT_FOLDERS = {"tasks"}  # imports nothing of ours, by design
# (file, text of the line's message) -> why it is not a scalar check that core.validation would make.
EXEMPT_LINES = {
    ("testing.py", "a seed must be an integer >= 0 the selector owns"): "a conformance failure, not a check",
    ("selectors/contextual.py", "last_tick must be >= -1"): "element-wise check of a saved array",
    ("core/id_index.py", "integer ids must be >= 0"): "element-wise check of ids, in the id room",
    ("core/schedule.py", "ticks must be >= 0"): "a schedule's tick is a finite number, not an integer",
}


def hand_written_checks() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative in EXEMPT_FILES or relative.split("/")[0] in EXEMPT_FOLDERS:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if HAND_WRITTEN.search(line) and not any(file == relative and text in line
                                                     for file, text in EXEMPT_LINES):
                found.append(f"{relative}:{number}: {line.strip()}")
    return found


def test_no_hand_written_choice_or_integer_checks_outside_core_validation():
    assert hand_written_checks() == []


def test_the_scan_would_catch_one():
    assert HAND_WRITTEN.search('raise ValueError(f"mode = {mode!r}; must be one of {MODES}")')
    assert HAND_WRITTEN.search('raise ValueError(f"size = {size}; size must be an integer >= 1")')
    assert HAND_WRITTEN.search('raise ValueError(f"{name} = {value}; {name} must be >= 1")')
    assert all((PACKAGE / file).is_file() for file, _ in EXEMPT_LINES)
