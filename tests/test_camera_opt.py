"""Camera pose refinement (tensorf.training.cameras): the corrections' geometry, their gradient,
their place in training and checkpoints, and perturbed poses pulled back by training."""

import dataclasses
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from conftest import short_run, tiny_config
from tensorf import export_cameras
from tensorf.config import CameraOptConfig
from tensorf.data.blender import load_blender
from tensorf.data.generated import perturb_training_poses
from tensorf.data.rays import RayPool
from tensorf.eval import evaluate_views
from tensorf.pose_fit import fit_poses
from tensorf.run import restore_run
from tensorf.training.cameras import camera_lr, carried, common_motion, corrected, pose_errors, rotation, similarity
from tensorf.training.loop import train


def _skew(w):
    return np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])


def _camera_motion(delta) -> np.ndarray:
    """[[exp(w), t], [0, 1]] (4, 4) in float64 for delta = (t, w)."""
    m = np.eye(4)
    m[:3, :3] = scipy.linalg.expm(_skew(np.asarray(delta[3:], np.float64)))
    m[:3, 3] = delta[:3]
    return m


def test_camera_rate_warms_up_from_zero_then_decays():
    # nerfstudio's ExponentialDecayScheduler with a cosine ramp: 0 at the start, lr at the end of
    # the warm-up, lr_final at decay_steps and after; without a warm-up, nerfacto's decay from step 0.
    cfg = CameraOptConfig(mode="SO3xR3", lr=1e-3, lr_final=1e-4, decay_steps=5000, warmup_steps=1000)
    rate = lambda c, s: float(camera_lr(c, s))  # noqa: E731
    assert rate(cfg, 0) == 0.0 and rate(cfg, 500) == pytest.approx(1e-3 * np.sin(np.pi / 4), rel=1e-5)
    assert rate(cfg, 1000) == pytest.approx(1e-3, rel=1e-5)
    assert rate(cfg, 3000) == pytest.approx(np.sqrt(1e-3 * 1e-4), rel=1e-4)  # halfway, log-linear
    assert rate(cfg, 5000) == pytest.approx(1e-4, rel=1e-5) == rate(cfg, 9000)
    plain = dataclasses.replace(cfg, warmup_steps=0)
    assert rate(plain, 0) == pytest.approx(1e-3, rel=1e-6) and rate(plain, 2500) == pytest.approx(np.sqrt(1e-7), rel=1e-4)


def test_rotation_is_the_matrix_exponential_with_finite_gradients_at_zero():
    rng = np.random.default_rng(0)
    for scale in (0.7, 1e-3, 1e-6):  # the closed form, and the series below its threshold
        w = rng.normal(size=(16, 3)) * scale
        got = np.asarray(jax.jit(rotation)(jnp.asarray(w, jnp.float32)))
        want = np.stack([scipy.linalg.expm(_skew(v)) for v in w])
        np.testing.assert_allclose(got, want, atol=2e-6)
    # At w = 0, where refinement starts: d exp(w) / dw_i is the generator of rotations about axis i.
    jac = np.asarray(jax.jacobian(rotation)(jnp.zeros(3)))
    assert np.isfinite(jac).all()
    for i in range(3):
        np.testing.assert_array_equal(jac[..., i], _skew(np.eye(3)[i]))


