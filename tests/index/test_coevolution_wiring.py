"""The PIT building blocks fit together as the co-evolution loop will use them: U2T memory feeds
CSA, CSA's X_i feeds I2T, I2T's beams refresh the index, the index's candidates are scored by
U2T and the cheapest is recorded, and the index's trie constrains U2T decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pitrec.decoding.beam_search import beams_to_items
from pitrec.index.beam_index import BeamIndex
from pitrec.models.csa import CSA, CSAConfig
from pitrec.models.item_to_token import ItemToToken, ItemToTokenConfig
from pitrec.models.user_to_token import UserToToken, UserToTokenConfig
from pitrec.tokenizers import SidTable

SIZES = [4, 3, 3]
N_ITEMS = 20


pytestmark = pytest.mark.usefixtures("one_thread")


def test_one_coevolution_round_trip():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    table = SidTable(np.stack([rng.integers(0, s, N_ITEMS) for s in SIZES], 1), SIZES)
    index = BeamIndex.from_sid_table(table, max_sids_per_item=3)
    u2t = UserToToken(SIZES, UserToTokenConfig(d_model=16, heads=2, encoder_layers=1, decoder_layers=1, ffn=32,
                                               dropout=0.0, max_history=5))
    csa = CSA(rng.normal(size=(N_ITEMS, 8)), None, 0, 16, CSAConfig(dim=16, heads=2, n_negatives=3))
    i2t = ItemToToken(16, SIZES, ItemToTokenConfig(d_model=16, heads=2, layers=1, ffn=32))

    history = torch.from_numpy(rng.integers(0, N_ITEMS, (6, 5)))
    pad = torch.zeros(6, 5, dtype=torch.bool)
    pad[0, :3] = True
    target = torch.from_numpy(rng.integers(0, N_ITEMS, 6))
    codes = torch.from_numpy(index.primary_codes())
    memory = u2t.encode(codes[history], pad)

    # CSA on the detached memory; I2T on sg(X_i)
    x = csa.item_vectors(target)
    loss = csa.loss(memory.states, memory.valid, target) + i2t.loss(x, codes[target])
    assert torch.isfinite(loss)

    # I2T proposals refresh the index (dead beams masked, not fed as -inf scores)
    with torch.no_grad():
        proposals = i2t.generate(csa.item_vectors(torch.arange(N_ITEMS)), beam_width=4)
    version = index.version
    churn = index.refresh(torch.arange(N_ITEMS), proposals.codes, proposals.log_probs, proposals.alive)
    assert index.version == version + 1 and churn["edges_added"] > 0
    assert (index.sids_per_item() <= 3).all() and (index.sids_per_item() >= 1).all()

    # user-guided minimum-loss selection over each target's candidate SIDs
    cand, mask, _ = index.candidates(target.numpy(), max_c=3)
    with torch.no_grad():
        nll = u2t.candidate_nll(memory, torch.from_numpy(cand), torch.from_numpy(mask))
    best = nll.argmin(1)
    chosen = torch.from_numpy(cand)[torch.arange(6), best]
    assert torch.from_numpy(mask)[torch.arange(6), best].all()
    index.record_selections(target, chosen)
    held = index.items_for_sids(chosen.numpy(), max_items=N_ITEMS)[0]
    assert all(t in row for t, row in zip(target.tolist(), held.tolist()))

    # decoding through the index's one-to-many trie gives valid, distinct items
    trie = index.to_trie()
    result = u2t.generate(memory, beam_width=6, trie=trie)
    items, _ = beams_to_items(result.leaves, result.log_probs, trie, k=5)
    for row in items.tolist():
        real = [i for i in row if i >= 0]
        assert real and len(real) == len(set(real)) and all(0 <= i < N_ITEMS for i in real)
