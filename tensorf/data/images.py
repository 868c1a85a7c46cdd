"""Reading one image as float RGB: the part every data format shares."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from tensorf.data.orientation import upright, upright_size
from tensorf.errors import UserError, warn

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # the photos a capture folder is searched for (lower case)
# iPhones shoot HEIC: tensorf.poses converts it to JPEG when pillow-heif (requirements-poses.txt) is installed.
HEIF_SUFFIXES = (".heic", ".heif")
# Cameras' other formats, which COLMAP's reader may not take.
OTHER_PHOTO_SUFFIXES = (*HEIF_SUFFIXES, ".dng", ".cr2", ".nef", ".arw", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")

# What read_rgb converted, as it is reported: "<n> of <N> images <note>".
GREY = "are greyscale (repeated into RGB)"
DEEP = "are 16-bit (scaled to [0, 1])"
OPAQUE = "have no alpha channel (used as they are, background included)"
CMYK = "are CMYK (converted to RGB)"


def listed(folder: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """The files of `folder` with one of `suffixes` (any case), in name order. Hidden ones are
    left out: macOS writes an AppleDouble twin "._IMG_0001.JPG" beside each photo copied to a
    drive it does not own (exFAT, a network share), which has the suffix and no pixels."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in suffixes and not p.name.startswith(".")
                  and p.is_file())


def find_image(root: Path, rel: str) -> Path:
    """root/rel, or the image a capture made elsewhere means by it: a path with Windows'
    backslashes (colmap2nerf run on Windows writes them); a name without an extension (Blender's
    exports mean .png) or with another image one (images converted, the json kept); a name in
    another letter case (written on a case-insensitive file system). When none is there, root/rel
    (with .png added to a bare name), for the error to name."""
    given = Path(root) / rel
    if given.is_file():
        return given
    path = Path(root) / rel.replace("\\", "/")
    folder = _any_case(path.parent)
    stem = path.stem if path.suffix.lower() in IMAGE_SUFFIXES else path.name
    names = [path.name] + [stem + s for s in (*IMAGE_SUFFIXES, *(s.upper() for s in IMAGE_SUFFIXES))]
    found = next((folder / n for n in names if (folder / n).is_file()), None)
    if found is None and folder.is_dir():
        lower = [n.lower() for n in names]
        found = min((p for p in folder.iterdir() if p.name.lower() in lower and p.is_file()),
                    key=lambda p: lower.index(p.name.lower()), default=None)
    return found or (given if given.suffix.lower() in IMAGE_SUFFIXES else given.with_name(given.name + ".png"))


def _any_case(folder: Path) -> Path:
    """folder, or the folder whose path differs from it only in letter case (the first match)."""
    if folder.is_dir() or folder.parent == folder:
        return folder
    parent = _any_case(folder.parent)
    if not parent.is_dir():
        return folder
    return next((p for p in sorted(parent.iterdir()) if p.name.lower() == folder.name.lower() and p.is_dir()), folder)


def _imread(path: Path, what: str, fix_missing: str, **kwargs) -> np.ndarray:
    """The pixels of an image file, or one line naming it when it is missing or unreadable."""
    if not path.is_file():
        raise UserError(f"{path}: {what} file is missing; {fix_missing}")
    try:
        return iio.imread(path, **kwargs)
    except Exception as e:  # imageio raises many types for broken files
        raise UserError(f"{path}: cannot read {what} ({e.__class__.__name__}); replace the file") from None


def _dividing(w: int, h: int, most: int = 64) -> list[int]:
    """The downscale factors (2 to `most`) that divide both sides of a w x h image."""
    return [f for f in range(2, most + 1) if w % f == 0 and h % f == 0] or [1]


