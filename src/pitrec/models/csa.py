"""Collaborative Signal Alignment (CSA): PIT's item embedding X_i and the auxiliary DIN head that
teaches it collaborative structure.

Why: a content embedding alone says what an item *is*, not who consumes it together. CSA makes
X_i predictive of interactions, ``y_hat(u, i) = DIN(sg(H_u), X_i)``, so that I2T, which tokenises
from X_i, gives items bought by the same users nearby SIDs.

X_i fuses three views, ``X_i = MLP([W_c e_i ; id_i ; mean(attr_i)])`` (concatenation then a
two-layer MLP, chosen over a projected sum so the model can weigh the views per dimension):
- ``e_i`` the frozen content embedding (``pitrec.embed``), projected;
- ``id_i`` a learned item-id embedding. With probability ``id_dropout`` it is zeroed in training,
  so that an unseen item (no id row yet; cold start) still gets an in-distribution X_i from its
  content and attributes alone;
- the mean of the item's learned attribute embeddings (zero for an item without attributes).

The DIN head is one target-attention layer (X_i queries the user's history states, plus a learned
"nothing relevant" slot so an empty history is well defined) and a 4-layer MLP over
``[x, a, x*a, x-a]``. H_u is detached INSIDE the head: the CSA loss must shape X_i, never the
U2T encoder that produced H_u, and a caller cannot forget the stop-gradient.

Losses (``csa.loss``): ``bce`` with ``n_negatives`` sampled negatives (``uniform`` or
``popularity``^alpha), or ``softmax`` of the positive against ``n_negatives`` other positives of the
batch (in-batch negatives, duplicates of the positive masked).
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from pitrec.config import Section
from pitrec.registry import SECTIONS


@SECTIONS.register("csa")
class CSAConfig(Section):
    dim: int = Field(64, ge=4)  # X_i's width (I2T's input)
    id_dropout: float = Field(0.1, ge=0, le=1)
    heads: int = Field(2, ge=1)
    mlp_hidden: list[int] = Field(default_factory=lambda: [128, 64, 32])  # + the output layer = 4 layers
    dropout: float = Field(0.1, ge=0, lt=1)
    loss: Literal["bce", "softmax"] = "bce"
    negatives: Literal["uniform", "popularity"] = "uniform"  # for loss=bce
    n_negatives: int = Field(8, ge=1)  # per positive; for softmax drawn from the batch (capped at B-1)
    popularity_alpha: float = Field(0.75, ge=0)  # sampling prob ~ count^alpha
    temperature: float = Field(1.0, gt=0)  # for loss=softmax

    @model_validator(mode="after")
    def _check_shapes(self) -> "CSAConfig":
        if self.dim % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide dim ({self.dim})")
        if any(h < 1 for h in self.mlp_hidden):
            raise ValueError(f"mlp_hidden widths must be >= 1, got {self.mlp_hidden}")
        return self


class ItemEmbedding(nn.Module):
    """X_i from the frozen content embedding, a learned id embedding and attribute embeddings."""

    def __init__(self, content: np.ndarray | torch.Tensor, item_attributes: Sequence[Sequence[int]] | None,
                 n_attributes: int, cfg: CSAConfig):
        super().__init__()
        content = torch.as_tensor(np.asarray(content), dtype=torch.float32)
        if content.ndim != 2:
            raise ValueError(f"content embeddings must be (n_items, D), got shape {tuple(content.shape)}")
        n_items = content.shape[0]
        ptr, flat = _attribute_csr(item_attributes, n_items, n_attributes)
        self.n_items, self.id_dropout = n_items, cfg.id_dropout
        self.register_buffer("content", content)  # frozen: a buffer, saved with the model
        self.register_buffer("attr_ptr", ptr)
        self.register_buffer("attr_flat", flat)
        self.content_proj = nn.Linear(content.shape[1], cfg.dim)
        self.id_emb = nn.Embedding(n_items, cfg.dim)
        self.attr_emb = nn.EmbeddingBag(max(1, n_attributes), cfg.dim, mode="mean")
        self.fuse = nn.Sequential(nn.Linear(3 * cfg.dim, cfg.dim), nn.GELU(), nn.Linear(cfg.dim, cfg.dim),
                                  nn.LayerNorm(cfg.dim))
        nn.init.normal_(self.id_emb.weight, std=0.02)
        nn.init.normal_(self.attr_emb.weight, std=0.02)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """items (...,) dense ids -> X (..., dim). Each distinct item is computed once and copied
        to its positions: a CSA step asks for ~9 items per target (positive and negatives), many
        of them repeats. So ``id_dropout`` drops an item's id view at all of its positions in a
        call, not at each one separately."""
        flat = items.reshape(-1)
        if flat.numel() and (flat.min() < 0 or flat.max() >= self.n_items):
            raise ValueError(f"item ids must lie in [0, {self.n_items}), got [{int(flat.min())}, {int(flat.max())}]")
        flat, where = torch.unique(flat, return_inverse=True)
        start, end = self.attr_ptr[flat], self.attr_ptr[flat + 1]
        counts = end - start
        within = torch.arange(int(counts.sum()), device=flat.device) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        attr_ids = self.attr_flat[torch.repeat_interleave(start, counts) + within]
        x = self.features(self.content[flat], attr_ids, torch.cumsum(counts, 0) - counts, self.id_emb(flat))
        return x[where].reshape(*items.shape, -1)

    def features(self, content: torch.Tensor, attr_ids: torch.Tensor, attr_offsets: torch.Tensor,
                 id_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """X for items given by features: content (B, D), attributes as EmbeddingBag input/offsets
        (bags may be empty), id vectors (B, dim) or None for an item the id table does not know."""
        ids = torch.zeros(content.shape[0], self.id_emb.embedding_dim, device=content.device) if id_vectors is None else id_vectors
        if self.training and self.id_dropout > 0 and id_vectors is not None:
            keep = torch.rand(ids.shape[0], 1, device=ids.device) >= self.id_dropout
            ids = ids * keep
        attrs = self.attr_emb(attr_ids, attr_offsets)
        return self.fuse(torch.cat([self.content_proj(content), ids, attrs], dim=-1))


class DINHead(nn.Module):
    """y_hat(u, i): target attention of X_i over sg(H_u), then a 4-layer MLP -> one logit."""

    def __init__(self, history_dim: int, cfg: CSAConfig):
        super().__init__()
        d = cfg.dim
        self.history_proj = nn.Linear(history_dim, d)
        self.null_slot = nn.Parameter(torch.zeros(1, 1, d))
        self.attn = nn.MultiheadAttention(d, cfg.heads, dropout=cfg.dropout, batch_first=True)
        layers: list[nn.Module] = []
        width = 4 * d
        for hidden in cfg.mlp_hidden:
            layers += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(cfg.dropout)]
            width = hidden
        self.mlp = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, history: torch.Tensor, valid: torch.Tensor, x: torch.Tensor,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        """history (W, S, H) states of W encoded sequences, x (B, N, dim) the items of B users,
        valid (B, S) True where user b may attend, rows (B,) the sequence of user b (default: b).

        Many users share one sequence: with a causal encoder every prefix of a training window
        is a user, and the prefix mask in ``valid`` tells them apart. The history projection and
        the attention's keys and values are therefore computed once per sequence and gathered
        per user: the same attention as nn.MultiheadAttention over each user's own copy of the
        states (tested), without the copies. The saving is small (5% of a CSA step on beauty,
        where the MLP dominates; benchmarks/tuning/aux_share_beauty.md)."""
        n_users = history.shape[0] if rows is None else rows.shape[0]
        if history.shape[1] != valid.shape[1] or valid.shape[0] != n_users or x.shape[0] != n_users:
            raise ValueError(f"history {tuple(history.shape)}, valid {tuple(valid.shape)}, items {tuple(x.shape)} "
                             f"and rows {None if rows is None else tuple(rows.shape)} disagree")
        keys = self.history_proj(history.detach())  # sg(H_u): the stop-gradient lives here
        keys = torch.cat([self.null_slot.expand(keys.shape[0], -1, -1), keys], dim=1)
        attn, heads = self.attn, self.attn.num_heads
        w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
        b_q, b_k, b_v = attn.in_proj_bias.chunk(3)
        k, v = F.linear(keys, w_k, b_k), F.linear(keys, w_v, b_v)
        if rows is not None:
            k, v = k[rows], v[rows]
        q = F.linear(x, w_q, b_q)
        split = lambda t: t.unflatten(-1, (heads, -1)).transpose(1, 2)  # (B, h, T, d/h)
        see = torch.cat([valid.new_ones(n_users, 1), valid], dim=1)[:, None, None, :]  # the null slot: always
        a = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=see,
                                           dropout_p=attn.dropout if self.training else 0.0)
        a = attn.out_proj(a.transpose(1, 2).flatten(2))
        return self.mlp(torch.cat([x, a, x * a, x - a], dim=-1)).squeeze(-1)


class CSA(nn.Module):
    def __init__(self, content: np.ndarray | torch.Tensor, item_attributes: Sequence[Sequence[int]] | None,
                 n_attributes: int, history_dim: int, cfg: CSAConfig, item_popularity: np.ndarray | None = None):
        super().__init__()
        self.cfg = cfg
        self.item_embedding = ItemEmbedding(content, item_attributes, n_attributes, cfg)
        self.din = DINHead(history_dim, cfg)
        n = self.item_embedding.n_items
        if cfg.loss == "bce" and cfg.negatives == "popularity":
            if item_popularity is None or len(item_popularity) != n:
                raise ValueError(f"negatives=popularity needs item_popularity with {n} counts")
            weights = torch.as_tensor(np.asarray(item_popularity), dtype=torch.float64).clamp(min=0) ** cfg.popularity_alpha
            if not float(weights.sum()) > 0:
                raise ValueError("item_popularity has no positive count")
        else:
            weights = torch.ones(n, dtype=torch.float64)
        self.register_buffer("neg_weights", (weights / weights.sum()).float(), persistent=False)

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """X_i for dense ids (...,) -> (..., dim); what I2T tokenises (it detaches them itself)."""
        return self.item_embedding(items)

    def score(self, history: torch.Tensor, valid: torch.Tensor, items: torch.Tensor,
              rows: torch.Tensor | None = None) -> torch.Tensor:
        """Interaction logits of items (B, N) for users with history states (B, S, H), or
        sequences' states (W, S, H) and the sequence of each user, ``rows`` (B,)."""
        return self.din(history, valid, self.item_vectors(items), rows)

    def sample_negatives(self, n_rows: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n_rows, n_negatives) item ids, uniform or ~popularity^alpha, with replacement."""
        k = self.cfg.n_negatives
        draws = torch.multinomial(self.neg_weights.cpu(), n_rows * k, replacement=True, generator=generator)
        return draws.view(n_rows, k).to(self.neg_weights.device)

    def loss(self, history: torch.Tensor, valid: torch.Tensor, positives: torch.Tensor,
             generator: torch.Generator | None = None, rows: torch.Tensor | None = None) -> torch.Tensor:
        """CSA loss of users (history states (B, S, H), valid (B, S)) and their positives (B,);
        with ``rows``, history holds sequences' states (W, S, H) and rows (B,) names each user's."""
        if self.cfg.loss == "softmax":
            return self._in_batch_softmax(history, valid, positives, generator, rows)
        negatives = self.sample_negatives(len(positives), generator)
        logits = self.score(history, valid, torch.cat([positives.unsqueeze(1), negatives], dim=1), rows)
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1.0
        weight = torch.ones_like(logits)
        weight[:, 1:] = (negatives != positives.unsqueeze(1)).float()  # an accidental hit is no negative
        return (F.binary_cross_entropy_with_logits(logits, labels, reduction="none") * weight).sum() / weight.sum()

    def _in_batch_softmax(self, history: torch.Tensor, valid: torch.Tensor, positives: torch.Tensor,
                          generator: torch.Generator | None, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Each user's positive against ``n_negatives`` other positives of the batch (all of them
        when ``n_negatives >= B - 1``). DIN scores every (user, item) pair separately, so the full
        B x B softmax costs B times the BCE loss (1.8 s vs 63 ms per step at B=256 on one CPU
        thread); a fixed number of in-batch negatives keeps the two losses comparable in cost.
        Copies of a user's own positive are masked: an item is never its own negative."""
        B = len(positives)
        k = min(self.cfg.n_negatives, B - 1)
        shifts = torch.cat([torch.zeros(1, dtype=torch.long), torch.randperm(B - 1, generator=generator)[:k] + 1])
        cols = (torch.arange(B).unsqueeze(1) + shifts.unsqueeze(0)).to(positives.device) % B  # column 0: own positive
        logits = self.din(history, valid, self.item_vectors(positives)[cols], rows) / self.cfg.temperature
        clash = positives[cols] == positives.unsqueeze(1)
        clash[:, 0] = False
        logits = logits.masked_fill(clash, float("-inf"))
        return F.cross_entropy(logits, torch.zeros(B, dtype=torch.long, device=logits.device))


def _attribute_csr(item_attributes: Sequence[Sequence[int]] | None, n_items: int,
                   n_attributes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item attribute lists -> (ptr (n_items+1,), flat ids); bad ids are errors naming the item."""
    if item_attributes is None:
        return torch.zeros(n_items + 1, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    if len(item_attributes) != n_items:
        raise ValueError(f"item_attributes has {len(item_attributes)} rows for {n_items} items")
    counts = np.fromiter((len(a) for a in item_attributes), dtype=np.int64, count=n_items)
    flat = np.fromiter((int(v) for a in item_attributes for v in a), dtype=np.int64, count=int(counts.sum()))
    bad = np.flatnonzero((flat < 0) | (flat >= n_attributes))
    if len(bad):
        item = int(np.searchsorted(np.cumsum(counts), bad[0], side="right"))
        raise ValueError(f"item {item}: attribute id {flat[bad[0]]} outside [0, {n_attributes})")
    return torch.from_numpy(np.concatenate([[0], np.cumsum(counts)])), torch.from_numpy(flat)
