"""Helpers of the DeepFM chapter, against independent references: brute-force pairwise sums and an
MLP computed by hand in NumPy, a hand-encoded base-36 string, gradients of a plain FM, leaderboard
summaries of a hand-made results table, and the source listing's problems reproduced with numbers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.axes import Axes

from recbook import widgets
from recbook.chapters import deepfm as chapter
from recbook.chapters.fm import user_movie_batch
from recbook.data import ctr_protocol, load_movielens100k
from recbook.metrics import auc
from recbook.models import DeepFM, FactorizationMachine, WideDeep


@pytest.fixture(scope="module")
def data():
    return ctr_protocol(load_movielens100k(progress=False))


def random_deepfm(schema, *, seed=0, std=0.2, hidden=(8, 4), dim=4, **kwargs):
    torch.manual_seed(seed)
    model = DeepFM(schema, dim=dim, hidden=hidden, **kwargs)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
    return model.eval()


def brute_force(model, batch):
    """bias + first order + pairs (a double loop) + the MLP in NumPy, per row: [B, 4]."""
    schema = model.schema
    offsets = np.asarray(schema.offsets)
    table = model.embedding.table.weight.detach().double().numpy()
    w = model.linear.weights.table.weight.detach().double().numpy()[:, 0]
    layers = [m for m in model.mlp if isinstance(m, torch.nn.Linear)]
    mats = [(m.weight.detach().double().numpy(), m.bias.detach().double().numpy()) for m in layers]
    out = []
    for r in range(len(batch["x"])):
        rows = list(batch["x"][r].numpy() + offsets[:-1])
        genres = [g for g in batch["genres"][r].numpy() if g != 0]
        vecs = [table[i] for i in rows] + [np.mean([table[g + offsets[-1]] for g in genres], axis=0)]
        first = sum(w[i] for i in rows) + np.mean([w[g + offsets[-1]] for g in genres])
        pairs = sum(vecs[i] @ vecs[j] for i in range(len(vecs)) for j in range(i + 1, len(vecs)))
        h = np.concatenate(vecs)
        for k, (W, b) in enumerate(mats):
            h = W @ h + b
            if k < len(mats) - 1:
                h = np.maximum(h, 0)
        out.append([float(model.linear.bias.detach()), first, pairs, float(h[0])])
    return np.asarray(out)


# --------------------------------------------------------------------------------------------
# Parts of one prediction, and the FM inside DeepFM
# --------------------------------------------------------------------------------------------

def test_deepfm_parts_match_a_brute_force_computation(data):
    model = random_deepfm(data.schema)
    for user, item in [(259, 255), (1, 50), (13, 1682)]:
        parts = chapter.deepfm_parts(model, data, user, item)["value"]
        assert list(parts.index) == ["bias", "first order", "FM (pairs)", "deep (MLP)", "logit"]
        ref = brute_force(model, user_movie_batch(data, user, item))[0]
        np.testing.assert_allclose(parts.iloc[:4].to_numpy(), ref, atol=1e-5)
        assert parts["logit"] == pytest.approx(ref.sum(), abs=1e-5)
        assert min(abs(ref[1]), abs(ref[2]), abs(ref[3])) > 1e-3     # every part is really there


def test_fm_part_is_the_deepfm_without_its_mlp(data):
    model = random_deepfm(data.schema)
    fm = chapter.fm_part(model)
    assert isinstance(fm, FactorizationMachine)
    batch = {k: v[:6] for k, v in data.test.items()}
    ref = brute_force(model, batch)
    with torch.no_grad():
        np.testing.assert_allclose(fm(batch).double().numpy(), ref[:, :3].sum(1), atol=1e-5)
    with torch.no_grad():   # a copy: changing the FM leaves DeepFM alone
        fm.embedding.table.weight.zero_()
    assert model.embedding.table.weight.abs().sum() > 0


def test_part_summary_on_a_model_without_a_deep_part(data):
    model = random_deepfm(data.schema)
    last = model.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    split = {k: v[:3000] for k, v in data.test.items()}
    table = chapter.part_summary(model, split)
    y = split["label"].numpy()
    with torch.no_grad():
        logit = model(split).double().numpy()
    assert list(table.index) == ["first order", "FM (pairs)", "deep (MLP)", "logit"]
    assert table.loc["deep (MLP)", "std over rows"] == 0
    assert table.loc["deep (MLP)", "AUC without it"] == pytest.approx(auc(y, logit), abs=1e-9)
    assert table.loc["logit", "AUC alone"] == pytest.approx(auc(y, logit), abs=1e-9)
    assert table.loc["logit", "std over rows"] == pytest.approx(logit.std(), rel=1e-5)


# --------------------------------------------------------------------------------------------
# The model on the page
# --------------------------------------------------------------------------------------------

def test_encode36_by_hand_and_round_trip():
    strings, step = chapter.encode36([[0.0, 1.0, -1.0]], width=1)
    # half = 18, step = 1/17: codes 18, 35, 1 -> "i", "z", "1"
    assert strings == ["iz1"] and step == pytest.approx(1 / 17)
    rng = np.random.default_rng(0)
    values = rng.normal(size=(5, 7))
    strings, step = chapter.encode36(values, width=3)
    assert all(len(s) == 21 for s in strings)
    assert np.abs(chapter.decode36(strings, step, 3) - values).max() <= step / 2 + 1e-12
    with pytest.raises(ValueError, match="values"):
        chapter.encode36([1.0, 2.0], width=2)


def test_tables_give_the_model_s_parts(data):
    model = random_deepfm(data.schema, hidden=(8, 4))
    tables = chapter.deepfm_tables(model, data)
    for user, item in [(259, 255), (1, 50)]:
        page = chapter.tables_parts(tables, user, item)
        ref = brute_force(model, user_movie_batch(data, user, item))[0]
        assert page["FM (pairs)"] == pytest.approx(ref[2], abs=2e-3)
        assert page["deep (MLP)"] == pytest.approx(ref[3], abs=2e-3)
        assert page["logit"] == pytest.approx(ref.sum(), abs=5e-3)


def test_parts_chart_ships_the_model_and_checks(data):
    model = random_deepfm(data.schema, hidden=(8, 4))
    candidates = [(u, m) for u in (1, 13, 259) for m in (1, 50, 181, 255)]
    chart = chapter.parts_chart(model, data, user=259, movie=50, checks=candidates, n_checks=2)
    assert isinstance(chart, widgets.BrowserChart)
    assert widgets.spec_bytes(chart.spec) < widgets.MAX_SPEC_BYTES
    assert set(widgets.bound_params(chart.spec)) == {"user", "movie"}
    checks = chart.spec["usermeta"]["recbook"]["checks"]
    assert len(checks) == 2
    for check in checks:     # the texts carry the model's own parts (brute force here)
        u, m = check["set"]["user"], check["set"]["movie"]
        ref = brute_force(model, user_movie_batch(data, u, m))[0]
        assert check["texts"][0] == "logit = " + f"{ref.sum():+.2f}".replace("-", "\N{MINUS SIGN}")
        assert check["texts"][2] == "deep (MLP) " + f"{ref[3]:+.2f}".replace("-", "\N{MINUS SIGN}")
    with pytest.raises(ValueError, match="batch normalisation"):
        chapter.parts_chart(random_deepfm(data.schema, batchnorm=True), data, user=259, movie=50)
    with pytest.raises(ValueError, match="user"):
        chapter.parts_chart(model, data, user=99999, movie=50)


def _vega_to_python(expr: str) -> str:
    """The Vega expressions the parts chart uses, as Python (enough of the language for them)."""
    import re

    expr = re.sub(r"parseInt\(substring\(([^,]+),(\d+),(\d+)\),36\)", r"int(\1[\2:\3], 36)", expr)
    expr = re.sub(r"(?<=[\w\]])\.([A-Za-z_]\w*)", r"['\1']", expr)              # datum.x -> datum['x']
    expr = re.sub(r"indexof\((\[[^\]]*\]), (\w+)\)", r"\1.index(\2)", expr)
    expr = re.sub(r"data\('(\w+)'\)", r"DATA['\1']", expr)
    return expr.replace("toNumber(", "NUM(")


def run_parts_spec(spec: dict, user: int, movie: int) -> dict:
    """Evaluate the parts chart's spec as the browser would for one user and movie: its
    expression parameters in order, then the shared transforms over the MLP table's rows."""
    import io

    data = {name: pd.read_csv(io.StringIO(csv)).to_dict("records") for name, csv in spec["datasets"].items()}
    env = {"DATA": data, "user": user, "movie": movie, "max": max, "pow": pow, "int": int,
           "NUM": lambda x: int(x) if float(x).is_integer() else float(x)}   # JavaScript indexes with any number
    for p in spec["params"]:
        if "expr" in p:
            env[p["name"]] = eval(_vega_to_python(p["expr"]), env)  # noqa: S307 - the chart's own expressions
    rows = [dict(r) for r in data[spec["data"]["name"]]]
    for t in spec["transform"]:
        if "calculate" in t:
            code = compile(_vega_to_python(t["calculate"]), t["as"], "eval")
            for r in rows:
                r[t["as"]] = eval(code, {**env, "datum": r})  # noqa: S307
        elif "aggregate" in t:
            assert not t.get("groupby") and all(a["op"] == "sum" for a in t["aggregate"])
            rows = [{a["as"]: sum(r[a["field"]] for r in rows) for a in t["aggregate"]}]
        elif "lookup" in t:   # the lookups only put the tables on the page: they match nothing
            key, table = t["lookup"], data[t["from"]["data"]["name"]]
            assert not {r[key] for r in rows} & {str(r[t["from"]["key"]]) for r in table}
        else:
            raise AssertionError(f"unexpected transform {t}")
    assert len(rows) == 1
    return rows[0]


