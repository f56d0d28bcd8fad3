"""Imports point down: cli -> bench -> testbed -> loop -> selectors -> storage -> core;
integrations -> loop; testing (the public conformance checker) -> selectors; tasks depends on nothing
of ours; features (beside tasks) depends on core and storage only and may be used by integrations,
testbed and bench; core imports numpy and the standard library only (no I/O: files go through storage).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mopps"

# Layer -> the mopps layers it may import (itself included).
# A layer is a package folder or a single module (storage.py, testing.py).
ALLOWED = {
    "core": {"core"},
    "storage": {"core", "storage"},
    "selectors": {"core", "storage", "selectors"},
    "loop": {"core", "storage", "selectors", "loop"},
    "testing": {"core", "storage", "selectors", "testing"},
    "integrations": {"core", "storage", "selectors", "loop", "features", "integrations"},
    "tasks": {"tasks"},
    "features": {"core", "storage", "features"},
    "testbed": {"core", "storage", "selectors", "loop", "features", "testbed"},
    "bench": {"core", "storage", "selectors", "loop", "features", "testbed", "bench"},
}
CORE_THIRD_PARTY = {"numpy"}
CORE_FORBIDDEN_STDLIB = {"os", "pathlib", "io", "shutil", "tempfile", "json", "pickle"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_point_down(layer):
    module = PACKAGE / f"{layer}.py"
    paths = [module] if module.exists() else sorted((PACKAGE / layer).rglob("*.py"))
    assert paths, f"layer {layer} has no code"
    for path in paths:
        for module in imported_modules(path):
            parts = module.split(".")
            if parts[0] == "mopps" and len(parts) > 1:
                assert parts[1] in ALLOWED[layer], f"{path.relative_to(PACKAGE)} imports {module}"
            if layer == "core" and parts[0] != "mopps":
                assert parts[0] in CORE_THIRD_PARTY or parts[0] in sys.stdlib_module_names, (
                    f"{path.relative_to(PACKAGE)} imports {module}; core may use numpy only"
                )
                assert parts[0] not in CORE_FORBIDDEN_STDLIB, (
                    f"{path.relative_to(PACKAGE)} imports {module}; core does no I/O"
                )


def test_import_mopps_loads_no_framework():
    code = (
        "import sys, mopps, mopps.selectors, mopps.core.metrics, mopps.storage, mopps.testing, mopps.loop,"
        " mopps.features\n"
        "heavy = [m for m in ('torch', 'trl', 'verl', 'ray', 'transformers', 'datasets', 'scipy')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_features_layer_loads_no_framework_until_it_runs():
    # `mopps features` is registered in the cli, so `mopps --help` must not pay for torch or pyarrow.
    code = (
        "import sys, mopps.cli, mopps.features, mopps.features.columns, mopps.features.embeddings\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'pyarrow', 'pandas', 'tqdm') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
