"""Photos or a video -> camera poses: a COLMAP model that train_lego.py reads.

    python -m tensorf.poses PHOTOS_DIR --out CAPTURE           # a folder of photos
    python -m tensorf.poses clip.mp4 --out CAPTURE --frames 150  # a video: the sharpest frame of each stretch
    python train_lego.py --preset lego-cpu --data.path CAPTURE

Runs COLMAP through pycolmap (its wheel carries COLMAP; no system install): SIFT features, then
matching (every pair for a small set of photos; neighbours in order for a video, where
consecutive frames overlap), then incremental mapping. Writes CAPTURE/images/ (the photos, those
stored sideways with an EXIF orientation turned upright; or the sampled frames),
CAPTURE/sparse/0/ (the largest reconstruction: cameras, images, points3D), CAPTURE/colmap/
(database and logs) and, for images over 1600 px along their longer side, CAPTURE/images_<d>/
(them at the size training reads by default). The images of one size and lens share a camera
(photos taken with the phone turned, or through its other lens, are another), with COLMAP's
SIMPLE_RADIAL lens unless --camera-model says otherwise; the lens is applied to rays when
training. pycolmap is an optional dependency: pip install -r requirements-poses.txt.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Literal

import numpy as np
import tyro
from tqdm import tqdm

from tensorf import option_ranges, turntable_sfm
from tensorf.data.images import (
    HEIF_SUFFIXES,
    IMAGE_SUFFIXES,
    OTHER_PHOTO_SUFFIXES,
    VIDEO_SUFFIXES,
    auto_downscale,
    listed,
    write_scaled,
)
from tensorf.data.orientation import ORIENTATION, upright_image
from tensorf.errors import UserError, exit_on_user_error, warn
from tensorf.presets import LEGO_CPU

INSTALL_HINT = "pip install -r requirements-poses.txt"
# The printed training command keeps photos at least this long along their longer side:
# lego-cpu's own factor 4 (lego's 800 px to 200) would train head's 500 px photos at 125 px. The
# measured from-photos rows (head, fern) train at the photos' size (benchmarks/results.md).
HINT_MIN_SIDE = 400


@dataclasses.dataclass(frozen=True)
class PosesConfig:
    """Recover camera poses for a folder of photos or a video with COLMAP (pycolmap)."""

    input: tyro.conf.Positional[Path]
    """A folder of photos (.png/.jpg) or a video file."""
    out: Path = Path("data/capture")
    """Capture folder to write: images/, sparse/0/ (the COLMAP model) and colmap/ (database)."""
    frames: int = 150
    """Video only: frames kept, one from each of as many equal stretches of the clip."""
    frame_choice: Literal["sharpest", "even"] = "sharpest"
    """Video only: which frame of each stretch is kept: the sharpest (the variance of its Laplacian;
    a frame blurred by the camera's motion or a focus hunt scores low, and would cost SIFT
    features and training detail), or evenly spaced ones."""
    masks: Path | None = None
    """Photos only: a folder of masks named as COLMAP reads them (<photo name>.png), zero where a
    pixel is to be ignored (a passer-by, the photographer's shadow): SIFT finds no features there,
    and training leaves those pixels out (copied to CAPTURE/masks/). A photo without one is used
    whole."""
    matching: Literal["auto", "exhaustive", "sequential"] = "auto"
    """Which image pairs are matched: every pair (exhaustive), or each image with its neighbours in
    order (sequential, for video). auto: sequential for a video or more than 200 photos."""
    camera_model: Literal["SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE"] = \
        "SIMPLE_RADIAL"
    """COLMAP camera model of the images (one camera per image size and lens); its lens is refined in the mapping."""
    focal_px: float | None = None
    """Focal length in pixels of the images as given, when known (the camera's spec, or another
    reconstruction): the mapping starts from it and still refines it. None: COLMAP's guess from
    EXIF, else 1.2 x the larger image side, which a small set of photos may not correct."""
    features: Literal["sift", "dsp-sift"] = "sift"
    """SIFT as COLMAP extracts it by default, or DSP-SIFT: with domain-size pooling and affine
    shapes, COLMAP's own advice for more and better matches (its FAQ). About twice as slow to
    pose; on lego's renders its cameras came out closer to the truth and trained 0.18 dB higher,
    fox 0.13 dB higher (docs/captures.md)."""
    max_image_size: int = 1600
    """Images are scaled down to this size for feature extraction (COLMAP's default 3200)."""
    min_registered: float = 0.5
    """Refuse a reconstruction that registers a smaller share of the images than this."""
    overwrite: bool = False
    """Replace what an earlier run wrote in --out."""
    seed: int = 0
    """Seed of COLMAP's random choices (RANSAC in matching and mapping, the initial pair): the same
    photos give the same poses, bit for bit with --mapping-threads 1."""
    mapping_threads: int = 1
    """Threads of COLMAP's mapping (its bundle adjustments are the work). 1: the same photos and
    --seed give the same cameras on every run. More (-1: every core) can be faster on captures of
    hundreds of photos on many cores, but the sums then run in a varying order and runs differ a
    little (docs/captures.md, "Posed twice": the spread, and the time on 2 cores)."""
    turntable: Literal["auto", "yes", "no"] = "auto"
    """An object turned on a turntable before a camera that stands still: yes, the features of the
    room, which keep their place in the image, are found and left out of the matching, so that
    COLMAP poses the object instead of settling between its motion and the room's stillness; auto:
    decided from the photos (tensorf/turntable_sfm.py; photos whose pixels do not partly stand
    still are not analysed); no: everything is matched."""


def _pycolmap():
    try:
        import pycolmap
    except ImportError:
        raise UserError(f"pycolmap is not installed; {INSTALL_HINT} (COLMAP inside its wheel, ~40 MB)") from None
    return pycolmap


def _heif_readable() -> bool:
    """Whether PIL can open HEIC photos here: pillow-heif installed, its opener registered."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def _way_to_photos(folder: Path) -> str | None:
    """For a folder without photos of its own: it is a posed dataset already, or its photos are
    in a folder inside (a capture's images/)."""
    from tensorf.data.dataset import FORMAT_NAMES, sniff_format  # its readers pull in JAX

    fmt = sniff_format(folder)
    if fmt is not None:
        return (f"it is a posed {FORMAT_NAMES[fmt]} dataset already: train on it with `python train_lego.py --preset "
                f"lego-cpu --data.path {folder}`, or give INPUT its image folder to pose the photos anew")
    inside = [(sub, n) for sub in sorted(folder.iterdir())[:200] if sub.is_dir()
              and (n := len(listed(sub)))]
    if inside:
        sub, n = max(inside, key=lambda x: x[1])
        return f"its folder {sub.name} holds {n} photos: point INPUT at {sub}"
    return None


def _photos(folder: Path, images: Path) -> tuple[list[str], dict[str, int], dict[str, str]]:
    """The photos of `folder` copied into `images` (turned upright: _copy_upright; HEIC converted
    to JPEG): their names there, the EXIF orientation of those that were turned, and the
    original name of each photo whose name changed (IMG_0001.HEIC -> IMG_0001.jpg)."""
    readable = IMAGE_SUFFIXES + (HEIF_SUFFIXES if _heif_readable() else ())
    files = listed(folder, readable)
    skipped = [p.name for p in listed(folder, OTHER_PHOTO_SUFFIXES) if p.suffix.lower() not in readable]
    heif_hint = "; for HEIC, pip install -r requirements-poses.txt (pillow-heif)"
    if not files:
        others = sorted({Path(n).suffix.lower() for n in skipped})
        found = f" (only {', '.join(others)} photos: convert them to JPEG first, e.g. with ImageMagick's mogrify " \
                f"-format jpg, keeping their pixel size{heif_hint if set(others) & set(HEIF_SUFFIXES) else ''})" \
            if others else ""
        raise UserError(f"{folder}: no .png or .jpg images here{found}; "
                        + (_way_to_photos(folder) or "point INPUT at a folder of photos or a video file"))
    if skipped:
        heif = any(Path(n).suffix.lower() in HEIF_SUFFIXES for n in skipped)
        warn(f"{folder}: {len(skipped)} photo(s) in other formats left out (first: {skipped[0]}); convert them to "
             f"JPEG to use them{heif_hint if heif else ''}")
    for f in files:
        camera_of(f)  # a broken file, named here rather than skipped by COLMAP
    images.mkdir(parents=True)
    names, originals, taken = [], {}, {f.name.lower() for f in files}
    for f in files:
        name = f.name
        if f.suffix.lower() in HEIF_SUFFIXES:  # IMG_0001.jpg, unless a photo of that name came too
            name = f.stem + ".jpg" if (f.stem + ".jpg").lower() not in taken else f.name + ".jpg"
            originals[name] = f.name
        names.append(name)
    orientations = {n: _copy_upright(f, images / n) for f, n in zip(files, names)}
    turned = {n: o for n, o in orientations.items() if o != 1}
    if turned:
        print(f"{len(turned)} of {len(files)} photos turned upright as their EXIF orientation says (a phone held "
              "upright stores its photo sideways, with a tag for viewers)")
    if originals:
        print(f"{len(originals)} HEIC photo(s) converted to JPEG (quality 95, EXIF kept) for COLMAP, which reads no HEIC")
    return names, turned, originals


def _copy_upright(src: Path, dest: Path) -> int:
    """Copy a photo to dest, its pixels turned as its EXIF orientation says; returns that
    orientation (1: upright, copied as it is). Phones store a photo taken upright sideways and
    tag it; viewers obey the tag, COLMAP reads the pixels as stored (on
    purpose: one camera for both ways round, colmap/colmap#1456). Left sideways, a camera's up
    would lie in the horizon: renders come out turned, and an orbit's up (the cameras' mean up)
    is lost."""
    from PIL import Image

    with Image.open(src) as im:
        exif = im.getexif()
        orientation = exif.get(ORIENTATION, 1)
        convert = src.suffix.lower() != dest.suffix.lower()  # HEIC to JPEG (pillow-heif has turned it upright)
        if orientation not in range(2, 9) and not convert:
            shutil.copy2(src, dest)
            return 1
        upright = upright_image(im, orientation) if orientation in range(2, 9) else im.convert("RGB")
    exif.pop(ORIENTATION, None)  # the rest of the EXIF stays: maker, model and focal length tell cameras apart
    jpeg = dest.suffix.lower() in (".jpg", ".jpeg")
    upright.save(dest, exif=exif, **({"quality": 95} if jpeg else {}))
    return orientation if orientation in range(2, 9) else 1


def _masks(folder: Path, dest: Path, names: list[str], turned: dict[str, int], originals: dict[str, str]) -> None:
    """Copy the masks of the photos `names` (COLMAP's naming, <name>.png; a converted photo's may
    carry its original name, `originals`) from folder to dest. A mask is taken as drawn on its
    photo as seen (upright), unless the photo was turned (`turned`: its EXIF orientation) and the
    mask has the stored photo's size, not the upright one's: then it was drawn on the stored
    pixels, and is turned with them."""
    from PIL import Image

    if not folder.is_dir():
        raise UserError(f"--masks {folder}: no such folder")
    source = {n: next((folder / f"{m}.png" for m in (n, originals.get(n)) if m and (folder / f"{m}.png").is_file()),
                      None) for n in names}
    found = [n for n in names if source[n] is not None]
    if not found:
        raise UserError(f"--masks {folder}: no mask named after a photo (for {names[0]}: {names[0]}.png, as COLMAP "
                        "names them); rename the masks")
    dest.mkdir(parents=True)
    for n in found:
        if n not in turned:
            shutil.copy2(source[n], dest / f"{n}.png")
            continue
        with Image.open(dest.parent / "images" / n) as photo, Image.open(source[n]) as mask:
            stored = photo.size[::-1] if turned[n] >= 5 else photo.size  # 5-8 swap width and height
            drawn_stored = mask.size == stored != photo.size
            (upright_image(mask, turned[n]) if drawn_stored else mask).save(dest / f"{n}.png")


def sharpness(frame: np.ndarray) -> float:
    """The variance of the Laplacian of a frame's (H, W, 3+) green channel, every k-th pixel so
    that about 1000 are left along its longer side: motion blur and defocus score low (the usual
    focus measure; Pech-Pacheco et al., ICPR 2000). Every frame of a clip is scored, so it keeps
    to a few milliseconds a frame, 4K included (every pixel of every channel: 40x as long)."""
    k = max(1, round(max(np.shape(frame)[:2]) / 1000))
    g = np.asarray(frame)[::k, ::k, 1].astype(np.float32)
    return float((g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]).var())


def _video_frames(video: Path, images: Path, count: int, sharpest: bool = True) -> list[str]:
    """`count` frames over the video, written as PNGs in one pass: the sharpest frame of each of
    `count` equal stretches of the clip (sharpest), else evenly spaced frames."""
    import imageio.v3 as iio

    try:
        import imageio_ffmpeg
    except ImportError:
        raise UserError(f"reading video needs imageio-ffmpeg; {INSTALL_HINT}") from None
    try:
        total, _ = imageio_ffmpeg.count_frames_and_secs(str(video))
    except (RuntimeError, OSError) as e:
        raise UserError(f"{video}: cannot read the video ({e}); re-encode it as H.264 mp4") from None
    if total < 1:
        raise UserError(f"{video}: no frames decoded; re-encode it as H.264 mp4")
    n = min(count, total)
    keep = set(np.linspace(0, total - 1, n).round().astype(int).tolist())
    images.mkdir(parents=True)
    names = []
    best, best_score, stretch = None, -1.0, 0

    def write(frame) -> None:
        names.append(f"frame_{len(names):05d}.png")
        iio.imwrite(images / names[-1], frame)

    for i, frame in enumerate(tqdm(iio.imiter(video, plugin="FFMPEG"), total=total, desc="video", unit="frame",
                                   dynamic_ncols=True, leave=False)):
        if not sharpest:
            if i in keep:
                write(frame)
            continue
        at = min(i * n // total, n - 1)  # the stretch frame i falls in (ffmpeg's count may be short)
        if at != stretch and best is not None:
            write(best)
            best, best_score = None, -1.0
        stretch = at
        score = sharpness(frame)
        if score > best_score:
            best, best_score = frame, score
    if best is not None:
        write(best)
    return names


def camera_of(path: Path) -> tuple:
    """What tells a photo's camera apart: its size (width, height), and the maker, model and focal
    length (mm) its EXIF names (None where it has none: PNGs, video frames)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            exif = im.getexif()
            focal = exif.get_ifd(0x8769).get(0x920A)  # the Exif IFD's FocalLength
            return im.size, exif.get(0x010F), exif.get(0x0110), None if focal is None else round(float(focal), 2)
    except Exception as e:  # PIL raises many types for broken files
        raise UserError(f"{path}: cannot read the photo ({e.__class__.__name__}); remove or replace it") from None


def _by_camera(folder: Path, names: list[str]) -> dict[tuple, list[str]]:
    """`names` grouped by camera_of, in order: a phone turned for some photos takes them at another
    size (principal point and field of view turned too), and a phone's other lens (ultra-wide,
    tele) at the same size with another focal length, so each is a COLMAP camera of its own, as
    COLMAP's own default tells cameras apart."""
    groups: dict[tuple, list[str]] = {}
    for n in names:
        groups.setdefault(camera_of(folder / n), []).append(n)
    return groups


def _initial_params(cfg: PosesConfig, first: Path) -> str:
    """COLMAP's parameter string for cfg.camera_model with the focal length cfg.focal_px, the
    principal point at the centre of `first`'s image (the camera's size) and no distortion."""
    import imageio.v3 as iio

    h, w = iio.improps(first).shape[:2]
    f, cx, cy = cfg.focal_px, w / 2, h / 2
    params = {"SIMPLE_PINHOLE": [f, cx, cy], "PINHOLE": [f, f, cx, cy], "SIMPLE_RADIAL": [f, cx, cy, 0],
              "RADIAL": [f, cx, cy, 0, 0], "OPENCV": [f, f, cx, cy, 0, 0, 0, 0],
              "OPENCV_FISHEYE": [f, f, cx, cy, 0, 0, 0, 0]}[cfg.camera_model]
    return ",".join(f"{v:g}" for v in params)


def recover_poses(cfg: PosesConfig) -> Path:
    """Write the capture for cfg.input into cfg.out; returns the model folder (out/sparse/0)."""
    option_ranges.check(cfg)
    src, out = Path(cfg.input), Path(cfg.out)
    if not src.exists():
        raise UserError(f"{src} does not exist; give a folder of photos or a video file")
    if cfg.mapping_threads == 0 or cfg.mapping_threads < -1:
        raise UserError(f"--mapping-threads {cfg.mapping_threads}: give a count of threads, or -1 for every core")
    # images_<d>/ too: a stale twin would be read in place of the new photo of its name.
    written = ("images", "masks", "sparse", "colmap", *(p.name for p in out.glob("images_*")))
    for given, what in ((src, "the photos"), (cfg.masks, "the masks")):
        inside = given is not None and next((s for s in written if Path(given).resolve().is_relative_to(
            (out / s).resolve())), None)
        if inside:  # --overwrite would delete the photos before reading them
            raise UserError(f"--out {out} would write {out / inside} anew, where {what} {given} are; give another "
                            f"--out, e.g. --out {out.parent / (out.name + '_posed')}")
    pycolmap = _pycolmap()  # before --overwrite deletes anything
    pycolmap.logging.minloglevel = 1  # COLMAP's per-image INFO lines drown the progress bars
    if out.exists() and any(out.iterdir()):
        if not cfg.overwrite:
            raise UserError(f"{out} is not empty; give another --out or --overwrite")
        for sub in written:
            shutil.rmtree(out / sub, ignore_errors=True)
    images, work = out / "images", out / "colmap"
    video = src.is_file()
    if video and src.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserError(f"{src}: not a folder or a video ({', '.join(VIDEO_SUFFIXES)})")
    if video and cfg.masks is not None:
        raise UserError("--masks works with a folder of photos, not a video; extract the frames first")
    names, turned, originals = (_video_frames(src, images, cfg.frames, cfg.frame_choice == "sharpest"), {}, {}) \
        if video else _photos(src, images)
    if cfg.masks is not None:
        _masks(Path(cfg.masks), out / "masks", names, turned, originals)
    if len(names) < 3:
        raise UserError(f"{src}: {len(names)} image(s); poses need at least 3 overlapping views (20+ for training)")
    work.mkdir(parents=True, exist_ok=True)
    db = work / "database.db"
    sequential = cfg.matching == "sequential" or (cfg.matching == "auto" and (video or len(names) > 200))
    groups = _by_camera(images, names)
    lenses = {key[1:] for key in groups if any(key[1:])}
    if cfg.focal_px is not None and len(lenses) > 1:
        raise UserError(f"--focal-px is one focal length, but the photos' EXIF names {len(lenses)} lenses or "
                        "cameras; leave it out (COLMAP starts each from its EXIF focal length)")
    stages = tqdm(total=3, desc="features", unit="stage", dynamic_ncols=True)

    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = cfg.max_image_size
    extraction.sift.domain_size_pooling = extraction.sift.estimate_affine_shape = cfg.features == "dsp-sift"
    pycolmap.Database.open(str(db)).close()  # import_images wants it to exist
    for group in groups.values():  # one camera each: its own size, lens and principal point
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = cfg.camera_model
        if cfg.masks is not None:
            reader.mask_path = str(out / "masks")
        if cfg.focal_px is not None:
            reader.camera_params = _initial_params(cfg, images / group[0])
        # Imported first, on one thread and in name order: extraction's threads write the photos
        # they finish first, so their ids, and with them which photo of a pair RANSAC sees as the
        # first, changed from run to run (18 of 496 pairs verified differently in one CI run).
        pycolmap.import_images(db, images, camera_mode=pycolmap.CameraMode.SINGLE, image_names=group,
                               options=reader)
        pycolmap.extract_features(db, images, image_names=group, camera_mode=pycolmap.CameraMode.SINGLE,
                                  reader_options=reader, extraction_options=extraction, device=pycolmap.Device.cpu)
    stages.update()
    stages.set_description("turntable?")
    turntable = turntable_sfm.decide(db, images, cfg.turntable)
    if turntable.on or turntable.analysis is not None or turntable.pixel_share is not None:
        tqdm.write(turntable.describe())
    if turntable.on:
        turntable_sfm.drop_room(db, turntable.analysis.room)
    stages.set_description("matching (sequential)" if sequential else "matching (exhaustive)")
    # COLMAP's two-view RANSAC draws a fresh seed unless given one (random_seed -1): head's cameras
    # then moved a median 0.17% of their ring from run to run, 0.01% seeded. Seeded, and with the
    # photos' ids in name order, every pair verifies the same in every run (docs/captures.md).
    verification = pycolmap.TwoViewGeometryOptions()
    verification.ransac.random_seed = cfg.seed
    match = pycolmap.match_sequential if sequential else pycolmap.match_exhaustive
    match(db, verification_options=verification, device=pycolmap.Device.cpu)
    stages.update()
    stages.set_description("mapping")
    options = pycolmap.IncrementalPipelineOptions()
    options.random_seed = cfg.seed
    options.num_threads = cfg.mapping_threads
    if turntable.on:  # the object's features alone: fewer per photo, the shiny or plain sides fewest
        options.min_num_matches = 10
        options.mapper.abs_pose_min_num_inliers = 15
        options.mapper.abs_pose_min_inlier_ratio = 0.1
    registered = tqdm(total=len(names), desc="registered", unit="img", dynamic_ncols=True, leave=False)
    maps = pycolmap.incremental_mapping(db, images, work / "sparse", options,
                                        next_image_callback=lambda: registered.update())
    registered.close()
    stages.update()
    stages.close()
    if not maps:
        raise UserError(f"{src}: COLMAP registered no images (too little overlap or texture); take more photos "
                        "with more overlap, or try --matching exhaustive")
    best = max(maps.values(), key=lambda r: r.num_reg_images())
    count = best.num_reg_images()
    share = count / len(names)
    if share < cfg.min_registered:
        retry = f", or try {turntable_sfm.FLAG} no (the room's features were left out)" if turntable.on else ""
        raise UserError(f"{src}: COLMAP registered {count} of {len(names)} images ({share:.0%}, under "
                        f"--min-registered {cfg.min_registered:.0%}); take photos with more overlap or lower the "
                        f"bar{retry}")
    model = out / "sparse" / "0"
    model.mkdir(parents=True, exist_ok=True)
    cameras = ", ".join(f"{c.width}x{c.height} f {c.mean_focal_length():.0f} px" for c in best.cameras.values())
    print(f"registered {count} of {len(names)} images ({len(maps)} model(s); kept the largest), "
          f"{best.num_points3D()} points, mean reprojection error {best.compute_mean_reprojection_error():.2f} px, "
          f"{len(best.cameras)} camera(s): {cameras}")
    # A turntable's points are the object's alone (the room's features were left out), so training
    # fits its box to the object, not to the cameras' view: sharper renders on head, and more on
    # the generated turntable (docs/captures.md, "The points' box").
    best.write(model)
    # The size training reads them at by default (--data.downscale auto), written once here.
    factor = auto_downscale([(c.width, c.height) for c in best.cameras.values()], str(out))
    if factor > 1:
        scaled = write_scaled(images, sorted(im.name for im in best.images.values()), factor)
        print(f"{scaled}: the registered images at 1/{factor} size, which training reads (--data.downscale auto)")
    print(f"capture: {out}\n{training_hint(out, [(c.width, c.height) for c in best.cameras.values()])}")
    return model


def training_hint(out: Path, sizes: list[tuple[int, int]]) -> str:
    """The command that trains the capture at `out` whose photos have these (width, height):
    lego-cpu at its own downscale, unless that takes the photos' longer side under
    HINT_MIN_SIDE; then at the largest factor that does not (or at full size)."""
    own = LEGO_CPU.data.downscale
    longest = max(max(w, h) for w, h in sizes)
    factor = next((f for f in (own, 2, 1) if f <= own and longest / f >= HINT_MIN_SIDE), 1)
    flag = "" if factor == own else f" --data.downscale {factor}"
    return f"train it: python train_lego.py --preset lego-cpu --data.path {out}{flag}"


def cli() -> None:
    with exit_on_user_error():
        recover_poses(tyro.cli(PosesConfig))


if __name__ == "__main__":
    cli()
