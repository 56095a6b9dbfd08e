"""Hand-checked BeamIndex cases: refresh/churn arithmetic, queries, the trie, and clear errors on
bad input or a corrupt saved index."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pitrec.index.beam_index import BeamIndex, BeamIndexError
from pitrec.index.index_state import group_rows
from pitrec.tokenizers import SidTable

SIZES = [3, 4]


@pytest.fixture()
def index() -> BeamIndex:
    # items 0 and 1 collide on SID (0, 1)
    return BeamIndex.from_sid_table(SidTable(np.array([[0, 1], [0, 1], [2, 3], [1, 0]]), SIZES), max_sids_per_item=2)


def test_from_sid_table_and_stats(index: BeamIndex) -> None:
    assert np.array_equal(index.primary_codes(), [[0, 1], [0, 1], [2, 3], [1, 0]])
    s = index.stats()
    assert (s["edges"], s["sids"], s["items_per_sid_max"], s["sids_per_item_max"]) == (4, 3, 2, 1)
    assert s["colliding_sid_share"] == pytest.approx(1 / 3) and s["primary_collision_share"] == 0.5
    items, _ = index.items_for_sids(np.array([[0, 1], [2, 2]]))
    assert items.tolist() == [[0, 1], [-1, -1]]


def test_record_selections_reorders_and_adds(index: BeamIndex) -> None:
    v = index.version
    assert index.record_selections(torch.tensor([0, 0, 1]), torch.tensor([[1, 1], [1, 1], [0, 1]])) == 1
    assert index.version == v + 1
    items, codes, weights = index.edges()
    assert items.tolist() == [0, 0, 1, 2, 3]
    assert codes[:2].tolist() == [[1, 1], [0, 1]] and weights.tolist() == [2, 1, 2, 1, 1]
    assert index.primary_codes()[0].tolist() == [1, 1]  # chosen twice: now the primary SID


def test_recording_known_edges_reorders_by_weight_and_keeps_the_sid_counts(index: BeamIndex) -> None:
    """Co-evolution's selections are edges already: that path must not rebuild the SID -> item
    counts (a sort of every edge per step), yet reorder the touched items as any record does."""
    index.refresh(np.array([2]), np.array([[[0, 1]]]))  # item 2: (2, 3) then (0, 1); (0, 1) now has 3 items
    counts = index.sid_item_counts(np.array([[0, 1], [2, 3]]))
    view = index._sid_count_cache
    v = index.version
    assert index.record_selections([2, 2, 0], [[0, 1], [0, 1], [0, 1]]) == 0
    assert index.version == v + 1 and index._sid_count_cache is view
    assert np.array_equal(index.sid_item_counts(np.array([[0, 1], [2, 3]])), counts) and counts.tolist() == [3, 1]
    items, codes, weights = index.edges()
    assert codes[items == 2].tolist() == [[0, 1], [2, 3]] and weights[items == 2].tolist() == [3, 1]
    assert weights[items == 0].tolist() == [2]
    index.record_selections([3], [[2, 2]])  # a new edge: the counts are rebuilt
    assert index._sid_count_cache is None and index.sid_item_counts(np.array([[2, 2]])).tolist() == [1]


def test_refresh_keeps_incumbent_on_ties_and_reports_churn(index: BeamIndex) -> None:
    cand = np.array([[[2, 2], [2, 3]], [[1, 1], [0, 0]]])
    churn = index.refresh(np.array([2, 3]), cand, np.array([[0.0, -1.0], [-0.5, -0.2]]))
    items, codes, _ = index.edges()
    assert codes[items == 2].tolist() == [[2, 3], [2, 2]]  # incumbent stays primary at equal weight
    assert codes[items == 3].tolist() == [[1, 0], [0, 0]]  # cap 2: the better-scored newcomer wins
    assert churn == {"primary_changed": 0.0, "edges_added": 0.5, "edges_removed": 0.0, "items_refreshed": 2.0}
    index.record_selections([3, 3], [[0, 0], [0, 0]])
    index.prune(min_weight=2.0)  # drops item 2's newcomer; every item keeps its top edge
    churn = index.refresh([3], [[[1, 0]]])
    assert churn["primary_changed"] == pytest.approx(1 / 4)  # item 3: (1, 0) -> (0, 0)
    assert churn["edges_removed"] == pytest.approx(1 / 6) and churn["edges_added"] == 0.0
    assert index.stats()["churn_primary_changed"] == pytest.approx(0.25)


def test_refresh_below_primary_keeps_a_decayed_primary(index: BeamIndex) -> None:
    """After decays, an item nobody selected holds weight < new_edge_weight: by weight a proposal
    takes its primary place; below_primary it enters at the primary's weight, ranked under it."""
    index.decay(0.25)
    by_weight = BeamIndex.from_state_dict(*index.state_dict())
    by_weight.refresh([2], [[[2, 2]]])
    assert by_weight.primary_codes()[2].tolist() == [2, 2]
    assert by_weight.last_churn["primary_changed"] == pytest.approx(1 / 4)
    index.refresh([2], [[[2, 2]]], below_primary=True)
    items, codes, weights = index.edges()
    assert codes[items == 2].tolist() == [[2, 3], [2, 2]] and weights[items == 2].tolist() == [0.25, 0.25]
    assert index.last_churn["primary_changed"] == 0.0
    index.refresh([2], [[[1, 1]]], new_edge_weight=0.1, below_primary=True)  # lighter than the cap: as given
    assert index.edges()[2][index.edges()[0] == 2].tolist() == [0.25, 0.25]  # cap 2: (1, 1) at 0.1 is cut


