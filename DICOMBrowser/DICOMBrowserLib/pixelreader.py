"""Reading stored pixel frames fast (stub: signatures fixed, implementation follows)."""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

logger = logging.getLogger(__name__)


def read_frames(files: list[str], database: Any = None,
                frames: list[tuple[int, int]] | None = None) -> np.ndarray:
    """Stack of stored pixel frames, shape (n, rows, cols), in the stored dtype."""
    raise NotImplementedError


def apply_rescale(stack: np.ndarray, slopes: Sequence[float] | float,
                  intercepts: Sequence[float] | float) -> np.ndarray:
    """Modality rescale; int16 kept when it fits, else float32; never a float64 copy."""
    raise NotImplementedError
