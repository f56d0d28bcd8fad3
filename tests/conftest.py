import sys
from pathlib import Path

# Lets tests import shared helpers (tests/conformance/selectors.py) as top-level modules.
sys.path.insert(0, str(Path(__file__).parent))

from hypothesis import settings  # noqa: E402

# CI must give the same verdict on every machine and every run: property tests draw the same
# examples each time (a failure found by exploring locally is added as an @example, not left to chance).
settings.register_profile("mopps", derandomize=True)
settings.load_profile("mopps")
