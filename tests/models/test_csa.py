"""CSA: the stop-gradient on H_u, the item embedding's inputs, and that both losses learn a planted
user-cluster -> item-cluster preference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pitrec.models.csa import CSA, CSAConfig

N_CLUSTERS, PER_CLUSTER, H_DIM, C_DIM = 4, 6, 16, 10
N_ITEMS = N_CLUSTERS * PER_CLUSTER
ATTRIBUTES = [[i % 3] if i % 4 else [] for i in range(N_ITEMS)]  # some items have none
VARIANTS = [("bce", "uniform"), ("bce", "popularity"), ("softmax", "uniform")]


pytestmark = pytest.mark.usefixtures("one_thread")


def make_csa(loss: str = "bce", negatives: str = "uniform", seed: int = 0, **kw) -> CSA:
    torch.manual_seed(seed)
    cfg = CSAConfig(**{"dim": 16, "heads": 2, "mlp_hidden": [32, 16, 8], "dropout": 0.0, "loss": loss,
                       "negatives": negatives, "n_negatives": 6, **kw})
    content = np.random.default_rng(seed).normal(size=(N_ITEMS, C_DIM))  # uninformative on purpose
    popularity = np.arange(N_ITEMS) + 1
    return CSA(content, ATTRIBUTES, 3, H_DIM, cfg, item_popularity=popularity)


class Planted:
    """Users of cluster k have history states near centre k and buy items of cluster k."""

    def __init__(self, seed: int = 0):
        self.g = torch.Generator().manual_seed(seed)  # one stream: eval users share the training centres
        self.centres = torch.randn(N_CLUSTERS, H_DIM, generator=self.g) * 2

    def batch(self, n: int, length: int = 5):
        cluster = torch.randint(0, N_CLUSTERS, (n,), generator=self.g)
        states = self.centres[cluster].unsqueeze(1) + 0.3 * torch.randn(n, length, H_DIM, generator=self.g)
        valid = torch.rand(n, length, generator=self.g) < 0.8
        positives = cluster * PER_CLUSTER + torch.randint(0, PER_CLUSTER, (n,), generator=self.g)
        return states, valid, positives, cluster


@pytest.mark.parametrize("loss, negatives", VARIANTS)
def test_csa_loss_puts_no_gradient_on_history_producer(loss, negatives):
    csa = make_csa(loss, negatives)
    producer = torch.nn.Linear(8, H_DIM)  # stands in for the U2T encoder
    history = producer(torch.randn(5, 4, 8))
    csa.loss(history, torch.ones(5, 4, dtype=torch.bool), torch.tensor([0, 1, 2, 3, 3])).backward()
    assert producer.weight.grad is None and producer.bias.grad is None
    emb = csa.item_embedding
    for p in (emb.id_emb.weight, emb.content_proj.weight, emb.attr_emb.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0  # X_i itself is what CSA trains


@pytest.mark.parametrize("loss, negatives", VARIANTS)
def test_learns_planted_preferences(loss, negatives):
    csa = make_csa(loss, negatives, id_dropout=0.0)
    task = Planted()
    opt = torch.optim.Adam(csa.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    eval_states, eval_valid, _, eval_cluster = task.batch(64)  # unseen users of the same clusters

    def top_hit_rate() -> float:
        with torch.no_grad():
            csa.eval()
            scores = csa.score(eval_states, eval_valid, torch.arange(N_ITEMS).expand(64, -1))
            csa.train()
        top = scores.topk(PER_CLUSTER, dim=1).indices // PER_CLUSTER
        return (top == eval_cluster.unsqueeze(1)).float().mean().item()

    losses = []
    before = top_hit_rate()
    for _ in range(120):
        states, valid, positives, _ = task.batch(32)
        opt.zero_grad()
        value = csa.loss(states, valid, positives, generator=gen)
        value.backward()
        opt.step()
        losses.append(value.item())
    after = top_hit_rate()
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])
    assert after > 0.9 and before < 0.6  # chance is 1/4


def test_popularity_sampler_follows_counts():
    csa = make_csa("bce", "popularity", popularity_alpha=1.0)
    draws = csa.sample_negatives(4000, torch.Generator().manual_seed(0)).reshape(-1)
    freq = torch.bincount(draws, minlength=N_ITEMS).double() / draws.numel()
    expected = torch.arange(1, N_ITEMS + 1, dtype=torch.double) / (N_ITEMS * (N_ITEMS + 1) / 2)
    torch.testing.assert_close(freq, expected, atol=0.01, rtol=0.0)


def test_item_embedding_inputs_and_cold_start():
    csa = make_csa(id_dropout=0.5).eval()
    emb = csa.item_embedding
    items = torch.tensor([[0, 1], [4, 5]])
    x = csa.item_vectors(items)
    assert x.shape == (2, 2, 16) and torch.isfinite(x).all()
    # the table path equals the feature path with the item's own content, attributes and id
    one = emb.features(emb.content[[1]], torch.tensor([1]), torch.tensor([0]), emb.id_emb(torch.tensor([1])))
    torch.testing.assert_close(one[0], x[0, 1])
    # a new item: content + attributes, no id row
    cold = emb.features(torch.randn(1, C_DIM), torch.tensor([0, 2]), torch.tensor([0]))
    assert cold.shape == (1, 16) and torch.isfinite(cold).all()
    with pytest.raises(ValueError, match=r"item ids must lie in \[0, 24\)"):
        csa.item_vectors(torch.tensor([24]))


def test_empty_history_scores_are_finite():
    csa = make_csa().eval()
    scores = csa.score(torch.randn(2, 3, H_DIM), torch.zeros(2, 3, dtype=torch.bool), torch.tensor([[0, 1], [2, 3]]))
    assert torch.isfinite(scores).all()


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="item 2: attribute id 7 outside"):
        CSA(np.zeros((3, 4)), [[0], [], [7]], 3, H_DIM, CSAConfig(dim=8, heads=2))
    with pytest.raises(ValueError, match="needs item_popularity with 3 counts"):
        CSA(np.zeros((3, 4)), None, 0, H_DIM, CSAConfig(dim=8, heads=2, negatives="popularity"))
    with pytest.raises(ValueError, match="heads \\(3\\) must divide dim \\(8\\)"):
        CSAConfig(dim=8, heads=3)


def test_in_batch_softmax_masks_copies_of_the_positive():
    csa = make_csa("softmax", n_negatives=50)  # more than the batch holds: the full in-batch softmax
    states, valid = torch.randn(5, 3, H_DIM), torch.ones(5, 3, dtype=torch.bool)
    same = csa.loss(states, valid, torch.full((5,), 7))
    assert same.item() == 0.0  # every other candidate is the positive itself: nothing to contrast
    mixed = csa.loss(states, valid, torch.tensor([7, 7, 1, 2, 3]))
    assert mixed.item() > 0.0


def _reference_din(din, history, valid, x):
    """DIN as first written: nn.MultiheadAttention over each user's own copy of the states."""
    keys = din.history_proj(history)
    keys = torch.cat([din.null_slot.expand(keys.shape[0], -1, -1), keys], dim=1)
    pad = torch.cat([valid.new_zeros(valid.shape[0], 1), ~valid], dim=1)
    a, _ = din.attn(x, keys, keys, key_padding_mask=pad, need_weights=False)
    return din.mlp(torch.cat([x, a, x * a, x - a], dim=-1)).squeeze(-1)