def test_parts_chart_computes_the_model_as_the_browser_would(data):
    """The chart's own expressions, evaluated in Python, give the PyTorch model's parts; and one
    change of a control costs one row per unit of the first layer, not one per weight."""
    model = random_deepfm(data.schema, hidden=(16, 8), dim=4, std=0.3)
    chart = chapter.parts_chart(model, data, user=259, movie=50, checks=[(1, 1), (13, 181), (259, 50), (1, 50)],
                                n_checks=1)
    spec = chart.spec
    assert "sequence" not in str(spec["data"]) and spec["data"]["name"] == "dfm_mlp"
    assert len(pd.read_csv(__import__("io").StringIO(spec["datasets"]["dfm_mlp"]))) == 16   # one row per unit
    for user, movie in [(259, 50), (1, 1), (13, 181)]:
        got = run_parts_spec(spec, user, movie)
        ref = chapter.deepfm_parts(model, data, user, movie)["value"]
        assert got["fm"] == pytest.approx(ref["FM (pairs)"], abs=2e-3)
        assert got["deep"] == pytest.approx(ref["deep (MLP)"], abs=2e-3)
        assert got["first"] == pytest.approx(ref["first order"], abs=2e-3)
        assert got["logit"] == pytest.approx(ref["logit"], abs=5e-3)


