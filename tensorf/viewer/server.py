"""The viewer's server: viser serves a web page (its client ships inside the wheel, so it works
offline) with the run's training cameras as frustums, the box, and the model's render of the
browser's camera as the page's background image.

Each browser tab gets a render thread. While the camera moves it draws a preview sized to take
about PREVIEW_S at the last measured ray rate; once the camera holds still it refines to the full
resolution, chunk by chunk, and gives up as soon as the camera moves again. New parameters from a
training run are drawn only when the last full render used at most REFRESH_DUTY of the time since
it, so an idle open tab costs training little (benchmarks/viewer_cpu.py measures it).
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import viser

from tensorf.data.cameras import Cameras
from tensorf.errors import warn
from tensorf.viewer.cameras import image_size, vertical_fov, view_camera, viser_pose
from tensorf.viewer.path_panel import CameraPathPanel
from tensorf.viewer.renderer import MODES, Snapshot, render_view

PREVIEW_S = 0.1  # render time aimed at while the camera moves
REFRESH_DUTY = 0.05  # most of the time an idle tab spends redrawing new training parameters
STILL_S = 0.05  # the camera must hold this long before a full-resolution render starts

_BOX_EDGES = [(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7)]


def box_segments(box: np.ndarray) -> np.ndarray:
    """The 12 edges (12, 2, 3) of an axis-aligned box (2, 3)."""
    corners = np.array([[box[i][0], box[j][1], box[k][2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    return corners[np.array(_BOX_EDGES)].astype(np.float32)


class Viewer:
    """A run in the browser at `url`. `publish` hands it new parameters (training runs),
    `show_training` the latest figures; `close` stops the server and its threads, leaving the
    run directory as it was (saved views go to RUN/viewer/, a saved camera path to
    RUN/camera_path.json)."""

    def __init__(self, run_dir: Path, cameras: Cameras, snapshot: Snapshot, *, host: str = "127.0.0.1",
                 port: int = 8080, chunk: int = 4096, mesh=None, training: bool = False, update_every: int = 100,
                 resolution: int | None = None):
        self.run_dir = Path(run_dir)
        self.cameras = cameras
        self.chunk, self.mesh = chunk, mesh
        self._snapshot, self._snapshot_version = snapshot, 0
        self._running = threading.Event()  # cleared while the user pauses training
        self._running.set()
        self._views: dict[int, _ClientView] = {}
        self._new_tab = False  # a tab opened since the last publish
        self._saved = itertools.count()
        self.server = viser.ViserServer(host=host, port=port, verbose=False)
        self.url = f"http://{host}:{self.server.get_port()}"
        self._add_scene()
        self._add_controls(training, update_every, resolution)
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)

    # --- what the page shows ----------------------------------------------------------

    def _add_scene(self) -> None:
        cams, scene = self.cameras, self._snapshot.model.scene
        c2w = cams.c2w
        up = c2w[:, :3, 1].mean(0)
        self.server.scene.set_up_direction(tuple(float(v) for v in up / np.linalg.norm(up)))
        spread = float(np.ptp(c2w[:, :3, 3], axis=0).max())
        if not scene.ndc:
            # Contracted runs hold all of space; their box is the contracted one, so the unit
            # region (what is not contracted) is what can be drawn in world units.
            box = np.array([[-1.0] * 3, [1.0] * 3]) if scene.contraction else self._snapshot.box
            self.server.scene.add_line_segments("/box", box_segments(box), (230, 120, 20), thickness=2.0,
                                                thickness_units="screen")
            spread = max(spread, float(np.linalg.norm(box[1] - box[0])))
        scale = self.frustum_scale = 0.025 * spread
        stride = max(1, len(cams) // 300)  # enough frustums to see the capture, few enough to stay fluid
        self.frustums = []
        for i in range(0, len(cams), stride):
            wxyz, position = viser_pose(c2w[i])
            frustum = self.server.scene.add_camera_frustum(
                f"/cameras/{i}", fov=vertical_fov(cams, i), aspect=float(cams.width[i] / cams.height[i]), scale=scale,
                thickness=1.5, thickness_units="screen", wxyz=wxyz, position=position, color=(40, 90, 200))
            frustum.on_click(functools.partial(self._frustum_clicked, i))
            self.frustums.append(frustum)

    def _add_controls(self, training: bool, update_every: int, resolution: int | None) -> None:
        gui, cams = self.server.gui, self.cameras
        long_side = int(max(cams.width[0], cams.height[0]))
        self.mode = gui.add_dropdown("Show", MODES, initial_value="rgb")
        self.resolution = gui.add_slider("Resolution", 32, 2048, 32, int(resolution or min(long_side, 1024)),
                                         hint="longer side of the full-resolution render, in pixels")
        self.fov = gui.add_slider("FOV (deg)", 5.0, 150.0, 1.0, round(math.degrees(vertical_fov(cams, 0))),
                                  hint="vertical field of view")
        show_cameras = gui.add_checkbox("Show training cameras", True)
        self.camera_index = gui.add_number("Training camera", 0, min=0, max=len(cams) - 1, step=1)
        jump = gui.add_button("Go to training camera")
        save = gui.add_button("Save this view", hint="a PNG of the current view into RUN/viewer/")
        self.status = gui.add_markdown("")
        show_cameras.on_update(lambda _: [setattr(f, "visible", show_cameras.value) for f in self.frustums])
        for control in (self.mode, self.resolution):
            control.on_update(lambda _: self._wake_all())
        self.fov.on_update(lambda e: e.client and setattr(e.client.camera, "fov", math.radians(self.fov.value)))
        jump.on_click(lambda e: self.go_to(e.client, int(self.camera_index.value)) if e.client else None)
        save.on_click(lambda e: self._save_clicked(e.client) if e.client else None)
        self.path = CameraPathPanel(self)
        self.training_stats = self.pause = self.update_every = None
        if training:
            with gui.add_folder("Training"):
                self.training_stats = gui.add_markdown("starting")
                self.pause = gui.add_checkbox("Pause training", False)
                self.update_every = gui.add_number("Update view every (steps)", int(update_every), min=1, step=1)
            self.pause.on_update(lambda _: self._running.clear() if self.pause.value else self._running.set())

    def _frustum_clicked(self, index: int, event) -> None:
        """A click on a training camera's frustum takes the tab there."""
        if event.client is not None:
            self.camera_index.value = index
            self.go_to(event.client, index)

    def go_to(self, client, index: int) -> None:
        """Put a browser's camera where training camera `index` is."""
        cams = self.cameras
        index = int(np.clip(index, 0, len(cams) - 1))
        self.place(client, cams.c2w[index], vertical_fov(cams, index))

    def place(self, client, c2w: np.ndarray, fov_y: float) -> None:
        """Put a browser's camera at the OpenGL camera-to-world c2w (4, 4), vertical fov in radians."""
        c2w = np.asarray(c2w, np.float64)
        position, forward, up = c2w[:3, 3], -c2w[:3, 2], c2w[:3, 1]
        # The orbit pivot: the box centre's foot on the optical axis (forward-facing runs, whose
        # box is in NDC: a few near-plane distances ahead).
        if self._snapshot.model.scene.ndc:
            reach = 2.0 * (self.cameras.ndc.near if self.cameras.ndc else 1.0)
        else:
            reach = max(float(np.dot(self._snapshot.box.mean(0) - position, forward)), 1e-3)
        with client.atomic():
            client.camera.position = position
            client.camera.look_at = position + reach * forward
            client.camera.up_direction = up
            client.camera.fov = float(fov_y)

    # --- browser tabs -------------------------------------------------------------------

    def _connect(self, client) -> None:
        self.go_to(client, 0)
        self._views[client.client_id] = _ClientView(self, client)
        self._new_tab = True

    def _disconnect(self, client) -> None:
        view = self._views.pop(client.client_id, None)
        if view is not None:
            view.stop()

    def has_tab(self, client) -> bool:
        """Whether a browser tab is still open."""
        return client.client_id in self._views

    def _wake_all(self) -> None:
        for view in list(self._views.values()):
            view.wake.set()

    def settings(self) -> tuple[str, int]:
        return str(self.mode.value), int(self.resolution.value)

    def camera_of(self, client, long_side: int) -> Cameras:
        """The browser's current camera as this project's, `long_side` pixels on its longer side."""
        cam = client.camera
        width, height = image_size(cam.aspect, long_side)
        return view_camera(cam.wxyz, cam.position, cam.fov, width, height, self.cameras.ndc)

    def render(self, camera: Cameras, mode: str = "rgb", cancelled=None) -> np.ndarray | None:
        return render_view(self._snapshot, camera, mode, self.chunk, self.mesh, cancelled)

    def _save_clicked(self, client) -> None:
        path = self.save_view(self.camera_of(client, self.settings()[1]), self.settings()[0])
        client.add_notification("View saved", str(path), auto_close_seconds=5.0)

    def save_view(self, camera: Cameras, mode: str = "rgb") -> Path:
        """Render camera at full resolution into RUN/viewer/step<step>_<mode>_<n>.png."""
        image = self.render(camera, mode)
        out = self.run_dir / "viewer"
        out.mkdir(parents=True, exist_ok=True)
        while True:
            path = out / f"step{self._snapshot.step:07d}_{mode}_{next(self._saved):03d}.png"
            if not path.exists():
                break
        iio.imwrite(path, image)
        return path

    # --- a training run -------------------------------------------------------------------

    @property
    def snapshot(self) -> tuple[Snapshot, int]:
        return self._snapshot, self._snapshot_version

    def publish(self, model, params, step: int) -> None:
        """New parameters to draw (copied: the caller may go on changing its own)."""
        self._snapshot = Snapshot.take(model, params, step, self.mesh)
        self._snapshot_version += 1
        self._new_tab = False
        self._wake_all()

    def wants(self, step: int) -> bool:
        """Whether a training run should publish its parameters after `step`: every few steps (as
        the page sets it) while a tab is open, and at once for a tab that just opened."""
        if not self._views:
            return False
        every = max(1, int(self.update_every.value)) if self.update_every is not None else 100
        return step % every == 0 or self._new_tab

    def show_training(self, step: int, psnr: float, rays_per_s: float, grid=None) -> None:
        if self.training_stats is not None:
            state = "paused" if not self._running.is_set() else "training"
            grid_text = f" · grid {'×'.join(map(str, grid))}" if grid else ""
            self.training_stats.content = (f"**{state}** step {step} · PSNR {psnr:.2f} dB · "
                                           f"{rays_per_s / 1e3:.1f}k rays/s{grid_text}")

    def wait_while_paused(self) -> float:
        """Block while the page has training paused; the seconds spent waiting."""
        if self._running.is_set():
            return 0.0
        t0 = time.perf_counter()
        while not self._running.wait(0.5):
            pass
        return time.perf_counter() - t0

    def close(self) -> None:
        views = list(self._views.values())
        for view in views:
            view.stop()
        for view in views:  # a render gives up at its next chunk; then nothing is sent to a closed page
            view.thread.join(timeout=10.0)
        self._views.clear()
        self._running.set()
        self.server.stop()


