"""Shared by the benchmark scripts: paths, the device's name and peak memory, and appending rows
to benchmarks/results.md."""

from __future__ import annotations

import os
import resource
from pathlib import Path

from tensorf.host_memory import keep_freed_memory

# Benchmarks time what the command-line tools do, and those tune malloc first (host_memory.py);
# every benchmark imports this module before JAX starts.
keep_freed_memory()

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LEGO = ROOT.parent / "shared" / "data" / "nerf_synthetic" / "lego"


def short_run_model():
    """The model and box (TensoRFConfig, aabb) of the tests' short runs on the generated scene
    (tests/conftest.py: trained_run, short_run): two upsamplings and mask updates, compacted."""
    from tensorf.config import TensoRFConfig

    model = TensoRFConfig(n_voxels_init=16**3, n_voxels_final=32**3, upsample_steps=(100, 250),
                          density_components=(4, 4, 4), appearance_components=(8, 8, 8), appearance_features=12,
                          mlp_hidden=32, max_samples=64, appearance_samples=8, mask_update_steps=(150, 300),
                          mask_threshold=3e-3, compaction="on")
    return model, ((-1.2, -1.2, -0.7), (1.2, 1.2, 1.2))


def add_rows(path: Path, section: str, header: str, rows: list[str]) -> None:
    """section: '## ...' line; header: the table's header + separator lines; rows: table lines."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = text.rstrip("\n").split("\n")
    if section not in lines:
        lines += ["", section, "", *header.strip("\n").split("\n"), *rows]
    else:
        i = lines.index(section) + 1
        while i < len(lines) and not lines[i].startswith("|"):
            i += 1
        while i < len(lines) and lines[i].startswith("|"):
            i += 1
        lines[i:i] = rows
    path.write_text("\n".join(lines) + "\n")


def peak_memory_gib() -> tuple[float, str]:
    """Peak memory so far: the accelerator's (memory_stats) where it reports one, else the process's RSS."""
    import jax

    stats = jax.devices()[0].memory_stats()
    if stats and "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2**30, "device"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "RSS"


def device_name() -> str:
    """The accelerator's kind (e.g. "NVIDIA H200"), or "N-core CPU"."""
    import jax

    d = jax.devices()[0]
    return f"{os.cpu_count()}-core CPU" if d.platform == "cpu" else d.device_kind
