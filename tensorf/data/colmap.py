"""COLMAP reconstructions: sparse/0/{cameras,images,points3D}.{bin,txt} (or colmap/sparse/0/, as
nerfstudio's ns-process-data leaves it) + images/ (+ masks/).

The binary and text formats are COLMAP's own (src/colmap/scene/reconstruction_io.cc; the same
layouts nerfstudio's colmap_utils.py reads). Poses become OpenGL camera-to-world matrices in the
world frame nerfstudio's colmap_to_json writes (axes x <-> y swapped, z flipped), so a COLMAP model
and the transforms.json made from it load to the same cameras; normalisation, box (from the
points), splits and kind are tensorf.data.capture's. Masks, when the capture has them, follow
COLMAP's own convention (ImageReader.mask_path): masks/<image name>.png, zero where a pixel is to
be ignored, an image without one used whole; they keep those pixels out of training and the
metrics as a transforms.json's mask_path does.
"""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import numpy as np

from tensorf.data.capture import Capture, Frame
from tensorf.data.images import at_scale, auto_downscale
from tensorf.errors import UserError, warn

# COLMAP's camera models by id: name, parameter count (src/colmap/sensor/models.h).
MODEL_IDS = {0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
             4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5),
             8: ("SIMPLE_RADIAL_FISHEYE", 4), 9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12),
             11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16)}
MODEL_NAMES = {name: (i, n) for i, (name, n) in MODEL_IDS.items()}
SUPPORTED = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE", "FULL_OPENCV",
             "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE")


@dataclasses.dataclass(frozen=True)
class Camera:
    model: str
    width: int
    height: int
    params: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class Image:
    """qvec (w, x, y, z) and tvec: COLMAP's world-to-camera rotation and translation."""

    camera_id: int
    name: str
    qvec: tuple[float, float, float, float]
    tvec: tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class Model:
    """A reconstruction: cameras and registered images by id, points (M, 3) and their colours
    (M, 3) uint8 (None: grey)."""

    cameras: dict[int, Camera]
    images: dict[int, Image]
    points: np.ndarray
    colors: np.ndarray | None = None


def _holds_model(folder: Path) -> bool:
    return any((folder / f"cameras.{ext}").is_file() for ext in ("bin", "txt"))


def _registered(folder: Path) -> int:
    """How many images the model in folder registered: images.bin's count, else the text model's."""
    binary = folder / "images.bin"
    if binary.is_file():
        head = binary.read_bytes()[:8]
        return struct.unpack("<Q", head)[0] if len(head) == 8 else 0
    try:
        return len(read_model(folder).images)
    except UserError:  # damaged: read_colmap names it if it is the one chosen
        return 0


# Where a capture keeps its models, beside images/: COLMAP's layout, then nerfstudio's
# ns-process-data one (colmap/sparse/0, which its COLMAP dataparser reads first).
SPARSE = ("sparse", "colmap/sparse")


def _numbered(sparse: Path) -> list[Path]:
    return sorted((p for p in sparse.glob("*") if p.name.isdigit() and _holds_model(p)), key=lambda p: int(p.name))


def sparse_folder(root: Path) -> Path:
    """root's folder of models: the first of SPARSE holding one (root/sparse when none does)."""
    return next((root / s for s in SPARSE if _numbered(root / s) or _holds_model(root / s)), root / SPARSE[0])


def numbered_models(root: Path) -> dict[str, int]:
    """The models COLMAP numbered in root's sparse folder (0, 1, ...: parts of the scene it could
    not join into one) and how many images each registered."""
    return {p.name: _registered(p) for p in _numbered(sparse_folder(root))}


def find_model(root: Path) -> Path | None:
    """The folder holding the model under root: the <n>/ of its sparse folder that registered the
    most images (COLMAP writes the parts it could not join as sparse/0, 1, ..., not always the
    largest first), the sparse folder itself, or root."""
    sparse = sparse_folder(root)
    models = numbered_models(root)
    if models:
        return sparse / max(models, key=lambda n: (models[n], -int(n)))
    for folder in (sparse, root):
        if _holds_model(folder):
            return folder
    return None


