"""TIGER served: U2T beam search constrained to the static SID table's trie.

Ranking goes through ``PITRanker`` with ``max`` aggregation: with one SID per item that is
TIGER's own beams-to-items rule, and it also returns the beams' scores and widens the beam when
excluding the history leaves fewer than k items. The table is the run's ``sid_table.json``; the
tokenizer that made it is not saved (only its codes are), so a new item cannot be given a SID.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pitrec.data.errors import DataError
from pitrec.decoding.pit_ranker import PITRanker
from pitrec.index.trie import Trie
from pitrec.models.user_to_token import UserToToken
from pitrec.serve.engines.base import Engine, Ranked
from pitrec.serve.errors import NotSupported, finite_or_none
from pitrec.serve.loader import RunDirError, ServedRun
from pitrec.serve.schemas import SidInfo
from pitrec.tokenizers.sid_table import SidTable, collision_summary


class TigerEngine(Engine):
    method = "tiger"
    version = 0

    def __init__(self, run: ServedRun, model: UserToToken, table: SidTable, device: torch.device):
        self.run, self.model, self.table, self.device = run, model, table, device
        self.n_items = table.n_items
        self.item_codes = torch.from_numpy(table.codes).to(device)
        self.trie = Trie.from_sid_table(table).to(device)

    @classmethod
    def load(cls, run: ServedRun, device: str | torch.device) -> "TigerEngine":
        path = run.path / "sid_table.json"
        try:
            table = SidTable.load(path)
            table.check_catalog(run.catalog.ids, str(path))
        except FileNotFoundError:
            raise RunDirError(f"{path}: missing; a TIGER run directory holds its SID table") from None
        except (DataError, ValueError) as exc:
            raise RunDirError(str(exc)) from None
        saved = run.extra_tensors().get("sid_codes")
        if saved is not None and not np.array_equal(saved.numpy(), table.codes):
            raise RunDirError(f"{path}: differs from the SID table the checkpoint {run.checkpoint} was trained on")
        model = UserToToken(table.codebook_sizes, run.cfg.u2t, table.n_items)
        run.load_modules({"u2t": model})
        device = torch.device(device)
        return cls(run, model.to(device).eval(), table, device)

    @torch.no_grad()
    def rank(self, history: torch.Tensor, k: int, exclude_history: bool, explain: bool = True) -> list[list[Ranked]]:
        tc = self.run.cfg.tiger
        ranker = PITRanker(self.model, self.item_codes, self.trie, None, tc.beam_width, "max",
                           renormalize_last=tc.last_level == "renormalized")
        items, scores = ranker.rank_with_scores(history.to(self.device), k, exclude_history)
        return [[Ranked(i, s, [SidInfo(sid=self.table.codes[i].tolist(), log_prob=finite_or_none(s))])
                 for i, s in zip(row_items, row_scores) if i >= 0]
                for row_items, row_scores in zip(items.tolist(), scores.tolist())]

    def item_sids(self, item: int) -> list[SidInfo]:
        return [SidInfo(sid=self.table.codes[item].tolist())]

    def stats(self) -> dict[str, Any]:
        c = collision_summary(self.table.codes)
        return {"sids": c["distinct_sids"], "edges": self.n_items,
                "collisions": {"collision_rate": c["collision_rate"], "items_in_collisions": c["items_in_collisions"],
                               "max_collision_group": c["max_collision_group"]},
                "index": {"codebook_sizes": list(self.table.codebook_sizes)}}

    def with_new_item(self, catalog, raw_id, title, attributes):
        name = self.table.meta.get("tokenizer", self.run.cfg.tokenizer.name)
        raise NotSupported(f"TIGER cannot tokenise a new item: the run keeps only the codes of its {name} "
                           f"tokenizer (sid_table.json), not the tokenizer itself; retrain, or serve a PIT run, "
                           f"whose Item-to-Token model tokenises new items")