def test_din_on_shared_sequences_equals_attention_over_per_user_copies():
    """Prefix users share their window's states (``rows``); the scores must be those of the
    plain per-user attention, empty prefixes (only the null slot) included."""
    csa = make_csa().eval()
    g = torch.Generator().manual_seed(3)
    windows = torch.randn(3, 5, H_DIM, generator=g)
    rows = torch.tensor([0, 0, 0, 1, 2, 2])
    valid = torch.rand(6, 5, generator=g) < 0.6
    valid[1] = False  # a user who may attend to nothing but the null slot
    x = csa.item_vectors(torch.randint(0, N_ITEMS, (6, 4), generator=g))
    fast = csa.din(windows, valid, x, rows)
    slow = _reference_din(csa.din, windows[rows], valid, x)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(csa.din(windows[rows], valid, x), slow, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="disagree"):
        csa.din(windows, valid, x)  # 6 users, 3 sequences and no rows


def test_item_vectors_of_repeated_items_equal_those_computed_one_by_one():
    csa = make_csa().eval()
    items = torch.tensor([[3, 3, 7], [0, 3, 23]])
    together = csa.item_vectors(items)
    for pos in np.ndindex(*items.shape):
        torch.testing.assert_close(together[pos], csa.item_vectors(items[pos].view(1))[0], rtol=1e-5, atol=1e-6)
    assert torch.equal(together[0, 0], together[1, 1])


def test_csa_loss_gradients_on_shared_sequences_equal_those_on_per_user_copies():
    """The loss the window step computes (rows) trains X_i and the head exactly as the loss on
    expanded per-target copies of the states would."""
    states = torch.randn(2, 4, H_DIM, generator=torch.Generator().manual_seed(5))
    rows, positives = torch.tensor([0, 0, 1]), torch.tensor([2, 9, 17])
    valid = torch.tensor([[True, False, False, False], [True, True, False, False], [True, True, True, True]])
    grads = []
    for shared in (True, False):
        csa = make_csa(id_dropout=0.0)
        gen = torch.Generator().manual_seed(0)
        loss = (csa.loss(states, valid, positives, generator=gen, rows=rows) if shared
                else csa.loss(states[rows], valid, positives, generator=gen))
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in csa.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 5
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6)
