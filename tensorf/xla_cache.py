"""JAX's persistent compilation cache, on by default for the command-line tools.

A run compiles its train step once per grid shape (seconds each on a CPU, about ten on a GPU
with autotuning), and renders compile too. With the cache, running the same recipe again loads
those programs from disk instead (benchmarks/results.md, "Persistent compilation cache").
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import jax

from tensorf.errors import warn

MAX_BYTES = 2 * 2**30  # least recently used entries go beyond this


def default_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tensorf-jax" / "xla"


def use_persistent_cache() -> None:
    """Cache compiled programs in default_dir(), unless JAX_COMPILATION_CACHE_DIR says where (or,
    set empty, that nothing is cached). Call before the first compile: JAX decides once."""
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return
    folder = default_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # else JAX would warn at every compile
        warn(f"cannot keep compiled programs in {folder} ({e.strerror}); every run compiles afresh. Set "
             "JAX_COMPILATION_CACHE_DIR to a writable folder, or empty to silence this")
        return
    jax.config.update("jax_compilation_cache_dir", str(folder))
    if importlib.util.find_spec("filelock") is not None:  # JAX's size limit needs it (requirements.txt)
        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
