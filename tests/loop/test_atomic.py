"""``SelectionLoop.atomic``: a block that raises leaves every field of ``state_dict()`` as it found it.

The checks walk the whole state dict, so a field added to the loop's (or a selector's) state later is
covered without editing this file: if the block changes it and the undo forgets it, the state after
the undo differs from the state before.
"""

from __future__ import annotations

import numpy as np
import pytest
from conformance.selectors import SELECTORS

from mopps import MoPPS, Refill, SelectionLoop
from mopps.testing import _same

N_PROMPTS = 30
FEATURES = np.random.default_rng(7).standard_normal((N_PROMPTS, 3))
CONSTANT = {"format", "version", "config"}  # state fields no call of the loop may change


class Interrupted(Exception):
    """What the blocks below raise."""


def make_loop(name: str, id_kind: str, seed: int = 0) -> SelectionLoop:
    factory, _ = SELECTORS[name]
    ids = np.arange(N_PROMPTS) * 7 + 1
    prompt_ids = ids if id_kind == "int" else [f"prompt/{value}" for value in ids.tolist()]
    return SelectionLoop(factory(seed), prompt_ids, ts_ratio=2, seed=seed)


def play(loop: SelectionLoop, rows: slice, rng: np.random.Generator, rounds: int = 3) -> None:
    """Everything a host does through the loop: features of dataset ``rows`` (a prompt's features are
    given once), choosing, evidence (some of it late, some rollouts without a verdict, some for
    prompts that were not chosen). Every prompt gets evidence first, so a selector that keeps a row
    per prompt writes its later updates into arrays it already holds (in place, for MoPPS)."""
    loop.add_features(loop.ids_at(np.arange(N_PROMPTS)[rows]), FEATURES[rows])
    loop.observe(loop.ids_at(np.arange(N_PROMPTS)), (rng.random(N_PROMPTS) < 0.5).astype(float))
    batches = [loop.next(4) for _ in range(rounds)]
    for batch in batches[:-1]:  # the last batch stays open: its predictions are in the ledger
        prompt_ids = np.repeat(np.asarray(batch.ids, dtype=object), 4)
        rewards = (rng.random(len(prompt_ids)) < 0.5).astype(float)
        has_verdict = np.arange(len(prompt_ids)) % 5 != 0
        loop.observe(list(prompt_ids) if isinstance(batch.ids, list) else prompt_ids.astype(np.int64),
                     rewards, has_verdict)


def leaves(state, path=()):
    """``(path, value)`` of every leaf of a state dict (dicts walked key by key)."""
    if isinstance(state, dict):
        for key, value in state.items():
            yield from leaves(value, path + (key,))
    else:
        yield path, state


def differing(left: dict, right: dict) -> list[tuple]:
    right_leaves = dict(leaves(right))
    left_leaves = dict(leaves(left))
    return sorted(path for path in left_leaves.keys() | right_leaves.keys()
                  if path not in left_leaves or path not in right_leaves
                  or not _same(left_leaves[path], right_leaves[path]))


@pytest.mark.parametrize("id_kind", ["int", "str"])
@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_a_block_that_raises_restores_every_field_of_the_state(name, id_kind):
    rng = np.random.default_rng(1)
    loop = make_loop(name, id_kind)
    play(loop, slice(0, 15), rng)
    before = loop.state_dict()
    with pytest.raises(Interrupted):
        with loop.atomic():
            play(loop, slice(15, None), rng)
            inside = loop.state_dict()
            raise Interrupted
    assert differing(before, inside), "the block changed nothing: the check below would prove nothing"
    assert differing(before, loop.state_dict()) == []
    # And the loop goes on exactly as an identical loop that never ran the block.
    twin = make_loop(name, id_kind)
    twin.load_state_dict(before)
    assert _same(loop.next(4).ids, twin.next(4).ids)


def test_the_block_reaches_every_field_the_loop_and_its_selector_keep():
    """The check above is only as good as the block's reach: it must change every field that is not
    configuration, so a field added later (and changed by the loop's calls) is exercised too."""
    rng = np.random.default_rng(1)
    loop = make_loop("contextual", "str")
    play(loop, slice(0, 15), rng)
    before = loop.state_dict()
    play(loop, slice(15, None), rng)
    changed = {path[0] for path in differing(before, loop.state_dict())}
    assert changed == set(before) - CONSTANT
    selector_changed = {path[1] for path in differing(before, loop.state_dict()) if path[0] == "selector"}
    assert selector_changed == set(before["selector"]) - CONSTANT - {"selector"}


