"""Apply a jitted function to large arrays in fixed-size chunks (bounded memory, one compile)."""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np


def map_chunks(fn: Callable[..., Any], *arrays: np.ndarray, chunk: int, multiple: int = 1) -> Any:
    """fn(*chunks) over the leading axis of `arrays`, `chunk` rows at a time.

    The last chunk is padded by repeating its final row, so fn always sees one shape and
    compiles once; padded rows are cut from the result. Chunks stay a multiple of `multiple`
    rows (devices sharing each chunk). Returns fn's output pytree with numpy leaves concatenated
    along axis 0.
    """
    n = len(arrays[0])
    chunk = -(-max(1, min(chunk, n)) // multiple) * multiple
    outs = []
    for s in range(0, n, chunk):
        part = [np.asarray(a[s : s + chunk]) for a in arrays]
        pad = chunk - len(part[0])
        if pad:
            part = [np.concatenate([p, np.repeat(p[-1:], pad, 0)]) for p in part]
        out = fn(*part)
        outs.append(jax.tree.map(lambda x: np.asarray(x)[: chunk - pad], out))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)
