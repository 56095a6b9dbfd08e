"""Item-to-Token: cached steps = teacher forcing, stop-gradient on X_i, beams distinct and sorted
(and in the trie when constrained), and it learns a tiny item -> SID map exactly."""

from __future__ import annotations

import pytest
import torch

from pitrec.index.trie import Trie
from pitrec.models.item_to_token import ItemToToken, ItemToTokenConfig

SIZES = [5, 4, 3]
DIM = 12


pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(seed: int = 0, **kw) -> ItemToToken:
    torch.manual_seed(seed)
    cfg = ItemToTokenConfig(**{"d_model": 16, "heads": 4, "layers": 2, "ffn": 32, "dropout": 0.0, **kw})
    return ItemToToken(DIM, SIZES, cfg)


def random_codes(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, s, (n,), generator=g) for s in SIZES], -1)


@torch.no_grad()
def test_cached_steps_equal_teacher_forcing():
    model = make_model().eval()
    x = torch.randn(6, DIM)
    codes = random_codes(6)
    bos, cache, prev, total = model.start_inputs(x), None, None, torch.zeros(6)
    for level, size in enumerate(SIZES):
        log_probs, cache = model.step(bos, prev, level, cache)
        assert log_probs.shape == (6, 1, size)
        torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(6, 1))
        total += log_probs[:, 0].gather(-1, codes[:, level:level + 1]).squeeze(-1)
        prev = codes[:, level:level + 1]
    torch.testing.assert_close(-total, model.nll(x, codes), atol=1e-5, rtol=1e-5)


def test_stop_gradient_on_item_embedding():
    model = make_model()
    producer = torch.nn.Linear(4, DIM)
    x = producer(torch.randn(5, 4))
    model.loss(x, random_codes(5)).backward()
    assert producer.weight.grad is None
    assert model.item_proj.weight.grad is not None and model.item_proj.weight.grad.abs().sum() > 0


@torch.no_grad()
def test_beams_are_distinct_sorted_and_scored_by_nll():
    model = make_model(seed=3).eval()
    x = torch.randn(4, DIM)
    result = model.generate(x, beam_width=7)
    assert result.codes.shape == (4, 7, 3)
    assert (result.log_probs[:, :-1] >= result.log_probs[:, 1:]).all()
    for b in range(4):
        assert len({tuple(c) for c in result.codes[b].tolist()}) == 7
        nll = model.nll(x[b:b + 1].expand(7, -1), result.codes[b])
        torch.testing.assert_close(-nll, result.log_probs[b], atol=1e-5, rtol=1e-5)
    # exhaustive check of the best SID for one item: beam 1 of the search is the argmax here
    # only if the search is exact, which a width of 5*4*3 guarantees
    full = model.generate(x[:1], beam_width=60)
    every = torch.cartesian_prod(*(torch.arange(s) for s in SIZES))
    best = (-model.nll(x[:1].expand(60, -1), every)).max()
    torch.testing.assert_close(full.log_probs[0, 0], best, atol=1e-5, rtol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("k", [1, 2])
def test_prefix_forced_beams_are_the_best_siblings(k):
    """Against exhaustive scoring of every SID below each item's prefix: a width that covers
    them all returns exactly them, in the order of their teacher-forced probability."""
    model = make_model(seed=4).eval()
    x = torch.randn(3, DIM)
    prefix = random_codes(3, seed=5)[:, :k]
    below = int(torch.tensor(SIZES[k:]).prod())
    result = model.generate(x, beam_width=below + 2, prefix=prefix)
    assert result.alive.sum(1).tolist() == [below] * 3  # one live beam per item until the prefix ends
    for b in range(3):
        live = result.codes[b][result.alive[b]]
        assert (live[:, :k] == prefix[b]).all()
        tails = torch.cartesian_prod(*(torch.arange(s) for s in SIZES[k:])).reshape(below, -1)
        every = torch.cat([prefix[b].expand(below, -1), tails], 1)
        exact = (-model.nll(x[b:b + 1].expand(below, -1), every)).sort(descending=True).values
        torch.testing.assert_close(result.log_probs[b][result.alive[b]], exact, atol=1e-5, rtol=1e-5)
    # a narrow search is approximate below the prefix, but stays in it and scores what it returns
    narrow = model.generate(x, beam_width=2, prefix=prefix)
    assert narrow.alive.all() and (narrow.codes[:, :, :k] == prefix[:, None]).all()
    nll = model.nll(x.repeat_interleave(2, 0), narrow.codes.reshape(6, -1))
    torch.testing.assert_close(-nll, narrow.log_probs.reshape(-1), atol=1e-5, rtol=1e-5)


def test_bad_prefix_is_named():
    model = make_model()
    with pytest.raises(ValueError, match=r"prefix must be \(2, k\) with 0 < k < 3"):
        model.generate(torch.randn(2, DIM), 2, prefix=torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="row 1 level 0: 5 outside"):
        model.generate(torch.randn(2, DIM), 2, prefix=torch.tensor([[0], [5]]))


@torch.no_grad()
def test_constrained_generation_stays_in_trie():
    model = make_model(seed=1).eval()
    allowed = random_codes(6, seed=9)
    trie = Trie.build(allowed, SIZES)
    result = model.generate(torch.randn(3, DIM), beam_width=8, trie=trie)
    alive = result.alive
    assert alive.sum(1).tolist() == [len({tuple(c) for c in allowed.tolist()})] * 3
    assert trie.contains(result.codes[alive]).all()


def test_bad_codes_are_named():
    model = make_model()
    with pytest.raises(ValueError, match="row 1 level 2: 3 outside"):
        model.nll(torch.randn(2, DIM), torch.tensor([[0, 0, 0], [1, 1, 3]]))
    with pytest.raises(ValueError, match=r"item embeddings must be \(B, 12\)"):
        model.nll(torch.randn(2, 5), torch.zeros(2, 3, dtype=torch.long))


def test_learns_a_tiny_item_to_sid_map():
    torch.manual_seed(0)
    n = 24
    x = torch.randn(n, DIM)
    codes = random_codes(n, seed=5)
    model = make_model(seed=0, d_model=32, heads=4, layers=1, ffn=64)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(150):
        opt.zero_grad()
        model.loss(x, codes).backward()
        opt.step()
    model.eval()
    top1 = model.generate(x, beam_width=1).codes[:, 0]
    accuracy = (top1 == codes).all(-1).float().mean().item()
    assert accuracy == 1.0
