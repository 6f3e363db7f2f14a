"""Helpers that serve one chapter each: its figures, widgets, synthetic data and explanations.

The package's core (:mod:`recbook.data`, :mod:`recbook.layers`, :mod:`recbook.models`,
:mod:`recbook.train`, :mod:`recbook.metrics`, :mod:`recbook.bench`, and the shared
:mod:`recbook.plots` and :mod:`recbook.widgets`) never imports from here. A chapter's helpers
hold the code its page shows or calls, so that the notebook stays short and the code is tested:

* :mod:`recbook.chapters.data` -- the data chapter;
* :mod:`recbook.chapters.fm` -- the factorization-machines chapter;
* :mod:`recbook.chapters.widedeep` -- the Wide & Deep chapter;
* :mod:`recbook.chapters.deepfm` -- the DeepFM chapter;
* :mod:`recbook.chapters.din` -- the Deep Interest Network chapter;
* :mod:`recbook.chapters.twotower` -- the two-tower retrieval chapter;
* :mod:`recbook.chapters.leaderboard` -- the leaderboard chapter;
* :mod:`recbook.chapters.gru4rec` -- the GRU4Rec chapter;
* :mod:`recbook.chapters.synthetic` -- synthetic data with planted structure, for teaching.
"""

from pathlib import Path

BOOK_RESULTS = Path(__file__).resolve().parents[2] / "book" / "results"
"""The repository's ``book/results`` folder: where a chapter's ``run_*`` helpers write the records
its page reads (with :func:`recbook.bench.read_results`)."""