def _without_calls(expr: str, name: str) -> str:
    """``expr`` with every call ``name(...)`` (nested parentheses included) replaced by ``@``."""
    while (i := expr.find(name + "(")) >= 0:
        depth, j = 0, i + len(name)
        while True:
            depth += {"(": 1, ")": -1}.get(expr[j], 0)
            j += 1
            if depth == 0:
                break
        expr = expr[:i] + "@" + expr[j:]
    return expr


def test_parts_chart_readout_fits_a_phone(data):
    """Every line of the readout is at most 40 characters, whatever the values (a number is
    written in 5: −0.00), and no view is wider than 300 px."""
    import json
    import re

    model = random_deepfm(data.schema, hidden=(8, 4))
    spec = chapter.parts_chart(model, data, user=259, movie=50, checks=[(1, 1), (13, 181), (259, 50)],
                               n_checks=1).spec
    widths = [int(w) for w in re.findall(r'"width": (\d+)', json.dumps(spec["vconcat"]))]
    assert widths and max(widths) <= 300
    lines = {}

    def walk(node):
        if isinstance(node, dict):
            if "calculate" in node and node["as"] in ("t", "s1", "s2", "u"):
                lines[node["as"]] = node["calculate"]
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(spec["vconcat"][0])
    assert set(lines) == {"t", "s1", "s2", "u"}
    for expr in lines.values():
        expr = _without_calls(expr, "format")
        for branch in (expr.split(" : ") if " ? " in expr else [expr]):
            branch = branch.split(" ? ")[-1]
            n = sum(len(x) for x in re.findall(r"'([^']*)'", branch)) + 5 * branch.count("@")
            assert n <= 40, (branch, n)


