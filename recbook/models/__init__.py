"""The book's models. Each takes a batch dict and returns logits ``[B]`` (no sigmoid)."""
from .deepfm import DeepFM
from .din import DIN, DINBase
from .fm import FactorizationMachine
from .lr import LogisticRegression
from .poly2 import Poly2
from .popularity import Popularity
from .twotower import TwoTower, two_tower_examples, two_tower_loss
from .widedeep import WideDeep, ensemble_loss, ftrl_adagrad

__all__ = ["DIN", "DINBase", "DeepFM", "FactorizationMachine", "LogisticRegression", "Popularity", "Poly2",
           "TwoTower", "WideDeep", "ensemble_loss", "ftrl_adagrad", "two_tower_examples", "two_tower_loss"]
