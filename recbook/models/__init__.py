"""The book's models. Each takes a batch dict and returns logits ``[B]`` (no sigmoid)."""
from .fm import FactorizationMachine
from .lr import LogisticRegression
from .poly2 import Poly2

__all__ = ["FactorizationMachine", "LogisticRegression", "Poly2"]