def test_candidates_and_sid_queries(index: BeamIndex) -> None:
    index.refresh([0], [[[1, 1], [2, 2]]], [[-0.1, -0.3]], new_edge_weight=0.5, max_sids_per_item=3)
    codes, mask, weights = index.candidates(np.array([0, 2]), max_c=2)
    assert codes.shape == (2, 2, 2) and mask.tolist() == [[True, True], [True, False]]
    assert codes[0].tolist() == [[0, 1], [1, 1]] and weights.tolist() == [[1.0, 0.5], [1.0, 0.0]]
    items, w = index.items_for_sids([[2, 2], [0, 1]], max_items=3)
    assert items.tolist() == [[0, -1, -1], [0, 1, -1]] and w.tolist() == [[0.5, 0, 0], [1, 1, 0]]


def test_decay_prune_never_orphans(index: BeamIndex) -> None:
    index.record_selections([0, 0, 0], [[1, 1], [2, 2], [2, 3]])
    index.decay(0.5)
    assert index.edges()[2].max() == 0.5
    removed = index.prune(min_weight=1.0, max_per_item=1)
    assert removed == 3 and index.sids_per_item().tolist() == [1, 1, 1, 1]


def test_add_item_cold_start(index: BeamIndex) -> None:
    assert index.add_item(4, np.array([[2, 0], [0, 1]]), np.array([1.0, 3.0])) == 4
    assert index.primary_codes()[4].tolist() == [0, 1]
    assert index.items_for_sids([[0, 1]])[0].tolist() == [[4, 0, 1]]  # by weight, then item id
    with pytest.raises(BeamIndexError, match="next dense id 5"):
        index.add_item(7, [[0, 0]])
    with pytest.raises(BeamIndexError, match=r"item 5 lists SID \[0, 0\] twice"):
        index.add_item(5, [[0, 0], [0, 0]])
    assert index.n_items == 5  # a rejected add leaves the index as it was


def test_to_trie_is_one_to_many(index: BeamIndex) -> None:
    index.refresh([2], [[[0, 1]]], max_sids_per_item=2)
    trie = index.to_trie()
    leaves = trie.lookup(torch.tensor([[0, 1], [2, 3], [1, 0], [2, 2]]))
    assert leaves[-1] == -1
    items, source = trie.items_of(leaves[:3])
    assert sorted(items[source == 0].tolist()) == [0, 1, 2] and items[source == 1].tolist() == [2]


