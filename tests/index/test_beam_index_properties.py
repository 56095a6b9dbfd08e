"""Property tests: random operation sequences on a BeamIndex against a plain-Python reference.

The reference keeps, per item, an ordered list of [SID, weight] and applies the documented
rules literally; the index must agree exactly (weights are dyadic so float sums are exact), and
its invariants (no orphan, both views agree, non-negative weights, monotone version, exact
save/load) must hold after every step.
"""

from __future__ import annotations

import tempfile

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from pitrec.index.beam_index import BeamIndex

SIZES = [3, 2, 2]  # 12 possible SIDs: collisions and re-selections are frequent
sid_st = st.tuples(*(st.integers(0, s - 1) for s in SIZES))


def _stable_by_weight(entries: list[list]) -> list[list]:
    return sorted(entries, key=lambda e: -e[1])  # sorted() is stable: seniority breaks ties


class BeamIndexMachine(RuleBasedStateMachine):
    @initialize(codes=st.lists(sid_st, min_size=1, max_size=6), cap=st.integers(1, 3))
    def start(self, codes: list[tuple], cap: int) -> None:
        self.index = BeamIndex(SIZES, len(codes), np.arange(len(codes)), np.array(codes), np.ones(len(codes)),
                               max_sids_per_item=cap, new_edge_weight=1.0)
        self.ref: list[list[list]] = [[[c, 1.0]] for c in codes]
        self.last_version = self.index.version

    def _items(self) -> st.SearchStrategy:
        return st.integers(0, len(self.ref) - 1)

    @rule(data=st.data())
    def record(self, data) -> None:
        pairs = data.draw(st.lists(st.tuples(self._items(), sid_st), max_size=8))
        items = np.array([p[0] for p in pairs], dtype=np.int64)
        codes = np.array([p[1] for p in pairs], dtype=np.int64).reshape(-1, len(SIZES))
        added = self.index.record_selections(items, codes)
        n_before = sum(len(e) for e in self.ref)
        for item, sid in pairs:
            for entry in self.ref[item]:
                if entry[0] == sid:
                    entry[1] += 1.0
                    break
            else:
                self.ref[item].append([sid, 1.0])
        for item in range(len(self.ref)):
            self.ref[item] = _stable_by_weight(self.ref[item])
        assert added == sum(len(e) for e in self.ref) - n_before

    @rule(data=st.data())
    def record_known(self, data) -> None:
        """Pairs that are all edges already, as co-evolution records them: the per-step path."""
        chosen = data.draw(st.lists(st.tuples(self._items(), st.integers(0, 2)), min_size=1, max_size=8))
        pairs = [(item, self.ref[item][k % len(self.ref[item])][0]) for item, k in chosen]
        version = self.index.version
        assert self.index.record_selections(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])) == 0
        assert self.index.version == version + 1
        for item, sid in pairs:
            next(e for e in self.ref[item] if e[0] == sid)[1] += 1.0
        for item in range(len(self.ref)):
            self.ref[item] = _stable_by_weight(self.ref[item])

    @rule(factor=st.sampled_from([0.25, 0.5, 0.75, 1.0]))
    def decay(self, factor: float) -> None:
        self.index.decay(factor)
        for entries in self.ref:
            for entry in entries:
                entry[1] *= factor

    @rule(data=st.data(), cap=st.integers(1, 3), w_new=st.sampled_from([0.0, 0.5, 1.0, 2.0]), below=st.booleans())
    def refresh(self, data, cap: int, w_new: float, below: bool) -> None:
        items = data.draw(st.lists(self._items(), min_size=1, max_size=4))
        C = data.draw(st.integers(1, 3))
        cands = [[data.draw(sid_st) for _ in range(C)] for _ in items]
        scores = [[data.draw(st.sampled_from([-2.0, -1.0, -0.5, 0.0])) for _ in range(C)] for _ in items]
        mask = [[data.draw(st.booleans()) for _ in range(C)] for _ in items]
        self.index.refresh(np.array(items), np.array(cands), np.array(scores), np.array(mask),
                           new_edge_weight=w_new, max_sids_per_item=cap, below_primary=below)
        proposals: dict[int, dict[tuple, float]] = {}
        for b, item in enumerate(items):
            best = proposals.setdefault(item, {})
            for c in range(C):
                if mask[b][c]:
                    best[cands[b][c]] = max(best.get(cands[b][c], -np.inf), scores[b][c])
        for item, best in proposals.items():
            old = {e[0]: (i, e[1]) for i, e in enumerate(self.ref[item])}
            primary, top_weight = self.ref[item][0]
            w = min(w_new, top_weight) if below else w_new
            rows = [(-w_old, 0, i, 0.0, sid, w_old) for sid, (i, w_old) in old.items()]
            rows += [(-w, 1, 0, -s, sid, w) for sid, s in best.items() if sid not in old]
            self.ref[item] = [[r[4], r[5]] for r in sorted(rows)[:cap]]
            if below:  # an untested proposal never takes the primary place
                assert self.ref[item][0][0] == primary

    @rule(min_weight=st.sampled_from([0.0, 0.5, 1.0, 2.0]), cap=st.one_of(st.none(), st.integers(1, 3)))
    def prune(self, min_weight: float, cap: int | None) -> None:
        self.index.prune(min_weight, cap)
        for item, entries in enumerate(self.ref):
            kept = [e for r, e in enumerate(entries) if r == 0 or e[1] >= min_weight]
            self.ref[item] = kept[:cap] if cap is not None else kept

    @rule(codes=st.lists(sid_st, min_size=1, max_size=3, unique=True),
          weights=st.lists(st.sampled_from([0.0, 0.5, 1.0, 3.0]), min_size=3, max_size=3))
    def add_item(self, codes: list[tuple], weights: list[float]) -> None:
        w = weights[:len(codes)]
        assert self.index.add_item(len(self.ref), np.array(codes), np.array(w)) == len(self.ref)
        self.ref.append(_stable_by_weight([[c, x] for c, x in zip(codes, w)]))

    @rule()
    def save_and_load(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            self.index.save(f"{tmp}/ix")
            loaded = BeamIndex.load(f"{tmp}/ix")
        for a, b in zip(self.index.edges(), loaded.edges()):
            assert a.dtype == b.dtype and np.array_equal(a, b)
        assert loaded.version == self.index.version and loaded.n_items == self.index.n_items
        assert loaded.stats() == self.index.stats()
        self.index = loaded  # keep going from the reloaded copy: it must behave identically

    # -- invariants ------------------------------------------------------------------------
    @invariant()
    def matches_reference(self) -> None:
        items, codes, weights = self.index.edges()
        got = [[] for _ in range(self.index.n_items)]
        for i, c, w in zip(items, codes, weights):
            got[i].append([tuple(int(x) for x in c), float(w)])
        assert got == self.ref

    @invariant()
    def no_orphans_and_views_agree(self) -> None:
        idx = self.index
        assert (idx.sids_per_item() >= 1).all() and len(idx.sids_per_item()) == idx.n_items
        items, codes, weights = idx.edges()
        assert np.isfinite(weights).all() and (weights >= 0).all()
        sids, ptr, s_items, s_weights = idx.sid_groups()
        from_sid_view = sorted((int(it), tuple(sids[g]), float(w)) for g in range(len(sids))
                               for it, w in zip(s_items[ptr[g]:ptr[g + 1]], s_weights[ptr[g]:ptr[g + 1]]))
        assert from_sid_view == sorted((int(i), tuple(c), float(w)) for i, c, w in zip(items, codes, weights))
        found, _ = idx.items_for_sids(idx.primary_codes())
        assert ((found == np.arange(idx.n_items)[:, None]).any(axis=1)).all()  # every item reachable
        held = sorted({tuple(c) for c in codes} | {(0, 0, 0), (2, 1, 1)})  # and SIDs nobody may hold
        counts = idx.sid_item_counts(np.array(held))
        assert counts.tolist() == [sum(tuple(e[0]) == sid for entries in self.ref for e in entries) for sid in held]
        cand, mask, cand_w = idx.candidates(np.arange(idx.n_items), max_c=99)
        assert np.array_equal(mask.sum(axis=1), idx.sids_per_item())
        assert np.array_equal(cand[:, 0], idx.primary_codes())

    @invariant()
    def version_monotonic(self) -> None:
        assert self.index.version >= self.last_version
        self.last_version = self.index.version


BeamIndexMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=15, deadline=None,
                                             suppress_health_check=[HealthCheck.too_slow])
TestBeamIndexProperties = BeamIndexMachine.TestCase