def test_corrections_move_each_camera_in_its_own_frame_with_the_gradient_of_the_rays(scene):
    pool = jax.device_put(RayPool.from_views(load_blender(scene, "train")))
    ids = jnp.arange(0, int(pool.count), 97, dtype=jnp.int32)
    geometry = jax.jit(lambda pool, c2w: pool.geometry(ids, c2w))
    # No correction: the pool's own rays, bit for bit.
    zero = corrected(pool.c2w, jnp.zeros((pool.c2w.shape[0], 6)))
    for a, b in zip(geometry(pool, None), geometry(pool, zero), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # A correction is a motion in the camera's own axes: c2w @ [[exp(w), t], [0, 1]], view by view.
    rng = np.random.default_rng(1)
    delta = np.concatenate([rng.normal(size=(len(zero), 3)) * 0.2, rng.normal(size=(len(zero), 3)) * 0.05], axis=1)
    moved = np.stack([np.asarray(c, np.float64) @ _camera_motion(d) for c, d in zip(np.asarray(pool.c2w), delta)])
    want = geometry(dataclasses.replace(pool, c2w=jnp.asarray(moved, jnp.float32)), None)
    got = geometry(pool, corrected(pool.c2w, jnp.asarray(delta, jnp.float32)))
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5)
    # The rays' gradient with respect to the corrections matches central differences.
    probe = jnp.asarray(rng.normal(size=(len(ids), 6)), jnp.float32)

    def f(d):
        o, dirs, _ = pool.geometry(ids, corrected(pool.c2w, d))
        return jnp.sum(jnp.concatenate([o, dirs], axis=1) * probe)

    d0 = jnp.asarray(delta, jnp.float32)
    grad = np.asarray(jax.jit(jax.grad(f))(d0))
    assert np.abs(grad).max() > 1.0
    f_jit, eps = jax.jit(f), 1e-2
    for v, k in ((0, 0), (3, 2), (7, 4), (11, 5)):
        step = jnp.zeros_like(d0).at[v, k].set(eps)
        fd = (float(f_jit(d0 + step)) - float(f_jit(d0 - step))) / (2 * eps)
        np.testing.assert_allclose(grad[v, k], fd, rtol=2e-2, atol=2e-2)


def test_refinement_moves_only_the_views_trained_on_and_resumes_bit_exact(scene, tmp_path, capsys):
    # One image per step: 6 steps train at most 6 of the 24 views, and the others keep a zero
    # correction (their gradient, the penalty's included, is exactly zero).
    cfg = tiny_config(scene, tmp_path / "run", camera_opt__mode="SO3xR3", batching="single_image", final_eval=True)
    straight = train(cfg)
    refined = json.loads((tmp_path / "run" / "cameras_refined.json").read_text())
    given = json.loads((tmp_path / "run" / "cameras.json").read_text())
    moved = [not np.array_equal(a, b) for a, b in zip(refined["c2w"], given["c2w"], strict=True)]
    assert 1 <= sum(moved) <= 6
    assert f"python -m tensorf.eval --run-dir {tmp_path / 'run'} --fit-poses 100" in capsys.readouterr().out
    # Resumed from the step-3 checkpoint, the run ends where the uninterrupted one did, the
    # corrections and their Adam state included (they are part of the checkpoint).
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "6")
    resumed = train(cfg, resume=True)
    assert resumed.train_psnr == straight.train_psnr
    assert json.loads((tmp_path / "run" / "cameras_refined.json").read_text())["c2w"] == refined["c2w"]
    for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(straight.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))



@pytest.mark.slow  # two 300-step trainings, ~3 min on 2 cores: on the slow CI line
def test_training_pulls_perturbed_poses_back(scene, tmp_path):
    # Every training camera turned by 3 degrees and moved by 0.1 (at 32x32 px, about 2.3 px of
    # image motion), the held-out views exact (benchmarks/pose_refine.py: 15.97 dB as given,
    # 21.03 refined, 23.96 on the true poses; rotation error 3 -> 1.17 degrees).
    perturbed = tmp_path / "perturbed"
    shutil.copytree(scene, perturbed)
    truth = perturb_training_poses(perturbed, degrees=3.0, shift=0.1)
    over = short_run(perturbed)
    given = train(tiny_config(scene, tmp_path / "given", **over))
    refined = train(tiny_config(scene, tmp_path / "refined", camera_opt__mode="SO3xR3", **over))
    assert refined.eval_metrics["psnr"] > given.eval_metrics["psnr"] + 3.0
    c2w = json.loads((tmp_path / "refined" / "cameras_refined.json").read_text())["c2w"]
    rotation_error, _ = pose_errors(np.asarray(c2w), truth)
    assert rotation_error < 1.5  # from 3
    # The refined poses go out to other tools in the scene's frame, the cameras' common drift taken
    # out. Measured once the motion common to every view is taken out (which no capture pins
    # down: the perturbation's own mean turn is part of it), they are as close to the truth
    # (1.12 degrees; the perturbed ones 2.85).
    out = export_cameras.main(export_cameras.ExportCamerasArgs(run_dir=tmp_path / "refined"))
    exported = {f["file_path"]: f["transform_matrix"] for f in json.loads(out.read_text())["frames"]}
    files = json.loads((tmp_path / "refined" / "cameras.json").read_text())["files"]
    poses = np.asarray([exported[os.path.relpath(f, out.parent)] for f in files])
    rotation_error, _ = pose_errors(common_motion(poses, truth) @ poses, truth)
    assert rotation_error < 1.5


