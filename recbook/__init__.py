"""recbook: deep recommendation models, small enough to read.

Subpackages: :mod:`recbook.data` (MovieLens-100K, features, protocols), :mod:`recbook.layers`
and :mod:`recbook.models` (the models, all returning logits), :mod:`recbook.train` (one ``fit``
for every chapter), :mod:`recbook.metrics`, :mod:`recbook.plots`, :mod:`recbook.widgets` and
:mod:`recbook.bench` (the leaderboard).
"""
__version__ = "0.1.0"
REPOSITORY_URL = "https://github.com/recbook/recbook"
