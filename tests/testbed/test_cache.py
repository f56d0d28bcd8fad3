"""The testbed's one warm-start cache: key scheme, integrity check, writes through ``mopps.storage``,
and the two models that use it (``warmstart``'s policy here; ``hf_tiny``'s in ``test_hf_tiny``)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from mopps.testbed import cache
from mopps.testbed.cache import MANIFEST, cache_key, entry_path, entry_problem, load_or_build, store_entry
from mopps.testbed.task import AdditionTask
from mopps.testbed.warmstart import WarmStartConfig, load_warm_start

KEY = cache_key("numbers", 1, {"count": 3})
SMALL = WarmStartConfig(task=AdditionTask(2), width=16, layers=1, heads=2, steps=2, batch_size=8)


def write(numbers, folder):
    (folder / "numbers.json").write_text(json.dumps(numbers))


def read(folder):
    return json.loads((folder / "numbers.json").read_text())


def numbers(builds: list):
    """``load_or_build`` of the entry ``numbers``-``KEY``; ``builds`` counts the builds."""
    return load_or_build("numbers", KEY, "numbers(3)", lambda: builds.append(1) or [1, 2, 3], write, read)


def test_an_entry_is_built_once_then_read_back(monkeypatch, tmp_path):
    monkeypatch.setenv("MOPPS_CACHE", str(tmp_path))
    builds = []
    assert numbers(builds) == numbers(builds) == [1, 2, 3] and builds == [1]
    path = entry_path("numbers", KEY)
    assert [item.name for item in tmp_path.iterdir()] == [path.name]  # nothing temporary left behind
    manifest = json.loads((path / MANIFEST).read_text())
    assert (manifest["key"], manifest["torch"], manifest["config"]) == (KEY, torch.__version__, "numbers(3)")
    assert set(manifest["files"]) == {"numbers.json"}


def test_the_key_covers_the_name_the_code_version_the_torch_version_and_every_setting(monkeypatch):
    keys = {KEY, cache_key("other", 1, {"count": 3}), cache_key("numbers", 2, {"count": 3}),
            cache_key("numbers", 1, {"count": 4})}
    monkeypatch.setattr(torch, "__version__", "0.0.1")
    keys.add(cache_key("numbers", 1, {"count": 3}))
    assert len(keys) == 5
    assert SMALL.key() != WarmStartConfig(task=AdditionTask(2), width=16, layers=1, heads=2, steps=2,
                                          batch_size=8, seed=1).key()


def _flip_a_byte(path):
    data = bytearray((path / "numbers.json").read_bytes())
    data[1] ^= 0x01
    (path / "numbers.json").write_bytes(bytes(data))


def _drop_the_manifest(path):
    (path / MANIFEST).unlink()


def _add_a_file(path):
    (path / "stray.bin").write_bytes(b"x")


def _other_key(path):
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["key"] = "0" * 16
    (path / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", [_flip_a_byte, _drop_the_manifest, _add_a_file, _other_key])
def test_a_damaged_entry_is_rebuilt_not_used(monkeypatch, tmp_path, damage):
    monkeypatch.setenv("MOPPS_CACHE", str(tmp_path))
    builds = []
    numbers(builds)
    path = entry_path("numbers", KEY)
    damage(path)
    assert entry_problem(path, KEY) is not None
    with pytest.warns(RuntimeWarning, match="rebuilding the cache entry"):
        assert numbers(builds) == [1, 2, 3]
    assert builds == [1, 1] and entry_problem(path, KEY) is None
    assert [item.name for item in tmp_path.iterdir()] == [path.name]


def test_a_valid_entry_stored_meanwhile_by_another_process_is_kept(monkeypatch, tmp_path):
    monkeypatch.setenv("MOPPS_CACHE", str(tmp_path))
    numbers([])
    path = entry_path("numbers", KEY)
    folder = path.stat().st_ino
    store_entry(path, KEY, "numbers(3)", lambda target: write([1, 2, 3], target))  # the rename fails: it stays
    assert path.stat().st_ino == folder and entry_problem(path, KEY) is None
    assert [item.name for item in tmp_path.iterdir()] == [path.name]


def test_a_damaged_entry_moved_aside_meanwhile_by_another_process_is_no_error(monkeypatch, tmp_path):
    monkeypatch.setenv("MOPPS_CACHE", str(tmp_path))
    numbers([])
    path = entry_path("numbers", KEY)
    _drop_the_manifest(path)
    replace = os.replace

    def raced(source, target):
        if str(source) == str(path):  # the other process got there first
            replace(source, tmp_path / "elsewhere")
        return replace(source, target)

    monkeypatch.setattr(os, "replace", raced)
    store_entry(path, KEY, "numbers(3)", lambda target: write([1, 2, 3], target))
    assert entry_problem(path, KEY) is None
    assert sorted(item.name for item in tmp_path.iterdir()) == sorted([path.name, "elsewhere"])


def test_the_testbed_warm_start_is_an_entry_of_the_same_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MOPPS_CACHE", str(tmp_path))
    built = load_warm_start(SMALL)
    path = entry_path("warmstart", SMALL.key())
    assert entry_problem(path, SMALL.key()) is None and (path / "policy.pt").is_file()
    _add_a_file(path)
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        rebuilt = load_warm_start(SMALL)
    for name, tensor in built.state_dict().items():
        assert torch.equal(tensor, rebuilt.state_dict()[name]), name
    assert cache.cache_dir() == tmp_path
