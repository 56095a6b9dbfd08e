"""Content vectors for items added after training, in the space the run's embeddings live in.

PIT tokenises a new item from ``X = CSA(content, attributes)`` without an id row, so the one
thing the service must reproduce is the content embedding. MiniLM is stateless; TF-IDF's
vocabulary and SVD basis depend on the catalogue, so the encoder is refitted on the catalogue's
own texts (deterministic for the run's seed). Either way the result is CHECKED against vectors
the run saved (CSA keeps the content matrix in its checkpoint): if the refit does not reproduce
them (another library version, a missing model), new items cannot be embedded faithfully and
the service says so instead of tokenising from a different space.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

import numpy as np
import torch

from pitrec.embed.encoders import EncoderUnavailable
from pitrec.embed.stage import make_encoder
from pitrec.embed.text import item_texts
from pitrec.serve.catalog import Catalog
from pitrec.serve.errors import NotSupported
from pitrec.tokenizers.collaborative import unit_rows

log = logging.getLogger(__name__)
CHECK_ROWS = 16  # catalogue items re-embedded to check the reproduction
TOLERANCE = 1e-3  # max abs difference per coordinate (float32 SVD projections differ ~1e-6)


class NewItemEmbedder:
    """text -> content vector (1, D) for new items; built once, on the first new item."""

    def __init__(self, embed_cfg, catalog: Catalog, reference: np.ndarray | None, collaborative_dim: int = 0):
        """``collaborative_dim`` > 0: the run's content view was the tokenizer's input (``pit.item_content=
        tokenizer_input``), rows ``[unit text vector ; collaborative vector]``. New vectors are then
        given in that space, with a zero collaborative part: a new item has no interactions, as an
        item unseen in training had none when the collaborative vectors were built."""
        self.collaborative_dim = collaborative_dim
        if embed_cfg.encoder == "npy":
            raise NotSupported("this run's content embeddings were precomputed (embed.encoder=npy): the service "
                               "has no encoder for a new item's text")
        self.include_attributes = embed_cfg.include_attributes
        texts = item_texts(catalog.as_interactions(range(catalog.n_base)), self.include_attributes)
        try:
            encoder = make_encoder(embed_cfg)
            self._transform: Callable[[list[str]], np.ndarray] = encoder.fit(texts)
        except (EncoderUnavailable, NotImplementedError, ValueError) as exc:
            raise NotSupported(f"cannot embed new item text with the run's encoder {embed_cfg.encoder!r}: "
                               f"{exc}") from None
        self.verified = reference is not None
        if reference is not None:
            self._check(texts, reference, embed_cfg.encoder)
        else:
            log.warning("no saved content embeddings to check the %s encoder against (pit.csa=false); "
                        "new items are embedded unverified", embed_cfg.encoder)

    def _check(self, texts: list[str], reference: np.ndarray, encoder: str) -> None:
        rows = np.unique(np.linspace(0, len(texts) - 1, min(CHECK_ROWS, len(texts))).astype(int))
        again = self._widen(self._transform([texts[r] for r in rows]))
        if again.shape[1] != reference.shape[1]:
            raise NotSupported(f"the {encoder} encoder gives {again.shape[1]}-d vectors but the run was trained on "
                               f"{reference.shape[1]}-d ones: this run cannot embed new item text")
        text = again.shape[1] - self.collaborative_dim  # a catalogue item's collaborative part is its own
        diff = float(np.abs(again[:, :text] - reference[rows, :text]).max())
        if diff > TOLERANCE:
            raise NotSupported(f"re-embedding catalogue items with the {encoder} encoder does not reproduce the run's "
                               f"content vectors (max difference {diff:.3g} > {TOLERANCE}); this run cannot embed new "
                               f"item text faithfully")

    def __call__(self, catalog: Catalog, title: str, attributes: list[int], raw_id) -> np.ndarray:
        one = Catalog([raw_id], [title], [attributes], catalog.attribute_ids)
        return self._widen(self._transform(item_texts(one.as_interactions(), self.include_attributes)))

    def _widen(self, vectors: np.ndarray) -> np.ndarray:
        if not self.collaborative_dim:
            return vectors
        zeros = np.zeros((len(vectors), self.collaborative_dim), np.float32)
        return np.concatenate([unit_rows(vectors), zeros], axis=1)


def text_part(vectors: np.ndarray, collaborative_dim: int) -> np.ndarray:
    """The text columns of content vectors, as unit rows (a trained row's collaborative part is its
    own and a new item's is zero, so neighbours are found on the text alone)."""
    return unit_rows(vectors[:, :vectors.shape[1] - collaborative_dim])


def content_neighbour_sids(trained_text: np.ndarray, new_text: np.ndarray, primary_codes: np.ndarray, k: int,
                           max_sids: int, edge_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """``pit.new_item_sids=content_neighbours``: the primary SIDs of the ``k`` trained items whose
    text is nearest the new item's (cosine of unit rows, ties by item id), at most ``max_sids``,
    weighted by similarity (``edge_weight`` for the nearest). Neighbours sharing a SID give it
    once, at the nearer one's weight. Returns (codes (n, L), weights (n,))."""
    sim = trained_text @ new_text.reshape(-1)
    nearest = np.argsort(-sim, kind="stable")[:k]
    _, first = np.unique(primary_codes[nearest], axis=0, return_index=True)
    nearest = nearest[np.sort(first)][:max_sids]
    similarity = np.maximum(sim[nearest], 1e-3)
    return primary_codes[nearest], edge_weight * similarity / similarity[0]


class ItemTextRows:
    """Unit text rows of every item the service holds, for ``pit.new_item_text_affinity``: the
    trained items' from CSA's saved content rows; an added item's given at insertion or, for one
    restored from the journal or a snapshot, embedded from its catalogue entry on first use. Items
    are only appended, so the first n rows serve every version with n items. Shared by all
    versions, so it locks: a read path may embed a restored item while a writer inserts one. The
    rows live on the models' device, built once per new item count rather than moved per request."""

    def __init__(self, trained: np.ndarray, embed: Callable[[int], np.ndarray], device: torch.device | str = "cpu"):
        self.trained, self.embed, self.device = trained.astype(np.float32, copy=False), embed, device
        self.added: dict[int, np.ndarray] = {}
        self._rows: torch.Tensor | None = None
        self._lock = threading.Lock()

    def remember(self, item: int, row: np.ndarray) -> None:
        """An inserted item's row (an insertion that was not committed leaves its number to the next one)."""
        with self._lock:
            self.added[item] = row.astype(np.float32)
            if self._rows is not None and len(self._rows) > item:
                self._rows = None

    def first(self, n: int) -> torch.Tensor:
        """(n, D) rows of items 0..n-1."""
        with self._lock:
            if self._rows is None or len(self._rows) < n:
                for j in range(len(self.trained), n):
                    if j not in self.added:
                        self.added[j] = self.embed(j).astype(np.float32)
                added = [self.added[j] for j in range(len(self.trained), n)]
                self._rows = torch.from_numpy(np.concatenate([self.trained, *[r[None] for r in added]])).to(self.device)
            return self._rows[:n]