def _blocks(img: np.ndarray, f: int, path: Path) -> np.ndarray:
    """(H/f, f, W/f, f, C): img's f x f blocks, for area averaging."""
    h, w = img.shape[:2]
    if h % f or w % f:
        raise UserError(f"{path}: size {w}x{h} is not divisible by downscale {f}; pick a factor that divides it "
                        f"({', '.join(map(str, _dividing(w, h)))})")
    return img.reshape(h // f, f, w // f, f, img.shape[2])


# --data.downscale auto: images whose longer side is over this many pixels are read downscaled
# (nerfstudio's rule and figure: MAX_AUTO_RESOLUTION = 1600 in its nerfstudio_dataparser.py). A
# phone's 12 MP photos at full size are 600M rays in 50 photos: 7 GB of colours, and each pixel
# seen a fraction of a time in 30k steps.
AUTO_MAX_SIDE = 1600


def auto_downscale(sizes, where: str) -> int:
    """The factor --data.downscale auto reads images of full sizes `sizes` (N, 2) (width, height)
    at: the smallest power of two that brings the longest side to at most AUTO_MAX_SIDE pixels.
    Area averaging needs whole blocks, so a factor must divide every width and height; when the
    one wanted does not, the largest power of two that does, with a warning."""
    sizes = np.asarray(sizes, np.int64).reshape(-1, 2)
    longest = int(sizes.max())
    want = 1
    while longest / want > AUTO_MAX_SIDE:
        want *= 2
    factor = want
    while factor > 1 and (sizes % factor).any():
        factor //= 2
    if factor < want:
        shapes = " and ".join(f"{w}x{h}" for w, h in sorted({tuple(s) for s in sizes.tolist()}))
        warn(f"{where}: --data.downscale auto would read images of {shapes} at factor {want}, which does not "
             f"divide them; reading them at factor {factor} (crop or resize them to a multiple of {want}, or "
             "give --data.downscale)")
    return factor


def at_scale(folder: Path, name: str, downscale: int) -> tuple[Path, int]:
    """The file for `name` in `folder` (images/ or masks/, name may hold subfolders) and the
    factor still to apply: <folder>_<d>/name where the capture ships it downscaled (as
    nerfstudio's ns-process-data and COLMAP's undistorter layouts do), else folder/name."""
    small = folder.parent / f"{folder.name}_{downscale}" / name
    return (small, 1) if downscale > 1 and small.is_file() else (folder / name, downscale)


def write_scaled(folder: Path, names: list[str], downscale: int) -> Path:
    """Write the images `names` of `folder` area-averaged by `downscale` into <folder>_<d>/, under
    the same names (so at_scale finds them), as 8-bit (JPEG at quality 95, as the photos came);
    returns that folder. Reading a 12 MP photo and averaging it takes about half a second, its twin
    milliseconds, and every load (training, eval, render_360, the viewer) would pay it again."""
    out = folder.parent / f"{folder.name}_{downscale}"

    def one(name: str) -> None:
        img, _ = read_rgb(folder / name, downscale)
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        pixels = np.round(img * 255.0).astype(np.uint8)
        jpeg = Path(name).suffix.lower() in (".jpg", ".jpeg")
        iio.imwrite(out / name, pixels, **({"quality": 95} if jpeg else {}))

    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        list(pool.map(one, names))
    return out


def _is_cmyk(path: Path) -> bool:
    """Whether a four-channel file holds ink, not RGBA: imageio hands a CMYK JPEG (print and
    Photoshop exports) over as four channels, and read as alpha its black plate turns the photo
    into background."""
    from PIL import Image

    with Image.open(path) as im:
        return im.mode == "CMYK"


def _jpeg_scaled(path: Path, downscale: int) -> tuple[np.ndarray | None, int]:
    """A JPEG photo decoded at 1/2, 1/4 or 1/8 of its size (the largest of these that divides
    `downscale`) by libjpeg's scaled inverse DCT, and the factor still to apply; (None,
    downscale) for anything else. Against a full decode and a block average: a fraction of the
    time, and within about 55 dB PSNR of that average (at 1/8 the DCT's own block mean; figures
    in benchmarks/results.md, read_photos.py)."""
    scale = next((s for s in (8, 4, 2) if downscale % s == 0), 1)
    if scale == 1 or path.suffix.lower() not in (".jpg", ".jpeg"):
        return None, downscale
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            if im.format != "JPEG" or im.mode not in ("RGB", "L") or w % downscale or h % downscale:
                return None, downscale  # the full decode says what is wrong, or averages
            im.draft(im.mode, (w // scale, h // scale))
            if im.size != (w // scale, h // scale):
                return None, downscale
            return np.asarray(im), downscale // scale
    except Exception:  # a broken file: _imread names it
        return None, downscale


def read_rgb(path: Path, downscale: int, background: float = 1.0) -> tuple[np.ndarray, set[str]]:
    """(H, W, 3) float32 in [0, 1] (8- or 16-bit; grey repeated; alpha composited over
    `background`), area-averaged by `downscale` (JPEGs: decoded smaller, _jpeg_scaled); and the
    conversions made (GREY, DEEP, OPAQUE, CMYK)."""
    raw, downscale = _jpeg_scaled(path, downscale)
    if raw is None:
        raw = _imread(path, "image", "restore it or remove its frame from the transforms json")
    channels = raw.shape[-1] if raw.ndim == 3 else 1
    notes = set()
    if channels == 4 and _is_cmyk(path):
        raw, channels = _imread(path, "image", "", mode="RGB"), 3
        notes.add(CMYK)
    if raw.dtype not in (np.uint8, np.uint16) or raw.ndim not in (2, 3) or channels > 4:
        raise UserError(f"{path}: a {raw.dtype} image of shape {raw.shape}; expected 8- or 16-bit grey, RGB or RGBA")
    if raw.dtype == np.uint16:
        notes.add(DEEP)
    scale = 65535.0 if raw.dtype == np.uint16 else 255.0
    if raw.ndim == 2:
        raw = raw[..., None]
    if downscale > 1 and raw.shape[-1] in (1, 3):
        # Without alpha, the blocks are summed as integers and divided once: a third of the time
        # averaging them in float takes on a 12 MP photo, equal to within 3e-7.
        sums = np.uint64 if raw.dtype == np.uint16 else np.uint32
        raw = _blocks(raw, downscale, path).sum(axis=(1, 3), dtype=sums)
        scale, downscale = scale * downscale * downscale, 1
    img = raw.astype(np.float32) / np.float32(scale)
    if img.shape[-1] in (1, 2):  # grey, or grey + alpha
        notes.add(GREY)
        img = np.concatenate([img[..., :1].repeat(3, axis=-1), img[..., 1:]], axis=-1)
    if img.shape[-1] == 3:
        notes.add(OPAQUE)
    if img.shape[-1] == 4:
        # Composite at full resolution, then average: what a camera sees of the backdrop.
        img = img[..., :3] * img[..., 3:] + background * (1.0 - img[..., 3:])
    img = img[..., :3]
    if downscale > 1:
        img = _blocks(img, downscale, path).mean(axis=(1, 3))
    return img, notes


def read_depth(path: Path, size: tuple[int, int], scale: float, orientation: int = 1) -> np.ndarray:
    """(H, W) float32 depth map at its image's size (width, height): the distance along the
    camera's viewing axis, as nerfstudio reads `depth_file_path` (a 16-bit PNG, or .npy, times
    `scale`: its depth_unit_scale_factor, 1e-3 from millimetres), resized to the image by nearest
    neighbour (phones' depth maps are smaller: Polycam's 256x192), as nerfstudio resizes it. 0 where
    there is no measure (zero, negative or not finite). orientation: as read_mask; a map shaped as
    the stored photo (its aspect) is turned with it."""
    if path.suffix.lower() == ".npy":
        try:
            raw = np.load(path)
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: cannot read depth map ({e.__class__.__name__}); replace the file") from None
    else:
        raw = _imread(path, "depth map", "restore it or remove the frame's depth_file_path")
    raw = np.asarray(raw if raw.ndim == 2 else raw[..., 0], np.float64) * scale
    h, w = raw.shape
    stored = upright_size(orientation, *size)
    if orientation != 1 and abs(w * stored[1] - h * stored[0]) <= max(w, h) and stored != tuple(size):
        raw = upright(raw, orientation)
        h, w = raw.shape
    if abs(w * size[1] - h * size[0]) > max(w, h):
        raise UserError(f"{path}: depth map is {w}x{h}, its image {size[0]}x{size[1]}: not the same shape; give it the "
                        "image's aspect")
    rows = np.minimum((np.arange(size[1]) + 0.5) * h // size[1], h - 1).astype(np.int64)
    cols = np.minimum((np.arange(size[0]) + 0.5) * w // size[0], w - 1).astype(np.int64)
    depth = raw[rows[:, None], cols[None, :]]
    return np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)


def read_mask(path: Path, downscale: int, size: tuple[int, int], orientation: int = 1) -> np.ndarray:
    """(H, W) bool: the pixels a mask image keeps (nonzero in its first channel, as nerfstudio
    reads `mask_path`), downscaled so that a pixel is kept only where every pixel it covers is;
    size (width, height) of its image, which the mask must match. orientation: the EXIF
    orientation its photo is turned upright by (tensorf.data.orientation); a mask of the stored
    photo's size was drawn on the stored pixels and is turned with them, one of the upright
    size is taken as it is."""
    raw = _imread(path, "mask", "restore it or remove the frame's mask_path")
    keep = (raw if raw.ndim == 2 else raw[..., 0]) > 0
    h, w = keep.shape
    if downscale > 1 and not (h % downscale or w % downscale):
        keep = keep.reshape(h // downscale, downscale, w // downscale, downscale).all(axis=(1, 3))
    stored = upright_size(orientation, *size)
    if orientation != 1 and keep.shape[::-1] == stored:
        keep = upright(keep, orientation)
    if keep.shape[::-1] != tuple(size):
        raise UserError(f"{path}: mask is {w}x{h} (downscale {downscale}: {keep.shape[1]}x{keep.shape[0]}), its image "
                        f"{size[0]}x{size[1]}; give it the image's size")
    return keep


def read_images(files: list[Path], downscale: int, background: float = 1.0, where: str = "",
                expect_alpha: bool = False, sizes: np.ndarray | None = None,
                orientations: list[int] | None = None) -> np.ndarray:
    """(N, H, W, 3) float32: read_rgb over files on a thread pool (decoding releases the GIL),
    each written into one array (a stack of separate images would copy all the pixels again: a
    100-view 800x800 split is 768 MB). One warning line per kind of conversion made (opaque
    images only where alpha is expected).

    sizes None: all of one size. sizes (N, 2) (width, height after all downscaling, as the
    capture's cameras say): each image must have its own; images of several sizes (a phone turned for
    some of the photos) lie in the top-left corner of an array of the largest width and height,
    the rest zero (see Views). orientations: each file's EXIF orientation, its pixels turned
    upright so (tensorf.data.orientation); sizes are the upright ones."""
    read = []  # the conversions made, per image read
    if sizes is None:
        first, first_notes = read_rgb(files[0], downscale, background)
        first = first if orientations is None else upright(first, orientations[0])
        shape, read = first.shape, [first_notes]
    else:
        sizes = np.asarray(sizes, np.float64).reshape(len(files), 2)
        shape = (int(np.ceil(sizes[:, 1].max())), int(np.ceil(sizes[:, 0].max())), 3)
    out = (np.empty if sizes is None or (sizes == sizes[0]).all() else np.zeros)((len(files), *shape), np.float32)

    def read_into(i: int) -> set[str]:
        img, notes = read_rgb(files[i], downscale, background)
        if orientations is not None:
            img = upright(img, orientations[i])
        h, w = img.shape[:2]
        if sizes is None and img.shape != shape:
            raise UserError(f"{files[i]}: image size {w}x{h} differs from the split's {shape[1]}x{shape[0]} "
                            "(after downscale); resize it to match")
        if sizes is not None and (w, h) != tuple(sizes[i]):
            raise UserError(f"{files[i]}: image is {w}x{h} at the --data.downscale in force, but {where} says "
                            f"{sizes[i][0]:g}x{sizes[i][1]:g} there; fix the size or the image")
        out[i, :h, :w] = img
        return notes

    if read:
        out[0] = first
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        noted = read + list(pool.map(read_into, range(len(read), len(files))))
    for note in (GREY, DEEP, OPAQUE, CMYK):
        n = sum(note in notes for notes in noted)
        if n and (note != OPAQUE or expect_alpha):
            warn(f"{where}: {n} of {len(files)} images {note}")
    return out
