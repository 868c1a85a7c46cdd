"""Random initial values for many parameter arrays from one draw."""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def normals(key: jax.Array, shapes: Sequence[Sequence[int]], scale: float) -> list[jax.Array]:
    """Independent N(0, scale^2) float32 arrays of these shapes, sliced from one draw. Each draw is
    a threefry program of its own inside the jitted init (over a hundred unrolled ops); one per
    factor array made them most of the init's compile (training/loop.py: initial;
    benchmarks/results.md, startup.py)."""
    sizes = [math.prod(s) for s in shapes]
    flat = scale * jax.random.normal(key, (sum(sizes),), jnp.float32)
    ends = np.cumsum(sizes)
    return [flat[e - n:e].reshape(tuple(s)) for e, n, s in zip(ends, sizes, shapes)]
