"""PIT served: U2T beam search constrained to the one-to-many beam index, new items tokenised by
I2T from CSA's id-free item embedding, and online feedback recorded with the training rule.

Per version the engine holds the index, its compiled trie (with log q(SID | item) for the
``weighted`` aggregation) and the codes that encode history items; the models are shared."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Hashable, Sequence

import numpy as np
import torch

from pitrec.data.batches import PAD
from pitrec.decoding.explain_scores import SourceCounts, sid_log_probs
from pitrec.decoding.pit_ranker import PITRanker, RankedBeams, TextAffinity, compile_index
from pitrec.index.beam_index import BeamIndex, BeamIndexError
from pitrec.models.csa import CSA
from pitrec.models.item_to_token import ItemToToken
from pitrec.models.user_to_token import UserToToken
from pitrec.serve.catalog import Catalog
from pitrec.serve.cold_start import ItemTextRows, NewItemEmbedder, content_neighbour_sids, text_part
from pitrec.serve.engines.base import Engine, Ranked
from pitrec.serve.errors import NotSupported, finite_or_none
from pitrec.serve.loader import RunDirError, ServedRun
from pitrec.serve.schemas import SidInfo
from pitrec.train.selection import min_loss_sids
from pitrec.train.selection_baseline import SelectionBaseline


@dataclass
class PITModels:
    """What every version shares: the trained models and the warm-up SIDs."""

    run: ServedRun
    u2t: UserToToken
    i2t: ItemToToken
    csa: CSA | None
    initial_codes: torch.Tensor  # (n_trained, L), the history codes when pit.history_sids=initial
    device: torch.device
    embedder: NewItemEmbedder | None = None
    embedder_error: NotSupported | None = None
    # pit.selection_rule=relative: the edges' mean costs from the checkpoint, updated by feedback
    # (under the recommender's writer lock) and not persisted: a restart begins from the checkpoint's
    baseline: SelectionBaseline | None = None
    # where explained SIDs' log-probabilities came from, over every version (``/stats``); counts
    # from concurrent requests may race, they are diagnostics
    explain_sources: SourceCounts = field(default_factory=SourceCounts)
    trained_text: np.ndarray | None = None  # unit text rows of the trained items (content_neighbours)
    text_rows: ItemTextRows | None = None  # every item's (pit.new_item_text_affinity)

    @property
    def pc(self):
        return self.run.cfg.pit

    def new_item_embedder(self, catalog: Catalog) -> NewItemEmbedder:
        """Built on the first new item (a TF-IDF refit costs seconds), once: updates hold the
        recommender's writer lock. A run that cannot embed new text fails fast after that."""
        if self.embedder_error is not None:
            raise self.embedder_error
        if self.embedder is None:
            reference = self.csa.item_embedding.content.cpu().numpy() if self.csa is not None else None
            try:
                cfg = self.run.cfg
                widened = cfg.pit.item_content == "tokenizer_input" and self.csa is not None
                self.embedder = NewItemEmbedder(cfg.embed, catalog, reference,
                                                cfg.tokenizer.collaborative_dim if widened else 0)
            except NotSupported as exc:
                self.embedder_error = exc
                raise
        return self.embedder

    def neighbour_space(self, catalog: Catalog) -> np.ndarray:
        """The trained items' text vectors, for ``pit.new_item_sids=content_neighbours``: CSA's
        saved content rows, the space the service embeds new text in."""
        if self.trained_text is None:
            if self.csa is None:
                raise NotSupported("pit.new_item_sids=content_neighbours needs the trained items' content vectors, "
                                   "which only CSA saves (this run has pit.csa=false); use pit.new_item_sids=i2t")
            embedder = self.new_item_embedder(catalog)
            content = self.csa.item_embedding.content.cpu().numpy()[:len(self.initial_codes)]
            self.trained_text = text_part(content, embedder.collaborative_dim)
        return self.trained_text

    def item_text_rows(self) -> ItemTextRows:
        """Every item's unit text row, built on first use (``pit.new_item_text_affinity``)."""
        if self.text_rows is None:
            catalog = self.run.catalog  # the service's own: items added online are appended to it

            def embed(item: int) -> np.ndarray:
                vector = self.new_item_embedder(catalog)(catalog, catalog.texts[item], list(catalog.attributes[item]),
                                                         catalog.ids[item])
                return text_part(vector, self.embedder.collaborative_dim)[0]

            self.text_rows = ItemTextRows(self.neighbour_space(catalog), embed, self.device)
        return self.text_rows

    def added_item_weight_key(self) -> str:
        """The ``pit.`` setting that scales items added since training, the one of the run's placement rule."""
        return "neighbour_item_weight" if self.pc.new_item_sids == "content_neighbours" else "added_item_weight"

    def added_item_weight(self) -> float:
        return getattr(self.pc, self.added_item_weight_key())


