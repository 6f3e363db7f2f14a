"""Scaling out: data parallelism, sharded embeddings and vector search beyond one process.

* :mod:`recbook.scale.data`: a seeded, shardable click-log generator (power-law ids, hidden taste
  groups), vocabulary statistics, frequency filtering against hashing, and a loader for MovieLens
  ratings files a reader has obtained.
* :mod:`recbook.scale.model`: the CTR model that is distributed, in plain PyTorch
  (:class:`~recbook.scale.model.ScaleCTR`) and on TorchRec (:class:`~recbook.scale.model.TorchRecCTR`).
* :mod:`recbook.scale.worker`: what each process of a ``torchrun`` run does (exactness checks,
  step cost per strategy, a streamed log).
* :mod:`recbook.scale.launch`: :func:`~recbook.scale.launch.run_distributed` starts the processes
  from Python and reads their results back; ``python -m recbook.scale.launch`` runs the large sizes.
* :mod:`recbook.scale.ann`: product quantisation with and without re-ranking.

TorchRec is optional: everything but the TorchRec tasks runs without it.
"""
