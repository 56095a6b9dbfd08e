"""User-to-Token: the encoder-decoder generative recommender of TIGER (and PIT's generator).

The encoder reads the user's history as semantic-ID codes, the decoder writes the next item's SID
one level at a time over the shared token vocabulary (level ``l`` code ``c`` is token
``offset[l] + c``), and level ``l`` is predicted only over its own range, so every output is a
well-formed SID. The model takes history CODES (B, T, L): PIT re-tokenises items during training
and the model must follow them. Item ids are an option (``u2t.history_item_ids``): a learned
embedding per item added to its codes' in the history; the decoder still writes SIDs.

Two history encodings (``u2t.history_encoding``):
- ``sid``: TIGER's input, every item as its L code tokens (T*L encoder positions);
- ``item``: one position per item, the sum of its code embeddings (T positions): L times fewer
  encoder positions, hence cheaper on CPU.

Written with its own attention layers (not ``nn.Transformer``) because beam search needs a
decoder step with a KV cache, and because the decoder input is laid out (B, C, T): C sequences per
user (beams or candidate SIDs) share one encoder memory. Cross-attention then runs as C*T queries
against that user's memory, so the memory is never copied per beam or per candidate.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from pitrec.config import Section
from pitrec.decoding.beam_search import BeamResult, beam_search
from pitrec.index.trie import Trie
from pitrec.models.layers import init_normal, level_log_probs, smoothed_nll
from pitrec.models.transformer_blocks import DecoderLayer, EncoderLayer
from pitrec.registry import SECTIONS


@SECTIONS.register("u2t")
class UserToTokenConfig(Section):
    # TIGER's size (4+4 layers, d_model 128, FFN 1024, dropout 0.1). TIGER has 6 heads of 64 dims
    # (T5 lets heads*d_kv exceed d_model); here heads must divide d_model, so 4 heads of 32.
    d_model: int = Field(128, ge=8)
    heads: int = Field(4, ge=1)
    encoder_layers: int = Field(4, ge=1)
    decoder_layers: int = Field(4, ge=1)
    ffn: int = Field(1024, ge=8)
    # applied to the embeddings and to every sub-layer's output (not to attention weights nor
    # inside the feed-forward: on CPU the extra masks cost ~15% of a training step, measured)
    dropout: float = Field(0.1, ge=0, lt=1)
    activation: Literal["relu", "gelu"] = "relu"  # T5/TIGER use ReLU; exact GELU is ~4x slower on CPU
    # both defaults chosen by measurement on beauty (benchmarks/tuning/tiger_beauty.md)
    history_encoding: Literal["item", "sid"] = "item"
    # bidirectional: TIGER's encoder. causal: every history position sees only earlier items, so
    # one encoder pass over a user's sequence serves all of its training prefixes (prefix_nll):
    # as accurate per epoch on beauty, 1.5x (item) to 1.9x (sid) more training pairs per CPU-second
    encoder_attention: Literal["bidirectional", "causal"] = "causal"
    max_history: int = Field(20, ge=1)  # item positions the encoder knows; longer histories keep the last ones
    # history items also get a learned item-id embedding, added to their code embeddings (not
    # TIGER's model: its history is SIDs only). Items unknown at training (cold start) get none.
    history_item_ids: bool = False
    # in training, each history item's id row is dropped (the item is encoded by its codes alone)
    # with this probability: on beauty the id rows alone sharpened the head of the ranking but
    # made the held-out SID less likely on average (memorised sequences)
    history_item_id_dropout: float = Field(0.0, ge=0, le=1)
    init_std: float = Field(0.02, gt=0)
    # training loss only: each level's target gets 1 - eps and the level's codes share eps evenly
    # (torch's cross_entropy label_smoothing); selection and ranking score plain -log P
    label_smoothing: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _heads_divide(self) -> "UserToTokenConfig":
        if self.d_model % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide d_model ({self.d_model})")
        return self


@dataclass
class Memory:
    """Encoder output of a batch of users: states (B, S, d) and which positions are real (B, S)."""

    states: torch.Tensor
    valid: torch.Tensor


class UserToToken(nn.Module):
    def __init__(self, codebook_sizes: Sequence[int], cfg: UserToTokenConfig, n_items: int = 0):
        super().__init__()
        if cfg.history_item_ids and n_items < 1:
            raise ValueError("u2t.history_item_ids needs the number of items the model is trained on")
        self.codebook_sizes = [int(s) for s in codebook_sizes]
        self.n_levels = len(self.codebook_sizes)
        self.history_encoding = cfg.history_encoding
        self.causal = cfg.encoder_attention == "causal"
        self.max_history = cfg.max_history
        sizes = torch.tensor(self.codebook_sizes)
        self.register_buffer("offsets", torch.cumsum(sizes, 0) - sizes, persistent=False)
        self.vocab_size = int(sizes.sum())
        d = cfg.d_model
        self.token_emb = nn.Embedding(self.vocab_size + 1, d)  # last row = BOS of the decoder
        # item position: counted back from the latest item (bidirectional), from the first (causal)
        self.history_pos = nn.Embedding(cfg.max_history, d)
        self.history_level = nn.Embedding(self.n_levels, d)  # which code of an item (sid encoding)
        self.target_pos = nn.Embedding(self.n_levels, d)
        # row n_items: padding and items unknown at training, kept at zero (never trained)
        self.n_items = int(n_items) if cfg.history_item_ids else 0
        self.item_id_dropout = cfg.history_item_id_dropout
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=n_items) if cfg.history_item_ids else None
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        self.encoder_norm, self.decoder_norm = nn.LayerNorm(d), nn.LayerNorm(d)
        self.head = nn.Linear(d, self.vocab_size)
        self.apply(partial(init_normal, std=cfg.init_std))  # zeroes the item table's padding row
        # causal: a causal memory state cannot know how recent its item is, so the decoder's
        # cross-attention gets a learned per-head bias on the distance from the latest item
        self.recency_bias = nn.Embedding(cfg.max_history, cfg.heads) if self.causal else None
        if self.recency_bias is not None:
            nn.init.zeros_(self.recency_bias.weight)

    # -- encoder ------------------------------------------------------------------------------
    def encode(self, history_codes: torch.Tensor, pad_mask: torch.Tensor, items: torch.Tensor | None = None) -> Memory:
        """history_codes (B, T, L), left-padded; pad_mask (B, T) True at padding (codes there are
        ignored); items (B, T): the history's item ids, needed with ``u2t.history_item_ids``.
        Histories longer than ``max_history`` keep their most recent items."""
        history_codes, pad_mask = history_codes[:, -self.max_history:], pad_mask[:, -self.max_history:]
        items = None if items is None else items[:, -self.max_history:]
        T = history_codes.shape[1]
        if self.causal:
            pos = torch.arange(T, device=pad_mask.device) - pad_mask.sum(1, keepdim=True)
        else:
            pos = torch.arange(T - 1, -1, -1, device=pad_mask.device).unsqueeze(0)
        return self._encode(history_codes, ~pad_mask, pos, items)

    def encode_by_length(self, history_codes: torch.Tensor, pad_mask: torch.Tensor, chunk: int = 64,
                         items: torch.Tensor | None = None) -> Memory:
        """``encode`` for ranking: users sorted by history length and encoded ``chunk`` at a time,
        each chunk cut to its longest history. A batch is padded to its longest history, most users'
        are shorter (beauty's test histories: 8 items on average, 20 at most), and the padding
        costs as much encoder work as real items. Same states at every real position; the cut
        positions hold zeros and are not valid, so the decoder (which masks them) is unchanged."""
        history_codes, pad_mask = history_codes[:, -self.max_history:], pad_mask[:, -self.max_history:]
        items = None if items is None else items[:, -self.max_history:]
        B, T = pad_mask.shape
        lengths = (~pad_mask).sum(1)
        states = valid = None
        for rows in torch.argsort(lengths, stable=True).split(chunk):
            n = max(int(lengths[rows].max()), 1)  # an empty history keeps one (padding) position, as in encode
            part = self.encode(history_codes[rows, T - n:], pad_mask[rows, T - n:],
                               None if items is None else items[rows, T - n:])
            if states is None:
                S = part.states.shape[1] // n * T
                states = part.states.new_zeros(B, S, part.states.shape[2])
                valid = torch.zeros(B, S, dtype=torch.bool, device=pad_mask.device)
            states[rows, S - part.states.shape[1]:] = part.states
            valid[rows, S - part.states.shape[1]:] = part.valid
        return Memory(states, valid)

    def _encode(self, codes: torch.Tensor, valid: torch.Tensor, pos: torch.Tensor,
                items: torch.Tensor | None = None) -> Memory:
        """codes (B, T, L), valid (B, T), item positions (B or 1, T), item ids (B, T) or None ->
        memory over T or T*L positions."""
        L = codes.shape[2]
        if L != self.n_levels:
            raise ValueError(f"history codes have {L} levels, the model {self.n_levels}")
        tokens = self.token_emb(self.offsets + codes.clamp(min=0))  # (B, T, L, d)
        pos = self.history_pos(pos.clamp(0, self.max_history - 1))  # (B or 1, T, d)
        if self.item_emb is not None:
            if items is None:
                raise ValueError("u2t.history_item_ids is on: encoding a history needs its item ids")
            known = (items >= 0) & (items < self.n_items)
            if self.training and self.item_id_dropout > 0:
                known &= torch.rand(known.shape, device=known.device) >= self.item_id_dropout
            pos = pos + self.item_emb(torch.where(known, items, self.n_items))  # one more term per item
        if self.history_encoding == "item":
            x = tokens.sum(2) + pos
        else:
            x = (tokens + self.history_level.weight + pos.unsqueeze(2)).flatten(1, 2)
            valid = valid.repeat_interleave(L, dim=1)
        # a user with no history still gets one (padding) position to attend to, instead of NaN
        valid = valid.clone()
        valid[:, -1] |= ~valid.any(1)
        mask = valid[:, None, None, :]
        if self.causal:  # each position sees itself and earlier real positions
            S = x.shape[1]
            eye = torch.eye(S, dtype=torch.bool, device=x.device)
            mask = (mask & torch.ones_like(eye).tril()) | eye
        x = self.drop(x)
        for layer in self.encoder:
            x = layer(x, mask)
        return Memory(self.encoder_norm(x), valid)

    # -- decoder ------------------------------------------------------------------------------
    def cross_keys_values(self, memory: Memory) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per decoder layer, the memory's keys/values: computed once per user, shared by every
        beam or candidate of that user."""
        return [layer.cross_attn.keys_values(memory.states) for layer in self.decoder]

    def _item_distance(self, S: int, device) -> torch.Tensor:
        """Distance of each memory position's item from the latest item (left-padded memory)."""
        back = torch.arange(S - 1, -1, -1, device=device)
        return back if self.history_encoding == "item" else torch.div(back, self.n_levels, rounding_mode="floor")

    def _cross_mask(self, memory: Memory) -> torch.Tensor:
        """Cross-attention mask of a memory from ``encode``: bool (B, 1, 1, S), or with a causal
        encoder the additive recency bias (B, h, 1, S), -inf at padding."""
        valid = memory.valid[:, None, None, :]
        if self.recency_bias is None:
            return valid
        dist = self._item_distance(valid.shape[-1], valid.device).clamp(max=self.max_history - 1)
        bias = self.recency_bias(dist).T[None, :, None, :]
        return torch.where(valid, bias, torch.tensor(float("-inf"), device=valid.device))

    def _decode(self, inputs: torch.Tensor, start: int, cross, cross_mask: torch.Tensor, cache) -> tuple[torch.Tensor, list]:
        """inputs (B, C, T) token ids at target positions start..start+T-1 -> log-probs of the
        level predicted at each position over its own range, (B, C, T, V_max) padded with -inf
        (levels may differ in size), and the extended caches."""
        T = inputs.shape[2]
        x = self.drop(self.token_emb(inputs) + self.target_pos.weight[start:start + T])
        new_cache = []
        for i, layer in enumerate(self.decoder):
            x, c = layer(x, cross[i], cross_mask, None if cache is None else cache[i])
            new_cache.append(c)
        h = self.decoder_norm(x)
        return level_log_probs(h, self.head, self.offsets, self.codebook_sizes, range(start, start + T)), new_cache


    def _teacher_inputs(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (..., L) -> decoder inputs (..., L): BOS then the tokens of levels 0..L-2."""
        bos = torch.full_like(codes[..., :1], self.vocab_size)
        return torch.cat([bos, self.offsets[:-1] + codes[..., :-1]], dim=-1)

    def _nll(self, memory: Memory, codes: torch.Tensor, cross_mask: torch.Tensor, cross=None,
             last_valid: torch.Tensor | None = None, share_bos: bool = False, smoothing: float = 0.0) -> torch.Tensor:
        if smoothing and last_valid is not None:  # its uniform term would ignore the renormalisation
            raise ValueError("label smoothing applies to the training loss, not to renormalised scores")
        cross = self.cross_keys_values(memory) if cross is None else cross
        inputs = self._teacher_inputs(codes)
        B, C, L = codes.shape
        if share_bos and C > 1:
            # the first position (BOS) sees only the user's memory: the same for every candidate of
            # a user, so it is computed once per user and its keys/values (one row, broadcast by the
            # cached attention) serve all C candidates
            first, cache = self._decode(inputs[:, :1, :1], 0, cross, cross_mask, None)
            first = first.expand(B, C, 1, first.shape[-1])
            if L == 1:
                log_probs = first
            else:
                rest, _ = self._decode(inputs[:, :, 1:], 1, cross, cross_mask, cache)
                width = max(first.shape[-1], rest.shape[-1])  # each call pads to its own levels' widest
                log_probs = torch.cat([F.pad(part, (0, width - part.shape[-1]), value=float("-inf"))
                                       for part in (first, rest)], dim=2)
        else:
            log_probs, _ = self._decode(inputs, 0, cross, cross_mask, None)
        picked = log_probs.gather(-1, codes.unsqueeze(-1)).squeeze(-1)
        if last_valid is not None:  # the last level renormalised over the allowed codes
            last = log_probs[..., -1, :self.codebook_sizes[-1]].masked_fill(~last_valid, float("-inf"))
            picked = torch.cat([picked[..., :-1], picked[..., -1:] - last.logsumexp(-1, keepdim=True)], -1)
        if smoothing:  # a training loss
            return smoothed_nll(picked, log_probs, smoothing)
        return -picked.sum(-1)

    def candidate_nll(self, memory: Memory, cand_codes: torch.Tensor, cand_mask: torch.Tensor | None = None,
                      last_valid: torch.Tensor | None = None, smoothing: float = 0.0) -> torch.Tensor:
        """-log P(SID | user) of C candidate SIDs per user, (B, C, L) -> (B, C), in one decoder
        pass against the shared memory. Masked-out candidates (cand_mask False) get +inf, so that
        softmax(-nll) gives them no weight and argmin never picks them. ``last_valid`` (B, C,
        V_last): the last level renormalised over these codes (the scores of beam search's
        ``renormalize_last``; ``Trie.last_level_mask`` gives them)."""
        if cand_codes.shape[-1] != self.n_levels:
            raise ValueError(f"candidate SIDs have {cand_codes.shape[-1]} levels, the model {self.n_levels}")
        nll = self._nll(memory, cand_codes.clamp(min=0), self._cross_mask(memory), last_valid=last_valid, share_bos=True,
                        smoothing=smoothing)
        if cand_mask is not None:
            nll = nll.masked_fill(~cand_mask, float("inf"))
        return nll

    def sid_nll(self, memory: Memory, codes: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
        """-log P(SID | user) of one SID per user, (B, L) -> (B,); with ``smoothing`` the
        label-smoothed training loss instead (summed over levels, like the NLL)."""
        return self.candidate_nll(memory, codes.unsqueeze(1), smoothing=smoothing).squeeze(1)

    def loss(self, history_codes: torch.Tensor, pad_mask: torch.Tensor, target_codes: torch.Tensor,
             items: torch.Tensor | None = None, smoothing: float = 0.0) -> torch.Tensor:
        """Mean next-token cross-entropy (per code), TIGER's training objective."""
        return self.sid_nll(self.encode(history_codes, pad_mask, items), target_codes, smoothing).mean() / self.n_levels

    def prefix_nll(self, window_codes: torch.Tensor, valid: torch.Tensor, n_last: int,
                   items: torch.Tensor | None = None, smoothing: float = 0.0) -> torch.Tensor:
        """Causal encoder only: one encoder pass over LEFT-padded item windows (B, m, L) scores
        each of the last ``n_last`` items from the items before it: (B, n_last), entry c =
        -log P(item j | window items < j) for j = m - n_last + c. Equals
        ``sid_nll(encode(prefix), item j)`` for every j whose prefix is real, at the cost of one
        encoder pass instead of ``n_last`` (entries of padding columns are meaningless)."""
        m = window_codes.shape[1]
        memory = self.encode_windows(window_codes, valid, items)
        mask, _ = self.prefix_mask(valid, n_last)
        return self._nll(memory, window_codes[:, m - n_last:].clamp(min=0), mask.repeat_interleave(self.n_levels, dim=2),
                         smoothing=smoothing)

    def encode_windows(self, window_codes: torch.Tensor, valid: torch.Tensor, items: torch.Tensor | None = None) -> Memory:
        """Causal encoder over LEFT-padded item windows (B, m, L); every prefix of a window is a
        user history (see ``prefix_mask``)."""
        if not self.causal:
            raise ValueError("prefix scoring needs u2t.encoder_attention=causal (a bidirectional state "
                             "depends on later items)")
        m = window_codes.shape[1]
        pos = torch.arange(m, device=valid.device) - (~valid).sum(1, keepdim=True)
        return self._encode(window_codes, valid, pos, items)

    def prefix_mask(self, valid: torch.Tensor, n_last: int) -> tuple[torch.Tensor, torch.Tensor]:
        """For the last ``n_last`` items j of windows (B, m): the additive cross mask (B, h, n_last, S)
        letting item j's decoder see only the memory of items < j (with the recency bias), and
        which memory positions that is, bool (B, n_last, S)."""
        m = valid.shape[1]
        if not 1 <= n_last < m:
            raise ValueError(f"n_last must lie in [1, {m - 1}] for windows of {m} items, got {n_last}")
        item = torch.arange(m * (self.n_levels if self.history_encoding == "sid" else 1), device=valid.device)
        if self.history_encoding == "sid":
            item = torch.div(item, self.n_levels, rounding_mode="floor")
        target = torch.arange(m - n_last, m, device=valid.device).unsqueeze(1)  # (C, 1)
        dist = target - 1 - item  # (C, S): how far back memory position's item is from item j-1
        # item j-1 is always allowed, so a query over a padding column still has a key (no NaN)
        allowed = ((dist >= 0) & valid[:, item].unsqueeze(1)) | (dist == 0)  # (B, C, S)
        bias = self.recency_bias(dist.clamp(0, self.max_history - 1)).permute(2, 0, 1)  # (h, C, S)
        return torch.where(allowed.unsqueeze(1), bias, torch.tensor(float("-inf"), device=valid.device)), allowed

    def prefix_pair_nll(self, memory: Memory, mask: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                        codes: torch.Tensor) -> torch.Tensor:
        """-log P(codes[p] | the items of window rows[p] before its target column cols[p]), (P, L) -> (P,),
        against the memory of ``encode_windows`` and the mask of ``prefix_mask``: ``candidate_nll`` of
        every listed (prefix, SID) pair in one decoder pass. Only the listed pairs are decoded, not a
        (window x target column x candidate) grid: in PIT's batches most of such a grid is padding
        (columns that are not targets, targets with fewer candidates or none to choose between)."""
        if codes.shape[-1] != self.n_levels:
            raise ValueError(f"SIDs have {codes.shape[-1]} levels, the model {self.n_levels}")
        used, slot = torch.unique(rows, return_inverse=True)  # memory keys/values once per window
        cross = [(k[slot], v[slot]) for k, v in self.cross_keys_values(Memory(memory.states[used], memory.valid[used]))]
        pair_mask = mask[rows, :, cols].unsqueeze(2)  # (P, h, 1, S)
        return self._nll(memory, codes.clamp(min=0).unsqueeze(1), pair_mask, cross).squeeze(1)

    def window_target_step(self, memory: Memory, mask: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor):
        """A ``decoding.beam_search.StepFn`` whose users are window targets: target p decodes
        against the memory of window rows[p] (``encode_windows``), masked by ``prefix_mask`` to the
        items before its column cols[p]. ``decoding.prefix_scoring`` drives it to score a target's
        candidate SIDs with their shared prefixes decoded once; ``prefix_pair_nll`` gives the same
        scores one (target, SID) pair at a time."""
        used, slot = torch.unique(rows, return_inverse=True)  # memory keys/values once per window
        cross = [(k[slot], v[slot]) for k, v in self.cross_keys_values(Memory(memory.states[used], memory.valid[used]))]
        target_mask = mask[rows, :, cols].unsqueeze(2)  # (P, h, 1, S)

        def step(prev_codes: torch.Tensor | None, level: int, cache):
            return self._step(len(rows), prev_codes, level, cross, target_mask, cache)

        return step

    def _step(self, n_users: int, prev_codes: torch.Tensor | None, level: int, cross, cross_mask: torch.Tensor,
              cache):
        """One decoder position for every sequence: BOS at level 0, else the previous level's codes
        (B, W) -> log-probs over level ``level``'s codes (B, W, V_level), and the extended cache."""
        if prev_codes is None:
            inputs = torch.full((n_users, 1, 1), self.vocab_size, dtype=torch.long, device=self.offsets.device)
        else:
            inputs = (self.offsets[level - 1] + prev_codes).unsqueeze(-1)
        log_probs, cache = self._decode(inputs, level, cross, cross_mask, cache)
        return log_probs[:, :, 0, :self.codebook_sizes[level]], cache

    def decode_step(self, memory: Memory, cross, prev_codes: torch.Tensor | None, level: int, cache,
                    rows: torch.Tensor | None = None):
        """One beam-search step (a ``decoding.beam_search.StepFn`` once memory/cross are bound):
        prev_codes (B, W) of level ``level - 1`` (None at level 0) -> log-probs (B, W, V_level).
        ``rows`` (N,): the beams of N users instead, prev_codes (N, S) and cache (N, S, ...), row n
        against the memory of user rows[n] (see ``beam_search``)."""
        if rows is not None:
            memory = Memory(memory.states[rows], memory.valid[rows])
            cross = [(k[rows], v[rows]) for k, v in cross]
        return self._step(memory.states.shape[0], prev_codes, level, cross, self._cross_mask(memory), cache)

    @torch.no_grad()
    def generate(self, memory: Memory, beam_width: int, trie: Trie | None = None,
                 renormalize_last: bool = False, cross=None) -> BeamResult:
        """The ``beam_width`` most probable SIDs per user (constrained to ``trie`` if given; with
        ``renormalize_last`` the last level is scored within each prefix, see ``beam_search``).
        ``cross``: the memory's ``cross_keys_values`` where the caller keeps them for later steps."""
        step = partial(self.decode_step, memory, self.cross_keys_values(memory) if cross is None else cross)
        return beam_search(step, memory.states.shape[0], self.codebook_sizes, beam_width, trie,
                           device=memory.states.device, renormalize_last=renormalize_last)
