"""TIGER (Rajput et al., NeurIPS 2023): content embeddings -> RQ-VAE semantic IDs -> an
encoder-decoder that generates the next item's SID, ranked by trie-constrained beam search.

Each stage is a cached artifact (embeddings and SID table are keyed by their inputs, and the SID
table is copied into the run directory), so tuning the recommender never recomputes the
tokenizer. Training uses every (history, next item) pair of the training sequences, in
length-bucketed batches; ranking maps the beams' SIDs back to item ids, and the evaluator counts
hits on items, never on SIDs.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from pitrec.config import Section
from pitrec.data.batches import PAD, PrefixSamples
from pitrec.decoding.ranker import GenerativeRanker
from pitrec.index.trie import Trie
from pitrec.models.user_to_token import UserToToken
from pitrec.registry import RECIPES, SECTIONS, TOKENIZERS
from pitrec.train.prefix_windows import training_windows
from pitrec.train.recipe import Recipe


@SECTIONS.register("tiger")
class TigerConfig(Section):
    beam_width: int = Field(20, ge=1)  # widened to k when the evaluator asks for more items
    # constrained decoding keeps every beam a SID of the catalogue; off = plain beam search whose
    # invalid SIDs are dropped (and counted) when mapping to items
    constrained: bool = True
    # model: a SID scores the model's log-probability of all its codes (TIGER). renormalized: the
    # last level is scored within the SIDs the catalogue holds after the prefix (needs constrained
    # decoding): with a disambiguation level (tokenizer.collision=extra_level) an item alone on its
    # prefix then scores its prefix's log-probability and the last decoder step runs only for users
    # whose beams reach a shared prefix (pitrec.decoding.beam_search; benchmarks/tuning/last_level.md)
    last_level: Literal["model", "renormalized"] = "model"

    @model_validator(mode="after")
    def _renormalized_needs_constraints(self) -> "TigerConfig":
        if self.last_level == "renormalized" and not self.constrained:
            raise ValueError("tiger.last_level=renormalized (the TIGER recipe's default) scores the last level "
                             "within the catalogue's SIDs: it needs tiger.constrained=true; to decode without "
                             "constraints, set tiger.last_level=model as well")
        return self


@RECIPES.register("tiger")
class TigerRecipe(Recipe):
    name = "tiger"

    def prepare(self) -> None:
        from pitrec.embed.stage import item_embeddings
        from pitrec.tokenizers.collaborative import tokenizer_input
        from pitrec.tokenizers.stage import sid_table, trained_sid_table

        table = trained_sid_table(self.sids_from, self.data)  # the embeddings only feed the tokenizer
        if table is None:
            needs_embeddings = TOKENIZERS.get(self.cfg.tokenizer.name).needs_embeddings  # an import does not
            embeddings = item_embeddings(self.cfg, self.data) if needs_embeddings else None
            table = sid_table(self.cfg, self.data, tokenizer_input(self.cfg, embeddings, self.split), run=self.run)
        if table.n_items != self.split.n_items:
            raise ValueError(f"SID table has {table.n_items} items, the dataset {self.split.n_items}")
        self.sid_meta = dict(table.meta)
        self.item_codes = torch.from_numpy(table.codes).to(self.device)
        self.trie = Trie.from_sid_table(table).to(self.device)
        self.model = UserToToken(table.codebook_sizes, self.cfg.u2t, table.n_items).to(self.device)
        # a causal encoder scores all prefixes of a window in one pass (same pairs, less compute)
        self.windows = training_windows(self.split.train, self.cfg, self.model.causal)
        self.samples = None if self.model.causal else PrefixSamples(self.split.train, self.cfg.data.max_history)
        n_pairs = self.windows.total_targets() if self.windows is not None else len(self.samples)
        if n_pairs == 0:
            raise ValueError("no training pairs: every training sequence has fewer than 2 items")
        self.last_ranker: GenerativeRanker | None = None

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"u2t": self.model}

    def train_batches(self, epoch: int, rng: np.random.Generator) -> list[np.ndarray]:
        if self.windows is not None:
            return self.windows.batch_indices(self.cfg.train.batch_size, rng)
        return self.samples.batch_indices(self.cfg.train.batch_size, rng, bucket=True)

    def training_step(self, batch: np.ndarray, step: int) -> dict[str, torch.Tensor]:
        if self.windows is not None:
            w = self.windows.batch(batch)
            items, targets = w.items.to(self.device), w.targets.to(self.device)
            nll = self.model.prefix_nll(self.item_codes[items.clamp(min=0)], items != PAD, w.n_last, items,
                                        smoothing=self.cfg.u2t.label_smoothing)
            return {"loss": nll[targets].mean() / self.model.n_levels}
        b = self.samples.batch(batch).to(self.device)
        history_codes = self.item_codes[b.history.clamp(min=0)]
        return {"loss": self.model.loss(history_codes, b.history == PAD, self.item_codes[b.target], b.history,
                                        smoothing=self.cfg.u2t.label_smoothing)}

    def batch_size_of(self, batch: np.ndarray) -> int:
        """Training pairs in the batch, so samples/s compares across encoder kinds."""
        return int(self.windows.n_targets[batch].sum()) if self.windows is not None else len(batch)

    def ranker(self) -> GenerativeRanker:
        tc = self.cfg.tiger
        self.last_ranker = GenerativeRanker(self.model, self.item_codes, self.trie, tc.beam_width, tc.constrained,
                                            renormalize_last=tc.last_level == "renormalized")
        return self.last_ranker

    def on_epoch_end(self, epoch: int) -> dict[str, Any]:
        # the previous validation's decoding statistics (validation runs after this hook)
        if self.last_ranker is None:
            return {}
        return {"prev_valid_invalid_rate": self.last_ranker.invalid_rate}

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {"sid_codes": self.item_codes.cpu()}, {}

    def load_extra_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        saved = tensors.get("sid_codes")
        if saved is not None and not torch.equal(saved, self.item_codes.cpu()):
            raise ValueError("the checkpoint was trained on a different SID table than the one prepared now "
                             "(tokenizer config, embeddings or data changed); start a new run")

    def save_artifacts(self, run) -> None:
        ranker = self.last_ranker
        run.write_json("decoding_stats.json", {
            "beam_width": self.cfg.tiger.beam_width, "constrained": self.cfg.tiger.constrained,
            "last_level": self.cfg.tiger.last_level,
            "test_beams": ranker.beams if ranker else 0,
            "test_invalid_beams": ranker.invalid if ranker else 0,
            "test_invalid_rate": ranker.invalid_rate if ranker else None,
            "sid_levels": len(self.trie.codebook_sizes), "codebook_sizes": self.trie.codebook_sizes,
            "distinct_sids": self.trie.n_leaves, "sid_table": self.sid_meta.get("tokenizer", self.sid_meta.get("name")),
        })
