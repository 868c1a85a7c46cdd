"""glibc's malloc set to keep freed memory for reuse, for the command-line tools and benchmarks.

XLA's CPU runtime allocates each run of a program's buffers afresh, many of them megabytes, from
its worker threads. glibc serves large requests with mmap and gives them back on free, and trims
its per-thread arenas as they empty, so the next training step faults every page in again: on a
2-core CPU a quarter of a training run's CPU time was the kernel's (`benchmarks/host_memory.py`,
`benchmarks/results.md`). One heap, never trimmed and never mapped per buffer, keeps those pages
for the next step. Only for the CPU backend: with an accelerator plugin installed (and
JAX_PLATFORMS not "cpu") the steps' buffers live on the device, and one arena shared by the
host's threads (the loop, the compiles ahead) is not worth the risk. Without glibc (macOS, musl)
nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.metadata
import importlib.util
import os

# mallopt's parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

OFF_VAR = "TENSORF_SYSTEM_MALLOC"  # set to 1: leave glibc's defaults (the benchmark's baseline)


def keep_freed_memory() -> bool:
    """Tune glibc's malloc for a process that trains or renders on the CPU. Call before JAX starts
    its threads (arenas made before stay). Returns whether it was tuned."""
    if os.environ.get(OFF_VAR, "") not in ("", "0") or _accelerator_installed():
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # One arena: a worker thread's frees go where the next step's allocations find them (with
    # two, or four, the faults stayed). No mmap per buffer, no trimming below 2 GiB free at the
    # heap's top, and 256 MiB of slack each time the heap grows, so that growth itself is rare.
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_TOP_PAD, 256 << 20))
    return all(mallopt(param, value) == 1 for param, value in settings)


def _accelerator_installed() -> bool:
    """Whether JAX will find a GPU or TPU plugin (its `jax_plugins` namespace or entry points)."""
    if os.environ.get("JAX_PLATFORMS", "").strip().lower() == "cpu":
        return False
    if importlib.util.find_spec("jax_plugins") is not None or importlib.util.find_spec("libtpu") is not None:
        return True
    return any(True for _ in importlib.metadata.entry_points(group="jax_plugins"))
