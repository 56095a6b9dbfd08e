"""The ``pit`` config section: PIT's switches and their reasons, read by the PIT recipe
(``pitrec.train.recipes.pit``). Each field's comment says why it exists and what measured it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pitrec.config import Section
from pitrec.registry import SECTIONS


@SECTIONS.register("pit")
class PITConfig(Section):
    warmup_epochs: int = Field(2, ge=0)  # epochs on the static tokenizer's SIDs before co-evolution
    # co-evolution epochs before the tokenizer freezes (None: to the end, the paper's). Frozen: no
    # selection, no refresh, no CSA or I2T loss; U2T trains on each item's strongest SID, and the
    # index (all its SIDs) serves decoding. With sibling proposals the selection stops switching
    # by epoch 10-12 on beauty, after which co-evolution costs 1.3-1.4x a TIGER epoch and changes
    # nothing (benchmarks/tuning/sibling_proposals_beauty.md).
    coevolution_epochs: int | None = Field(None, ge=0)
    candidates: int = Field(4, ge=1)  # B: candidate SIDs per target (and I2T beam width at refresh)
    max_sids_per_item: int = Field(4, ge=1)  # index capacity per item
    refresh_every: int = Field(1, ge=1)  # epochs between I2T refreshes of the index
    decay: float = Field(0.5, gt=0, le=1)  # edge weights are multiplied by this at each refresh
    new_edge_weight: float = Field(1.0, ge=0)  # weight of a SID newly proposed by I2T
    # weighted: a proposal enters at new_edge_weight, so once an item's decayed weights fall below
    # it (an item few users select) an untested proposal becomes its primary SID: on beauty
    # (pit/cf-lean-stride-ffn256, 3 seeds) 23-37% of items with 0-4 training occurrences ended on a
    # primary no user had selected, while selection switched 0.1-0.5% of targets
    # (benchmarks/tuning/primary_drift.py). below_primary: a proposal enters at most at the item's
    # strongest weight, ranked under it: only selections move the primary (test metrics within 2 sd).
    new_edges: Literal["weighted", "below_primary"] = "weighted"
    # I2T's proposals keep the first proposal_prefix codes of the item's primary SID (0: free).
    # Free proposals differ from the primary at the first code in 79-94% of cases on beauty
    # (benchmarks/tuning/index_prefixes.py), where a U2T trained on the primary gives them almost
    # no mass, so the minimum-loss selection never picks them (selection_margin_beauty.md).
    # Siblings below a shared prefix are alternatives U2T can prefer for some users.
    proposal_prefix: int = Field(0, ge=0)
    csa: bool = True
    sid_selection: bool = True
    one_to_many: bool = True
    freeze_i2t: bool = False  # after warm-up
    i2t_weight: float = Field(1.0, ge=0)
    csa_weight: float = Field(1.0, ge=0)
    beam_width: int = Field(20, ge=1)  # U2T decoding width (widened per user when too few items)
    aggregation: Literal["max", "sum", "weighted"] = "weighted"
    # as tiger.last_level: renormalized scores a SID's last level within the index's SIDs after its
    # prefix, so beams on a prefix with one SID skip the last decoder step (pitrec.decoding.beam_search)
    last_level: Literal["model", "renormalized"] = "model"
    # serving: an item added after training (cold start) has its score multiplied by this. Its SIDs
    # come from Item-to-Token on content alone, which on real data puts it on the SIDs of popular
    # trained items (beauty: 92% of added items, holders 5x the mean popularity); at 1.0 it ties
    # with or outranks them for every user (5% of the catalogue added took 33% of warm users' top-10
    # slots, R@10 .0640 -> .0483). 0.5 scores it as if it shared each such SID equally with its
    # holder (the selection's collision rule, n = 2): beauty .0590 and 8% of slots, synthetic
    # 4%; the trade-off per value is in benchmarks/results/cold_start.md.
    added_item_weight: float = Field(0.5, gt=0)
    # serving: where an added item's SIDs come from. i2t: Item-to-Token on the id-free item
    # embedding (the paper's rule). content_neighbours: the primary SIDs of its
    # new_item_neighbours nearest trained items by content cosine, weighted by the similarity; a
    # content neighbour is not biased towards popular items as the id-free proposals are (beauty,
    # 1,000 cold cases: cold R@10 .0490 with warm users' R@10 -3%, where i2t at 1.0 gives .0530 at
    # -19%; benchmarks/tuning/cold_start_beauty.md). Its items are scored times
    # neighbour_item_weight instead of added_item_weight: spread over k SIDs, an item's share of
    # each is ~1/k, where a trained item's primary SID holds ~0.5 of it.
    new_item_sids: Literal["i2t", "content_neighbours"] = "i2t"
    new_item_neighbours: int = Field(4, ge=1)
    neighbour_item_weight: float = Field(2.0, gt=0)
    # serving: an added item's log-score also gains this x the cosine of its text to the text of
    # the user's last history item (0: off). The weights above are the same for every user, so
    # they show new items to users whose next item is an old one as readily as to those whose
    # next item is new; the item's text is all that is known of it, and a user whose last item
    # reads like it is likelier to want it (benchmarks/tuning/cold_start_beauty.md). Needs CSA.
    new_item_text_affinity: float = Field(0.0, ge=0)
    # the text the affinity compares with: the normalised mean of the user's last this-many history
    # items' text rows. 1 (the last item alone) is the default: on two beauty draws the mean of the
    # last 3 or 10 was level with it, or behind, at equal warm cost (benchmarks/tuning/cold_start_beauty.md)
    new_item_text_affinity_history: int = Field(1, ge=1)
    history_sids: Literal["primary", "initial"] = "primary"  # which SID encodes history items
    # selection pays log(items holding the SID): a SID shared by n items names the target only
    # with probability 1/n. Without it the cheapest SID is the one every item shares (collapse).
    collision_penalty: bool = True
    # auto: bfloat16 where the device has native bfloat16 units, float32 elsewhere (on a CPU with
    # AVX2 only, bfloat16 scoring made a co-evolution step 1.84x a TIGER step, float32 1.27x;
    # benchmarks/results/step_cost.md). See pitrec.train.selection
    selection_precision: Literal["float32", "bfloat16", "auto"] = "float32"
    # min_loss: the paper's rule, the lowest U2T loss for this user. It stays with the item's
    # primary SID for 99% of targets (benchmarks/tuning/selection_margin_beauty.md). relative: the
    # loss minus its running mean over the item's users, and an alternative must win by
    # selection_margin nats (pitrec.train.selection_baseline). The service's online feedback applies
    # the run's rule. Single-process only (the means are not shared across ranks).
    # posterior: a draw with probability proportional to exp(-loss / selection_temperature)
    # (pitrec.train.selection): alternatives keep being trained in proportion to how well they fit
    selection_rule: Literal["min_loss", "relative", "posterior"] = "min_loss"
    selection_temperature: float = Field(1.0, gt=0)
    selection_margin: float = Field(1.0, ge=0)  # nats
    selection_baseline_rate: float = Field(0.25, gt=0, le=1)
    # co-evolution scores the candidates of this share of the targets that have a choice, drawn
    # anew each step; the rest train on their strongest SID and are not recorded as selections.
    # Scoring is what a co-evolution step adds and it grows as the index gives more items several
    # SIDs: the share caps it (benchmarks/step_cost.py)
    selection_share: float = Field(1.0, gt=0, le=1)
    # the auxiliary losses (CSA, I2T) are computed on this share of each step's targets, drawn
    # anew each step: an unbiased estimate of their full-batch mean. They do not touch U2T's
    # gradient, and together they are the floor of a PIT step's extra cost (step_cost.py)
    aux_share: float = Field(1.0, gt=0, le=1)
    max_items_per_sid: int = Field(8, ge=1)  # I2T proposals made for more items than this are dropped
    # every SID names one item: a proposal colliding with another item's SID gets a free
    # disambiguation token, or is dropped (see pitrec.index.proposals); off: collisions allowed
    unique_sids: bool = True
    refresh_batch_size: int = Field(2048, ge=1)
    # I2T also trains, every step, on this many items drawn uniformly from the catalogue (on each
    # item's strongest SID). Interaction targets follow popularity, so the long tail is rarely
    # seen by I2T and its beams propose the same generic SIDs for it (on beauty after warm-up,
    # ~97% of proposals were dropped as generic). 0: targets only (the paper's setting).
    i2t_catalogue_batch: int = Field(0, ge=0)
    # I2T reads [sg(X_i); content_i] instead of sg(X_i) alone (with CSA on). X_i is shaped by the
    # CSA loss only and can drop what the content-derived warm-up SIDs encode: on beauty a fresh
    # I2T trained 40 catalogue epochs on a trained X_i got 1.2% of items' SIDs right (top-1), on
    # the content embedding 39%; an I2T that cannot reproduce SIDs proposes generic ones.
    i2t_content: bool = False
    # X_i's content view (and I2T's, with i2t_content): the text embedding, or what the warm-up
    # tokenizer read (with tokenizer.collaborative_dim > 0: [unit text embedding ; collaborative
    # vector], so I2T can see what the warm-up SIDs encode). Identical when collaborative_dim = 0.
    item_content: Literal["content", "tokenizer_input"] = "content"

    @property
    def draw_temperature(self) -> float:
        """The selection's draw temperature: ``selection_temperature`` under the posterior rule,
        0 (the minimum, no draw) under the others. Training and the service's feedback read it."""
        return self.selection_temperature if self.selection_rule == "posterior" else 0.0
