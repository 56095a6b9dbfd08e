"""The co-evolution refresh: Item-to-Token proposes SIDs for every item and the beam index merges
them. Kept apart from the PIT recipe because it is its own step with its own rules (which
proposals are usable, where new edges enter), run once per ``pit.refresh_every`` epochs."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from pitrec.index.beam_index import BeamIndex
from pitrec.index.proposals import unique_proposals
from pitrec.models.item_to_token import ItemToToken
from pitrec.train.recipes.pit_config import PITConfig


@torch.no_grad()
def refresh_from_item_to_token(i2t: ItemToToken, tokenizer_inputs: Callable[[torch.Tensor], torch.Tensor],
                               index: BeamIndex, pc: PITConfig, last_level_size: int, free_last_level: bool,
                               device: torch.device) -> dict[str, float]:
    """I2T beam search over every item proposes ``pc.candidates`` SIDs each (below the first
    ``pc.proposal_prefix`` codes of the item's primary SID when set); weights decay first so
    that old selections fade, then the index merges and prunes (never orphaning an item).
    Returns the index's churn statistics and what was dropped. The caller sets eval mode."""
    n = index.n_items
    codes, scores, alive = [], [], []
    primary_np = index.primary_codes()
    primary = torch.from_numpy(primary_np).long().to(device)
    for start in range(0, n, pc.refresh_batch_size):
        items = torch.arange(start, min(n, start + pc.refresh_batch_size), device=device)
        prefix = primary[items, :pc.proposal_prefix] if pc.proposal_prefix else None
        res = i2t.generate(tokenizer_inputs(items), pc.candidates, prefix=prefix)
        codes.append(res.codes.cpu())
        scores.append(res.log_probs.cpu())
        alive.append(res.alive.cpu())
    codes_np, alive_np = torch.cat(codes).numpy(), torch.cat(alive).numpy()
    # how well I2T knows the items' current SIDs: its best beam is the primary SID
    i2t_top1 = float(((codes_np[:, 0] == primary_np).all(-1) & alive_np[:, 0]).mean())
    # a SID proposed for many items says nothing about any of them: drop such proposals
    _, inverse, counts = np.unique(codes_np.reshape(-1, codes_np.shape[-1]), axis=0,
                                   return_inverse=True, return_counts=True)
    generic = (counts[inverse.reshape(-1)] > pc.max_items_per_sid).reshape(alive_np.shape)
    scores_np = torch.cat(scores).numpy()
    usable = alive_np & ~generic
    made_unique: dict[str, float] = {}
    if pc.unique_sids:
        edge_items, edge_codes, _ = index.edges()
        codes_np, usable, made_unique = unique_proposals(
            edge_items, edge_codes, np.arange(n), codes_np, scores_np, usable,
            free_last_level=free_last_level, last_level_size=last_level_size)
    index.decay(pc.decay)
    churn = index.refresh(np.arange(n), codes_np, scores_np, usable, below_primary=pc.new_edges == "below_primary")
    churn["dropped_generic_share"] = float((alive_np & generic).sum() / max(1, alive_np.sum()))
    churn["i2t_top1_is_primary"] = i2t_top1
    churn.update({f"unique_{k}": v for k, v in made_unique.items()})
    return churn