# --------------------------------------------------------------------------------------------
# Learned crosses and the shared gradient
# --------------------------------------------------------------------------------------------

def test_pair_weight_matrix_is_dot_products_of_table_rows(data):
    model = random_deepfm(data.schema)
    m = chapter.pair_weight_matrix(model, "gender", "occupation")
    table = model.embedding.table.weight.detach().double()
    ga, ob = data.schema.offset_of("gender"), data.schema.offset_of("occupation")
    assert m.shape == (data.schema["gender"].size - 2, data.schema["occupation"].size - 2)
    assert m.iloc[1, 3] == pytest.approx(float(table[ga + 3] @ table[ob + 5]), abs=1e-9)
    with pytest.raises(ValueError, match="field_b"):
        chapter.pair_weight_matrix(model, "gender", "gender")
    with pytest.raises(ValueError, match="field"):
        chapter.pair_weight_matrix(model, "gender", "nope")
    assert isinstance(chapter.plot_pair_weights(m), Axes)


def test_shared_gradients_of_a_deepfm_without_mlp_are_a_plain_fm_s(data):
    model = random_deepfm(data.schema)
    last = model.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()            # no gradient reaches the table through the MLP
    batch = {k: v[:512] for k, v in data.train.items()}
    table = chapter.shared_gradients(model, batch)
    assert (table["|gradient| via MLP"] == 0).all() and (table["MLP share"] == 0).all()
    fm = chapter.fm_part(model)        # the same FM, trained alone: its gradient by autograd
    loss = torch.nn.functional.binary_cross_entropy_with_logits(fm(batch) + last.bias, batch["label"])
    (g,) = torch.autograd.grad(loss, fm.embedding.table.weight)
    s = data.schema
    for name, start, size in zip(s.names, s.offsets, s.sizes):
        assert table.loc[name, "|gradient| via FM"] == pytest.approx(float(g[start:start + size].norm()), rel=1e-4)
    assert table.loc["item_id", "rows"] == len(torch.unique(batch["x"][:, s.names.index("item_id")]))


# --------------------------------------------------------------------------------------------
# The leaderboard, read
# --------------------------------------------------------------------------------------------

def fake_bench():
    rows = []
    for seed in range(3):
        rows += [dict(model="A", seed=seed, test_auc=0.70 + 0.001 * seed),
                 dict(model="B", seed=seed, test_auc=0.71 + 0.001 * seed),     # ahead by 0.01 each seed
                 dict(model="C", seed=seed, test_auc=0.70 + [0.002, -0.002, 0.001][seed])]
    df = pd.DataFrame(rows).assign(protocol="ctr", test_logloss=0.6, test_gauc=0.7, valid_auc=0.69,
                                   cpu_s_per_epoch=[1.0, 2.0, 3.0] * 3, epochs=[2, 4, 6] * 3)
    return df


def test_results_table_means_and_stds():
    t = chapter.results_table(fake_bench(), ["B", "A"])
    assert list(t.index) == ["B", "A"]
    assert t.loc["B", "test AUC"] == pytest.approx(0.711)
    assert t.loc["B", "test AUC ±"] == pytest.approx(np.sqrt(2 / 3) * 0.001)
    assert t.loc["A", "CPU s to train"] == pytest.approx(np.mean([1 * 2, 1 * 2, 1 * 2]))
    assert t.loc["A", "seeds"] == 3
    with pytest.raises(ValueError, match="no rows of model 'Z'"):
        chapter.results_table(fake_bench(), ["Z"])
    with pytest.raises(ValueError, match="models"):
        chapter.results_table(fake_bench(), "A")


