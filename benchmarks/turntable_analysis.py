"""What the turntable analysis costs (tensorf/turntable_sfm.py), beside COLMAP's own matching of
the same photos: each capture's features are analysed as `tensorf.poses --turntable yes` analyses
them, and then COLMAP matches every pair of a copy of its database, as `tensorf.poses` does next.

    python benchmarks/turntable_analysis.py [CAPTURE_OR_PHOTOS ...] [--no-colmap]

Each argument is a capture written by `python -m tensorf.poses PHOTOS --turntable no` (its
colmap/database.db holds every feature; one posed as a turntable has lost the room's), or a
folder of photos, posed that way into a temporary folder first. Defaults to head's 66 photos
(../shared/data/captures/head/images_8).
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tyro

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from tensorf import turntable_sfm  # noqa: E402
from tensorf.errors import UserError, exit_on_user_error  # noqa: E402
from tensorf.poses import PosesConfig, recover_poses  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclasses.dataclass(frozen=True)
class Args:
    """Time the turntable analysis of captures' features, and COLMAP's exhaustive matching of them."""

    inputs: tyro.conf.Positional[tuple[Path, ...]] = (SHARED / "captures" / "head" / "images_8",)
    """Captures posed with --turntable no, or folders of photos."""
    colmap: bool = True
    """Also time COLMAP's exhaustive matching (with its geometric verification) of every pair."""


def database(path: Path, scratch: Path) -> Path:
    """The COLMAP database holding every feature of the capture or photos at `path`."""
    db = path / "colmap" / "database.db"
    if db.is_file():
        return db
    if not path.is_dir():
        raise UserError(f"{path}: neither a capture with colmap/database.db nor a folder of photos")
    out = scratch / path.name
    recover_poses(PosesConfig(input=path, out=out, turntable="no"))
    return out / "colmap" / "database.db"


def measure(db: Path, scratch: Path, colmap: bool) -> str:
    import pycolmap

    handle = pycolmap.Database.open(str(db))
    try:
        counts = [len(handle.read_keypoints(im.image_id)) for im in handle.read_all_images()]
        size = max(max(c.width, c.height) for c in handle.read_all_cameras())
    finally:
        handle.close()
    start = time.perf_counter()
    analysis = turntable_sfm.analyse(db)  # as tensorf.poses runs it, reading the features included
    analysed = time.perf_counter() - start
    row = (f"| {len(counts)} | {size} | {int(np.median(counts))} | {len(turntable_sfm.pairs(len(counts)))} | "
           f"{analysed:.1f} | {100 * analysis.room_share:.1f}% | {analysis.one_motion:.2f} | "
           f"{'yes' if analysis.turntable else 'no'} |")
    if colmap:
        copy = scratch / "matched.db"
        shutil.copy(db, copy)
        handle = pycolmap.Database.open(str(copy))
        handle.clear_matches()
        handle.clear_two_view_geometries()
        handle.close()
        start = time.perf_counter()
        pycolmap.match_exhaustive(str(copy), device=pycolmap.Device.cpu)
        row += f" {len(counts) * (len(counts) - 1) // 2} | {time.perf_counter() - start:.1f} |"
        copy.unlink()
    return row


def main(args: Args) -> None:
    import pycolmap

    pycolmap.logging.minloglevel = 1
    head = ["capture", "photos", "size px", "features (median)", "pairs analysed", "analysis s", "room",
            "one motion", "turntable"] + (["pairs COLMAP matched", "COLMAP matching s"] if args.colmap else [])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    with tempfile.TemporaryDirectory() as scratch:
        for path in args.inputs:
            print(f"| {path} " + measure(database(path, Path(scratch)), Path(scratch), args.colmap), flush=True)


if __name__ == "__main__":
    with exit_on_user_error():
        main(tyro.cli(Args))
