"""recbook: deep recommendation models, small enough to read.

The core: :mod:`recbook.data` (MovieLens-100K, features, protocols), :mod:`recbook.layers` and
:mod:`recbook.models` (the models, all returning logits), :mod:`recbook.train` (one ``fit`` for
every chapter), :mod:`recbook.metrics`, :mod:`recbook.bench` (the leaderboard), and the figures
and widgets every chapter shares (:mod:`recbook.plots`, :mod:`recbook.widgets`).

Chapter helpers: :mod:`recbook.chapters` holds what serves one chapter only (its figures, widgets,
synthetic data). The core never imports it.
"""
__version__ = "0.1.0"
REPOSITORY_URL = "https://github.com/recbook/recbook"


def _sharp_figures_in_a_kernel() -> None:
    """Inline figures at twice the resolution in a notebook (recbook.plots.sharp_inline_figures), each
    also drawn with Chinese labels for the Chinese edition (recbook.i18n.chinese_figures)."""
    import sys

    if "ipykernel" in sys.modules:
        from recbook.i18n import chinese_figures
        from recbook.plots import sharp_inline_figures

        sharp_inline_figures()
        chinese_figures()


_sharp_figures_in_a_kernel()
