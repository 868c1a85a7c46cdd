"""The viewer's "Camera path" panel: keyframes taken from a tab's view, drawn in the scene, flown
through ("Play") and saved as RUN/camera_path.json for render_360.py --camera-path
(tensorf.data.camera_path). A path saved before is loaded again, to go on editing it."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np

from tensorf.data.camera_path import PACINGS, interpolate, read_keyframes, write_camera_path
from tensorf.errors import UserError, warn
from tensorf.viewer.cameras import c2w_from_viser, image_size, viser_pose

PATH_COLOR = (240, 140, 20)


class CameraPathPanel:
    """The panel of `viewer` (a tensorf.viewer.server.Viewer, whose server, run directory,
    training cameras and tabs it uses)."""

    def __init__(self, viewer):
        self.viewer = viewer
        self.keyframes: list[tuple[np.ndarray, float]] = []  # (c2w (4, 4), vertical fov in degrees)
        self._handles: list = []
        gui = viewer.server.gui
        with gui.add_folder("Camera path", expand_by_default=False):
            add_key = gui.add_button("Add keyframe", hint="the current view becomes the path's next keyframe")
            clear_keys = gui.add_button("Clear keyframes")
            self.loop = gui.add_checkbox("Loop", False, hint="return to the first keyframe")
            self.seconds = gui.add_number("Seconds", 4.0, min=0.1, step=0.1)
            self.fps = gui.add_number("FPS", 24, min=1, step=1)
            self.pacing = gui.add_dropdown("Pacing", PACINGS, "keyframes",
                                           hint="keyframes: the same time between each two; speed: an even speed")
            play = gui.add_button("Play", hint="fly this tab's camera along the path (drawn small while it moves)")
            save = gui.add_button("Save camera path", hint="RUN/camera_path.json, for render_360.py --camera-path")
            self.status = gui.add_markdown("no keyframes")
        add_key.on_click(lambda e: self.add_keyframe_of(e.client) if e.client else None)
        clear_keys.on_click(lambda _: self.clear())
        self.loop.on_update(lambda _: self._draw())
        save.on_click(lambda e: self._save_clicked(e.client) if e.client else None)
        play.on_click(lambda e: self.play(e.client) if e.client and self.keyframes else None)
        self._load_saved()

    @property
    def file(self) -> Path:
        return self.viewer.run_dir / "camera_path.json"

    def add_keyframe(self, c2w: np.ndarray, fov_deg: float) -> None:
        """Append a keyframe (OpenGL camera-to-world (4, 4), vertical field of view) to the path."""
        self.keyframes.append((np.asarray(c2w, np.float64).reshape(4, 4), float(fov_deg)))
        self._draw()

    def add_keyframe_of(self, client) -> None:
        """Append a tab's current view."""
        cam = client.camera
        self.add_keyframe(c2w_from_viser(cam.wxyz, cam.position), math.degrees(cam.fov))

    def clear(self) -> None:
        self.keyframes.clear()
        self._draw()

    def save(self, width: int, height: int) -> Path:
        """Write the keyframes and the frames between them to RUN/camera_path.json."""
        keys, fovs = self._keys()
        write_camera_path(self.file, keys, fovs, width, height, float(self.fps.value), float(self.seconds.value),
                          bool(self.loop.value), str(self.pacing.value))
        return self.file

    def play(self, client, wait: bool = False) -> None:
        """Fly a tab's camera along the path at the panel's frame rate (in a thread of its own, so
        the page stays live; wait: return when it has flown)."""
        keys, fovs = self._keys()
        fps = float(self.fps.value)
        c2w, fov = interpolate(keys, fovs, max(1, round(fps * float(self.seconds.value))), bool(self.loop.value),
                               str(self.pacing.value))

        def fly() -> None:
            for pose, f in zip(c2w, fov):
                if not self.viewer.has_tab(client):  # the tab closed
                    return
                self.viewer.place(client, pose, math.radians(f))
                time.sleep(1.0 / fps)

        thread = threading.Thread(target=fly, daemon=True, name=f"viewer-play-{client.client_id}")
        thread.start()
        if wait:
            thread.join()

    def _keys(self) -> tuple[np.ndarray, np.ndarray]:
        return np.stack([k for k, _ in self.keyframes]), np.array([f for _, f in self.keyframes])

    def _load_saved(self) -> None:
        try:
            saved = read_keyframes(self.file) if self.file.is_file() else None
        except UserError as e:
            warn(f"viewer: {e}")
            return
        if saved is not None:
            keys, fovs, seconds, fps, loop, pacing = saved
            self.seconds.value, self.fps.value, self.loop.value, self.pacing.value = seconds, fps, loop, pacing
            self.keyframes = [(k, float(f)) for k, f in zip(keys, fovs)]
            self._draw()

    def _save_clicked(self, client) -> None:
        if not self.keyframes:
            client.add_notification("No keyframes", "add a keyframe first", auto_close_seconds=5.0)
            return
        width, height = image_size(client.camera.aspect, self.viewer.settings()[1])
        path = self.save(width, height)
        client.add_notification("Camera path saved", f"python render_360.py --run-dir {self.viewer.run_dir} "
                                f"--camera-path {path}", auto_close_seconds=10.0)

    def _draw(self) -> None:
        """The keyframes as frustums and the path through them as a line."""
        scene, cams = self.viewer.server.scene, self.viewer.cameras
        for handle in self._handles:
            handle.remove()
        self._handles = []
        n = len(self.keyframes)
        self.status.content = f"{n} keyframe{'s' * (n != 1)}" if n else "no keyframes"
        if not n:
            return
        aspect = float(cams.width[0] / cams.height[0])
        for i, (c2w, fov) in enumerate(self.keyframes):
            wxyz, position = viser_pose(c2w)
            self._handles.append(scene.add_camera_frustum(
                f"/camera_path/key{i}", fov=math.radians(fov), aspect=aspect, scale=self.viewer.frustum_scale,
                thickness=1.5, thickness_units="screen", wxyz=wxyz, position=position, color=PATH_COLOR))
        if n > 1:
            loop = bool(self.loop.value)
            keys, fovs = self._keys()
            c2w, _ = interpolate(keys, fovs, 16 * (n if loop else n - 1) + 1, loop)
            points = c2w[:, :3, 3]
            if loop:
                points = np.concatenate([points, points[:1]])
            self._handles.append(scene.add_line_segments(
                "/camera_path/line", np.stack([points[:-1], points[1:]], 1).astype(np.float32), PATH_COLOR,
                thickness=2.0, thickness_units="screen"))
