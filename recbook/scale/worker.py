"""What each process of a distributed run does: ``torchrun ... -m recbook.scale.worker CONFIG OUT``.

Every process runs this module; ``torch.distributed`` (gloo, CPU) connects them. Rank 0 writes the
results as JSON to ``OUT``. ``CONFIG`` is a JSON file naming the tasks (see
:func:`recbook.scale.launch.run_distributed`, which writes it, starts the processes and reads the
results back):

* ``ddp_exact``: one step of ``DistributedDataParallel`` (each process half of the global batch)
  against one process on the whole batch, with dense and with sparse embedding gradients: the
  largest gradient difference.
* ``torchrec_exact``: the model sharded by TorchRec's ``DistributedModelParallel`` (table-wise and
  column-wise plans): the plan, the largest difference of the sharded forward from the unsharded
  one, and of every weight after one SGD step from one process's step on the global batch.
* ``cost``: step time and memory per process for each strategy (``ddp_dense``, ``ddp_sparse``,
  ``torchrec``) and each table size, and one process alone with sparse gradients (``single``).
"""
from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .data import ClickStream
from .model import ScaleCTR, TorchRecCTR, initial_weights, to_kjt

STRATEGIES = ("ddp_dense", "ddp_sparse", "torchrec", "single")


def rss_bytes() -> int:
    """Resident memory of this process now (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def tensor_bytes(obj) -> int:
    """Bytes of every tensor in ``obj`` (nested dicts/lists; sparse tensors by their indices and
    values; sharded tensors by this process's shards)."""
    if hasattr(obj, "local_shards"):
        return sum(tensor_bytes(s.tensor) for s in obj.local_shards())
    if isinstance(obj, torch.Tensor):
        if obj.is_sparse:
            obj = obj.coalesce()
            return tensor_bytes(obj.indices()) + tensor_bytes(obj.values())
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def _state_bytes(model, optimizers) -> int:
    """Weights, gradients and optimiser state held by this process."""
    if model is None:
        return 0
    total = tensor_bytes(model.state_dict())
    total += sum(tensor_bytes(p.grad) for p in model.parameters() if p.grad is not None)
    for opt in optimizers:
        total += tensor_bytes(opt.state_dict()["state"])
    return total


def _max_all(value: float) -> float:
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def _gather(obj) -> list:
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _batch(cfg: dict, rows, index: int = 0):
    stream = ClickStream(rows=list(rows), num_fields=len(rows), chunk_rows=int(cfg["batch"]), seed=int(cfg["seed"]))
    ids, labels = stream.chunk(index)
    return torch.from_numpy(ids), torch.from_numpy(labels)


def _local(x: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    n = x.shape[0] // world
    return x[rank * n:(rank + 1) * n]


def _dense(g: torch.Tensor) -> torch.Tensor:
    return g.coalesce().to_dense() if g.is_sparse else g


# --------------------------------------------------------------------------------------------- DDP
def ddp_exact(cfg: dict, rank: int, world: int) -> dict:
    rows = cfg["exact_rows"]
    ids, labels = _batch(cfg, rows)
    loss_fn = nn.BCEWithLogitsLoss()
    out = {}
    for sparse in (False, True):
        model = ScaleCTR(rows, cfg["dim"], cfg["hidden"], sparse=sparse, seed=cfg["seed"])
        ddp = DistributedDataParallel(model)
        loss_fn(ddp(_local(ids, rank, world)), _local(labels, rank, world)).backward()
        ref = ScaleCTR(rows, cfg["dim"], cfg["hidden"], sparse=sparse, seed=cfg["seed"])
        loss_fn(ref(ids), labels).backward()
        diff = max((_dense(p.grad) - _dense(q.grad)).abs().max().item()
                   for p, q in zip(model.parameters(), ref.parameters()))
        scale = max(_dense(q.grad).abs().max().item() for q in ref.parameters())
        out["sparse" if sparse else "dense"] = {"max_grad_diff": _max_all(diff), "max_grad": scale,
                                                "sparse_grad": bool(model.tables[0].weight.grad.is_sparse)}
    return out


# --------------------------------------------------------------------------------------- TorchRec
def load_full_weights(dmp, weights: dict[str, torch.Tensor]) -> int:
    """Copy full tables (``weights['table{f}']``) into this process's shards of a sharded model and
    the MLP's weights into its replica; return the embedding bytes this process holds."""
    held = 0
    with torch.no_grad():
        for name, value in dmp.state_dict().items():
            if "embedding_bags." in name:
                table = name.split("embedding_bags.")[1].split(".")[0]
                for shard in value.local_shards():
                    (r0, c0), (nr, nc) = shard.metadata.shard_offsets, shard.metadata.shard_sizes
                    shard.tensor.copy_(weights[table][r0:r0 + nr, c0:c0 + nc])
                    held += shard.tensor.numel() * shard.tensor.element_size()
            elif ".mlp." in name or name.startswith("mlp."):
                value.copy_(weights["mlp." + name.split("mlp.", 1)[1]])
    return held


def _read_shards(dmp) -> dict[str, list]:
    out = {}
    for name, value in dmp.state_dict().items():
        if "embedding_bags." in name:
            table = name.split("embedding_bags.")[1].split(".")[0]
            out[table] = [(tuple(s.metadata.shard_offsets), s.tensor.detach().clone()) for s in value.local_shards()]
    return out


def _plan_rows(plan) -> list[dict]:
    rows = []
    for module, shardings in plan.plan.items():
        for table, ps in shardings.items():
            for shard in ps.sharding_spec.shards:
                rows.append({"module": module, "table": table, "sharding": ps.sharding_type,
                             "kernel": ps.compute_kernel, "rank": int(shard.placement.rank()),
                             "rows": int(shard.shard_sizes[0]), "cols": int(shard.shard_sizes[1]),
                             "row_offset": int(shard.shard_offsets[0]), "col_offset": int(shard.shard_offsets[1])})
    return rows


def shard_model(rows, cfg: dict, sharding: str, *, lr: float, optimizer: str = "sgd"):
    """A :class:`TorchRecCTR` sharded over the process group with every table ``sharding``
    (``table_wise`` or ``column_wise``: the ones gloo supports), the embedding optimiser fused into
    the backward pass; returns (model, plan rows, dense optimiser)."""
    from torchrec.distributed import DistributedModelParallel
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
    from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward

    if sharding not in ("table_wise", "column_wise"):
        raise ValueError(f"sharding: expected 'table_wise' or 'column_wise' (row-wise needs GPUs), got {sharding!r}")
    model = TorchRecCTR(rows, cfg["dim"], cfg["hidden"], seed=cfg["seed"], device=torch.device("meta"))
    half = max(1, cfg["dim"] // dist.get_world_size())
    constraints = {f"table{f}": ParameterConstraints(sharding_types=[sharding],
                                                     min_partition=half if sharding == "column_wise" else None)
                   for f in range(len(rows))}
    planner = EmbeddingShardingPlanner(topology=Topology(world_size=dist.get_world_size(), compute_device="cpu"),
                                       constraints=constraints)
    sharders = [EmbeddingBagCollectionSharder()]
    plan = planner.collective_plan(model, sharders, dist.GroupMember.WORLD)
    opt_cls = {"sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad}[optimizer]
    apply_optimizer_in_backward(opt_cls, model.ebc.parameters(), {"lr": lr})
    dmp = DistributedModelParallel(model, device=torch.device("cpu"), plan=plan, sharders=sharders)
    # The embeddings are updated inside backward; the dense optimiser must not touch them again.
    dense = [p for n, p in dmp.named_parameters() if "embedding_bags" not in n]
    return dmp, _plan_rows(plan), opt_cls(dense, lr=lr)


def torchrec_exact(cfg: dict, rank: int, world: int) -> dict:
    rows, lr = cfg["exact_rows"], 0.5
    ids, labels = _batch(cfg, rows)
    weights = initial_weights(rows, cfg["dim"], cfg["hidden"], seed=cfg["seed"])
    loss_fn = nn.BCEWithLogitsLoss()
    # one process, the global batch: forward on this rank's rows and one SGD step
    ref = ScaleCTR(rows, cfg["dim"], cfg["hidden"], seed=cfg["seed"])
    with torch.no_grad():
        ref_local = ref(_local(ids, rank, world))
    opt = torch.optim.SGD(ref.parameters(), lr=lr)
    loss_fn(ref(ids), labels).backward()
    opt.step()
    out = {}
    for sharding in ("table_wise", "column_wise"):
        dmp, plan, dense_opt = shard_model(rows, cfg, sharding, lr=lr)
        held = load_full_weights(dmp, weights)
        kjt = to_kjt(_local(ids, rank, world), dmp.module.keys)
        with torch.no_grad():
            pooled = dmp.module.ebc(kjt)
            order = list(pooled.keys())
            by_key = torch.cat([pooled[k] for k in dmp.module.keys], dim=1)
            plan_order = pooled.values()
            logits = dmp(kjt)
        fwd = (logits - ref_local).abs().max().item()
        # one training step: loss on this rank's half; the fused SGD and DDP make it the global step
        loss_fn(dmp(kjt), _local(labels, rank, world)).backward()
        dense_opt.step()
        step = 0.0
        for table, shards in _read_shards(dmp).items():
            full = ref.tables[int(table[5:])].weight.detach()
            for (r0, c0), t in shards:
                step = max(step, (t - full[r0:r0 + t.shape[0], c0:c0 + t.shape[1]]).abs().max().item())
        for name, p in dmp.named_parameters():
            if "mlp." in name:
                q = dict(ref.named_parameters())["mlp." + name.split("mlp.", 1)[1]]
                step = max(step, (p.detach() - q.detach()).abs().max().item())
        out[sharding] = {"plan": plan, "output_keys": order, "declared_keys": list(dmp.module.keys),
                         "forward_max_diff": _max_all(fwd), "step_max_diff": _max_all(step),
                         "plan_order_max_diff": _max_all((plan_order - by_key).abs().max().item()),
                         "embedding_bytes": _gather(held)}
        del dmp
        gc.collect()
    out["full_embedding_bytes"] = sum(int(np.prod(weights[f"table{f}"].shape)) * 4 for f in range(len(rows)))
    return out


# ------------------------------------------------------------------------------------------- cost
def _timed_steps(step, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    dist.barrier()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    dist.barrier()
    return float(np.median(times))


def cost(cfg: dict, rank: int, world: int) -> list[dict]:
    out = []
    loss_fn = nn.BCEWithLogitsLoss()
    for size in cfg["cost_sizes"]:
        rows = [int(size)] * int(cfg["cost_fields"])
        batches = [_batch(cfg, rows, i) for i in range(2)]
        for strategy in cfg["strategies"]:
            if strategy == "ddp_dense" and size > int(cfg.get("dense_max_rows", size)):
                continue
            gc.collect()
            dist.barrier()
            before = rss_bytes()
            t0 = time.perf_counter()
            if strategy == "torchrec":
                model, _, opt = shard_model(rows, cfg, "table_wise", lr=0.05, optimizer="adagrad")
                load_full_weights(model, initial_weights(rows, cfg["dim"], cfg["hidden"], seed=cfg["seed"]))
                local = [(to_kjt(_local(x, rank, world), model.module.keys), _local(y, rank, world)) for x, y in batches]
            elif strategy in ("ddp_dense", "ddp_sparse"):
                # gradient_as_bucket_view: gradients live in DDP's communication buckets, not in a copy
                model = DistributedDataParallel(
                    ScaleCTR(rows, cfg["dim"], cfg["hidden"], sparse=strategy == "ddp_sparse", seed=cfg["seed"]),
                    gradient_as_bucket_view=True)
                opt = torch.optim.Adagrad(model.parameters(), lr=0.05)
                local = [(_local(x, rank, world), _local(y, rank, world)) for x, y in batches]
            elif strategy == "single":  # one process, sparse gradients, the whole global batch
                model = ScaleCTR(rows, cfg["dim"], cfg["hidden"], sparse=True, seed=cfg["seed"]) if rank == 0 else None
                opt = torch.optim.Adagrad(model.parameters(), lr=0.05) if rank == 0 else None
                local = batches
            else:
                raise ValueError(f"strategies: unknown strategy {strategy!r}; expected one of {STRATEGIES}")
            build = time.perf_counter() - t0
            state = {"i": 0}

            def step():
                if model is None:
                    return
                x, y = local[state["i"] % len(local)]
                state["i"] += 1
                opt.zero_grad()
                loss_fn(model(x), y).backward()
                opt.step()

            sec = _timed_steps(step, int(cfg["cost_steps"]), int(cfg.get("warmup", 2)))
            mems = _gather(rss_bytes() - before)
            optimizers = [opt] if opt is not None else []
            if strategy == "torchrec":
                optimizers.append(model.fused_optimizer)
            states = _gather(_state_bytes(model, optimizers))
            out.append({"rows": int(size), "fields": int(cfg["cost_fields"]), "dim": int(cfg["dim"]),
                        "batch": int(cfg["batch"]), "strategy": strategy, "processes": 1 if strategy == "single" else world,
                        "step_s": _max_all(sec if model is not None else 0.0), "build_s": _max_all(build),
                        "state_bytes": max(states), "rss_bytes": max(mems)})
            del model, opt, local
            gc.collect()
    return out


# ----------------------------------------------------------------------------------------- stream
def stream(cfg: dict, rank: int, world: int) -> dict:
    """Each process generates its own chunks of a ``stream_rows``-row log (no file, no
    communication) and counts the item ids; the counts are summed at the end. Then a table-wise
    sharded model trains for one pass over the first ``train_rows`` rows (global batch ``batch``)
    and is scored on a held-out chunk (area under the ROC curve, and the one the hidden groups
    alone would reach)."""
    from sklearn.metrics import roc_auc_score
    size, batch = int(cfg["stream_table_rows"]), int(cfg["batch"])
    gen = ClickStream(rows=size, num_fields=2, chunk_rows=int(cfg["chunk_rows"]), seed=int(cfg["seed"]))
    num_chunks = -(-int(cfg["stream_rows"]) // gen.chunk_rows)
    counts = torch.zeros(size, dtype=torch.int64)
    t = time.perf_counter()
    done = 0
    for ids, _ in gen.shard(rank, world, num_chunks):
        counts += torch.from_numpy(np.bincount(ids[:, 1], minlength=size))
        done += len(ids)
    generate = time.perf_counter() - t
    dist.all_reduce(counts)
    rows_done = _gather(done)
    out = {"rows": int(sum(rows_done)), "rows_per_process": rows_done, "table_rows": size,
           "generate_s": _max_all(generate), "distinct": int((counts > 0).sum()),
           "count_quantiles": {q: float(np.quantile(counts[counts > 0].numpy(), q)) for q in (0.5, 0.9, 0.99)}}
    if rank == 0:
        np.save(cfg["counts_path"], counts.numpy()) if cfg.get("counts_path") else None
    # one pass of training over the first train_rows rows, batch by batch
    rows = [size, size]
    model, _, opt = shard_model(rows, cfg, "table_wise", lr=float(cfg.get("lr", 0.05)), optimizer="adagrad")
    load_full_weights(model, initial_weights(rows, cfg["dim"], cfg["hidden"], seed=cfg["seed"]))
    trainer = ClickStream(rows=size, num_fields=2, chunk_rows=batch, seed=int(cfg["seed"]))
    loss_fn = nn.BCEWithLogitsLoss()
    steps = int(cfg["train_rows"]) // batch
    t = time.perf_counter()
    losses = []
    for i in range(steps):
        ids, labels = trainer.chunk(i)
        x, y = _local(torch.from_numpy(ids), rank, world), _local(torch.from_numpy(labels), rank, world)
        opt.zero_grad()
        loss = loss_fn(model(to_kjt(x, model.module.keys)), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    train = time.perf_counter() - t
    held_out = ClickStream(rows=size, num_fields=2, chunk_rows=65_536, seed=int(cfg["seed"]))
    ids, labels = held_out.chunk(10 ** 9)  # far beyond any chunk trained on
    x, y = _local(torch.from_numpy(ids), rank, world), _local(torch.from_numpy(labels), rank, world)
    with torch.no_grad():
        logits = model(to_kjt(x, model.module.keys))
    parts = _gather((logits.numpy(), y.numpy(), x.numpy()))
    if rank == 0:
        z = np.concatenate([p[0] for p in parts])
        yy = np.concatenate([p[1] for p in parts])
        xx = np.concatenate([p[2] for p in parts])
        match = held_out.group(xx[:, 0], 0) == held_out.group(xx[:, 1], 1)
        out.update({"auc": float(roc_auc_score(yy, z)), "oracle_auc": float(roc_auc_score(yy, match)),
                    "click_rate": float(yy.mean())})
    k = max(1, steps // 20)
    out.update({"train_rows": steps * batch, "train_s": _max_all(train), "steps": steps,
                "loss_curve": [float(np.mean(losses[i:i + k])) for i in range(0, steps, k)]})
    return out


# ------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: torchrun --nproc_per_node=N -m recbook.scale.worker CONFIG.json OUT.json", file=sys.stderr)
        return 2
    cfg = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    t0 = time.perf_counter()
    results = {"world": world, "config": cfg, "seconds": {}}
    tasks = {"ddp_exact": ddp_exact, "torchrec_exact": torchrec_exact, "cost": cost, "stream": stream}
    try:
        for task in cfg["tasks"]:
            t = time.perf_counter()
            results[task] = tasks[task](cfg, rank, world)
            results["seconds"][task] = time.perf_counter() - t
        results["seconds"]["total"] = time.perf_counter() - t0
        if rank == 0:
            tmp = Path(argv[1] + ".tmp")
            tmp.write_text(json.dumps(results, indent=1), encoding="utf-8")
            tmp.replace(argv[1])
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
