"""Agisoft Metashape captures: the cameras XML Metashape exports (File > Export > Export Cameras),
beside the photos in images/.

What the file holds and how it is read (Agisoft's "What does camera calibration results mean"
and the Metashape Pro manual's Appendix C, frame cameras; nerfstudio's metashape_utils.py read
for the layout):
- `<sensor>`: one per camera body and lens, its `<calibration class="adjusted">` (the one the
  alignment refined; else the sensor's only calibration) in pixels: `f`, the principal point
  `cx`, `cy` as offsets from the image centre, affinity `b1` (fx = f + b1) and skew `b2`, radial
  `k1`..`k4` (to r^8) and tangential `p1`, `p2`. Metashape's tangential terms are OpenCV's
  swapped: x' = x radial + P1 (r^2 + 2 x^2) + 2 P2 x y, so OpenCV's p1 is Metashape's P2.
  Sensor type "frame" is our "opencv" lens, "fisheye" (equidistant, the same radial terms on the
  angle) our "fisheye", "spherical" (a 360-degree camera's equirectangular panorama) our
  "equirectangular"; cylindrical cameras are refused.
- `<camera>` (also inside `<group>` folders): `label` (the photo's name, with or without its
  extension, or a path), `sensor_id`, `component_id` and `<transform>`, 16 numbers of the 4x4
  camera-to-chunk matrix, row-major, in OpenCV axes (x right, y down, z forward). A camera the
  alignment did not place has no transform and is left out.
- `<component>`s: camera sets aligned apart from each other. Their frames are not each other's,
  so the largest is read, as with a COLMAP run that left several models.
The chunk's own transform (to geographic coordinates) is not applied: training normalises the
cameras into its own box anyway. For the same reason no point cloud is read: Metashape exports
its tie points in the chunk's coordinate system (often geographic), not the cameras' frame.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np

from tensorf.data import lens
from tensorf.data.capture import Capture, Frame
from tensorf.data.images import at_scale, auto_downscale
from tensorf.errors import UserError, warn

EXTENSIONS = (".jpg", ".JPG", ".jpeg", ".JPEG", ".png", ".PNG", ".tif", ".TIF", ".tiff", ".TIFF")
LENSES = {"frame": "opencv", "fisheye": "fisheye", "spherical": "equirectangular"}


def find_xml(root: Path) -> Path | None:
    """The cameras XML in root: cameras.xml, or the one .xml file there whose root element is
    Metashape's <document>."""
    root = Path(root)
    if (root / "cameras.xml").is_file():
        return root / "cameras.xml"
    found = []
    for path in sorted(root.glob("*.xml")):
        try:
            with open(path, "rb") as fh:
                head = fh.read(512)
        except OSError:
            continue
        if b"<document" in head:
            found.append(path)
    return found[0] if len(found) == 1 else None


def _number(element: ET.Element, tag: str, where: str) -> float:
    child = element.find(tag)
    if child is None or child.text is None:
        return 0.0
    try:
        return float(child.text)
    except ValueError:
        raise UserError(f"{where}: <{tag}> {child.text!r} is not a number; re-export the cameras") from None


def _sensor(sensor: ET.Element, path: Path):
    """((fx, fy, cx, cy, w, h), lens model, distortion) of a <sensor>, or None without a calibration."""
    where = f"{path} sensor {sensor.get('id')} ({sensor.get('label', '')})"
    calibrations = sensor.findall("calibration")
    calib = next((c for c in calibrations if c.get("class") == "adjusted"), calibrations[0] if calibrations else None)
    kind = (None if calib is None else calib.get("type")) or sensor.get("type") or "frame"
    if calib is None and kind != "spherical":  # a panorama needs no calibration: its projection is fixed
        return None
    if kind not in LENSES:
        raise UserError(f"{where}: a {kind} camera is not supported (frame, fisheye and spherical cameras are); "
                        "export undistorted frame images from Metashape instead")
    size = None if calib is None else calib.find("resolution")
    size = sensor.find("resolution") if size is None else size
    try:
        w, h = int(size.get("width")), int(size.get("height"))
    except (AttributeError, TypeError, ValueError):
        raise UserError(f"{where}: no image size (<resolution width= height=>); re-export the cameras") from None
    if kind == "spherical":
        # Appendix C: x = atan2(X, Z), y = atan2(Y, sqrt(X^2 + Z^2)), u = w / 2 + f x, v = h / 2 + f y,
        # f = w / (2 pi): the whole sphere over a 2:1 image, lens.py's equirectangular.
        return (*lens.equirect_intrinsics(w, h), w, h), "equirectangular", (0.0,) * 6
    num = {k: _number(calib, k, where) for k in ("f", "cx", "cy", "b1", "b2", "k1", "k2", "k3", "k4", "p1", "p2",
                                                 "p3", "p4")}
    if num["f"] <= 0:
        raise UserError(f"{where}: focal length f = {num['f']} px; the sensor is not calibrated, align the photos first")
    if num["p3"] or num["p4"]:
        raise UserError(f"{where}: the higher-order tangential terms p3, p4 are not supported; fix them at 0 in "
                        "Metashape's camera calibration and optimise the cameras again")
    model = LENSES[kind]
    if model == "fisheye" and (num["p1"] or num["p2"]):
        raise UserError(f"{where}: a fisheye lens with tangential terms p1, p2 is not supported; fix them at 0")
    # The skew moves a pixel by b2 y' (y' the distorted height over f): ignored where that stays under half a pixel.
    if abs(num["b2"]) * 0.5 * h / num["f"] > 0.5:
        warn(f"{where}: skew b2 = {num['b2']:g} px is ignored (up to {abs(num['b2']) * 0.5 * h / num['f']:.2f} px "
             "at the image's edge)")
    dist = (num["k1"], num["k2"], num["k3"], num["k4"], num["p2"], num["p1"])  # OpenCV's p1, p2 = Metashape's P2, P1
    intr = (num["f"] + num["b1"], num["f"], w / 2 + num["cx"], h / 2 + num["cy"], w, h)
    return intr, model if any(dist) else "pinhole", dist


