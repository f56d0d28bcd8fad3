"""``check_selector``: the conformance suite every selector passes, for your own selectors too.

Like scikit-learn's ``check_estimator``::

    from mopps import MoPPS
    from mopps.testing import check_selector

    check_selector(MoPPS)                                   # factory(seed=...) -> a fresh selector
    check_selector(lambda seed: MySelector(width=4, seed=seed))

It raises ``AssertionError`` naming the property that failed (``check_selector: [round_trip_file]
...``) and returns None when all hold. The properties, each on simulated select -> rollout -> update
-> ``policy_updated`` steps over integer and string ids:

- ``selection``: ``select`` returns k distinct positions, ``ids == candidate_ids[index]``, scores and
  predictions of shape (n,), predictions in [0, 1];
- ``determinism``: two selectors built with the same seed make the same choices;
- ``seed``: a selector whose choices depend on its generator makes different choices under
  different seeds (one that ignores its seed fails here);
- ``round_trip_memory`` / ``round_trip_file``: ``state_dict`` -> ``load_state_dict`` and ``save`` ->
  ``load`` into a selector built with another seed give the same state, and both continue with the
  same choices as the selector that never stopped (one that forgets its generator fails here);
- ``independent_loads``: one state dict loaded into two selectors gives two independent ones:
  updating and selecting with one (and giving it features, if it has ``add_features(ids, features)``)
  leaves the dict and the other selector unchanged (one whose restored state shares arrays with the
  dict, and writes into them, fails here);
- ``bad_input``: each malformed ``select`` / ``update`` / ``policy_updated`` raises ``ValueError`` naming the argument
  (and position), and leaves learned state, generator and step exactly as they were (one that
  half-applies a refused update fails here);
- ``duplicates``: repeated candidates are refused; an id repeated in one update counts as one
  observation with summed successes and trials;
- ``empty``: an empty update changes nothing; an empty candidate list is refused;
- ``k``: k == n takes every candidate, k > n and k < 1 are refused;
- ``corrupt_state``: ``load_state_dict`` refuses damaged states (bad step or tick, generator, version,
  class, truncated arrays) with ``ValueError`` and leaves the selector unchanged;
- ``seed_type``: a seed that is not an integer >= 0 (e.g. a shared ``Generator``) is refused.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mopps.selectors.base import Selection, Selector

__all__ = ["check_selector"]

_POOL, _K, _N = 120, 6, 8


def check_selector(factory: Callable[..., Selector], load_kwargs: dict[str, Any] | None = None,
                   id_kinds: tuple[str, ...] = ("int", "str")) -> None:
    """Check that the selectors ``factory`` builds follow the ``Selector`` protocol.

    ``factory(seed=s)`` must return a fresh selector seeded with the integer ``s`` (a selector class
    whose constructor takes ``seed`` works as is). ``load_kwargs``: what ``type(selector).load``
    needs besides the file (e.g. the oracle's ``success_rate``). ``id_kinds``: the id kinds the
    selector supports ("int", "str"). Raises ``AssertionError`` naming the failed property.
    """
    load_kwargs = dict(load_kwargs or {})
    for check in (_selection, _determinism, _seed, _round_trip_memory, _round_trip_file, _independent_loads,
                  _bad_input, _duplicates, _empty, _k, _corrupt_state, _seed_type):
        for id_kind in id_kinds:
            where = f"check_selector: [{check.__name__[1:]}] with {id_kind} ids"
            try:
                check(factory, id_kind, load_kwargs)
            except _Failed as failure:
                raise AssertionError(f"{where}: {failure}") from None
            except Exception as error:
                raise AssertionError(f"{where}: raised {type(error).__name__}: {error}") from error


class _Failed(Exception):
    """A property does not hold (turned into AssertionError naming the property)."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise _Failed(message)


# -- simulation ----------------------------------------------------------------------------------------

def _ids(id_kind: str, positions) -> Any:
    positions = np.asarray(positions, dtype=np.int64)
    if id_kind == "int":
        return positions * 3 + 5  # not the positions themselves: ids are not row numbers
    return [f"prompt-{position}" for position in positions.tolist()]


def _position(id_kind: str, value) -> int:
    """The pool position of one id of ``_ids``."""
    return (int(value) - 5) // 3 if id_kind == "int" else int(value.rsplit("-", 1)[1])


def _as_list(ids) -> list:
    return ids.tolist() if isinstance(ids, np.ndarray) else list(ids)


def _run(selector: Selector, steps: int, rng: np.random.Generator, id_kind: str) -> list[list]:
    """``steps`` select -> simulated rollout -> update steps; returns the chosen ids of each step."""
    rates = np.linspace(0.0, 1.0, _POOL)
    chosen = []
    for _ in range(steps):
        positions = rng.permutation(_POOL)[: 4 * _K]
        choice = selector.select(_ids(id_kind, positions), _K)
        successes = rng.binomial(_N, rates[positions[choice.index]]).astype(float)
        selector.update(choice.ids, successes, np.full(_K, float(_N)))
        selector.policy_updated()
        chosen.append(_as_list(choice.ids))
    return chosen


def _same(left, right) -> bool:
    """Deep equality of states: dicts, lists, numpy arrays (NaN equal to NaN), scalars."""
    if isinstance(left, np.ndarray) or isinstance(right, np.ndarray):
        if not (isinstance(left, np.ndarray) and isinstance(right, np.ndarray)):
            return False
        if left.shape != right.shape or left.dtype.kind != right.dtype.kind:
            return False
        return bool(np.array_equal(left, right, equal_nan=left.dtype.kind == "f"))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_same(left[key], right[key]) for key in left)
    if isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
        return len(left) == len(right) and all(_same(a, b) for a, b in zip(left, right))
    if isinstance(left, float) and isinstance(right, float) and np.isnan(left) and np.isnan(right):
        return True
    return type(left) is type(right) and left == right


