"""What a run does before its first step, timed: reading lego's train and val views at full size,
building the ray pool, and creating the parameters and optimizer state (one jitted program).

    python benchmarks/startup.py [--data DIR] [--repeats 2]

Prints one line per phase and repeat (the first repeat pays for cold file caches and compiles).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import jax
import tyro

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from common import DEFAULT_LEGO, device_name  # noqa: E402
from tensorf.data.dataset import load_dataset  # noqa: E402
from tensorf.data.rays import RayPool  # noqa: E402
from tensorf.errors import exit_on_user_error  # noqa: E402
from tensorf.models.base import build_model  # noqa: E402
from tensorf.presets import LEGO  # noqa: E402
from tensorf.training.loop import initial  # noqa: E402
from tensorf.training.optimizer import make_optimizer  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Args:
    """Time the start of a lego run."""

    data: Path = DEFAULT_LEGO
    """Blender-format lego folder."""
    repeats: int = 2
    """Times to run each phase."""


def main(args: Args) -> None:
    data_cfg = dataclasses.replace(LEGO.data, path=args.data, eval_split="val", eval_views=tuple(range(0, 100, 4)))
    print(f"{device_name()}, jax {jax.__version__}")
    for r in range(args.repeats):
        t = time.perf_counter()
        data = load_dataset(data_cfg)
        t_load = time.perf_counter() - t
        t = time.perf_counter()
        pool = jax.block_until_ready(jax.device_put(RayPool.from_views(data.train)))
        t_pool = time.perf_counter() - t
        model = build_model(LEGO.model, data.scene)
        tx = make_optimizer(model, LEGO.optim)
        t = time.perf_counter()
        jax.block_until_ready(initial(model, tx, jax.random.key(r), model.initial_state()))
        t_init = time.perf_counter() - t
        print(f"repeat {r}: load {data.train.images.shape[0]} + {data.eval.images.shape[0]} views {t_load:.2f} s, "
              f"ray pool ({len(pool)} rays, colours {pool.colors.dtype} {pool.colors.nbytes / 2**20:.0f} MiB) on the device "
              f"{t_pool:.2f} s, params and optimizer state {t_init:.2f} s",
              flush=True)


if __name__ == "__main__":
    with exit_on_user_error():
        main(tyro.cli(Args))
