"""GRU4Rec: the state carried through session-parallel batches equals reading each prefix from
zero; the recurrence equals torch.nn.GRU; training scores have the positives on the diagonal;
AdagradM equals its formula; bad input names the field."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recbook.data.sessions import SessionParallelData
from recbook.models.gru4rec import GRU4Rec, GRU4RecConfig, SessionLoss, build_gru4rec
from recbook.optim import AdagradM

N_ITEMS = 40


def sequences(seed=0, n=9):
    rng = np.random.default_rng(seed)
    return [rng.integers(2, N_ITEMS, size=int(rng.integers(1, 9))) for _ in range(n)]


def model(**kw):
    torch.manual_seed(0)
    m = GRU4Rec(N_ITEMS, kw.pop("layers", (8, 6)), **kw)
    with torch.no_grad():  # weights of order 1, so that a wrong state shows in the scores
        for p in m.parameters():
            p.normal_(0, 0.5)
    return m


@pytest.mark.parametrize("tied", [True, False])
def test_carried_state_equals_reading_each_prefix_from_zero(tied):
    """Every row of every batch scores exactly as if its sequence's prefix had been read alone,
    from a zero state: the state is carried within a sequence and reset where the next one
    takes the slot."""
    seqs = sequences()
    m = model(tied=tied, **({} if tied else {"embedding_dim": 5})).eval()
    data = SessionParallelData(seqs, N_ITEMS, n_negatives=4, order="fixed")
    owner = {}
    checked = 0
    for batch in data.batches(3, generator=torch.Generator().manual_seed(0)):
        with torch.no_grad():
            scores = m(batch)
        cands = torch.cat([batch["target"], batch["negatives"]])
        # reconstruct which prefix each row has read, from the batch alone
        rows = []
        for r, (item, prev) in enumerate(zip(batch["item"].tolist(), batch["prev"].tolist())):
            prefix = [item] if prev < 0 else owner[prev] + [item]
            rows.append(prefix)
            full = m.score_next([np.array(prefix)])[0]
            torch.testing.assert_close(scores[r], full[cands], rtol=1e-5, atol=1e-5)
            checked += 1
        owner = dict(enumerate(rows))
    assert checked == len(data)


def test_recurrence_equals_torch_gru():
    m = model(layers=(7, 5), tied=False, embedding_dim=4)
    gru = torch.nn.GRU(4, 7, num_layers=1, batch_first=True)
    gru2 = torch.nn.GRU(7, 5, num_layers=1, batch_first=True)
    for ref, cell in ((gru, m.cells[0]), (gru2, m.cells[1])):
        with torch.no_grad():
            ref.weight_ih_l0.copy_(cell.weight_ih)
            ref.weight_hh_l0.copy_(cell.weight_hh)
            ref.bias_ih_l0.copy_(cell.bias_ih)
            ref.bias_hh_l0.copy_(cell.bias_hh)
    seqs = [np.array([5, 9, 2, 30]), np.array([7]), np.array([3, 3, 8])]
    got = m.final_state(seqs)
    for u, s in enumerate(seqs):
        x = m.input_vectors.detach()[torch.from_numpy(s)][None]
        with torch.no_grad():
            out, _ = gru2(gru(x)[0])
        torch.testing.assert_close(got[u], out[0, -1], rtol=1e-5, atol=1e-6)
    assert torch.all(m.final_state([np.array([], dtype=np.int64)]) == 0)


def test_training_scores_put_each_target_on_the_diagonal():
    m = model(layers=(6,)).eval()
    data = SessionParallelData(sequences(1), N_ITEMS, n_negatives=5)
    batch = next(data.batches(4, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        scores = m(batch)
    b = len(batch["item"])
    assert scores.shape == (b, b + 5)
    h = batch["state"].hidden[-1]  # the outputs of this step (eval mode: no dropout)
    w, bias = m.item_vectors.detach(), m.item_bias.detach()[:, 0]
    for i in range(b):
        t = batch["target"][i]
        assert scores[i, i].item() == pytest.approx((h[i] @ w[t] + bias[t]).item(), abs=1e-5)
    assert not batch["state"].hidden[0].requires_grad  # truncated back-propagation: one step


def test_tied_embedding_is_the_output_embedding():
    tied, untied = model(layers=(6,)), model(layers=(6,), tied=False)
    assert tied.input_vectors is None and untied.input_vectors is not None
    n_untied = sum(p.numel() for p in untied.parameters())
    assert sum(p.numel() for p in tied.parameters()) == n_untied - N_ITEMS * 6
    before = tied.final_state([np.array([5])])
    with torch.no_grad():
        tied.item_vectors[5] += 1.0
    assert not torch.allclose(tied.final_state([np.array([5])]), before)


def test_dropout_only_while_training():
    m = model(layers=(16,), dropout_embed=0.5, dropout_hidden=0.5)
    data = SessionParallelData(sequences(2), N_ITEMS, n_negatives=3)
    batch = next(data.batches(4, generator=torch.Generator().manual_seed(0)))
    m.train()
    a, b = m(dict(batch)), m(dict(batch, state=type(batch["state"])()))
    assert not torch.allclose(a, b)
    m.eval()
    with torch.no_grad():
        c, d = m(dict(batch, state=type(batch["state"])())), m(dict(batch, state=type(batch["state"])()))
    torch.testing.assert_close(c, d)


def test_fresh_model_starts_reserved_rows_at_zero_and_never_ranks_them():
    torch.manual_seed(0)
    m = GRU4Rec(N_ITEMS, (6,), tied=False)
    assert torch.all(m.item_vectors[:2] == 0) and torch.all(m.input_vectors[:2] == 0)
    bound = math.sqrt(6 / (N_ITEMS + 6))
    assert m.item_vectors.abs().max() <= bound and m.item_vectors.abs().max() > bound / 2
    s = m.score_next([np.array([3, 4])])
    assert s.shape == (1, N_ITEMS) and torch.all(torch.isinf(s[:, :2])) and torch.isfinite(s[:, 2:]).all()


def test_a_loss_step_lowers_the_loss_of_every_kind():
    data = SessionParallelData(sequences(3, n=20), N_ITEMS, n_negatives=8)
    for kind in ("cross-entropy", "bpr-max", "top1-max"):
        torch.manual_seed(0)
        m = GRU4Rec(N_ITEMS, (8,))
        loss = SessionLoss(kind, bpreg=0.5, elu=0.5 if kind == "bpr-max" else None)
        opt = AdagradM(m.parameters(), lr=0.1)
        batch = next(data.batches(6, generator=torch.Generator().manual_seed(0)))
        first = None
        for _ in range(20):
            b = dict(batch, state=type(batch["state"])())
            value = loss(m, b)
            opt.zero_grad()
            value.backward()
            opt.step()
            first = value.item() if first is None else first
        assert value.item() < first


def test_logq_correction_subtracts_the_batch_log_q_by_hand():
    scores = torch.tensor([[2.0, 0.5, 1.0], [0.0, 1.5, -1.0]])
    log_q = torch.tensor([1.0, 0.0, 2.0])

    class Fixed(torch.nn.Module):
        def forward(self, batch):
            return scores

    batch = {"log_q": log_q}
    # row 0: logits (2 - 0.5, 0.5 - 0, 1 - 1) = (1.5, 0.5, 0); row 1: (0 - 0.5, 1.5 - 0, -1 - 1)
    z = [(1.5, 0.5, 0.0), (-0.5, 1.5, -2.0)]
    by_hand = np.mean([-(r[i] - np.log(np.exp(np.array(r)).sum())) for i, r in enumerate(z)])
    got = SessionLoss("cross-entropy", logq=0.5)(Fixed(), batch)
    assert abs(got.item() - by_hand) < 1e-6
    with pytest.raises(ValueError, match="^batch: missing key 'log_q'"):
        SessionLoss("cross-entropy", logq=1.0)(Fixed(), {})


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_adagradm_dense_and_sparse_follow_the_formula(momentum):
    g1, g2 = torch.tensor([[1.0, -2.0], [0.0, 0.0], [0.5, 0.5]]), torch.tensor([[0.0, 0.0], [3.0, 1.0], [-1.0, 2.0]])
    lr, eps = 0.1, 1e-6
    # reference: acc += g^2; v = m v - lr g / sqrt(acc + eps); p += v  (rows without a sparse
    # gradient are left alone)
    p_ref, acc, v = torch.ones(3, 2), torch.zeros(3, 2), torch.zeros(3, 2)
    for g in (g1, g2):
        acc += g ** 2
        v = momentum * v - lr * g / torch.sqrt(acc + eps)
        p_ref += v
    dense = torch.ones(3, 2, requires_grad=True)
    opt = AdagradM([dense], lr=lr, momentum=momentum, eps=eps)
    for g in (g1, g2):
        dense.grad = g.clone()
        opt.step()
    torch.testing.assert_close(dense.detach(), p_ref)

    sparse = torch.ones(3, 2, requires_grad=True)
    opt = AdagradM([sparse], lr=lr, momentum=momentum, eps=eps)
    p_sp, acc, v = torch.ones(3, 2), torch.zeros(3, 2), torch.zeros(3, 2)
    for rows, g in (([0, 2], g1), ([1, 2], g2)):
        idx = torch.tensor(rows)
        sparse.grad = torch.sparse_coo_tensor(idx[None], g[idx], (3, 2), check_invariants=True)
        opt.step()
        acc[idx] += g[idx] ** 2
        v[idx] = momentum * v[idx] - lr * g[idx] / torch.sqrt(acc[idx] + eps)
        p_sp[idx] += v[idx]
    torch.testing.assert_close(sparse.detach(), p_sp)


def test_sparse_gradients_train_like_dense_ones_without_momentum():
    data = SessionParallelData(sequences(4, n=20), N_ITEMS, n_negatives=8)
    out = []
    for sparse in (False, True):
        torch.manual_seed(0)
        m = GRU4Rec(N_ITEMS, (8,), sparse_grad=sparse)
        opt = AdagradM(m.parameters(), lr=0.1)
        loss = SessionLoss("cross-entropy")
        for batch in data.batches(5, generator=torch.Generator().manual_seed(0)):
            value = loss(m, batch)
            opt.zero_grad()
            value.backward()
            opt.step()
        out.append(m.item_vectors.detach().clone())
    # A dense zero gradient adds nothing to Adagrad's accumulator and moves nothing: same result.
    torch.testing.assert_close(out[0], out[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make, field", [
    (lambda: GRU4Rec(2), "n_items"),
    (lambda: GRU4Rec(10, ()), "layers"),
    (lambda: GRU4Rec(10, (0,)), "layers"),
    (lambda: GRU4Rec(10, (4,), dropout_embed=1.5), "dropout_embed"),
    (lambda: GRU4Rec(10, (4,), dropout_hidden=1.0), "dropout_embed/dropout_hidden"),
    (lambda: GRU4Rec(10, (4,), embedding_dim=3), "embedding_dim"),
    (lambda: SessionLoss("softmax"), "kind"),
    (lambda: SessionLoss("bpr-max", bpreg=-1), "bpreg"),
    (lambda: SessionLoss("bpr-max", logq=1.0), "logq"),
    (lambda: AdagradM([torch.zeros(1, requires_grad=True)], lr=0), "lr"),
    (lambda: AdagradM([torch.zeros(1, requires_grad=True)], momentum=1.0), "momentum"),
])
def test_bad_settings_name_the_field(make, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        make()


def test_bad_batches_name_the_field():
    m = model(layers=(4,))
    data = SessionParallelData(sequences(), N_ITEMS, n_negatives=2)
    batch = next(data.batches(3))
    with pytest.raises(ValueError, match="^batch: missing key 'prev'"):
        m({k: v for k, v in batch.items() if k != "prev"})
    with pytest.raises(ValueError, match="^item: item code 1 is out of range"):
        m(dict(batch, item=torch.ones_like(batch["item"])))
    with pytest.raises(ValueError, match="^negatives: item code 40"):
        m(dict(batch, negatives=torch.full((2,), N_ITEMS)))
    with pytest.raises(ValueError, match="^target: has"):
        m(dict(batch, target=batch["target"][:1]))
    with pytest.raises(ValueError, match=r"^histories\[1\]"):
        m.score_next([np.array([3]), np.array([0, 3])])


def test_config_builds_the_network_it_describes():
    cfg = GRU4RecConfig(layers=(12, 10), tied=False, embedding_dim=9, dropout_embed=0.3, sparse=True)
    m = build_gru4rec(N_ITEMS, cfg)
    assert m.layers == (12, 10) and m.embedding_dim == 9 and m.dropout_embed == 0.3 and m.sparse_grad
    assert cfg.replace(loss="top1-max").loss == "top1-max" and cfg.loss == "bpr-max"


@pytest.mark.parametrize("split", ["valid", "test"])
def test_score_items_reads_each_whole_history_before_the_target(split):
    from recbook.data import SequenceData

    seqs = [s for s in sequences(4, n=6) if len(s)]
    valid, test = np.arange(2, 2 + len(seqs)), np.arange(10, 10 + len(seqs))
    data = SequenceData(np.arange(len(seqs)), seqs, valid, test, N_ITEMS)
    m = model().eval()
    got = m.score_items(data, split)
    assert got.shape == (len(seqs), N_ITEMS)
    for u, s in enumerate(seqs):
        history = list(s) + ([int(valid[u])] if split == "test" else [])
        h = m.zero_state(1)
        with torch.no_grad():
            for item in history:  # one user, one item at a time, from a zero state
                out, h = m.step(torch.tensor([item]), h)
            ref = out[0] @ m.item_vectors.T + m.item_bias[:, 0]
        torch.testing.assert_close(got[u, 2:], ref[2:], rtol=1e-5, atol=1e-5)
        assert torch.isinf(got[u, :2]).all()


def test_session_loss_lets_the_one_session_tail_of_an_epoch_through():
    """The last batch of a session-parallel epoch can hold one session; with no sampled negatives
    its cross-entropy is exactly 0 (no weight moves) and training goes on, while the loss function
    itself refuses that shape from a caller."""
    from recbook.losses import sampled_softmax_loss
    from recbook.models.gru4rec import SessionLoss

    w = torch.ones(1, 1, requires_grad=True)
    loss = SessionLoss("cross-entropy")(lambda batch: w * 3.0, {})
    assert loss.item() == 0.0
    loss.backward()
    assert w.grad is not None and w.grad.abs().sum().item() == 0.0
    with pytest.raises(ValueError, match="one row and no negative"):
        sampled_softmax_loss(torch.ones(1, 1))