def _differences(before: dict, after: dict) -> str:
    keys = [key for key in ("step", "rng", "arrays", "config") if not _same(before.get(key), after.get(key))]
    return ", ".join(keys) or "nothing"


def _trained(factory, id_kind: str, seed: int = 0, steps: int = 3) -> Selector:
    selector = factory(seed=seed)
    _run(selector, steps, np.random.default_rng(100 + seed), id_kind)
    return selector


# -- the properties ------------------------------------------------------------------------------------

def _selection(factory, id_kind, load_kwargs) -> None:
    selector = _trained(factory, id_kind)
    candidates = _ids(id_kind, np.arange(10, 40))
    choice = selector.select(candidates, 7)
    _require(isinstance(choice, Selection), f"select returned a {type(choice).__name__}, not a Selection")
    index = np.asarray(choice.index)
    _require(index.dtype == np.int64 and index.shape == (7,), f"index has dtype {index.dtype}, shape {index.shape}; "
             "it must be int64 of shape (k,)")
    _require(len(set(index.tolist())) == 7 and bool(((index >= 0) & (index < 30)).all()),
             f"index {index.tolist()} must hold k distinct positions into candidate_ids")
    expected = [_as_list(candidates)[position] for position in index.tolist()]
    _require(_as_list(choice.ids) == expected, "ids must equal candidate_ids[index]")
    _require(np.shape(choice.scores) == (30,), f"scores has shape {np.shape(choice.scores)}; it must be (n,)")
    if choice.predicted_rate is not None:
        predicted = np.asarray(choice.predicted_rate)
        _require(predicted.shape == (30,), f"predicted_rate has shape {predicted.shape}; it must be (n,)")
        _require(bool(((predicted >= 0.0) & (predicted <= 1.0)).all()), "predicted_rate must lie in [0, 1]")


def _determinism(factory, id_kind, load_kwargs) -> None:
    first = _run(factory(seed=3), 6, np.random.default_rng(1), id_kind)
    second = _run(factory(seed=3), 6, np.random.default_rng(1), id_kind)
    _require(first == second, "two selectors built with the same seed chose differently on the same input")


def _seed(factory, id_kind, load_kwargs) -> None:
    seeded_1 = _run(factory(seed=1), 6, np.random.default_rng(1), id_kind)
    seeded_2 = _run(factory(seed=2), 6, np.random.default_rng(1), id_kind)
    if seeded_1 != seeded_2:
        return
    # Same choices under two seeds: fine for a deterministic rule (greedy, oracle), not for a selector
    # whose choices depend on its generator. Give a seed-1 selector another generator state and see.
    selector = factory(seed=1)
    state = selector.state_dict()
    state["rng"] = np.random.default_rng(12345).bit_generator.state
    selector.load_state_dict(state)
    other_generator = _run(selector, 6, np.random.default_rng(1), id_kind)
    _require(other_generator == seeded_1,
             "seeds 1 and 2 give the same choices, but another generator state changes them: "
             "the constructor ignores its seed")


def _round_trip_memory(factory, id_kind, load_kwargs) -> None:
    def restored(stopped):
        resumed = factory(seed=99)
        _run(resumed, 2, np.random.default_rng(8), id_kind)  # has state of its own, to be replaced
        resumed.load_state_dict(stopped.state_dict())
        return resumed

    _resumes_like_uninterrupted(factory, id_kind, restored, "load_state_dict", "restored with load_state_dict")


