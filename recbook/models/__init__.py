"""The book's models. Each takes a batch dict and returns logits (no sigmoid): ``[B]`` for a CTR
model; next-item and retrieval models also score the whole catalogue (``score_items``)."""
from .baselines import ItemKNNLast, MostPopular
from .deepfm import DeepFM
from .din import DIN, DINBase
from .fm import FactorizationMachine
from .gru4rec import GRU4Rec, GRU4RecConfig, SessionLoss, train_gru4rec
from .itemknn import ItemKNN
from .lr import LogisticRegression
from .poly2 import Poly2
from .twotower import TwoTower, two_tower_examples, two_tower_loss
from .widedeep import WideDeep, ensemble_loss, ftrl_adagrad

__all__ = ["DIN", "DINBase", "DeepFM", "FactorizationMachine", "GRU4Rec", "GRU4RecConfig", "ItemKNN", "ItemKNNLast",
           "LogisticRegression", "MostPopular", "Poly2", "SessionLoss", "TwoTower", "WideDeep",
           "ensemble_loss", "ftrl_adagrad", "train_gru4rec", "two_tower_examples", "two_tower_loss"]
