"""Checkpoints restore bit-exactly at any step, and --resume continues the same trajectory."""

import dataclasses
import shutil

import jax
import numpy as np
import pytest

from conftest import tiny_config
from tensorf.errors import UserError
from tensorf.run import restore_run
from tensorf.training.loop import train


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


# Three trainings, 50-55 s on 2 cores: on the slow CI line. test_resume_after_mask_update_is_bit_exact
# keeps a bit-exact resume in the README command.
@pytest.mark.slow
def test_restore_before_last_upsample_is_bit_exact_and_resume_continues(scene, tmp_path):
    # Upsampling happens at step 4; stop at 3 so the checkpoint holds the smaller grid.
    early = train(tiny_config(scene, tmp_path / "a", steps=3))
    cfg, model, params, meta = restore_run(tmp_path / "a", 3)
    assert meta["step"] == 3
    first = model.initial_state()["resolution"]
    assert meta["model_state"]["resolution"] == first and meta["model_state"]["level"] == 0
    for x, y in zip(_leaves(early.params), _leaves(params), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)

    # A 6-step run "crashes" after its step-3 checkpoint; --resume must land exactly where the
    # uninterrupted run did (same batches, jitter, learning rates and optimizer state). Both
    # upsample at 4 and 5. The uninterrupted run compiled both grids' steps ahead; the resumed one
    # compiles them at their events (--compile-ahead no): the same programs either way.
    cfg = tiny_config(scene, tmp_path / "b", steps=6, model__upsample_steps=(4, 5))
    straight = train(dataclasses.replace(cfg, compile_ahead="yes"))
    assert [(step, ahead) for step, _, ahead in straight.compiles] == [(0, False), (4, True), (5, True)]
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "6")
    resumed = train(dataclasses.replace(cfg, compile_ahead="no"), resume=True)
    assert [(step, ahead) for step, _, ahead in resumed.compiles] == [(3, False), (4, False), (5, False)]
    assert resumed.steps == straight.steps == 6
    assert resumed.train_psnr == straight.train_psnr  # same loss at the last step
    for x, y in zip(_leaves(resumed.params), _leaves(straight.params), strict=True):
        np.testing.assert_array_equal(x, y)
    final = restore_run(tmp_path / "b")[3]["model_state"]
    assert final["level"] == 2 and final["resolution"] != first


def test_resume_cli_needs_no_other_flags(scene, tmp_path):
    import train_lego

    train(tiny_config(scene, tmp_path / "run", steps=3))
    cfg, resume, _ = train_lego.parse(["--resume", str(tmp_path / "run")])
    assert resume and cfg.steps == 3 and cfg.data.path == scene and cfg.model.n_voxels_init == 16**3
    cfg, _, _ = train_lego.parse(["--resume", str(tmp_path / "run"), "--steps", "5"])
    assert cfg.steps == 5 and cfg.run_dir == tmp_path / "run"


def test_corrupt_checkpoint_gives_clear_error(scene, tmp_path):
    train(tiny_config(scene, tmp_path / "run", steps=3))
    for f in (tmp_path / "run" / "checkpoints" / "3" / "params").rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and "manifest" not in f.name:
            f.write_bytes(b"garbage")
    with pytest.raises(UserError, match=r"checkpoints/3"):
        restore_run(tmp_path / "run", 3)


def test_missing_run_dir_gives_clear_error(tmp_path):
    with pytest.raises(UserError, match="not a run directory"):
        restore_run(tmp_path / "nope")


def test_nan_loss_stops_with_one_clear_error(scene, tmp_path):
    cfg = tiny_config(scene, tmp_path / "run", steps=3, checkpoint_every=0)
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr_grid=1e38))
    with pytest.raises(UserError, match=r"loss became nan at step 2.*lr-grid"):
        train(cfg)


def test_no_checkpoint_holds_non_finite_parameters(scene, tmp_path):
    # The loss is fetched only at log steps (here step 1, then 100): a checkpoint due in between
    # must still not be written with NaN parameters.
    cfg = tiny_config(scene, tmp_path / "run", steps=4, log_every=100, checkpoint_every=2)
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr_grid=1e38))
    with pytest.raises(UserError, match=r"non-finite by step 2; no checkpoint written"):
        train(cfg)
    ckpts = tmp_path / "run" / "checkpoints"
    assert not ckpts.exists() or not any(p.name.isdigit() for p in ckpts.iterdir())


def test_resume_after_mask_update_is_bit_exact(scene, tmp_path):
    # The mask, box shrink, filtered ray pool and work budgets of a checkpoint after the mask
    # update must come back on --resume (the threshold is tiny so that 3 steps leave a mask).
    over = {"steps": 6, "model__mask_update_steps": (2,), "model__mask_threshold": 1e-12,
            "model__compaction": "on", "model__density_budget": 0.9, "model__shade_budget": 0.9}
    straight = train(tiny_config(scene, tmp_path / "s", **over))
    state = restore_run(tmp_path / "s", 3)[3]["model_state"]
    assert state["mask_updates"] == 1 and state["budgets"] == {"density": 0.9, "shade": 0.9}
    shutil.rmtree(tmp_path / "s" / "checkpoints" / "6")
    resumed = train(tiny_config(scene, tmp_path / "s", **over), resume=True)
    assert resumed.model_state == straight.model_state
    assert resumed.train_psnr == straight.train_psnr
    for x, y in zip(_leaves(resumed.params), _leaves(straight.params), strict=True):
        np.testing.assert_array_equal(x, y)