def _turned(c2w: np.ndarray, degrees: float, shift: float, seed: int) -> np.ndarray:
    """Each camera (N, 4, 4) turned by `degrees` about a random axis and moved by `shift` along a
    random direction, in the world frame (float64)."""
    rng = np.random.default_rng(seed)
    out = np.array(c2w, np.float64)
    for c in out:
        axis, move = rng.normal(size=3), rng.normal(size=3)
        turn = scipy.linalg.expm(_skew(axis / np.linalg.norm(axis) * np.radians(degrees)))
        c[:3, :3] = turn @ c[:3, :3]
        c[:3, 3] += move / np.linalg.norm(move) * shift
    return out


def test_eval_cameras_are_carried_with_the_training_views_common_motion():
    rng = np.random.default_rng(3)
    given = _turned(np.tile(np.eye(4), (48, 1, 1)), 40.0, 0.0, seed=4)
    given[:, :3, 3] = rng.normal(size=(48, 3)) * 3.0
    evals = _turned(given[:4], 5.0, 0.3, seed=5)
    # All training views turned and moved together (the field's frame with them): the eval views
    # follow that motion exactly, their own offsets from the training views untouched.
    motion = np.eye(4)
    motion[:3, :3] = scipy.linalg.expm(_skew(np.array([0.01, -0.02, 0.005])))
    motion[:3, 3] = (0.03, -0.01, 0.02)
    np.testing.assert_allclose(carried(evals, given, motion @ given), motion @ evals, atol=1e-9)
    # Each training view also corrected on its own, at random: the common motion is still found
    # (the views' own corrections average out; the 1.3-degree motion itself is to be undone).
    own = np.stack([_camera_motion(d) for d in rng.normal(size=(48, 6)) * 0.01])
    degrees, shift = pose_errors(carried(evals, given, motion @ given @ own), motion @ evals)
    assert degrees < 0.3 and shift < 0.05, (degrees, shift)  # each view alone: 0.9 degrees, 0.018
    # No refinement, no motion.
    np.testing.assert_allclose(carried(evals, given, given), evals, atol=1e-12)


def test_similarity_recovers_scale_rotation_and_translation_and_never_a_mirror():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(30, 3))
    r_true = scipy.linalg.expm(np.cross(np.eye(3), [0.3, -1.2, 0.5]))
    s, r, t = similarity(src, 2.5 * src @ r_true.T + [1.0, -2.0, 0.5])
    assert s == pytest.approx(2.5) and np.allclose(r, r_true) and np.allclose(t, [1.0, -2.0, 0.5])
    # Points mirrored (a flat set seen from behind, say): the best fit is still a rotation.
    _, r, _ = similarity(src, src * [1.0, 1.0, -1.0])
    assert np.linalg.det(r) == pytest.approx(1.0)


def test_fitted_poses_recover_turned_eval_cameras_and_are_judged_on_the_other_half(trained_run, tmp_path):
    cfg, _ = trained_run
    _, model, params, _ = restore_run(cfg.run_dir)
    views = load_blender(cfg.data.path, "test").subset(range(3))
    truth = views.cameras.c2w.astype(np.float64)
    off = views.posed(_turned(truth, 2.0, 0.04, seed=6))
    fitted = fit_poses(model, params, off, steps=150, batch=1024, lr=2e-3, columns="left")
    before, after = pose_errors(off.cameras.c2w, truth), pose_errors(fitted, truth)
    assert before[0] > 1.9 and after[0] < 0.4 * before[0], (before, after)  # 2.0 -> 0.45 degrees here
    # Judged on the right halves only, which the fit never saw: better at the fitted poses.
    judge = lambda v: evaluate_views(model, params, v, tmp_path, "t", 4096, verbose=False, write=False,  # noqa: E731
                                     with_lpips=False, right_half=True)["psnr"]
    assert judge(off.posed(fitted)) > judge(off) + 5.0  # 14.6 -> 25.8 dB here
