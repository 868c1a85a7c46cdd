"""Nothing lost: SIGKILL at any moment, damaged checkpoints, two runs in one folder, unsafe resumes."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from conftest import tiny_config
from tensorf.errors import UserError
from tensorf.run import RunLock, restore_run
from tensorf.training.loop import train

ROOT = Path(__file__).resolve().parents[1]
# 9 steps, checkpoints at 3, 6 and 9, the grid upsampled at step 4.
OVER = dict(steps=9, checkpoint_every=3)


@pytest.fixture(scope="module")
def finished(scene, tmp_path_factory):
    """(a finished 9-step run's folder, its result); tests work on copies of the folder."""
    run = tmp_path_factory.mktemp("finished") / "run"
    return run, train(tiny_config(scene, run, **OVER))


def _copy(finished, tmp_path) -> Path:
    shutil.copytree(finished[0], tmp_path / "run")
    return tmp_path / "run"


def _train_in_subprocess(scene, run_dir, kill_at=None):
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(ROOT / 'tests')!r}, {str(ROOT)!r}]
        from pathlib import Path
        from conftest import tiny_config
        from tensorf.training.loop import train
        train(tiny_config(Path({str(scene)!r}), Path({str(run_dir)!r}), **{OVER!r}), resume=True)
    """)
    env = {**os.environ, "TENSORF_KILL_AT": kill_at or ""}
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # 75-100 s on 2 cores: on the slow CI line, which runs on every change
def test_sigkill_anywhere_then_resume_ends_where_an_uninterrupted_run_does(scene, finished, tmp_path):
    straight = finished[1]
    run = tmp_path / "crashed"
    # Killed during the upsampling at step 4 (checkpoint 3 complete), then inside the save of
    # step 6, then after step 8: each time resumed from the newest complete checkpoint.
    for kill_at in ("event:4", "save:6", "step:8"):
        proc = _train_in_subprocess(scene, run, kill_at)
        assert proc.returncode == -9, (kill_at, proc.stderr[-2000:])
        assert (run / "lock").is_file()  # left behind by the killed process
    proc = _train_in_subprocess(scene, run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "taking over the lock of process" in proc.stderr  # the stale lock of the killed run
    assert not (run / "lock").exists()
    _, _, params, meta = restore_run(run)
    assert meta["step"] == 9
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(straight.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-6)


def _truncate_newest(run: Path, step: int) -> None:
    for f in (run / "checkpoints" / str(step) / "params").rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and "manifest" not in f.name and f.suffix != ".json":
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def test_truncated_newest_checkpoint_falls_back_to_the_one_before(scene, finished, tmp_path, capsys):
    import tensorf.eval

    run, straight = _copy(finished, tmp_path), finished[1]
    _truncate_newest(run, 9)
    _, _, params, meta = restore_run(run)
    assert meta["step"] == 6
    assert "checkpoints/9: checkpoint is damaged" in capsys.readouterr().err
    with pytest.raises(UserError, match=r"checkpoints/9: checkpoint is damaged .*pick another with --step"):
        restore_run(run, 9)
    tensorf.eval.main(tensorf.eval.EvalArgs(run_dir=run, views=(0,)))  # eval takes step 6 too
    assert "using the one before it, step 6" in capsys.readouterr().err
    # Training resumes from step 6, writes 9 again and lands where it did before.
    resumed = train(tiny_config(scene, run, **OVER), resume=True)
    for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(straight.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_folder_holding_a_run_is_refused_unless_resumed_or_overwritten(scene, finished, tmp_path):
    run = _copy(finished, tmp_path)
    with pytest.raises(UserError, match=r"already holds a run; continue it with --resume .*or start over with --overwrite"):
        train(tiny_config(scene, run, steps=3))
    # What the old field was exported and rendered to goes with it (a stale points.ply would seed
    # export_cameras' COLMAP scene); a camera path made in the viewer is the user's and stays.
    (run / "colmap" / "sparse").mkdir(parents=True)
    (run / "viewer").mkdir()
    for name in ("points.ply", "mesh.ply", "transforms.json", "render_360.gif", "render_360_depth.gif", "flight.gif",
                 "flight_opacity.gif", "viewer/step0000009_rgb_000.png", "flight.json", "notes.txt"):
        (run / name).write_text("from the old run")
    result = train(tiny_config(scene, run, steps=2, checkpoint_every=0), overwrite=True)
    assert result.steps == 2 and restore_run(run)[3]["step"] == 2 and not (run / "checkpoints" / "9").exists()
    left = {p.name for p in run.iterdir()}
    assert not left & {"points.ply", "mesh.ply", "transforms.json", "colmap", "viewer", "render_360.gif",
                       "render_360_depth.gif", "flight.gif", "flight_opacity.gif"}, left
    assert {"flight.json", "notes.txt"} <= left


def test_a_live_lock_refuses_a_second_process_and_a_stale_one_is_taken_over(scene, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / "lock").write_text(json.dumps({"pid": sleeper.pid, "host": os.uname().nodename}))
        with pytest.raises(UserError, match=rf"is being trained by process {sleeper.pid}"):
            train(tiny_config(scene, run, steps=1))
        assert RunLock(run).taken()  # what the viewer waits on for a run's first checkpoint
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not RunLock(run).taken()
    lock = RunLock(run).acquire()  # the sleeper is gone: its lock is stale
    assert json.loads((run / "lock").read_text())["pid"] == os.getpid()
    lock.release()
    assert not (run / "lock").exists()


def test_resume_refuses_overrides_that_change_parameter_shapes(scene, finished, tmp_path):
    import dataclasses

    from tensorf.config import CameraOptConfig, ExposureConfig, NeRFConfig

    run = _copy(finished, tmp_path)
    cfg = tiny_config(scene, run, **OVER)
    wider = dataclasses.replace(cfg.model, appearance_components=(6, 6, 6))
    with pytest.raises(UserError, match=r"--model.appearance-components \(8, 8, 8\) -> \(6, 6, 6\) changes the shapes"):
        train(dataclasses.replace(cfg, model=wider), resume=True)
    with pytest.raises(UserError, match=r"holds a TensoRF run; --resume cannot turn it into NeRF"):
        train(dataclasses.replace(cfg, model=NeRFConfig(net_width=8)), resume=True)
    with pytest.raises(UserError, match=r"trained with --camera-opt.mode off; --resume cannot change it to SO3xR3"):
        train(dataclasses.replace(cfg, camera_opt=CameraOptConfig(mode="SO3xR3")), resume=True)
    with pytest.raises(UserError, match=r"trained with --exposure.mode off; --resume cannot change it to gain"):
        train(dataclasses.replace(cfg, exposure=ExposureConfig(mode="gain")), resume=True)
    # Safe overrides go through and are recorded.
    result = train(dataclasses.replace(cfg, steps=10, log_every=2), resume=True)
    assert result.steps == 10 and json.loads((run / "config.json").read_text())["steps"] == 10


def test_a_failed_checkpoint_write_is_one_line_and_the_last_complete_one_stays(finished, tmp_path, monkeypatch):
    import errno

    from tensorf.checkpoint import Checkpointer

    run = _copy(finished, tmp_path)
    ckpt = Checkpointer(run)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt._mgr, "save", full)
    with pytest.raises(UserError, match=r"writing checkpoint 12 failed \(OSError: .*No space left on device\); the newest "
                                        r"complete checkpoint \(step 9\) stays usable"):
        ckpt.save(12, {"x": np.zeros(3)}, {"step": 12})
    monkeypatch.undo()
    ckpt.close()
    assert restore_run(run)[3]["step"] == 9