class PITEngine(Engine):
    method = "pit"

    def __init__(self, models: PITModels, index: BeamIndex):
        self.models, self.index = models, index
        self.version, self.n_items = index.version, index.n_items
        self.trie, self.edge_log_q = compile_index(index, models.pc.one_to_many, models.device)
        if models.pc.history_sids == "primary":
            codes = index.primary_codes()
        else:  # items added online have no warm-up SID: their strongest SID encodes them
            trained = len(models.initial_codes)
            codes = np.concatenate([models.initial_codes.cpu().numpy(), index.primary_codes()[trained:]])
        self.history_codes = torch.from_numpy(codes).to(models.device)
        self.item_log_prior = added_item_prior(self.n_items, len(models.initial_codes), models.added_item_weight(),
                                               models.device)

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, run: ServedRun, device: str | torch.device) -> "PITEngine":
        cfg, device = run.cfg, torch.device(device)
        flat, extra = run.model_tensors(), run.extra_tensors()
        index = _trained_index(run, extra)
        n = len(run.catalog)
        if index.n_items != n:
            raise RunDirError(f"{run.path}: the beam index has {index.n_items} items, catalog.json.gz {n}")
        sizes = list(index.codebook_sizes)
        # the items trained with an id row (cold-start items added since have none)
        id_rows = flat.get("u2t.item_emb.weight")
        u2t = UserToToken(sizes, cfg.u2t, n if id_rows is None else int(id_rows.shape[0]) - 1)
        if cfg.pit.new_item_text_affinity > 0 and not cfg.pit.csa:
            raise RunDirError(f"{run.path}: pit.new_item_text_affinity needs the trained items' content vectors, "
                              "which only CSA saves (this run has pit.csa=false); serve it with "
                              "pit.new_item_text_affinity=0")
        csa = None
        if cfg.pit.csa:
            content = flat.get("csa.item_embedding.content")
            if content is None or content.shape[0] != n:
                raise RunDirError(f"{run.checkpoint}/model.safetensors: CSA content embeddings for {n} items missing")
            csa = CSA(content, run.catalog.attributes, len(run.catalog.attribute_ids), cfg.u2t.d_model, cfg.csa,
                      item_popularity=np.ones(n))  # popularity only shapes training negatives
        item_dim = int(flat["i2t.item_proj.weight"].shape[1])  # X_i, or [X_i; content] (pit.i2t_content)
        i2t = ItemToToken(item_dim, sizes, cfg.i2t)
        modules = {"u2t": u2t, "i2t": i2t, **({"csa": csa} if csa is not None else {})}
        run.load_modules(modules)
        for m in modules.values():
            m.to(device).eval()
        initial = extra.get("sid_codes", torch.from_numpy(index.primary_codes()))
        models = PITModels(run, u2t, i2t, csa, initial.to(device), device, baseline=_selection_baseline(run, extra, sizes))
        return cls(models, index)

    # -- ranking -----------------------------------------------------------------------------
    def ranker(self) -> PITRanker:
        """A ranker with this version's index and the run's decoding settings."""
        m = self.models
        trained, affinity = len(m.initial_codes), None
        if m.pc.new_item_text_affinity > 0 and self.n_items > trained:
            affinity = TextAffinity(m.item_text_rows().first(self.n_items), trained,
                                    m.pc.new_item_text_affinity, m.pc.new_item_text_affinity_history)
        return PITRanker.from_config(m.pc, m.u2t, self.history_codes, self.trie, self.edge_log_q, self.item_log_prior,
                                     affinity)

    @torch.no_grad()
    def rank(self, history: torch.Tensor, k: int, exclude_history: bool, explain: bool = True) -> list[list[Ranked]]:
        history = history.to(self.models.device)
        ranked = self.ranker().rank_with_beams(history, k, exclude_history)
        explained = iter(self._explain(ranked, explain))
        return [[Ranked(i, s, next(explained)) for i, s in zip(row_items, row_scores) if i >= 0]
                for row_items, row_scores in zip(ranked.items.tolist(), ranked.scores.tolist())]

    def _explain(self, ranked: RankedBeams, score_all: bool = True) -> list[list[SidInfo]]:
        """For each returned item (row-major, valid ones only): its SIDs in this version with the
        edge weight and log P(SID | history), the terms its score aggregates, most likely first.

        The log-probabilities come from what the user's search computed where it can
        (``explain_scores``: on beauty with sibling SIDs, 13 of the 40 SIDs of a user's top 10 are
        read off the search and the other 27 take one decoder step each). Without ``score_all``
        only single-SID items are scored (their beam's score, free) and multi-SID items' SIDs carry
        their weights only (log_prob None).
        """
        m, items = self.models, ranked.items
        valid = items >= 0
        flat = items[valid].cpu().numpy()
        if not len(flat):
            return []
        width = self.index.n_edges if m.pc.one_to_many else 1  # the trie holds only primaries otherwise
        cand, mask, weights = self.index.candidates(flat, width)
        wanted = mask if score_all else mask & (mask.sum(1) == 1)[:, None]
        user_of = np.repeat(np.arange(len(items)), valid.sum(1).cpu().numpy())
        log_p = np.full(mask.shape, -np.inf, dtype=np.float32)
        jj, cc = np.nonzero(wanted)
        if len(jj):
            log_p[jj, cc] = sid_log_probs(
                m.u2t, ranked, torch.from_numpy(user_of[jj]).to(m.device), torch.from_numpy(cand[jj, cc]).to(m.device),
                self.trie, m.pc.last_level == "renormalized", m.explain_sources).cpu().numpy()
        out = []
        for r in range(len(flat)):
            cols = np.flatnonzero(mask[r])
            cols = cols[np.argsort(-log_p[r, cols], kind="stable")]
            out.append([SidInfo(sid=sid, weight=w, log_prob=finite_or_none(lp))
                        for sid, w, lp in zip(cand[r, cols].tolist(), weights[r, cols].astype(float).tolist(),
                                              log_p[r, cols].tolist())])
        return out

    def item_sids(self, item: int) -> list[SidInfo]:
        codes, mask, weights = self.index.candidates(np.array([item]), self.index.n_edges)
        return [SidInfo(sid=codes[0, c].tolist(), weight=float(weights[0, c])) for c in np.flatnonzero(mask[0])]

    def stats(self) -> dict[str, Any]:
        s = self.index.stats()
        return {"sids": s["sids"], "edges": s["edges"],
                "collisions": {k: float(s[k]) for k in ("colliding_sid_share", "primary_collision_share",
                                                        "items_per_sid_mean", "items_per_sid_max")},
                "index": {k: s[k] for k in ("sids_per_item_mean", "sids_per_item_max", "weight_total")},
                "explanations": asdict(self.models.explain_sources)}

    # -- updates -----------------------------------------------------------------------------
    @torch.no_grad()
    def with_new_item(self, catalog: Catalog, raw_id: Hashable, title: str, attributes: Sequence[int]
                      ) -> tuple["PITEngine", dict[str, Any]]:
        """Cold start: content vector of the text -> X from CSA without an id row -> I2T beam
        search proposes ``pit.candidates`` SIDs -> the item enters the index with the plausible
        ones (a SID already held by ``max_items_per_sid`` items says nothing about this one and is
        skipped, as at a training refresh, unless it is all I2T proposes). Under
        ``pit.new_item_sids=content_neighbours`` its SIDs are its nearest trained items' instead."""
        m, pc = self.models, self.models.pc
        vector = m.new_item_embedder(catalog)(catalog, title, list(attributes), raw_id)
        if pc.new_item_sids == "content_neighbours":
            trained = len(m.initial_codes)
            codes, weights = content_neighbour_sids(
                m.neighbour_space(catalog), text_part(vector, m.embedder.collaborative_dim)[0],
                self.index.primary_codes()[:trained], pc.new_item_neighbours, pc.max_sids_per_item,
                self.index.new_edge_weight)
        else:
            codes, weights = self._i2t_sids(torch.from_numpy(vector).to(m.device), attributes)
        item = self.n_items
        if pc.new_item_text_affinity > 0:
            m.item_text_rows().remember(item, text_part(vector, m.embedder.collaborative_dim)[0])
        index = copy.deepcopy(self.index)
        index.add_item(item, codes, weights)
        record = {"op": "add_item", "item": item, "id": raw_id, "title": title,
                  "attributes": [catalog.attribute_ids[a] for a in attributes], "sids_from": pc.new_item_sids,
                  "codes": codes.tolist(), "weights": weights.tolist()}
        return PITEngine(m, index), record

    def _i2t_sids(self, content: torch.Tensor, attributes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        m, pc = self.models, self.models.pc
        if m.csa is not None:
            attr = torch.tensor(list(attributes), dtype=torch.long, device=m.device)
            x = m.csa.item_embedding.features(content, attr, torch.zeros(1, dtype=torch.long, device=m.device), None)
            if pc.i2t_content:
                x = torch.cat([x, content.to(x.dtype)], dim=-1)
        else:
            x = content
        proposal = m.i2t.generate(x, pc.candidates)
        codes = proposal.codes[0].cpu().numpy()
        alive = proposal.alive[0].cpu().numpy()
        crowded = self.index.sid_item_counts(codes) >= pc.max_items_per_sid
        keep = np.flatnonzero(alive & ~crowded)
        if not len(keep):
            keep = np.flatnonzero(alive)[:1]
        keep = keep[:pc.max_sids_per_item]
        return codes[keep], np.full(len(keep), self.index.new_edge_weight)

    @torch.no_grad()
    def with_feedback(self, history: torch.Tensor, item: int) -> tuple["PITEngine", dict[str, Any], int]:
        """The user-guided selection of training (``min_loss_sids``: lowest U2T loss among the
        item's candidate SIDs plus the collision charge, or the relative or posterior rule when
        the run was trained with it), recorded as an edge weight."""
        m, pc = self.models, self.models.pc
        history = history.to(m.device)
        memory = m.u2t.encode(self.history_codes[history.clamp(min=0)], history == PAD, history)
        target = torch.tensor([item], device=m.device)
        # online feedback always scores (a share below 1 is a training-cost lever)
        rng = np.random.default_rng([m.run.cfg.run.seed, self.index.version, item]) if pc.draw_temperature else None
        sel = min_loss_sids(m.u2t, self.index, memory, target, pc.candidates, pc.collision_penalty,
                            pc.selection_precision, rng=rng, baseline=m.baseline, temperature=pc.draw_temperature)
        pick, codes = sel.pick, sel.chosen.cpu().numpy()
        index = copy.deepcopy(self.index)
        index.record_selections(np.array([item]), codes)
        return PITEngine(m, index), {"op": "feedback", "item": item, "codes": codes[0].tolist()}, int(pick[0])

    def replay(self, record: dict[str, Any], where: str) -> "PITEngine":
        index = copy.deepcopy(self.index)
        try:
            if record["op"] == "add_item":
                index.add_item(int(record["item"]), np.asarray(record["codes"], dtype=np.int64),
                               np.asarray(record["weights"], dtype=np.float64))
            elif record["op"] == "feedback":
                index.record_selections(np.array([int(record["item"])]), np.asarray([record["codes"]], dtype=np.int64))
            else:
                raise RunDirError(f"{where}: unknown op {record['op']!r}")
        except KeyError as exc:
            raise RunDirError(f"{where}: field {exc.args[0]!r} missing") from None
        except (BeamIndexError, ValueError, TypeError) as exc:
            raise RunDirError(f"{where}: cannot apply {record.get('op')!r}: {exc}") from None
        return PITEngine(self.models, index)

    def save_state(self, folder: Path) -> None:
        self.index.save(folder / "index")

    def load_state(self, folder: Path) -> "PITEngine":
        index = BeamIndex.load(folder / "index")
        trained = len(self.models.initial_codes)
        if list(index.codebook_sizes) != list(self.index.codebook_sizes) or index.n_items < trained:
            raise RunDirError(f"{folder}/index: built for another run (codebooks {index.codebook_sizes}, "
                              f"{index.n_items} items)")
        return PITEngine(self.models, index)


def added_item_prior(n_items: int, n_trained: int, weight: float, device) -> torch.Tensor | None:
    """log ``pit.added_item_weight`` for the items added since training, 0 for the trained ones;
    None when nothing changes."""
    if weight == 1.0 or n_items <= n_trained:
        return None
    prior = torch.zeros(n_items, device=device)
    prior[n_trained:] = math.log(weight)
    return prior


def _trained_index(run: ServedRun, extra: dict[str, torch.Tensor]) -> BeamIndex:
    """The index saved with the served weights: ``beam_index/`` of a finished run (the best
    checkpoint's), else the checkpoint's own copy (an interrupted run)."""
    folder = run.path / "beam_index"
    try:
        if (folder / "index.json").is_file():
            return BeamIndex.load(folder)
        state = {k[len("index."):]: v for k, v in extra.items() if k.startswith("index.")}
        meta = _checkpoint_meta(run)
        if not state or meta is None:
            raise RunDirError(f"{run.path}: no beam_index/ and no index in {run.checkpoint}")
        return BeamIndex.from_state_dict(state, meta, where=f"{run.checkpoint}/extra.safetensors")
    except BeamIndexError as exc:
        raise RunDirError(str(exc)) from None


def _checkpoint_meta(run: ServedRun) -> dict[str, Any] | None:
    state = json.loads((run.checkpoint / "state.json").read_text())
    return (state.get("recipe_state") or {}).get("index")


def _selection_baseline(run: ServedRun, extra: dict[str, torch.Tensor], sizes: list[int]) -> SelectionBaseline | None:
    """The relative rule's means, from the checkpoint (none saved: a run stopped before co-evolution)."""
    pc = run.cfg.pit
    if pc.selection_rule != "relative":
        return None
    baseline = SelectionBaseline(sizes, pc.selection_baseline_rate, pc.selection_margin)
    try:
        baseline.load_extra_tensors(extra)
    except ValueError as exc:
        raise RunDirError(f"{run.checkpoint}/extra.safetensors: {exc}") from None
    return baseline
