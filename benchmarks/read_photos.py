"""Reading JPEG photos downscaled: libjpeg's scaled decode (what read_rgb does) against a full
decode and an exact block average, in time per photo and in PSNR between the two.

    python benchmarks/read_photos.py [--photos DIR] [--factors 2 4 8] [--count 10]

Defaults to fox's 1080x1920 photos in ../shared/data/captures/fox/images.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tyro

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from tensorf.data.images import read_rgb  # noqa: E402
from tensorf.errors import exit_on_user_error  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Args:
    """Time reading JPEG photos at a downscale, and compare with the exact block average."""

    photos: Path = Path(__file__).resolve().parents[2] / "shared" / "data" / "captures" / "fox" / "images"
    """A folder of JPEG photos."""
    factors: tuple[int, ...] = (2, 4, 8)
    """Downscale factors."""
    count: int = 10
    """Photos to read (the first ones by name)."""


def exact(path: Path, f: int) -> np.ndarray:
    """The full decode's block mean, as read_rgb computed it before the scaled decode: each block
    summed as integers, divided once."""
    raw = iio.imread(path)
    h, w = raw.shape[:2]
    sums = raw.reshape(h // f, f, w // f, f, -1).sum(axis=(1, 3), dtype=np.uint32)
    return sums.astype(np.float32) / np.float32(255 * f * f)


def main(args: Args) -> None:
    files = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))[: args.count]
    if not files:
        raise SystemExit(f"{args.photos}: no JPEG photos")
    h, w = iio.imread(files[0]).shape[:2]
    print(f"{len(files)} photos of {w}x{h} from {args.photos}")
    print("| factor | read_rgb ms / photo | full decode + block mean ms / photo | PSNR between (dB) | max abs difference |")
    print("|---|---|---|---|---|")
    for f in args.factors:
        t_fast = t_exact = 0.0
        se, n, worst = 0.0, 0, 0.0
        for path in files:
            t = time.perf_counter()
            fast, _ = read_rgb(path, f)
            t_fast += time.perf_counter() - t
            t = time.perf_counter()
            ref = exact(path, f)
            t_exact += time.perf_counter() - t
            diff = fast.astype(np.float64) - ref
            se, n, worst = se + float(np.sum(diff ** 2)), n + diff.size, max(worst, float(np.abs(diff).max()))
        psnr = 10 * np.log10(n / se) if se else float("inf")
        print(f"| {f} | {1000 * t_fast / len(files):.0f} | {1000 * t_exact / len(files):.0f} | {psnr:.1f} | {worst:.3f} |",
              flush=True)


if __name__ == "__main__":
    with exit_on_user_error():
        main(tyro.cli(Args))