def _round_trip_file(factory, id_kind, load_kwargs) -> None:
    def restored(stopped):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "state.npz"
            stopped.save(path)
            resumed = type(stopped).load(path, **load_kwargs)
        _require(type(resumed) is type(stopped), f"load returned a {type(resumed).__name__}")
        return resumed

    _resumes_like_uninterrupted(factory, id_kind, restored, "save/load", "saved and loaded from a file")


def _resumes_like_uninterrupted(factory, id_kind, restored, after: str, how: str) -> None:
    """A selector stopped after 4 rounds and brought back by ``restored(stopped)`` must hold the
    stopped one's state and make, over the next 6 rounds, the choices of one that never stopped."""
    reference = _run(factory(seed=5), 10, np.random.default_rng(7), id_kind)
    stopped = factory(seed=5)
    rng = np.random.default_rng(7)
    before = _run(stopped, 4, rng, id_kind)
    resumed = restored(stopped)
    _require(_same(resumed.state_dict(), stopped.state_dict()),
             f"after {after} the state differs in {_differences(stopped.state_dict(), resumed.state_dict())}")
    _require(before + _run(resumed, 6, rng, id_kind) == reference,
             f"a selector {how} chose differently from the one that never stopped")


def _feature_rows(positions) -> np.ndarray:
    """A fixed, finite feature row per pool position, float (m, 3)."""
    positions = np.asarray(positions, dtype=np.float64)
    return np.stack([np.sin(positions), np.cos(positions), positions / _POOL], axis=1)


def _independent_loads(factory, id_kind, load_kwargs) -> None:
    source = factory(seed=4)
    takes_features = callable(getattr(source, "add_features", None))
    if takes_features:
        source.add_features(_ids(id_kind, np.arange(0, _POOL, 2)), _feature_rows(np.arange(0, _POOL, 2)))
    rng = np.random.default_rng(4)
    chosen = _run(source, 3, rng, id_kind)
    # Prompts the state already holds (rolled out above): evidence and features for them can be written
    # into the restored arrays in place, which is where a shared array shows.
    held = np.unique([_position(id_kind, value) for step in chosen for value in step])
    without_features = held[held % 2 == 1]
    saved = source.state_dict()
    kept = copy.deepcopy(saved)
    first, second = factory(seed=0), factory(seed=0)
    first.load_state_dict(saved)
    second.load_state_dict(saved)
    before = second.state_dict()
    _require(_same(before, kept), "after load_state_dict the state differs from the state dict")
    if takes_features:
        first.add_features(_ids(id_kind, without_features), _feature_rows(without_features))
    first.update(_ids(id_kind, held), np.full(len(held), 1.0), np.full(len(held), 2.0))
    _run(first, 2, rng, id_kind)
    _require(_same(saved, kept), f"using a selector changed the state dict it was loaded from, in "
             f"{_differences(kept, saved)}: the restored state shares arrays with the dict")
    after = second.state_dict()
    _require(_same(after, before), f"using one of two selectors loaded from one state dict changed the other's "
             f"{_differences(before, after)}: the restored state shares arrays with the dict")


def _bad_calls(id_kind: str) -> list[tuple[str, Callable[[Selector], Any]]]:
    ids = _ids(id_kind, [1, 2, 3])
    candidates = _ids(id_kind, np.arange(10))
    other_kind = ["a", "b"] if id_kind == "int" else [1, 2]
    repeated = _as_list(_ids(id_kind, [1, 2, 3, 4])) + _as_list(_ids(id_kind, [2]))
    calls = [
        ("k", lambda s: s.select(candidates, 0)),
        ("k", lambda s: s.select(candidates, 11)),
        ("k", lambda s: s.select(candidates, 2.5)),
        ("empty", lambda s: s.select([], 1)),
        ("candidate_ids[4]", lambda s: s.select(repeated, 2)),
        ("candidate_ids", lambda s: s.select(np.array([0.5, 1.5]), 1)),
        ("candidate_ids[1]", lambda s: s.select([_as_list(candidates)[0], other_kind[0]], 1)),
        ("successes[1]", lambda s: s.update(ids, [1.0, np.nan, 2.0], [8, 8, 8])),
        ("successes[0]", lambda s: s.update(ids, [np.inf, 1.0, 2.0], [8, 8, 8])),
        ("successes[2]", lambda s: s.update(ids, [1.0, 1.0, -1.0], [8, 8, 8])),
        ("successes[1]", lambda s: s.update(ids, [1.0, 9.0, 1.0], [8, 8, 8])),
        ("trials[0]", lambda s: s.update(ids, [0.0, 1.0, 1.0], [0, 8, 8])),
        ("trials[2]", lambda s: s.update(ids, [0.0, 1.0, 1.0], [8, 8, np.nan])),
        ("len(ids)", lambda s: s.update(ids, [1.0, 1.0], [8, 8])),
        ("len(successes)", lambda s: s.update(ids, [1.0, 1.0, 1.0], [8, 8])),
        ("ticks", lambda s: s.policy_updated(0)),
        ("ticks", lambda s: s.policy_updated(1.5)),
    ]
    if id_kind == "int":
        calls.append(("ids[0]", lambda s: s.update([-4, 2, 3], [1.0, 1.0, 1.0], [8, 8, 8])))
        calls.append(("candidate_ids[1]", lambda s: s.select(np.array([3, -1, 5]), 1)))
    return calls