def lens_of(camera: Camera, where: str) -> tuple[tuple[float, float, float, float], str, tuple[float, ...]]:
    """(fx, fy, cx, cy), our lens model and distortion [k1, k2, k3, k4, p1, p2] of a COLMAP camera."""
    p, m = camera.params, camera.model
    if m == "SIMPLE_PINHOLE":
        return (p[0], p[0], p[1], p[2]), "pinhole", (0.0,) * 6
    if m == "PINHOLE":
        return tuple(p[:4]), "pinhole", (0.0,) * 6
    if m in ("SIMPLE_RADIAL", "RADIAL"):
        k2 = p[4] if m == "RADIAL" else 0.0
        return (p[0], p[0], p[1], p[2]), "opencv", (p[3], k2, 0.0, 0.0, 0.0, 0.0)
    if m == "OPENCV":
        return tuple(p[:4]), "opencv", (p[4], p[5], 0.0, 0.0, p[6], p[7])
    if m == "FULL_OPENCV" and not any(p[9:12]):  # k4..k6 (the rational terms) zero: OPENCV with k3
        return tuple(p[:4]), "opencv", (p[4], p[5], p[8], 0.0, p[6], p[7])
    if m == "OPENCV_FISHEYE":
        return tuple(p[:4]), "fisheye", (p[4], p[5], p[6], p[7], 0.0, 0.0)
    if m in ("SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE"):
        k2 = p[4] if m == "RADIAL_FISHEYE" else 0.0
        return (p[0], p[0], p[1], p[2]), "fisheye", (p[3], k2, 0.0, 0.0, 0.0, 0.0)
    detail = " with non-zero rational terms k4..k6" if m == "FULL_OPENCV" else ""
    raise UserError(f"{where}: camera model {m}{detail} is not supported (supported: {', '.join(SUPPORTED)}); "
                    "undistort the images with COLMAP's image_undistorter and point --data.path at its output")


def qvec_to_rotation(q) -> np.ndarray:
    """(..., 3, 3) rotation matrices of quaternions (..., 4) (w, x, y, z; normalised first)."""
    q = np.asarray(q, np.float64)
    w, x, y, z = np.moveaxis(q / np.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    return np.stack([np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
                     np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
                     np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], -2)


def rotation_to_qvec(r: np.ndarray) -> np.ndarray:
    """(w, x, y, z) with w >= 0 of a rotation matrix (3, 3) (COLMAP's RotationMatrixToQuaternion,
    by the eigenvector of Bar-Itzhack's symmetric matrix; eigh reads its lower triangle)."""
    k = np.array([[r[0, 0] - r[1, 1] - r[2, 2], 0, 0, 0],
                  [r[1, 0] + r[0, 1], r[1, 1] - r[0, 0] - r[2, 2], 0, 0],
                  [r[2, 0] + r[0, 2], r[2, 1] + r[1, 2], r[2, 2] - r[0, 0] - r[1, 1], 0],
                  [r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1], r[0, 0] + r[1, 1] + r[2, 2]]]) / 3.0
    vals, vecs = np.linalg.eigh(k)
    q = vecs[[3, 0, 1, 2], np.argmax(vals)]
    return q if q[0] >= 0 else -q


