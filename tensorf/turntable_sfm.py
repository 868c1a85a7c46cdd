"""Turntable photos for SfM: find the features of the room, which stands still in the image while
the object turns, and take them out of COLMAP's database so that it poses the object alone.

On a turntable the object turns and the camera and the room stand still. COLMAP assumes one
rigid scene: the room's features say the camera never moved, the object's that it circled, and
the reconstruction settles between the two. On the `head` capture that put the focal length at
361 px against the capture's 943 and the cameras a median 2.7 units from their places, in a ring
3.7 across (docs/captures.md).

The room's features are told apart by staying put. Each pair of photos is matched (mutual
nearest neighbours that pass Lowe's ratio test); a feature matched within STILL of its own place
in many pairs stands still, and is the room's for sure. Not all of the room stands still in every
pair: photos from a second ring, or after a nudge, see it shifted, by one homography where the
camera only turned (or the room is a table top). So in each pair up to three homographies are
fitted in turn (RANSAC), and one whose matches are mostly sure room features brings all of its
matches into the room. Features that follow a homography without standing still mostly stay out:
a mat under the object is a plane too, but it turns with the object. (Its features near the axis,
which hardly move, and the object's, can join: 8% of a generated mat's, 13% of the object's.)

A capture is a turntable when the room and the rest move in two ways: in pairs where both
match, no one epipolar geometry (one rigid motion) explains nearly all matches
(`Analysis.one_motion`, the median share that the best one explains: head 0.82, the generated
turntable 0.69). A camera that looks at a still scene from nearly one place (fern,
forward-facing) sees a distant background stand still too, but one geometry explains 0.95 of
fern's matches. (Whether the room's matches keep to the geometry of the rest's alone is no
test: fitted to the rest, a compact object seen over a short baseline, that geometry is loose
away from it.) A camera that circles a scene with a sky
behind sees the sky move through the image. Only photos whose pixels partly match their median
(tensorf.data.turntable.measure, at a lower bar than training's) are analysed at all: the
analysis matches up to PAIRS pairs, costing about what COLMAP's own matching of the photos does
(benchmarks/turntable_analysis.py; figures in benchmarks/results.md).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import numpy as np

from tensorf.data.turntable import DETECT_SIZE, STATIC_CONTRAST, measure

FLAG = "--turntable"
RATIO = 0.8  # Lowe's ratio test
MIN_GROUP = 15  # matches a homography (or an epipolar geometry) needs to count
ERROR = 0.006  # RANSAC's inlier distance as a share of the image's longer side (3 px at 500 px)
STILL = 0.03  # a match that moves less than this share of the image's longer side stands still
SURE_SHARE = 0.12  # a feature that stands still in this share of its photo's pairs is the room's
MAX_GROUPS = 3  # homographies fitted in turn in each pair
PAIRS = 2500  # photo pairs matched at most (all of them up to 71 photos); the matching's cost
PIXEL_GATE = 0.05  # analysed when more than this share of the pixels matches the median (training's bar: 0.1)
# ... and those pixels are not one flat colour (training's bar, tensorf.data.turntable
# STATIC_CONTRAST): a plain backdrop (a light box, the transparent background of a render) holds
# no features for the analysis to find, and matching every pair of 100 such photos took minutes.
ONE_MOTION = 0.9  # a turntable: one epipolar geometry explains under this share of a pair's matches (median),
MIN_ROOM = 0.03  # and at least this share of the features is the room's
MIN_COMPARED = 10  # pairs compared, at least
COMPARED = 200  # pairs compared, at most


@dataclasses.dataclass(frozen=True)
class Analysis:
    """What the analysis found: room (a bool array per photo: which of its features are the
    room's), room_share (of all features) and, over `compared` pairs where the room and the rest
    both match, the median share of the matches that one epipolar geometry explains (one_motion)."""

    room: list[np.ndarray]
    room_share: float
    one_motion: float
    compared: int

    @property
    def turntable(self) -> bool:
        return self.compared >= MIN_COMPARED and self.one_motion < ONE_MOTION and self.room_share >= MIN_ROOM


@dataclasses.dataclass(frozen=True)
class Decision:
    """on: the room's features are left out; forced: as given on the command line; the analysis
    (None where not run) and pixel_share (None where not measured)."""

    on: bool
    forced: bool = False
    analysis: Analysis | None = None
    pixel_share: float | None = None

    def describe(self) -> str:
        if self.forced:
            return f"turntable: {'yes' if self.on else 'no'}, as given"
        if self.analysis is None:
            flat = ", but they are one flat colour" if self.pixel_share > PIXEL_GATE else ""
            return (f"not a turntable ({100 * self.pixel_share:.0f}% of the pixels match the photos' median{flat}; "
                    f"override with {FLAG} yes)")
        a = self.analysis
        room = f"{100 * a.room_share:.0f}% of the features stand still in many photos"
        if a.compared < MIN_COMPARED:
            return f"not a turntable: {room}, in too few pairs with the rest to compare; override with {FLAG} yes"
        motion = (f"one rigid motion explains a median {100 * a.one_motion:.0f}% of the matches of {a.compared} "
                  f"pairs that match both")
        if self.on:
            return (f"a turntable: {room} and move apart from the rest ({motion}); they are left out of the "
                    f"matching, so that COLMAP poses the object (override with {FLAG} no)")
        return f"not a turntable: {room}, but they move with the rest ({motion}); override with {FLAG} yes"


def match(a: np.ndarray, b: np.ndarray, ratio: float = RATIO) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i into a, j into b) of the mutual nearest neighbours between two sets of unit
    descriptors (Na, D), (Nb, D) that pass the ratio test."""
    if len(a) < 2 or len(b) < 2:
        return np.zeros(0, int), np.zeros(0, int)
    s = a @ b.T
    rows = np.arange(len(a))
    best = np.argmax(s, axis=1)
    s_best = s[rows, best]
    s[rows, best] = -np.inf
    s_next = s.max(axis=1)
    # Distances between unit vectors, from their dot products.
    i = np.nonzero(np.sqrt(np.maximum(2 - 2 * s_best, 0)) < ratio * np.sqrt(np.maximum(2 - 2 * s_next, 0)))[0]
    # Mutual: only the columns the passing rows chose are searched back, by a product of their own.
    # The argmax over all of s along axis 0 (a strided pass) took three quarters of a pair's time
    # at lego's 3500 features (benchmarks/results.md, turntable_analysis.py).
    j = best[i]
    mutual = np.argmax(b[j] @ a.T, axis=1) == i
    return i[mutual], j[mutual]


def _ransac(error: float):
    import pycolmap

    options = pycolmap.RANSACOptions()
    options.max_error = error
    options.random_seed = 0
    return options


def _homographies(p: np.ndarray, q: np.ndarray, error: float, groups: int) -> list[np.ndarray]:
    """Inlier indices of up to `groups` homographies fitted in turn to matched points p, q (M, 2),
    each to the matches the ones before left."""
    import pycolmap

    found, left = [], np.arange(len(p))
    while len(found) < groups and len(left) >= MIN_GROUP:
        fit = pycolmap.estimate_homography_matrix(p[left], q[left], _ransac(error))
        inliers = left[np.asarray(fit["inlier_mask"], bool)] if fit else left[:0]
        if len(inliers) < MIN_GROUP:
            break
        found.append(inliers)
        left = np.setdiff1d(left, inliers)
    return found


def pairs(n: int, budget: int = PAIRS) -> list[tuple[int, int]]:
    """Photo pairs (a < b) to match: all of them when there are at most `budget`, else each photo
    with as many others as the budget allows, at offsets spread evenly over the order (near ones
    and far ones)."""
    if n * (n - 1) // 2 <= budget:
        return [(a, b) for a in range(n) for b in range(a + 1, n)]
    offsets = np.unique(np.linspace(1, n // 2, max(2, budget // n)).round().astype(int))
    return sorted({tuple(sorted((a, (a + o) % n))) for a in range(n) for o in offsets})


def room_features(keypoints: list[np.ndarray], descriptors: list[np.ndarray], size: float) -> Analysis:
    """The analysis of photos' features: keypoints (K, 2+) (x, y first) and descriptors (K, D) per
    photo, in images whose longer side is `size` px."""
    import pycolmap

    unit = [np.asarray(d, np.float32) / np.maximum(np.linalg.norm(np.asarray(d, np.float32), axis=1, keepdims=True),
                                                  1e-12) for d in descriptors]
    points = [np.asarray(k, np.float64)[:, :2] for k in keypoints]
    error = max(2.0, ERROR * size)
    todo = pairs(len(points))
    partners = np.bincount(np.ravel(todo), minlength=len(points))
    votes = [np.zeros(len(k), int) for k in points]
    matched = {}
    for a, b in todo:
        i, j = match(unit[a], unit[b])
        matched[a, b] = (i, j)
        still = np.linalg.norm(points[a][i] - points[b][j], axis=1) < STILL * size
        votes[a][i[still]] += 1
        votes[b][j[still]] += 1
    sure = [v >= max(3, SURE_SHARE * p) for v, p in zip(votes, partners)]
    # One pair suffices: across head's two rings the room moves, and only its homography carries it.
    # The price: an object's feature near the turntable's axis, which moves little, joins the room
    # when it fits the room's homography between photos a small turn apart (tests/test_turntable_sfm.py).
    room = [s.copy() for s in sure]
    for (a, b), (i, j) in matched.items():
        # A group joins with MIN_GROUP inliers, most of them sure: a pair with no more than half
        # that many sure matches has none to fit. RANSAC at a low inlier ratio runs thousands of
        # trials, and on lego's renders (no room) fitting every pair took 60% of the analysis.
        if (sure[a][i] | sure[b][j]).sum() <= MIN_GROUP // 2:
            continue
        for inliers in _homographies(points[a][i], points[b][j], error, MAX_GROUPS):
            if (sure[a][i[inliers]] | sure[b][j[inliers]]).mean() > 0.5:
                room[a][i[inliers]] = True
                room[b][j[inliers]] = True
    # Two motions or one: the epipolar geometry that explains the most matches, in a sample of the
    # pairs where the room and the rest both match.
    one = []
    rng = np.random.default_rng(0)
    for a, b in rng.permutation(np.array(list(matched), int).reshape(-1, 2)):
        i, j = matched[a, b]
        still = room[a][i] | room[b][j]
        if still.sum() < MIN_GROUP or (~still).sum() < MIN_GROUP:
            continue
        fit = pycolmap.estimate_fundamental_matrix(points[a][i], points[b][j], _ransac(error))
        one.append(np.mean(fit["inlier_mask"]) if fit else 0.0)
        if len(one) == COMPARED:
            break
    total = sum(len(r) for r in room)
    return Analysis(room=room, room_share=float(sum(r.sum() for r in room) / max(total, 1)),
                    one_motion=float(np.median(one)) if one else float("nan"), compared=len(one))


def pixel_share(photos: list[Path]) -> tuple[float, float]:
    """The share of pixels that match the photos' median in most of them, and how much the
    median's colour varies over them (tensorf.data.turntable.measure), on the photos shrunk to
    64 x 64 (those of the commonest size)."""
    from PIL import Image

    sizes = {}
    for p in photos:
        with Image.open(p) as im:
            sizes.setdefault(im.size, []).append(p)
    small = []
    for p in max(sizes.values(), key=len):
        with Image.open(p) as im:
            im.draft("RGB", (4 * DETECT_SIZE, 4 * DETECT_SIZE))  # JPEGs decode at a fraction of their size
            small.append(np.asarray(im.convert("RGB").resize((DETECT_SIZE, DETECT_SIZE), Image.BOX), np.float32) / 255)
    return measure(np.stack(small))


def _read(db) -> tuple[list, list[np.ndarray], list]:
    images = sorted(db.read_all_images(), key=lambda im: im.name)
    return images, [db.read_keypoints(im.image_id) for im in images], [db.read_descriptors(im.image_id)
                                                                        for im in images]


def analyse(database: Path) -> Analysis:
    """The analysis (room_features) of the features in COLMAP's `database`, at the size of its
    largest camera."""
    import pycolmap

    db = pycolmap.Database.open(str(database))
    try:
        images, keypoints, descriptors = _read(db)
        cameras = {c.camera_id: c for c in db.read_all_cameras()}
    finally:
        db.close()
    size = max(max(cameras[im.camera_id].width, cameras[im.camera_id].height) for im in images)
    return room_features(keypoints, [d.data for d in descriptors], size)


def decide(database: Path, photos: Path, given: Literal["auto", "yes", "no"]) -> Decision:
    """Whether the photos in `photos`, their features extracted into COLMAP's `database`, are a
    turntable (`given`: auto, or as given); the analysis is run when needed or asked for."""
    import pycolmap

    if given == "no":
        return Decision(on=False, forced=True)
    if given == "yes":
        return Decision(on=True, forced=True, analysis=analyse(database))
    # The photos' pixels first: most captures stop there, before their features are read.
    db = pycolmap.Database.open(str(database))
    try:
        names = [im.name for im in db.read_all_images()]
    finally:
        db.close()
    share, contrast = pixel_share([photos / name for name in names])
    if share <= PIXEL_GATE or contrast <= STATIC_CONTRAST:
        return Decision(on=False, pixel_share=share)
    analysis = analyse(database)
    return Decision(on=analysis.turntable, analysis=analysis, pixel_share=share)


def drop_room(database: Path, room: list[np.ndarray]) -> None:
    """Rewrite the features of COLMAP's `database` without the room's (`room`: per photo, in the
    order of their names, as the analysis read them)."""
    import pycolmap

    db = pycolmap.Database.open(str(database))
    try:
        images, keypoints, descriptors = _read(db)
        db.clear_keypoints()
        db.clear_descriptors()
        for im, k, d, r in zip(images, keypoints, descriptors, room):
            db.write_keypoints(im.image_id, np.ascontiguousarray(k[~r]))
            db.write_descriptors(im.image_id, pycolmap.FeatureDescriptors(d.type, np.ascontiguousarray(d.data[~r])))
    finally:
        db.close()