@pytest.mark.parametrize("call, message", [
    (lambda ix: ix.record_selections([0], [[3, 0]]), "level 0: code 3 outside"),
    (lambda ix: ix.record_selections([9], [[0, 0]]), "item 9 outside"),
    (lambda ix: ix.record_selections([0, 1], [[0, 0]]), "2 items but 1 SIDs"),
    (lambda ix: ix.candidates([0], 0), "max_c must be >= 1"),
    (lambda ix: ix.decay(0.0), r"factor must be in \(0, 1\]"),
    (lambda ix: ix.refresh([0], [[[0, 0]]], [[float("-inf")]]), "non-finite score"),
    (lambda ix: ix.refresh([0], [[0, 0]]), r"cand_codes must be \(1, C, 2\)"),
    (lambda ix: ix.prune(max_per_item=0), "max_per_item must be >= 1"),
])
def test_bad_arguments_are_named(index: BeamIndex, call, message: str) -> None:
    with pytest.raises(BeamIndexError, match=message):
        call(index)


def test_constructor_rejects_orphans_and_duplicates() -> None:
    with pytest.raises(BeamIndexError, match="item 1 has no SID"):
        BeamIndex(SIZES, 2, [0], [[0, 0]], [1.0])
    with pytest.raises(BeamIndexError, match="item 0 lists SID \\[0, 0\\] twice"):
        BeamIndex(SIZES, 1, [0, 0], [[0, 0], [0, 0]], [1.0, 2.0])
    with pytest.raises(BeamIndexError, match="weight -1.0"):
        BeamIndex(SIZES, 1, [0], [[0, 0]], [-1.0])


def test_state_dict_round_trip(index: BeamIndex) -> None:
    index.refresh([1], [[[2, 2]]])
    tensors, meta = index.state_dict()
    again = BeamIndex.from_state_dict(tensors, json.loads(json.dumps(meta)))
    assert all(np.array_equal(a, b) for a, b in zip(index.edges(), again.edges()))
    assert again.stats() == index.stats()
    # churn keeps counting from the same reference after a resume
    assert again.refresh([1], [[[2, 2]]]) == index.refresh([1], [[[2, 2]]])


def test_corrupt_saves_fail_clearly(index: BeamIndex, tmp_path) -> None:
    d = tmp_path / "ix"
    index.save(d)
    assert json.loads((d / "index.json").read_text())["version"] == index.version
    data = bytearray((d / "edges.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (d / "edges.safetensors").write_bytes(bytes(data))
    with pytest.raises(BeamIndexError, match="edges.safetensors: checksum"):
        BeamIndex.load(d)

    index.save(d)
    meta = json.loads((d / "index.json").read_text())
    meta["n_items"] = 9  # inconsistent with the edges: items 4..8 would be orphans
    (d / "index.json").write_text(json.dumps(meta))
    with pytest.raises(BeamIndexError, match="item 4 has no SID"):
        BeamIndex.load(d)
    del meta["max_sids_per_item"]
    (d / "index.json").write_text(json.dumps(meta))
    with pytest.raises(BeamIndexError, match="index.json: field 'max_sids_per_item' missing"):
        BeamIndex.load(d)
    (d / "index.json").write_text("{not json")
    with pytest.raises(BeamIndexError, match="index.json: not valid JSON"):
        BeamIndex.load(d)
    with pytest.raises(BeamIndexError, match="missing"):
        BeamIndex.load(tmp_path / "nowhere")


@pytest.mark.parametrize("key_scale", [1, 2**58])  # the combined-key path and the lexsort fallback
def test_group_rows_groups_equal_pairs_stably(key_scale: int) -> None:
    rng = np.random.default_rng(0)
    items, keys = rng.integers(0, 5, 200), rng.integers(0, 4, 200) * key_scale
    order, first = group_rows(items, keys)
    pairs = list(zip(items[order].tolist(), keys[order].tolist()))
    assert pairs == sorted(pairs) and len(first) == len(set(pairs))
    assert all(order[j] < order[j + 1] for j in range(199) if pairs[j] == pairs[j + 1])  # stable
