"""Every numeric option has a range, every preset lies in it, and an option outside it is one
error line naming the flag, before anything is written."""

import dataclasses
import types
import typing

import pytest

import render_360
import train_lego
from tensorf import config, eval as eval_cli, export_cameras, export_mesh, export_points, option_ranges, poses
from tensorf.presets import PRESETS
from tensorf.viewer import __main__ as viewer_cli

OPTIONS = [config.TrainConfig, config.TensoRFConfig, config.NeRFConfig, config.MipNeRFConfig, config.MipNeRF360Config,
           render_360.Render360Args, eval_cli.EvalArgs, export_mesh.ExportMeshArgs, export_points.ExportPointsArgs,
           export_cameras.ExportCamerasArgs, viewer_cli.ViewerArgs, poses.PosesConfig]


def _numeric(tp) -> bool:
    """Whether an option of type tp holds numbers (int, float, optional, tuples of them)."""
    if tp in (int, float):
        return True
    if typing.get_origin(tp) in (typing.Union, types.UnionType, tuple):
        return any(_numeric(a) for a in typing.get_args(tp) if a is not Ellipsis)
    return False


def _numeric_fields(cls) -> set[str]:
    hints = typing.get_type_hints(cls, include_extras=False)
    found = set()
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            found |= _numeric_fields(hints[f.name])
        elif _numeric(hints[f.name]):
            found.add(f.name)
    return found


def test_every_numeric_option_has_a_range_or_is_named_free():
    names = set().union(*(_numeric_fields(c) for c in OPTIONS))
    assert len(names) > 100  # the walk reached the model families' options
    assert names - option_ranges.RANGES.keys() - option_ranges.FREE == set()
    assert not option_ranges.RANGES.keys() & option_ranges.FREE


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_lies_in_the_ranges(name):
    option_ranges.check(PRESETS[name][1])


def test_ranges_say_what_they_allow():
    assert option_ranges.COUNT.describe() == "at least 1" and not option_ranges.COUNT.holds(0)
    assert option_ranges.POSITIVE.describe() == "positive" and not option_ranges.POSITIVE.holds(0.0)
    assert option_ranges.FRACTION.describe() == "in (0, 1]" and option_ranges.FRACTION.holds(1.0)
    assert option_ranges.NON_NEGATIVE.holds(0) and not option_ranges.NON_NEGATIVE.holds(-1e-9)


CASES = [
    # (entry point, arguments ({run}, {scene}, {tmp} filled in), the error line after "error: ")
    ("train", "--log-every 0", "--log-every must be at least 1, got 0"),  # was a ZeroDivisionError
    ("train", "--batch-size 0", "--batch-size must be at least 1, got 0"),  # an XLA shape error
    ("train", "--model.n-voxels-init 0", "--model.n-voxels-init must be at least 1, got 0"),
    ("train", "--viewer --viewer-port 99999", "--viewer-port must be in [0, 65535], got 99999"),  # OverflowError
    ("train", "--data.aabb 1 1 1 0 0 0", "--data.aabb is MIN_X MIN_Y MIN_Z MAX_X MAX_Y MAX_Z: each min must be "
                                         "below its max, got 1 1 1 0 0 0"),  # NaN to int
    ("train", "--data.near-far 2 1", "--data.near-far is NEAR FAR with 0 <= near < far, got 2 1"),
    ("train", "--time-budget-minutes 0", "--time-budget-minutes must be positive, got 0"),
    ("train", "model:nerf --model.fine-samples -1", "--model.fine-samples must be at least 0, got -1"),
    ("train", "--model.density-shift nan", "--model.density-shift must be a finite number, got nan"),  # NaN loss
    ("train", f"--seed {2**70}", f"--seed must be in [{-2**63}, {2**63 - 1}], got {2**70}"),  # OverflowError
    ("render_360", "--resolution 0 10", "--resolution must be at least 1, got 0 10"),  # empty concatenation
    ("render_360", "--fps -3", "--fps must be positive, got -3"),  # OverflowError in the GIF writer
    ("render_360", "--frames 1", "--frames must be at least 2, got 1"),
    ("eval", "--fit-poses -5", "--fit-poses must be at least 0, got -5"),  # judged as "fitted"
    ("export_points", "--min-opacity 0", "--min-opacity must be in (0, 1], got 0"),
    ("export_mesh", "--chunk 0", "--chunk must be at least 1, got 0"),
    ("viewer", "--port 99999", "--port must be in [0, 65535], got 99999"),  # OverflowError from bind()
]
ENTRY = {"train": train_lego.main, "eval": eval_cli.cli, "render_360": render_360.cli, "export_mesh": export_mesh.cli,
         "export_points": export_points.cli, "viewer": viewer_cli.cli}


@pytest.mark.parametrize("entry, args, message", CASES, ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_an_option_out_of_range_is_one_line_naming_it(entry, args, message, scene, trained_run, tmp_path, capsys):
    run = trained_run[0].run_dir
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    where = (f"--preset generated --data.path {scene} --run-dir {run} --overwrite --steps 2" if entry == "train"
             else f"--run-dir {run}")
    with pytest.raises(SystemExit) as exit_info:
        ENTRY[entry](where.split() + args.split())
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and err == [f"error: {message}"]
    # --overwrite would have deleted the run: the options are checked first.
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


def test_poses_checks_its_options_before_reading_photos(tmp_path):
    from tensorf.errors import UserError

    with pytest.raises(UserError, match=r"^--focal-px must be positive, got -2$"):
        poses.recover_poses(poses.PosesConfig(input=tmp_path / "nowhere", focal_px=-2.0))
