"""The book's models. Each takes a batch dict and returns logits ``[B]`` (no sigmoid)."""
from .din import DIN, DINBase
from .fm import FactorizationMachine
from .lr import LogisticRegression
from .poly2 import Poly2

__all__ = ["DIN", "DINBase", "FactorizationMachine", "LogisticRegression", "Poly2"]