class _ClientView:
    """The render thread of one browser tab (see the module docstring)."""

    def __init__(self, viewer: Viewer, client):
        self.viewer, self.client = viewer, client
        self.camera_version = 0
        self.shown: tuple = (None, None, None)  # (camera version, snapshot version, settings) at full resolution
        self.rays_per_s: float | None = None
        self.next_refresh = 0.0
        self.wake = threading.Event()
        self.stopped = False
        self.failed = False
        client.camera.on_update(self._moved)
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"viewer-tab-{client.client_id}")
        self.thread.start()

    def _moved(self, _camera) -> None:
        self.camera_version += 1
        self.wake.set()

    def stop(self) -> None:
        self.stopped = True
        self.wake.set()

    def _run(self) -> None:
        while not self.stopped:
            self.wake.wait(0.25)  # also wakes to draw deferred training parameters
            self.wake.clear()
            if self.stopped or self.camera_version == 0:  # no camera message yet
                continue
            try:
                self._refresh()
            except Exception as e:  # a render failing must not take the server down; say so once
                if not self.failed:
                    warn(f"viewer: rendering failed ({e.__class__.__name__}: {e})")
                    self.failed = True

    def _show(self, image: np.ndarray) -> None:
        if not self.stopped:
            self.client.scene.set_background_image(image, format="jpeg", jpeg_quality=90)

    def _refresh(self) -> None:
        viewer = self.viewer
        version, (_, snap_version), settings = self.camera_version, viewer.snapshot, viewer.settings()
        if (version, snap_version, settings) == self.shown:
            return
        if (version, settings) == (self.shown[0], self.shown[2]) and time.monotonic() < self.next_refresh:
            return  # only the parameters changed, and redrawing now would take too much of the device
        mode, long_side = settings
        if version != self.shown[0] and self.rays_per_s is not None:
            preview = int(math.sqrt(self.rays_per_s * PREVIEW_S))
            if preview < 0.7 * long_side:
                self._show(viewer.render(viewer.camera_of(self.client, max(preview, 16)), mode))
                time.sleep(STILL_S)
                if self.camera_version != version:
                    return
        t0 = time.perf_counter()
        camera = viewer.camera_of(self.client, long_side)
        image = viewer.render(camera, mode, cancelled=lambda: self.stopped or self.camera_version != version)
        if image is None or self.stopped:
            return
        self._show(image)
        dt = time.perf_counter() - t0
        self.rays_per_s = image.shape[0] * image.shape[1] / max(dt, 1e-6)
        self.next_refresh = time.monotonic() + dt * (1.0 / REFRESH_DUTY - 1.0)
        self.shown = (version, snap_version, settings)
        step = viewer.snapshot[0].step
        viewer.status.content = f"{image.shape[1]}×{image.shape[0]} in {1e3 * dt:.0f} ms (step {step})"