def test_paired_table_verdicts():
    t = chapter.paired_table(fake_bench(), [("A", "B"), ("B", "A"), ("A", "C")])
    assert t.loc["B − A", "verdict"] == "B ahead" and t.loc["B − A", "mean"] == pytest.approx(0.01)
    assert t.loc["A − B", "verdict"] == "A behind"
    assert t.loc["C − A", "verdict"] == "tied"          # sign changes across seeds
    assert t.loc["C − A", "min"] == pytest.approx(-0.003) and t.loc["C − A", "max"] == pytest.approx(0.002)
    # the 90% t-interval of the mean difference: mean ± t(0.95, n-1) sd / sqrt(n)
    from scipy import stats
    d = fake_bench().pivot(index="seed", columns="model", values="test_auc").eval("C - A")
    half = stats.t.ppf(0.95, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    assert t.loc["C − A", "low"] == pytest.approx(d.mean() - half) and t.loc["C − A", "high"] == pytest.approx(d.mean() + half)
    assert t.loc["C − A", "low"] < 0 < t.loc["C − A", "high"]


def test_init_choice_is_the_paired_difference_on_validation():
    rows = [("recbook", "recbook", s, v) for s, v in [(0, 0.70), (1, 0.71), (2, 0.69)]]
    rows += [("recbook", chapter.XAVIER_VARIANT, s, v) for s, v in [(0, 0.702), (1, 0.709), (2, 0.693)]]
    rows += [("RecBole", chapter.XAVIER_VARIANT, 0, 0.9)]               # another side: not compared
    record = pd.DataFrame(rows, columns=["side", "variant", "seed", "valid_auc"])
    out = chapter.init_choice(record)
    assert out["seeds"] == 3 and out["ahead"] == 2
    assert out["mean"] == pytest.approx((0.002 - 0.001 + 0.003) / 3)
    assert out["low"] < out["mean"] < out["high"]
    with pytest.raises(ValueError, match="variant"):
        chapter.init_choice(record, variant="nope")
    committed = chapter.init_choice(chapter.read_ablation())          # the record the chapter cites
    assert committed["seeds"] >= 3


# --------------------------------------------------------------------------------------------
# The source listing
# --------------------------------------------------------------------------------------------

def test_listing_broadcasts_into_b_by_b(data):
    out = chapter.listing_broadcast(data, batch_size=64)
    assert out["output shape"] == (64, 64) and out["label shape"] == (64,)
    assert out["diagonal equals fixed"] is True
    assert out["off-diagonal share"] == pytest.approx(63 / 64)


def test_listing_forward_by_hand():
    torch.manual_seed(0)
    listing = chapter.ListingDeepFM([3, 4], embed_dim=2).eval()
    x = torch.tensor([[0, 1], [2, 3]])
    with torch.no_grad():
        out = listing(x)
        v = torch.stack([listing.embeddings[0](x[:, 0]), listing.embeddings[1](x[:, 1])], 1)
        lin = listing.linear[0](x[:, 0])[:, 0] + listing.linear[1](x[:, 1])[:, 0]
        pairs = (v[:, 0] * v[:, 1]).sum(1)
        deep = listing.dnn(v.reshape(2, -1))[:, 0]
    assert out.shape == (2, 2)
    # entry (a, b): row b's first-order part with row a's pairs and MLP
    expected = torch.sigmoid(lin[None, :] + (pairs + deep)[:, None])
    torch.testing.assert_close(out, expected)
    fixed = chapter.ListingDeepFMShapesFixed([3, 4], embed_dim=2, logits=True).eval()
    fixed.load_state_dict(listing.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fixed(x), lin + pairs + deep)


def test_listing_saturates_and_loses_gradients_at_initialisation(data):
    table = chapter.saturation_at_init(data, batch_size=2048)
    listing, ours = table.iloc[0], table.iloc[1]
    assert listing["std of initial logit"] > 5 and ours["std of initial logit"] < 0.1
    assert listing["saturated outputs"] > 0.05 and ours["saturated outputs"] == 0
    assert listing["zero gradient"] > 0.01 and ours["zero gradient"] == 0
    assert listing["initial loss"] > 3 * ours["initial loss"]
    # through sigmoid + BCELoss the gradient is zero exactly where float32 rounds p to 0 or 1
    assert listing["zero gradient"] == pytest.approx(listing["p exactly 0 or 1"])


def test_per_field_tables_count_their_tensors(data):
    table = chapter.time_per_field_tables(data, n_batches=4, repeats=2)
    assert table.loc["one table per field (listing)", "parameter tensors"] == 14 + 6
    assert table.loc["one shared table (recbook)", "parameter tensors"] == 3 + 6
    assert table.loc["one shared table (recbook)", "slowdown"] == 1.0
    assert (table["ms per step"] > 0).all()


def test_architecture_and_validation(data):
    ax = chapter.plot_deepfm_architecture(data.schema.names)
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "item_id" in texts and "128 → 256 → 128 → 1" in texts
    with pytest.raises(ValueError, match="fields"):
        chapter.plot_deepfm_architecture(["one"])
    with pytest.raises(ValueError, match="model: expected a recbook.models.DeepFM"):
        chapter.deepfm_parts(WideDeep(data.schema), data, 259, 255)
    with pytest.raises(ValueError, match="user_id: 99999"):
        chapter.deepfm_parts(DeepFM(data.schema), data, 99999, 255)
    with pytest.raises(ValueError, match="data: expected a recbook.data.CTRData"):
        chapter.listing_broadcast(object())
    with pytest.raises(ValueError, match="batch_size"):
        chapter.saturation_at_init(data, batch_size=0)
    with pytest.raises(ValueError, match="model: expected"):
        chapter.part_summary(WideDeep(data.schema), data.test)


# --------------------------------------------------------------------------------------------
# The configurations tried on validation
# --------------------------------------------------------------------------------------------

def test_committed_configurations_match_their_entries():
    from recbook import bench

    rows = bench.read_results(chapter.CONFIGS_FILE)
    entries = chapter.config_entries()
    names = {e.name for e in entries}
    assert set(rows["model"]) == names and not names & set(bench.REGISTRY)   # evidence, not leaderboard
    assert not rows.duplicated(["model", "protocol", "seed"]).any() and not rows["quick"].astype(bool).any()
    for e in entries:
        mine = rows[rows["model"] == e.name]
        assert set(mine["seed"]) == {0, 1, 2}, e.name
        assert set(mine["fingerprint"]) == {bench.fingerprint(e)}, f"{e.name}: re-run chapter.run_configs()"
    # each changes exactly one setting of the leaderboard's entry
    base = bench.REGISTRY["DeepFM"]
    for e in entries:
        changed = {k for k in {*e.params, *base.params} if e.params.get(k) != base.params.get(k)}
        changed |= {k for k in {*e.fit, *base.fit} if e.fit.get(k) != base.fit.get(k)}
        assert len(changed) == 1, (e.name, changed)


def test_parts_chart_brings_its_own_browser_checks():
    """Without ``checks`` the helper picks its candidates (the chart's user, a new user and a few
    fixed users × movies), so the chapter's visible call carries no test hooks."""
    from recbook.chapters import deepfm as chapter
    from recbook.data import ctr_protocol, load_movielens100k
    from recbook.models import DeepFM

    data = ctr_protocol(load_movielens100k(progress=False))
    torch.manual_seed(0)
    model = DeepFM.from_data(data, dim=4, hidden=(8, 4))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    chart = chapter.parts_chart(model, data, user=1, movie=50, n_checks=3)
    checks = chart.spec["usermeta"]["recbook"]["checks"]
    assert len(checks) == 3 and all(c["texts"] for c in checks)
