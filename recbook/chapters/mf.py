"""Helpers of the matrix-factorization chapter (``book/mf.ipynb``).

Matrix factorization is the factorization machine restricted to two one-hot fields, user id and
item id. The chapter builds that restriction from the CTR protocol's data
(:func:`two_field_data`), reads the FM's weights as the MF's biases and vectors
(:func:`mf_parameters`), and ranks the whole catalogue for one user with one matrix product
(:func:`catalogue_scores`). :func:`plot_mf_architecture` draws the model.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..data.features import Schema
from ..data.tensors import TensorData

__all__ = ["MF_FIELDS", "MFParameters", "TwoFieldData", "catalogue_scores", "mf_parameters",
           "plot_mf_architecture", "two_field_data"]

MF_FIELDS = ("user_id", "item_id")


@dataclass(frozen=True)
class TwoFieldData:
    """CTR rows that keep only some single-valued fields (default: user id and item id)."""

    schema: Schema
    train: TensorData
    valid: TensorData
    test: TensorData


def _restrict(rows: TensorData, columns: list[int]) -> TensorData:
    kept = {"x": rows["x"][:, columns]}
    for key in ("label", "user"):
        if key in rows:
            kept[key] = rows[key]
    return TensorData(kept)


def two_field_data(data, fields: Sequence[str] = MF_FIELDS) -> TwoFieldData:
    """The CTR protocol's rows (:func:`recbook.data.ctr_protocol`) with only ``fields``.

    The schema keeps those fields, in the given order; each split keeps their columns of ``x``,
    the labels and the user column (for GAUC). ``fields`` must be distinct single-valued fields of
    ``data.schema``.
    """
    schema = data.schema
    if isinstance(fields, str) or not isinstance(fields, Sequence) or len(fields) < 2:
        raise ValueError(f"fields: expected a sequence of at least two field names, got {fields!r}")
    if len(set(fields)) != len(fields):
        raise ValueError(f"fields: expected distinct names, got {list(fields)}")
    for name in fields:
        if name not in schema.names:
            raise ValueError(f"fields: no field {name!r}; expected names of {schema.names}")
        if schema[name].multi:
            raise ValueError(f"fields: {name!r} is multi-valued; expected single-valued fields")
    columns = [schema.column(name) for name in fields]
    small = Schema(tuple(schema[name] for name in fields))
    return TwoFieldData(small, _restrict(data.train, columns), _restrict(data.valid, columns),
                        _restrict(data.test, columns))


@dataclass(frozen=True)
class MFParameters:
    """An FM on (user id, item id) read as matrix factorization: global bias ``w0``, user biases
    ``b_user`` ``[n_users]``, item biases ``b_item`` ``[n_items]``, user vectors ``P``
    ``[n_users, k]`` and item vectors ``Q`` ``[n_items, k]`` (rows indexed by field codes)."""

    w0: torch.Tensor
    b_user: torch.Tensor
    b_item: torch.Tensor
    P: torch.Tensor
    Q: torch.Tensor


def mf_parameters(fm) -> MFParameters:
    """The MF parameters inside a :class:`recbook.models.FactorizationMachine` whose schema is
    exactly two single-valued fields (user first, item second); detached copies."""
    schema = getattr(fm, "schema", None)
    if not isinstance(schema, Schema) or len(schema) != 2 or schema.multi:
        names = schema.names if isinstance(schema, Schema) else None
        raise ValueError(f"fm: expected a FactorizationMachine over two single-valued fields, got fields {names}")
    n_user = schema.fields[0].size
    weights = fm.linear.weights.table.weight.detach()[:, 0]
    table = fm.embedding.table.weight.detach()
    return MFParameters(w0=fm.linear.bias.detach().clone(), b_user=weights[:n_user].clone(),
                        b_item=weights[n_user:].clone(), P=table[:n_user].clone(), Q=table[n_user:].clone())


def catalogue_scores(fm, user_code: int, item_codes=None):
    """Score every item for one user two ways: the FM's full logit (one forward pass over
    ``[user, item]`` rows) and the retrieval score ``<p_u, q_i> + b_i`` (one matrix product).

    ``item_codes`` defaults to every real item code (2 and up; 0 and 1 are padding and unknown).
    Returns ``(item_codes, full_logits, retrieval_scores)``, the last two ``[n]`` float tensors;
    they differ by ``w0 + b_u``, the same for every item.
    """
    params = mf_parameters(fm)
    n_users, n_items = len(params.b_user), len(params.b_item)
    if isinstance(user_code, bool) or not isinstance(user_code, (int, np.integer)) or not 0 <= user_code < n_users:
        raise ValueError(f"user_code: expected an integer code in [0, {n_users}), got {user_code!r}")
    codes = torch.arange(2, n_items) if item_codes is None else torch.as_tensor(item_codes, dtype=torch.long)
    if codes.dim() != 1 or len(codes) == 0 or int(codes.min()) < 0 or int(codes.max()) >= n_items:
        raise ValueError(f"item_codes: expected a non-empty 1-D array of codes in [0, {n_items})")
    x = torch.stack([torch.full_like(codes, int(user_code)), codes], dim=1)
    was_training = fm.training
    fm.eval()
    try:
        with torch.no_grad():
            full = fm({"x": x})
    finally:
        fm.train(was_training)
    scores = params.Q[codes] @ params.P[int(user_code)] + params.b_item[codes]
    return codes, full, scores



def plot_mf_architecture(*, ax=None):
    """Matrix factorization as a diagram: the user id looks up a vector ``p_u`` and a bias
    ``b_u``, the item id a vector ``q_i`` and a bias ``b_i``; the dot product of the two vectors
    and the three biases add up to the logit. Returns the matplotlib ``Axes``."""
    from functools import partial

    from ..plots import diagram_arrow, diagram_axes, diagram_box

    ax = diagram_axes(ax, (7.2, 3.2), (0, 100), (0, 42))
    box, arrow = partial(diagram_box, ax), partial(diagram_arrow, ax, head=10)
    grey, user, item, out = "#EAEAF2", "#DCE6F2", "#FBE3CF", "#D5EDE4"
    box(2, 27, 14, 5, "user id $u$", user, 9.5, "bold")
    box(2, 7, 14, 5, "item id $i$", item, 9.5, "bold")
    # one row of each table per id: a vector of k tastes and a bias
    box(27, 32, 20, 5, r"vector $\mathbf{p}_u$ ($k$)", user, 9.5)
    box(27, 24, 20, 5, r"bias $b_u$", user, 9.5)
    box(27, 12, 20, 5, r"bias $b_i$", item, 9.5)
    box(27, 4, 20, 5, r"vector $\mathbf{q}_i$ ($k$)", item, 9.5)
    for y0, y1 in ((29.5, 34.5), (29.5, 26.5)):
        arrow(16.6, y0, 26.4, y1)
    for y0, y1 in ((9.5, 14.5), (9.5, 6.5)):
        arrow(16.6, y0, 26.4, y1)
    box(55, 17.5, 16, 6, "dot product\n" + r"$\langle \mathbf{p}_u, \mathbf{q}_i \rangle$", grey, 9.5)
    arrow(47.6, 34.5, 57, 24.1)
    arrow(47.6, 6.5, 57, 16.9)
    box(80, 11, 18, 20, "logit\n" + r"$w_0 + b_u + b_i$" + "\n" + r"$+ \langle \mathbf{p}_u, \mathbf{q}_i \rangle$",
        out, 9.5, "bold")
    arrow(47.6, 26.5, 79.4, 26.5)
    arrow(47.6, 14.5, 79.4, 14.5)
    arrow(71.6, 20.5, 79.4, 20.5)
    ax.text(50, 40, "user table: $n$ rows; item table: $m$ rows", ha="center", fontsize=9, color="0.3")
    ax.text(89, 7.5, r"$P(\mathrm{liked}) = \sigma(\mathrm{logit})$", ha="center", va="center", fontsize=9,
            color="0.3")
    return ax