def test_nested_blocks_undo_their_own_part_and_learning_before_them_stays():
    loop = SelectionLoop(MoPPS(seed=0), np.arange(20), seed=0)
    rng = np.random.default_rng(0)
    with loop.atomic():
        batch = loop.next(20)  # every prompt: MoPPS holds a row for each from here on
        loop.observe(np.repeat(batch.ids, 2), (rng.random(40) < 0.5).astype(float))
        after_outer = loop.state_dict()
        with pytest.raises(Interrupted):
            with loop.atomic():
                batch = loop.next(4)
                loop.observe(np.repeat(batch.ids, 2), np.ones(8))  # MoPPS writes into its arrays here
                raise Interrupted
        assert differing(after_outer, loop.state_dict()) == []
    assert differing(after_outer, loop.state_dict()) == []  # the outer block did not raise: it stays


def test_an_outer_block_that_raises_after_an_inner_one_failed_restores_its_own_start():
    # The inner block's undo restores a record the outer block's snapshot shares; a write after it in
    # the outer block must not go into that shared record.
    loop = SelectionLoop(MoPPS(seed=0), np.arange(20), seed=0)
    loop.observe(np.repeat(np.arange(20), 2), np.tile([0.0, 1.0], 20))  # a row per prompt: in-place writes
    before = loop.state_dict()
    with pytest.raises(Interrupted):
        with loop.atomic():
            with pytest.raises(Interrupted):
                with loop.atomic():
                    loop.observe(np.arange(20), np.ones(20))
                    raise Interrupted
            loop.observe(np.arange(20), np.zeros(20))  # writes after the inner undo
            raise Interrupted
    assert differing(before, loop.state_dict()) == []


def test_three_nested_blocks_where_the_innermost_fails_and_is_caught_keep_the_outermost_undo():
    loop = SelectionLoop(MoPPS(seed=0), np.arange(20), seed=0)
    loop.observe(np.repeat(np.arange(20), 2), np.tile([0.0, 1.0], 20))
    before = loop.state_dict()
    with pytest.raises(Interrupted):
        with loop.atomic():
            with loop.atomic():
                with pytest.raises(Interrupted):
                    with loop.atomic():
                        loop.observe(np.arange(20), np.ones(20))
                        raise Interrupted
            loop.observe(np.arange(20), np.zeros(20))  # the middle block ended normally; the outer holds
            raise Interrupted
    assert differing(before, loop.state_dict()) == []
    assert loop.selector._snapshots == []  # every block released its snapshot


def test_a_selector_owns_its_snapshot_and_direct_calls_inside_a_block_are_undone():
    loop = SelectionLoop(MoPPS(seed=0), np.arange(10), seed=0)
    loop.observe(np.arange(10), np.ones(10))
    before = loop.state_dict()
    with pytest.raises(Interrupted):
        with loop.atomic():
            loop.selector.update(np.arange(10), np.zeros(10), np.ones(10))  # not through the loop
            loop.selector.select(np.arange(10), 3)
            raise Interrupted
    assert differing(before, loop.state_dict()) == []
    snapshot = loop.selector.snapshot()
    loop.selector.update(np.arange(10), np.zeros(10), np.ones(10))
    assert snapshot.record is not loop.selector.state  # copied before the write, the snapshot kept
    loop.selector.restore(snapshot)
    assert differing(before["selector"], loop.selector.state_dict()) == []


def test_a_failed_refill_round_is_undone_by_the_loop():
    loop = SelectionLoop(MoPPS(seed=3), np.arange(10), seed=0)
    Refill(loop).fill(2, lambda batch: (np.repeat(batch.ids, 4), np.tile([0.0, 1.0], 2 * len(batch))))
    before = loop.state_dict()

    def dies(batch):
        raise RuntimeError("rollout worker died")

    with pytest.raises(RuntimeError):
        Refill(loop).fill(2, dies)
    assert differing(before, loop.state_dict()) == []


def test_a_state_loaded_inside_a_block_that_raises_is_undone_too():
    rng = np.random.default_rng(2)
    loop, other = make_loop("mopps_topk", "str"), make_loop("mopps_topk", "str")
    play(loop, slice(0, 15), rng)
    play(other, slice(0, 15), rng, rounds=5)
    before = loop.state_dict()
    with pytest.raises(Interrupted):
        with loop.atomic():
            loop.load_state_dict(other.state_dict())
            assert differing(before, loop.state_dict())
            raise Interrupted
    assert differing(before, loop.state_dict()) == []
