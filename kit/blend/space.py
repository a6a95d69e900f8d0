"""The blending space (`space:` of an ensemble spec), decided in this one place.

- `probs`: a candidate is a member's probabilities; a blend is their weighted mean (an arithmetic mixture).
- `logits`: a candidate is a member's log-probabilities; a blend is the softmax of their weighted mean (a
  geometric mixture).

Candidates are converted into the space once, when they are built (`encode`); everything that reads them
back (blended predictions, the stack's features, per-candidate scores, the searches' log loss) goes through
the same object, so no other module compares the space's name.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from kit.metrics.scores import softmax

EPS32 = float(
    np.finfo(np.float32).eps
)  # probabilities are clipped to [eps, 1 - eps] as scikit-learn's log_loss


class Space(Protocol):
    name: str
    logits: bool  # a blend of log-probabilities (softmax gives its probabilities)

    def encode(self, log_probs: np.ndarray) -> np.ndarray:
        """Member log-probabilities -> candidate values in this space."""
        ...

    def to_probs(self, P: np.ndarray) -> np.ndarray:
        """Candidate values in this space -> probabilities (the inverse of `encode`)."""
        ...

    def blend(self, s: np.ndarray, total: float) -> np.ndarray:
        """A weighted sum [n, C] of candidates (weights summing to `total`) -> the blend's probabilities."""
        ...

    def log_loss(self, z: np.ndarray, true: np.ndarray, axis: int) -> float:
        """Mean -log p(true class) of the blend whose weighted mean is z (float64, classes on `axis`);
        `true` holds z at each row's true class."""
        ...


class Probs:
    name = "probs"
    logits = False

    def encode(self, log_probs: np.ndarray) -> np.ndarray:
        return np.exp(log_probs)

    def to_probs(self, P: np.ndarray) -> np.ndarray:
        return P

    def blend(self, s: np.ndarray, total: float) -> np.ndarray:
        return s / s.sum(axis=1, keepdims=True)

    def log_loss(self, z: np.ndarray, true: np.ndarray, axis: int) -> float:
        p = np.clip(true / z.sum(axis=axis), EPS32, 1 - EPS32)
        return float(-np.log(p).mean())


class Logits:
    name = "logits"
    logits = True

    def encode(self, log_probs: np.ndarray) -> np.ndarray:
        return log_probs

    def to_probs(self, P: np.ndarray) -> np.ndarray:
        return np.exp(P)

    def blend(self, s: np.ndarray, total: float) -> np.ndarray:
        return softmax(s / total)

    def log_loss(self, z: np.ndarray, true: np.ndarray, axis: int) -> float:
        m = z.max(axis=axis)
        lse = m + np.log(np.exp(z - np.expand_dims(m, axis)).sum(axis=axis))
        return float(-(true - lse).mean())


SPACES: dict[str, Space] = {"probs": Probs(), "logits": Logits()}


def as_space(space: str | Space) -> Space:
    """The space named by an ensemble spec's `space:` ('probs' or 'logits'), or the space itself."""
    if not isinstance(space, str):
        return space
    if space not in SPACES:
        raise ValueError(f"space must be one of {tuple(SPACES)}, got {space!r}")
    return SPACES[space]
