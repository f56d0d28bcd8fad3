import sys
from pathlib import Path

# Lets tests import shared helpers (tests/conformance/selectors.py) as top-level modules.
sys.path.insert(0, str(Path(__file__).parent))
