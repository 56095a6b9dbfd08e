"""PIT: a dynamic personalized item tokenizer trained end to end with the recommender.

Three models learn in one loop, in the same optimiser step:
- CSA: the item embedding X_i (content + item id + attributes) and a DIN head predicting
  interactions from sg(H_u), the User-to-Token encoder's states;
- Item-to-Token (I2T): generates an item's SID from sg(X_i); its beam search proposes candidate
  SIDs that enter the one-to-many ``BeamIndex``;
- User-to-Token (U2T): TIGER's generator, history SIDs -> next item's SID.

Warm-up epochs train all three on the static tokenizer's SIDs (the same table TIGER uses). Then
co-evolution: for every (history, target) pair the target's candidate SIDs come from the index,
U2T scores all of them for this user in one batched pass (the encoder runs once), the SID with the
lowest loss is selected, and U2T and I2T train on it while the selection is recorded as an edge
weight. Every ``refresh_every`` epochs, I2T beam search over all items proposes fresh candidates
(weights decay, weak edges are pruned, no item is ever orphaned). Scoring the candidates is what
a co-evolution step adds to a warm-up step; ``selection_share`` < 1 scores a drawn share of the
targets that have a choice and caps that cost as the index fills.

Under torchrun every rank trains its own batches but all keep one index: the selections of each
step are gathered from all ranks and recorded everywhere in rank order (``_record``), the
selection counters are summed, and at each epoch end the ranks compare index digests (before and
after the refresh; a mismatch, which would mean nondeterminism, is repaired from rank 0 and counted
in ``index_resyncs``).

At inference U2T beam search is constrained to the SIDs of the index; an item reached through
several SIDs is scored by ``pit.aggregation`` (see ``pitrec.decoding.aggregate``).

Ablations are switches of the same recipe (so the backbone and budget are identical): ``csa``
(off: X_i is the frozen content embedding and no CSA loss), ``sid_selection`` (off: always the
warm-up SID), ``one_to_many`` (off: one SID per item, the strongest, at inference), ``freeze_i2t``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pitrec.data.batches import PAD, PrefixSamples
from pitrec.decoding.pit_ranker import PITRanker, compile_index
from pitrec.index.beam_index import BeamIndex
from pitrec.models.csa import CSA
from pitrec.models.item_to_token import ItemToToken
from pitrec.models.user_to_token import Memory, UserToToken
from pitrec.registry import RECIPES
from pitrec.tokenizers.sid_table import SidTable
from pitrec.train import distributed as dist
from pitrec.train.index_refresh import refresh_from_item_to_token
from pitrec.train.prefix_windows import training_windows
from pitrec.train.recipe import Recipe
from pitrec.train.recipes.pit_config import PITConfig  # noqa: F401  (registers the `pit` section)
from pitrec.train.selection import Selection, SelectionCounters, min_loss_sids, min_loss_sids_prefix
from pitrec.train.selection_baseline import SelectionBaseline


@RECIPES.register("pit")
class PITRecipe(Recipe):
    name = "pit"

    def prepare(self) -> None:
        from pitrec.embed.stage import item_embeddings
        from pitrec.tokenizers.collaborative import tokenizer_input
        from pitrec.tokenizers.stage import sid_table, trained_sid_table

        cfg, pc = self.cfg, self.cfg.pit
        content = item_embeddings(cfg, self.data)
        fitted_on = tokenizer_input(cfg, content, self.split)
        table = trained_sid_table(self.sids_from, self.data)
        if table is None:
            table = sid_table(cfg, self.data, fitted_on, run=self.run)
        if table.n_items != self.split.n_items:
            raise ValueError(f"SID table has {table.n_items} items, the dataset {self.split.n_items}")
        self.sid_meta = dict(table.meta)
        self.sizes = list(table.codebook_sizes)
        if pc.proposal_prefix >= len(self.sizes):
            raise ValueError(f"pit.proposal_prefix={pc.proposal_prefix} leaves no level to propose: the SIDs have "
                             f"{len(self.sizes)} levels, so it must be below {len(self.sizes)}")
        self.initial_codes = torch.from_numpy(table.codes).to(self.device)
        # U2T first, so that with the same seed it starts from the same weights as TIGER's
        self.u2t = UserToToken(self.sizes, cfg.u2t, self.split.n_items).to(self.device)
        # CSA and I2T draw their initial weights from a forked generator, so the global random
        # stream (dropout masks, negatives) continues exactly as in a TIGER run of the same seed
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.run.seed + 1)
            self._build_tokenizer_side(fitted_on if pc.item_content == "tokenizer_input" else content)
        self.index = BeamIndex.from_sid_table(table, max_sids_per_item=pc.max_sids_per_item,
                                              new_edge_weight=pc.new_edge_weight)
        # a causal U2T encoder scores all prefixes of a window in one pass, as in TIGER's recipe
        self.windows = training_windows(self.split.train, cfg, self.u2t.causal)
        self.samples = None if self.u2t.causal else PrefixSamples(self.split.train, cfg.data.max_history)
        n_pairs = self.windows.total_targets() if self.windows is not None else len(self.samples)
        if n_pairs == 0:
            raise ValueError("no training pairs: every training sequence has fewer than 2 items")
        self.epoch = 0
        self._compiled: tuple[int, Any] | None = None
        self._counters = SelectionCounters()
        self.baseline = None
        if pc.selection_rule == "relative":
            if dist.is_distributed():
                raise ValueError("pit.selection_rule=relative runs in one process only: its per-edge means are not "
                                 "shared across ranks; use pit.selection_rule=min_loss under torchrun")
            self.baseline = SelectionBaseline(self.sizes, pc.selection_baseline_rate, pc.selection_margin)
        self.last_ranker: PITRanker | None = None
        self._sync_history_codes()

    def _build_tokenizer_side(self, content: np.ndarray) -> None:
        cfg, pc = self.cfg, self.cfg.pit
        if pc.csa:
            self.csa = CSA(content, self.data.item_attributes, self.data.n_attributes, cfg.u2t.d_model, cfg.csa,
                           item_popularity=self.split.train_item_counts()).to(self.device)
            item_dim = cfg.csa.dim + (np.asarray(content).shape[1] if pc.i2t_content else 0)
        else:
            self.csa = None
            self.content = torch.as_tensor(np.asarray(content), dtype=torch.float32, device=self.device)
            item_dim = self.content.shape[1]
        self.i2t = ItemToToken(item_dim, self.sizes, cfg.i2t).to(self.device)

    # -- state of the co-evolution ------------------------------------------------------------
    @property
    def coevolving(self) -> bool:
        return self.epoch >= self.cfg.pit.warmup_epochs and not self.tokenizer_frozen

    @property
    def tokenizer_frozen(self) -> bool:
        """After ``pit.coevolution_epochs`` of co-evolution: U2T alone trains, on the index as it is."""
        return self._frozen_at(self.epoch)

    def _frozen_at(self, epoch: int) -> bool:
        n = self.cfg.pit.coevolution_epochs
        return n is not None and epoch >= self.cfg.pit.warmup_epochs + n

    def _train_i2t(self) -> bool:
        return not self.tokenizer_frozen and not (self.cfg.pit.freeze_i2t and self.coevolving)

    def _sync_history_codes(self) -> None:
        self.primary_codes = torch.from_numpy(self.index.primary_codes()).to(self.device)
        self.history_codes = self.primary_codes if self.cfg.pit.history_sids == "primary" else self.initial_codes

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """X_i: CSA's learned item embedding, or the frozen content embedding without CSA."""
        return self.csa.item_vectors(items) if self.csa is not None else self.content[items]

    def tokenizer_inputs(self, items: torch.Tensor) -> torch.Tensor:
        """What I2T tokenises: X_i, or [X_i; content_i] with ``pit.i2t_content`` (I2T detaches it)."""
        x = self.item_vectors(items)
        if self.csa is not None and self.cfg.pit.i2t_content:
            x = torch.cat([x, self.csa.item_embedding.content[items]], dim=-1)
        return x

    def modules(self) -> dict[str, torch.nn.Module]:
        mods: dict[str, torch.nn.Module] = {"u2t": self.u2t, "i2t": self.i2t}
        if self.csa is not None:
            mods["csa"] = self.csa
        return mods

    # -- training -------------------------------------------------------------------------------
    def train_batches(self, epoch: int, rng: np.random.Generator) -> list[np.ndarray]:
        self.epoch = epoch
        if self.windows is not None:
            return self.windows.batch_indices(self.cfg.train.batch_size, rng)
        return self.samples.batch_indices(self.cfg.train.batch_size, rng, bucket=True)

    def batch_size_of(self, batch: np.ndarray) -> int:
        """Training pairs in the batch, so samples/s compares across encoder kinds and with TIGER."""
        return int(self.windows.n_targets[batch].sum()) if self.windows is not None else len(batch)

    def training_step(self, batch: np.ndarray, step: int) -> dict[str, torch.Tensor]:
        self._step = step
        if self.windows is not None:
            return self._window_step(batch)
        b = self.samples.batch(batch).to(self.device)
        memory = self.u2t.encode(self.history_codes[b.history.clamp(min=0)], b.history == PAD, b.history)
        sel = self.select_sids(memory, b.target)
        u2t_loss = self.u2t.sid_nll(memory, sel.chosen, self.cfg.u2t.label_smoothing).mean() / len(self.sizes)
        return self._losses(u2t_loss, b.target, sel, memory)

    def _window_step(self, batch: np.ndarray) -> dict[str, torch.Tensor]:
        """Every prefix of each window is one (history, target) pair: one encoder pass, the
        candidates of all targets scored in one decoder pass, then the chosen SIDs trained."""
        w = self.windows.batch(batch)
        items, real = w.items.to(self.device), w.targets.to(self.device)
        valid = items != PAD
        memory = self.u2t.encode_windows(self.history_codes[items.clamp(min=0)], valid, items)
        mask, allowed = self.u2t.prefix_mask(valid, w.n_last)
        targets = items[:, -w.n_last:]
        flat = targets[real]
        if self.selecting:
            pc = self.cfg.pit
            sel = self._count(min_loss_sids_prefix(self.u2t, self.index, memory, mask, targets, real, pc.candidates,
                                                   pc.collision_penalty, pc.selection_precision,
                                                   pc.selection_share, self._selection_rng(), self.baseline,
                                                   pc.draw_temperature))
        else:
            sel = self._unselected(flat)
        grid = self.initial_codes[targets.clamp(min=0)].clone()
        grid[real] = sel.chosen
        L = len(self.sizes)
        nll = self.u2t._nll(memory, grid, mask.repeat_interleave(L, dim=2), smoothing=self.cfg.u2t.label_smoothing)
        # each target's CSA history: its window's states, masked to the positions its prefix covers
        rows = real.nonzero(as_tuple=True)[0]  # the window of each target, in targets[real]'s order
        return self._losses(nll[real].mean() / L, flat, sel, Memory(memory.states, allowed[real]), rows)

    def _losses(self, u2t_loss: torch.Tensor, target: torch.Tensor, sel: Selection, memory: Memory,
                rows: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """U2T + I2T (on the chosen SIDs) + CSA (on sg(H_u)); the selection is recorded. ``rows``:
        the memory row of each target when several targets share one (prefix windows)."""
        pc = self.cfg.pit
        losses = {"u2t": u2t_loss}
        loss = u2t_loss
        aux_target, chosen, memory, rows = self._aux_subset(target, sel.chosen, memory, rows)
        if self._train_i2t():
            items, codes = aux_target, chosen
            if pc.i2t_catalogue_batch:
                # drawn from (seed, step): reproducible, and the same after a resume
                rng = np.random.default_rng([self.cfg.run.seed, getattr(self, "_step", 0)])
                extra = torch.from_numpy(rng.integers(0, self.split.n_items, pc.i2t_catalogue_batch)).to(self.device)
                items, codes = torch.cat([aux_target, extra]), torch.cat([chosen, self.primary_codes[extra]])
            losses["i2t"] = self.i2t.loss(self.tokenizer_inputs(items), codes)
            loss = loss + pc.i2t_weight * losses["i2t"]
        if self.csa is not None and not self.tokenizer_frozen:
            losses["csa"] = self.csa.loss(memory.states, memory.valid, aux_target, rows=rows)
            loss = loss + pc.csa_weight * losses["csa"]
        if not self.tokenizer_frozen:
            self._record(target[~sel.skipped], sel.chosen[~sel.skipped])
        losses["loss"] = loss
        return losses

    def _aux_subset(self, target: torch.Tensor, chosen: torch.Tensor, memory: Memory, rows: torch.Tensor | None):
        """The ``pit.aux_share`` of the targets that the CSA and I2T losses see this step, drawn
        from (seed, step): reproducible, the same after a resume, apart from the other draws."""
        share = self.cfg.pit.aux_share
        if share >= 1 or len(target) < 2:
            return target, chosen, memory, rows
        rng = np.random.default_rng([self.cfg.run.seed, getattr(self, "_step", 0), 2])
        keep = torch.from_numpy(np.sort(rng.choice(len(target), max(1, round(share * len(target))), replace=False)))
        keep = keep.to(target.device)
        if rows is None:  # one memory row per target
            return target[keep], chosen[keep], Memory(memory.states[keep], memory.valid[keep]), None
        return target[keep], chosen[keep], Memory(memory.states, memory.valid[keep]), rows[keep]

    def _record(self, target: torch.Tensor, chosen: torch.Tensor) -> None:
        """Record the step's selections in the index (targets left unscored by
        ``pit.selection_share`` are not selections and are left out): under torchrun all ranks'
        selections, in rank order, on every rank, so the indexes (and the next step's candidates)
        stay identical."""
        items, codes = target.cpu().numpy(), chosen.cpu().numpy()
        if dist.is_distributed():
            rows = dist.all_gather_rows(np.concatenate([items[:, None], codes], axis=1))
            items, codes = rows[:, 0], rows[:, 1:]
        self.index.record_selections(items, codes)

    def _agree_index(self) -> int:
        """1 when the ranks' indexes differed (then all take rank 0's), else 0; always 0 single-process."""
        if not dist.is_distributed() or dist.all_agree(dist.state_digest(*self.index.state_dict())):
            return 0
        tensors, meta = dist.broadcast_object(self.index.state_dict())
        self.index = BeamIndex.from_state_dict(tensors, meta)
        self._compiled = None
        return 1

    @property
    def selecting(self) -> bool:
        """Warm-up, and the no-selection ablation, train on the warm-up SID."""
        return self.coevolving and self.cfg.pit.sid_selection

    @torch.no_grad()
    def select_sids(self, memory: Memory, target: torch.Tensor) -> Selection:
        """The user-guided minimum-loss choice among each target's candidate SIDs: in
        co-evolution ``min_loss_sids`` (also what the service's online feedback applies)."""
        if not self.selecting:
            return self._unselected(target)
        pc = self.cfg.pit
        return self._count(min_loss_sids(self.u2t, self.index, memory, target, pc.candidates, pc.collision_penalty,
                                         pc.selection_precision, pc.selection_share, self._selection_rng(),
                                         self.baseline, pc.draw_temperature))

    def _unselected(self, target: torch.Tensor) -> Selection:
        """Warm-up and the no-selection ablation: the warm-up SID; a frozen tokenizer: the strongest."""
        none = torch.zeros(len(target), dtype=torch.bool, device=target.device)
        self._counters.add(len(target), 0, 0)
        codes = self.primary_codes if self.tokenizer_frozen else self.initial_codes
        return Selection(codes[target], torch.zeros_like(target), none, none)

    def _count(self, sel: Selection) -> Selection:
        self._counters.add(len(sel.pick), int(sel.scored.sum()), int((sel.pick != 0).sum()), int(sel.skipped.sum()))
        return sel

    def _selection_rng(self) -> np.random.Generator | None:
        """Which targets ``pit.selection_share`` scores (and the posterior rule's draws): from
        (seed, step), reproducible and the same after a resume (and apart from the catalogue
        batch's draws)."""
        if self.cfg.pit.selection_share >= 1 and not self.cfg.pit.draw_temperature:
            return None
        return np.random.default_rng([self.cfg.run.seed, getattr(self, "_step", 0), 1])

    def on_epoch_end(self, epoch: int) -> dict[str, Any]:
        pc = self.cfg.pit
        self._counters.all_reduce()
        phase = "frozen" if self.tokenizer_frozen else "co-evolution" if self.coevolving else "warm-up"
        stats: dict[str, Any] = {"phase": phase, **self._counters.report()}
        self._counters = SelectionCounters()
        if self.baseline is not None:
            stats["selection_baseline_edges"] = len(self.baseline)  # (item, SID) edges with a mean
        resyncs = self._agree_index()
        done = epoch + 1
        if done >= pc.warmup_epochs and (done - pc.warmup_epochs) % pc.refresh_every == 0 and not self._frozen_at(done):
            stats.update({f"refresh_{k}": v for k, v in self.refresh_index().items()})
            stats["sid_churn"] = stats.get("refresh_primary_changed", 0.0)
            resyncs += self._agree_index()
        if dist.is_distributed():
            stats["index_resyncs"] = resyncs
        self._sync_history_codes()
        index_stats = self.index.stats()
        stats["index"] = {k: v for k, v in index_stats.items() if not k.startswith("churn_")}
        primary = SidTable(self.index.primary_codes(), self.sizes).stats()
        stats["codebook_entropy"] = [lvl["entropy_bits"] for lvl in primary["levels"]]
        stats["primary_collision_rate"] = primary.get("collision_rate")
        return stats

    def refresh_index(self) -> dict[str, float]:
        """I2T proposes fresh SIDs for every item and the index merges them
        (``pitrec.train.index_refresh``), in eval mode."""
        modes = {name: m.training for name, m in self.modules().items()}
        self.train(False)
        try:
            return refresh_from_item_to_token(
                self.i2t, self.tokenizer_inputs, self.index, self.cfg.pit, self.sizes[-1],
                free_last_level=self.sid_meta.get("collision_policy") == "extra_level", device=self.device)
        finally:
            for name, m in self.modules().items():
                m.train(modes[name])

    # -- evaluation -----------------------------------------------------------------------------
    def ranker(self) -> PITRanker:
        version = self.index.version
        if self._compiled is None or self._compiled[0] != version:
            self._compiled = (version, compile_index(self.index, self.cfg.pit.one_to_many, self.device))
        self.last_ranker = PITRanker.from_config(self.cfg.pit, self.u2t, self.history_codes, *self._compiled[1])
        return self.last_ranker

    # -- persistence ----------------------------------------------------------------------------
    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = self.index.state_dict()
        out = {f"index.{k}": v for k, v in tensors.items()}
        out["sid_codes"] = self.initial_codes.cpu()
        if self.baseline is not None:
            out.update(self.baseline.extra_tensors())
        return out, {"index": meta}

    def load_extra_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        saved = tensors.get("sid_codes")
        if saved is not None and not torch.equal(saved, self.initial_codes.cpu()):
            raise ValueError("the checkpoint was trained from a different warm-up SID table than the one prepared "
                             "now (tokenizer config, embeddings or data changed); start a new run")
        if "index" in meta:
            index_tensors = {k[len("index."):]: v for k, v in tensors.items() if k.startswith("index.")}
            self.index = BeamIndex.from_state_dict(index_tensors, meta["index"])
            self._compiled = None
            self._sync_history_codes()
        if self.baseline is not None:
            self.baseline.load_extra_tensors(tensors)

    def save_artifacts(self, run) -> None:
        self.index.save(run.path / "beam_index")
        run.write_json("sid_stats_warmup.json", SidTable(self.initial_codes.cpu().numpy(), self.sizes).stats())
        run.write_json("sid_stats.json", {**SidTable(self.index.primary_codes(), self.sizes).stats(),
                                          "index": self.index.stats()})
        ranker = self.last_ranker
        run.write_json("decoding_stats.json", {
            "beam_width": self.cfg.pit.beam_width, "aggregation": self.cfg.pit.aggregation,
            "one_to_many": self.cfg.pit.one_to_many,
            "test_beams": ranker.beams if ranker else 0, "test_invalid_beams": ranker.invalid if ranker else 0,
            "test_invalid_rate": ranker.invalid_rate if ranker else None,
            "test_widened_users": ranker.widened if ranker else 0,
        })