def _bad_input(factory, id_kind, load_kwargs) -> None:
    selector = _trained(factory, id_kind)
    for expected, call in _bad_calls(id_kind):
        before = selector.state_dict()
        message = None
        try:
            call(selector)
        except ValueError as error:
            message = str(error)
        after = selector.state_dict()
        _require(_same(after, before), f"a call with bad {expected} changed the selector's "
                 f"{_differences(before, after)}")
        _require(message is not None, f"bad {expected} was accepted without a ValueError")
        _require(expected in message, f"the ValueError for bad {expected} does not name it: {message!r}")


def _duplicates(factory, id_kind, load_kwargs) -> None:
    combined = factory(seed=0)
    combined.update(_ids(id_kind, [7, 7, 9]), [1.0, 2.0, 0.0], [4.0, 4.0, 2.0])
    single = factory(seed=0)
    single.update(_ids(id_kind, [7, 9]), [3.0, 0.0], [8.0, 2.0])
    _require(_same(combined.state_dict(), single.state_dict()),
             "an id repeated in one update must count as one observation with summed successes and trials")


def _empty(factory, id_kind, load_kwargs) -> None:
    selector = _trained(factory, id_kind)
    before = selector.state_dict()
    selector.update([], [], [])
    after = selector.state_dict()
    _require(_same(after, before), f"an empty update changed the selector's {_differences(before, after)}")


def _k(factory, id_kind, load_kwargs) -> None:
    selector = _trained(factory, id_kind)
    candidates = _ids(id_kind, [4, 8, 15])
    choice = selector.select(candidates, 3)
    _require(sorted(_as_list(choice.ids)) == sorted(_as_list(candidates)), "k == len(candidate_ids) must take all")


def _corruptions(state: dict):
    yield "step 'x'", {**state, "step": "x"}
    yield "step -5", {**state, "step": -5}
    yield "step 2.7", {**state, "step": 2.7}
    yield "step None", {**state, "step": None}
    yield "tick -1", {**state, "tick": -1}
    yield "tick 1.5", {**state, "tick": 1.5}
    yield "a bad generator state", {**state, "rng": {"bit_generator": "PCG64", "state": "nonsense"}}
    yield "another format version", {**state, "version": 99}
    yield "another selector class", {**state, "selector": "SomethingElse"}
    yield "another config", {**state, "config": {**state["config"], "not_an_option": 1}}
    yield "arrays that are not a dict", {**state, "arrays": [1, 2]}
    arrays = state["arrays"]
    if arrays:
        yield "no arrays", {**state, "arrays": {}}
    for key, value in arrays.items():
        if isinstance(value, np.ndarray) and len(value):
            yield f"a truncated {key!r}", {**state, "arrays": {**arrays, key: value[:-1]}}


def _corrupt_state(factory, id_kind, load_kwargs) -> None:
    source = _trained(factory, id_kind, seed=1)
    target = _trained(factory, id_kind, seed=7, steps=2)
    before = target.state_dict()
    for what, corrupt in _corruptions(source.state_dict()):
        try:
            target.load_state_dict(corrupt)
        except ValueError:
            pass
        else:
            raise _Failed(f"load_state_dict accepted a state with {what}")
        after = target.state_dict()
        _require(_same(after, before), f"a refused state ({what}) changed the selector's {_differences(before, after)}")


def _seed_type(factory, id_kind, load_kwargs) -> None:
    for seed in (-1, np.random.default_rng(0)):
        try:
            factory(seed=seed)
        except ValueError as error:
            _require("seed" in str(error), f"the ValueError for seed = {seed!r} does not name seed: {error}")
        else:
            raise _Failed(f"seed = {seed!r} was accepted; a seed must be an integer >= 0 the selector owns")