def _transform(text: str | None, where: str) -> np.ndarray:
    try:
        m = np.asarray([float(v) for v in (text or "").split()], np.float64)
    except ValueError:
        raise UserError(f"{where}: <transform> is not 16 numbers; re-export the cameras") from None
    if m.shape != (16,) or not np.isfinite(m).all():
        raise UserError(f"{where}: <transform> is not 16 finite numbers; re-export the cameras")
    c2w = m.reshape(4, 4)
    c2w[:3, :3] /= np.cbrt(np.linalg.det(c2w[:3, :3]))  # a camera's rotation; a chunk scale would ride along
    c2w[:, 1:3] *= -1.0  # OpenCV axes to OpenGL (y up, looking down -z), as every other reader gives them
    return c2w


def _image(root: Path, label: str, downscale: int) -> tuple[Path, int, str]:
    """(file, factor still to apply, name) of a camera's photo in root/images/: its label as a
    path under images/, else the label's file name, each as given or with a photo's extension."""
    images = root / "images" if (root / "images").is_dir() else root
    names = [label.replace("\\", "/").lstrip("/"), Path(label.replace("\\", "/")).name]
    for name in dict.fromkeys(names):
        for candidate in (name, *(name + ext for ext in EXTENSIONS)):
            if (images / candidate).is_file():
                return *at_scale(images, candidate, downscale), candidate
    return images / names[-1], downscale, names[-1]  # missing: load_capture names it and drops it


def read_metashape(root: Path, downscale: int | str = 1) -> Capture:
    """The frames (cameras the alignment placed, their photos in root/images/, or root itself
    when it has no images/) and lenses of the Metashape cameras XML in root, its images placed for
    `downscale` ("auto": images.auto_downscale of the sensors' sizes)."""
    root = Path(root)
    path = find_xml(root)
    if path is None:
        raise UserError(f"{root}: no Metashape cameras XML (cameras.xml); export it with File > Export > Export Cameras")
    try:
        doc = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise UserError(f"{path}: not valid XML ({e}); re-export the cameras") from None
    chunk = doc if doc.tag == "chunk" else doc.find("chunk")
    if chunk is None:
        raise UserError(f"{path}: no <chunk> in the file; export the cameras of an aligned chunk")
    elements = {s.get("id"): s for s in chunk.iter("sensor")}
    sensors = {}  # read when a placed camera uses them: a sensor no camera uses may be of any kind
    placed, unplaced, uncalibrated = [], 0, 0
    for cam in chunk.iter("camera"):
        where = f"{path} camera {cam.get('label')!r}"
        if cam.find("transform") is None:
            unplaced += 1
            continue
        sid = cam.get("sensor_id")
        if sid not in sensors:
            sensors[sid] = _sensor(elements[sid], path) if sid in elements else None
        if sensors[sid] is None:
            uncalibrated += 1
            continue
        placed.append((cam, _transform(cam.find("transform").text, where)))
    if not placed:
        raise UserError(f"{path}: no camera has a pose (<transform>) and a calibrated sensor; align the photos in "
                        "Metashape, then export the cameras again")
    if unplaced or uncalibrated:
        warn(f"{path}: {unplaced + uncalibrated} of {unplaced + uncalibrated + len(placed)} cameras left out "
             f"({unplaced} not aligned, {uncalibrated} on a sensor without calibration)")
    components = Counter(cam.get("component_id") for cam, _ in placed)
    if len(components) > 1:
        keep, count = components.most_common(1)[0]
        warn(f"{path}: the cameras form {len(components)} components aligned apart ({', '.join(map(str, components.values()))} "
             f"cameras); reading the largest ({count}), merge the components in Metashape to use them all")
        placed = [(cam, c2w) for cam, c2w in placed if cam.get("component_id") == keep]
    if downscale == "auto":
        downscale = auto_downscale([sensors[cam.get("sensor_id")][0][4:] for cam, _ in placed], str(path))
    frames = []
    for cam, c2w in sorted(placed, key=lambda pc: pc[0].get("label", "")):
        intr, model, dist = sensors[cam.get("sensor_id")]
        file, factor, name = _image(root, cam.get("label", ""), downscale)
        frames.append(Frame(file=file, factor=factor, c2w=c2w, intrinsics=intr, model=model, distortion=dist, name=name))
    return Capture(source=path, frames=frames, downscale=downscale)