# The world frame nerfstudio's colmap_to_json writes: x and y swapped, z flipped.
WORLD = np.array([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def opengl_c2w(image: Image) -> np.ndarray:
    """(4, 4) OpenGL camera-to-world of a COLMAP image, in nerfstudio's world frame."""
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = qvec_to_rotation(image.qvec), image.tvec
    c2w = np.linalg.inv(w2c)
    c2w[:3, 1:3] *= -1  # OpenCV camera axes (y down, z forward) to OpenGL (y up, z backward)
    return WORLD @ c2w


def world_points(points: np.ndarray) -> np.ndarray:
    """COLMAP's points (M, 3) in nerfstudio's world frame, where opengl_c2w puts the cameras."""
    return points @ WORLD[:3, :3].T + WORLD[:3, 3]


def colmap_image(c2w: np.ndarray, camera_id: int, name: str) -> Image:
    """The COLMAP image of an OpenGL camera-to-world c2w (4, 4) in nerfstudio's world frame
    (opengl_c2w's inverse)."""
    c2w = np.linalg.inv(WORLD) @ np.asarray(c2w, np.float64)
    c2w[:3, 1:3] *= -1
    w2c = np.linalg.inv(c2w)
    return Image(camera_id, name, tuple(rotation_to_qvec(w2c[:3, :3]).tolist()), tuple(w2c[:3, 3].tolist()))


def read_model(folder: Path) -> Model:
    """The model in folder, binary (.bin) when present, else text (.txt)."""
    folder = Path(folder)
    binary = (folder / "cameras.bin").is_file()
    ext = "bin" if binary else "txt"
    for name in ("cameras", "images"):
        if not (folder / f"{name}.{ext}").is_file():
            raise UserError(f"{folder / f'{name}.{ext}'} not found; a COLMAP model needs cameras, images and points3D "
                            "(.bin or .txt); export it again with COLMAP's model_converter")
    readers = (_read_cameras_bin, _read_images_bin, _read_points_bin) if binary else \
        (_read_cameras_txt, _read_images_txt, _read_points_txt)
    out = []
    for reader, name in zip(readers, ("cameras", "images", "points3D")):
        path = folder / f"{name}.{ext}"
        if name == "points3D" and not path.is_file():
            out.extend([np.zeros((0, 3)), np.zeros((0, 3), np.uint8)])
            continue
        try:
            read = reader(path)
        except (struct.error, ValueError, IndexError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: damaged or truncated ({e.__class__.__name__}: {e}); export the model again "
                            "with COLMAP's model_converter") from None
        out.extend(read if name == "points3D" else [read])
    return Model(*out)


def read_colmap(root: Path, downscale: int | str = 1) -> Capture:
    """The frames (registered images that COLMAP's model names, the files in root/images/), lenses
    and points of the COLMAP model under root, its images placed for `downscale` ("auto":
    images.auto_downscale of the cameras' sizes)."""
    root = Path(root)
    folder = find_model(root)
    if folder is None:
        raise UserError(f"{root}: no COLMAP model here (sparse/0/ or colmap/sparse/0/: cameras.bin or .txt); run "
                        "COLMAP (or python -m tensorf.poses) on the images first")
    models = numbered_models(root)
    if len(models) > 1:
        sizes = ", ".join(f"{n}/: {k} images" for n, k in models.items())
        warn(f"{sparse_folder(root)}: {len(models)} models ({sizes}), parts of the scene COLMAP could not join; "
             f"reading the largest, {folder.name}/ (the others' images are left out)")
    if not (root / "images").is_dir():
        # --data.path at the model (sparse/0, or COLMAP's own work folder) rather than the capture
        up = next((a for a in list(root.resolve().parents)[:3] if (a / "images").is_dir() and find_model(a)), None)
        if up is not None:
            raise UserError(f"{root}: no images/ beside this model; it is part of the COLMAP capture {up}, "
                            "which holds the photos: point --data.path there")
    model = read_model(folder)
    if not model.images:
        raise UserError(f"{folder}: the model has no registered images; the reconstruction failed, run it again")

    images = [model.images[i] for i in sorted(model.images, key=lambda i: model.images[i].name)]
    for im in images:
        if im.camera_id not in model.cameras:
            raise UserError(f"{folder} image {im.name}: camera {im.camera_id} is not in cameras; the model is damaged")
    if downscale == "auto":
        downscale = auto_downscale([(model.cameras[im.camera_id].width, model.cameras[im.camera_id].height)
                                    for im in images], str(root))
    frames = []
    for im in images:
        cam = model.cameras[im.camera_id]
        (fx, fy, cx, cy), lens, dist = lens_of(cam, f"{folder} camera {im.camera_id}")
        file, factor = at_scale(root / "images", im.name, downscale)
        # As COLMAP reads masks: an image without one is used whole.
        has_mask = (root / "masks" / f"{im.name}.png").is_file()
        mask, mask_factor = at_scale(root / "masks", f"{im.name}.png", downscale) if has_mask else (None, 1)
        frames.append(Frame(file=file, factor=factor, c2w=opengl_c2w(im),
                            intrinsics=(fx, fy, cx, cy, cam.width, cam.height), model=lens, distortion=dist,
                            name=im.name, mask=mask, mask_factor=mask_factor))
    points = world_points(model.points) if len(model.points) else None
    return Capture(source=folder / "images.bin" if (folder / "images.bin").is_file() else folder / "images.txt",
                   frames=frames, points=points, downscale=downscale, to_source=np.linalg.inv(WORLD))


# --- binary --------------------------------------------------------------------------------


class _Reader:
    def __init__(self, path: Path):
        self.data, self.at = Path(path).read_bytes(), 0

    def take(self, fmt: str):
        out = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return out

    def string(self) -> str:
        end = self.data.index(b"\0", self.at)
        s = self.data[self.at:end].decode("utf-8")
        self.at = end + 1
        return s


def _read_cameras_bin(path: Path) -> dict[int, Camera]:
    r = _Reader(path)
    cameras = {}
    for _ in range(r.take("Q")[0]):
        cid, mid, w, h = r.take("iiQQ")
        if mid not in MODEL_IDS:
            raise ValueError(f"unknown camera model id {mid}")
        name, n = MODEL_IDS[mid]
        cameras[cid] = Camera(name, int(w), int(h), r.take("d" * n))
    return cameras


def _read_images_bin(path: Path) -> dict[int, Image]:
    r = _Reader(path)
    images = {}
    for _ in range(r.take("Q")[0]):
        iid, *pose, cid = r.take("idddddddi")
        name = r.string()
        (n2d,) = r.take("Q")
        r.at += n2d * struct.calcsize("<ddq")
        if r.at > len(r.data):
            raise ValueError("file ends inside an image's 2D points")
        images[iid] = Image(cid, name, tuple(pose[:4]), tuple(pose[4:]))
    return images


def _read_points_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    r = _Reader(path)
    out = []
    for _ in range(r.take("Q")[0]):
        _, x, y, z, red, green, blue, _, track = r.take("QdddBBBdQ")
        r.at += track * struct.calcsize("<ii")
        out.append((x, y, z, red, green, blue))
    if r.at > len(r.data):
        raise ValueError("file ends inside a point's track")
    table = np.asarray(out, np.float64).reshape(-1, 6)
    return table[:, :3], table[:, 3:].astype(np.uint8)


# --- text ----------------------------------------------------------------------------------


def _rows(path: Path) -> list[str]:
    return [line.strip() for line in Path(path).read_text().splitlines() if not line.startswith("#")]


def _read_cameras_txt(path: Path) -> dict[int, Camera]:
    cameras = {}
    for line in _rows(path):
        if line:
            w = line.split()
            if w[1] not in MODEL_NAMES:
                raise ValueError(f"unknown camera model {w[1]}")
            cameras[int(w[0])] = Camera(w[1], int(w[2]), int(w[3]), tuple(float(v) for v in w[4:]))
    return cameras


def _read_images_txt(path: Path) -> dict[int, Image]:
    # Two lines an image: the pose line, then its 2D points (possibly empty).
    lines = _rows(path)
    while lines and not lines[-1]:
        lines.pop()
    images = {}
    i = 0
    while i < len(lines):
        if not lines[i]:
            i += 1
            continue
        w = lines[i].split()
        images[int(w[0])] = Image(int(w[8]), " ".join(w[9:]), tuple(map(float, w[1:5])), tuple(map(float, w[5:8])))
        i += 2
    return images


def _read_points_txt(path: Path) -> tuple[np.ndarray, np.ndarray]:
    table = np.asarray([[float(v) for v in line.split()[1:7]] for line in _rows(path) if line],
                       np.float64).reshape(-1, 6)
    return table[:, :3], table[:, 3:].astype(np.uint8)


# --- writing (tests, tensorf.poses) --------------------------------------------------------


def write_model(folder: Path, model: Model, binary: bool = True) -> Path:
    """Write model into folder as COLMAP does (no 2D points or tracks)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    colors = np.full((len(model.points), 3), 128, np.uint8) if model.colors is None else np.asarray(model.colors)
    if binary:
        cams = struct.pack("<Q", len(model.cameras))
        for cid, c in model.cameras.items():
            cams += struct.pack("<iiQQ", cid, MODEL_NAMES[c.model][0], c.width, c.height)
            cams += struct.pack("<" + "d" * len(c.params), *c.params)
        ims = struct.pack("<Q", len(model.images))
        for iid, im in model.images.items():
            ims += struct.pack("<idddddddi", iid, *im.qvec, *im.tvec, im.camera_id) + im.name.encode() + b"\0"
            ims += struct.pack("<Q", 0)
        rows = np.empty(len(model.points), np.dtype([("id", "<u8"), ("xyz", "<f8", 3), ("rgb", "u1", 3),
                                                     ("error", "<f8"), ("track", "<u8")]))
        rows["id"], rows["xyz"], rows["rgb"], rows["error"], rows["track"] = (
            np.arange(1, len(rows) + 1), model.points, colors, 0.5, 0)
        pts = struct.pack("<Q", len(model.points)) + rows.tobytes()
        for name, body in (("cameras", cams), ("images", ims), ("points3D", pts)):
            (folder / f"{name}.bin").write_bytes(body)
        return folder
    (folder / "cameras.txt").write_text("# Camera list\n" + "".join(
        f"{cid} {c.model} {c.width} {c.height} {' '.join(repr(float(v)) for v in c.params)}\n"
        for cid, c in model.cameras.items()))
    (folder / "images.txt").write_text("# Image list, two lines per image\n" + "".join(
        f"{iid} {' '.join(repr(float(v)) for v in (*im.qvec, *im.tvec))} {im.camera_id} {im.name}\n\n"
        for iid, im in model.images.items()))
    (folder / "points3D.txt").write_text("# 3D point list\n" + "".join(
        f"{k + 1} {p[0]!r} {p[1]!r} {p[2]!r} {c[0]} {c[1]} {c[2]} 0.5\n"
        for k, (p, c) in enumerate(zip(np.asarray(model.points).tolist(), colors.tolist()))))
    return folder
