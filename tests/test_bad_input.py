"""Bad input at every entry point: one `error:` line naming the file and the fix, exit status 2."""

import json
import shutil

import imageio.v3 as iio
import numpy as np
import pytest

import render_360
import train_lego
from tensorf import eval as eval_cli
from tensorf import export_cameras, export_mesh, export_points
from tensorf.data.blender import load_blender
from tensorf.viewer import __main__ as viewer_cli


@pytest.fixture(scope="module")
def broken(scene, tmp_path_factory):
    """Copies of the generated scene, each broken in one way."""
    root = tmp_path_factory.mktemp("broken")
    for name in ("mixed", "empty", "flat", "blind"):
        shutil.copytree(scene, root / name)
    meta = json.loads((root / "blind" / "transforms_train.json").read_text())
    (root / "blind" / "transforms_train.json").write_text(json.dumps({**meta, "camera_angle_x": 0}))
    meta = json.loads((root / "flat" / "transforms_train.json").read_text())
    meta["frames"][2]["transform_matrix"][2][:3] = [0.0, 0.0, 0.0]  # every axis in one plane
    (root / "flat" / "transforms_train.json").write_text(json.dumps(meta))
    img = iio.imread(root / "mixed" / "train" / "r_3.png")
    iio.imwrite(root / "mixed" / "train" / "r_3.png", img[:-2])
    meta = json.loads((root / "empty" / "transforms_train.json").read_text())
    (root / "empty" / "transforms_train.json").write_text(json.dumps({**meta, "frames": []}))
    (root / "a_file").write_text("")
    return root


CASES = [
    # (entry point, arguments; {scene}, {broken}, {run} and {tmp} are filled in, expected message)
    ("train", "--data.path {tmp}/nowhere --run-dir {tmp}/r", r"dataset folder .*nowhere does not exist"),
    ("train", "--data.path {broken}/mixed --run-dir {tmp}/r", r"train/r_3.png: image size 32x30 differs from the split's 32x32"),
    ("train", "--data.path {broken}/blind --run-dir {tmp}/r --steps 2",
     r"transforms_train.json: malformed transforms json \(camera_angle_x must be an angle in \(0, pi\) radians, got 0\)"),
    ("train", "--data.path {broken}/flat --run-dir {tmp}/r --steps 2",
     r"transforms_train.json: malformed transforms json \(frame 2's transform_matrix has a degenerate rotation"),
    ("train", "--data.path {broken}/empty --run-dir {tmp}/r", r"transforms_train.json: malformed transforms json \('frames' must be a non-empty list\)"),
    ("train", "--data.path {scene} --run-dir {broken}/a_file/run", r"a_file/run: cannot write the run directory .*pick a writable --run-dir"),
    ("train", "--preset generated --data.path {broken} --run-dir {tmp}/r --steps 2",
     r"broken\d*: holds files but not the generated scene, .*--preset lego-cpu"),
    ("train", "--data.path {scene} --run-dir {tmp}/r --data.eval-split holdout",
     r"transforms_holdout.json not found \(splits here: test, train, val\)"),
    ("train", "--data.path {scene} --run-dir {scene}/ --overwrite", r"--run-dir .* is the dataset folder \(--data.path\); "
     r"give the run a folder of its own, e.g. --run-dir runs/scene\d*$"),
    ("train", "--resume {run} --preset lego-cpu", r"--preset lego-cpu does not apply to it: drop it"),
    ("train", "--resume {run} --run-dir {tmp}/fork", r"--run-dir .*fork would start another from step 0; to branch the "
     r"run, copy it \(cp -r .* .*fork\) and --resume .*fork$"),
    ("train", "--resume {run} --overwrite", r"--resume continues a run and --overwrite deletes it"),
    ("train", "--preset generated --data.path {scene} --run-dir {run}", r"already holds a run; continue it with --resume"),
    ("eval", "--run-dir {tmp}/nowhere", r"nowhere/config.json not found; .* is not a run directory"),
    ("eval", "--run-dir {run} --split holdout", r"transforms_holdout.json not found \(splits here: test, train, val\)"),
    ("eval", "--run-dir {run} --step 7", r"no checkpoint at step 7 \(have \[400\]\)"),
    ("render_360", "--run-dir {run} --frames 1", r"--frames must be at least 2"),
    ("render_360", "--run-dir {run} --output {tmp}/orbit.png", r"--output .*orbit.png: give a .gif or an .mp4 file"),
    ("render_360", "--run-dir {run} --path dataset", r"this run's dataset defines no camera path; use --path orbit"),
    ("export_mesh", "--run-dir {tmp}/nowhere", r"nowhere/config.json not found"),
    ("export_mesh", "--run-dir {run} --best", r"best: no checkpoints in this run directory; train it with --keep-best"),
    ("export_mesh", "--run-dir {run} --resolution 1", r"--resolution must be at least 2 \(marching cubes needs two"),
    ("export_mesh", "--run-dir {run} --resolution 16 --level 1", r"no surface at opacity level 1.0: no voxel reaches it \(field"),
    ("export_mesh", "--run-dir {run} --resolution 16 --level 0", r"no surface at opacity level 0.0: every voxel is above it"),
    ("export_points", "--run-dir {tmp}/nowhere", r"nowhere/config.json not found"),
    ("export_points", "--run-dir {run} --min-opacity 0", r"--min-opacity must be in \(0, 1\]"),
    ("export_points", "--run-dir {run} --output {broken}/a_file/points.ply", r"a_file/points.ply: cannot write it .*pick another --output"),
    ("export_cameras", "--run-dir {tmp}/nowhere", r"nowhere/config.json not found"),
    ("export_cameras", "--run-dir {run} --output {broken}/a_file/t.json", r"a_file/t.json: cannot write it .*pick another --output"),
    ("render_360", "--run-dir {run} --camera-path {tmp}/none.json", r"none.json: no such camera path"),
    ("viewer", "--run-dir {tmp}/nowhere", r"nowhere not found; give the run directory train_lego.py wrote"),
    ("viewer", "--run-dir {broken}", r"config.json not found; .* is not a run directory"),
]
ENTRY = {"train": train_lego.main, "eval": eval_cli.cli, "render_360": render_360.cli, "export_mesh": export_mesh.cli,
         "export_points": export_points.cli, "export_cameras": export_cameras.cli, "viewer": viewer_cli.cli}


@pytest.mark.parametrize("entry, args, message", CASES, ids=[f"{c[0]}: {c[2][:40]}" for c in CASES])
def test_bad_input_gives_one_error_line_and_status_2(entry, args, message, scene, broken, trained_run, tmp_path, capsys):
    import re

    run = trained_run[0].run_dir
    argv = args.format(scene=scene, broken=broken, run=run, tmp=tmp_path).split()
    with pytest.raises(SystemExit) as exit_info:
        ENTRY[entry](argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert err and err[-1].startswith("error: ") and re.search(message, err[-1]), err[-3:]
    assert not any(line.startswith("Traceback") for line in err)


def test_the_generated_scene_is_written_where_nothing_else_is(tmp_path):
    """Into a new folder, or over an interrupted generation's leftovers; never beside other files."""
    from tensorf.config import DataConfig
    from tensorf.data.dataset import ensure_generated
    from tensorf.errors import UserError

    for name, leftovers in (("new", ()), ("interrupted", ("train/r_0.png",)), ("theirs", ("notes.txt",))):
        root = tmp_path / name
        for f in leftovers:
            (root / f).parent.mkdir(parents=True, exist_ok=True)
            (root / f).write_bytes(b"")
        if name == "theirs":
            with pytest.raises(UserError, match="theirs: holds files but not the generated scene"):
                ensure_generated(DataConfig(path=root, generate=True))
            assert sorted(p.name for p in root.iterdir()) == ["notes.txt"]
        else:
            ensure_generated(DataConfig(path=root, generate=True))
            assert load_blender(root, "train", 1).images.shape[0] == 60


def test_resuming_a_run_already_past_its_steps_says_there_is_nothing_to_train(trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run[0].run_dir, run)
    train_lego.main(["--resume", str(run), "--steps", "10", "--no-final-eval", "--no-progress"])
    out = capsys.readouterr().out
    assert f"{run} is at step 400, which --steps 10 does not pass: nothing to train (give more --steps to go on)" in out
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["400"]


def test_a_run_whose_dataset_moved_is_judged_after_one_line_saying_so(trained_run, tmp_path, capsys):
    """eval names the run's recorded dataset and the flag that points it elsewhere."""
    run = tmp_path / "run"
    shutil.copytree(trained_run[0].run_dir, run)
    shutil.rmtree(run / "eval", ignore_errors=True)
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "data": {**cfg["data"], "path": str(tmp_path / "gone")}}))
    with pytest.raises(SystemExit) as exit_info:
        eval_cli.cli(["--run-dir", str(run)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and err[-1] == (f"error: {tmp_path / 'gone'}, the dataset this run trained on "
                                                     f"({run / 'config.json'}), is not there; give its new place with "
                                                     "--dataset-path")
    eval_cli.cli(["--run-dir", str(run), "--dataset-path", str(cfg["data"]["path"]), "--views", "0"])
    assert (run / "eval" / "test_metrics.json").is_file()


def test_greyscale_16_bit_and_opaque_images_are_converted_and_reported(scene, tmp_path, capsys):
    root = tmp_path / "s"
    shutil.copytree(scene, root)
    rgba = iio.imread(root / "train" / "r_0.png").astype(np.float64) / 255
    grey = (rgba[..., :3].mean(-1) * rgba[..., 3] + 1 - rgba[..., 3]) * 65535
    iio.imwrite(root / "train" / "r_0.png", np.round(grey).astype(np.uint16))
    rgb = rgba[..., :3] * rgba[..., 3:] + 1 - rgba[..., 3:]
    iio.imwrite(root / "train" / "r_1.png", np.round(rgb * 255).astype(np.uint8))
    views = load_blender(root, "train")
    err = capsys.readouterr().err
    assert "1 of 24 images are greyscale (repeated into RGB)" in err and "1 of 24 images are 16-bit" in err
    assert "2 of 24 images have no alpha channel" in err
    np.testing.assert_allclose(views.images[0], np.repeat(np.round(grey)[..., None] / 65535, 3, -1), atol=1e-6)
    np.testing.assert_allclose(views.images[1], np.round(rgb * 255) / 255, atol=1e-6)


def test_a_split_converted_to_jpeg_loads_cmyk_included(scene, tmp_path, capsys):
    """The json keeps Blender's extensionless file_path while the images became JPEGs, one of them
    CMYK (a print export): every view loads, the CMYK one in its colours, not as white (its black
    plate read as alpha made it all background)."""
    from PIL import Image

    root = tmp_path / "s"
    shutil.copytree(scene, root)
    for png in (root / "train").glob("*.png"):
        Image.open(png).convert("RGB").save(png.with_suffix(".jpg"), quality=95)
        png.unlink()
    rgb = np.asarray(Image.open(root / "train" / "r_2.jpg"), np.float32) / 255
    Image.open(root / "train" / "r_2.jpg").convert("CMYK").save(root / "train" / "r_2.jpg", quality=95)
    views = load_blender(root, "train")
    assert "1 of 24 images are CMYK (converted to RGB)" in capsys.readouterr().err
    assert np.abs(views.images[2] - rgb).mean() < 0.03  # a second JPEG round trip apart


def test_the_notebook_helpers_raise_one_line_errors(tmp_path, trained_run):
    """render.ipynb calls restore_run and load_eval_views: a UserError is one line in Jupyter."""
    import dataclasses

    from tensorf.data.dataset import load_eval_views
    from tensorf.errors import UserError
    from tensorf.run import restore_run

    with pytest.raises(UserError, match=r"nowhere/config.json not found; .* is not a run directory"):
        restore_run(tmp_path / "nowhere")
    cfg = trained_run[0]
    with pytest.raises(UserError, match=r"transforms_holdout.json not found \(splits here: test, train, val\)"):
        load_eval_views(dataclasses.replace(cfg.data, eval_split="holdout"))


def test_photos_to_poses_without_pycolmap_says_how_to_get_it(tmp_path):
    """pycolmap is optional: without it, `python -m tensorf.poses` ends with one line naming the
    requirements file, before touching the output folder."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['pycolmap'] = None; sys.argv = ['poses', sys.argv[1], '--out', sys.argv[2]]; "
            "from tensorf.poses import cli; cli()")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(tmp_path / "capture")], capture_output=True,
                         text=True)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines()[-1] == ("error: pycolmap is not installed; pip install -r "
                                                    "requirements-poses.txt (COLMAP inside its wheel, ~40 MB)")
    assert not (tmp_path / "capture").exists()


def test_photos_to_poses_never_deletes_the_photos_it_was_given(tmp_path):
    """Posing a capture's own images/ into the capture: --overwrite deleted images/, the photos
    with it, then failed with a traceback. Now one line, before anything is deleted (no pycolmap
    needed for it)."""
    from tensorf.errors import UserError
    from tensorf.poses import PosesConfig, recover_poses

    photos = tmp_path / "cap" / "images"
    photos.mkdir(parents=True)
    for i in range(3):
        (photos / f"p{i}.png").write_bytes(b"a photo")
    for given in ({"input": photos}, {"input": tmp_path, "masks": photos}):
        with pytest.raises(UserError, match=rf"^--out {tmp_path / 'cap'} would write {photos} anew, where the "
                                            rf"(photos|masks) {photos} are; give another --out, e.g. --out "
                                            rf"{tmp_path / 'cap_posed'}$"):
            recover_poses(PosesConfig(out=tmp_path / "cap", overwrite=True, **given))
    assert sorted(p.name for p in photos.iterdir()) == ["p0.png", "p1.png", "p2.png"]


def test_photos_to_poses_on_a_posed_capture_or_above_its_photos_says_where_to_point(tmp_path):
    from tensorf.data.generated import generate_capture
    from tensorf.errors import UserError
    from tensorf.poses import _photos

    capture = generate_capture(tmp_path / "capture", size=16, n=4)
    with pytest.raises(UserError, match=rf"it is a posed LLFF dataset already: train on it with `python train_lego.py "
                                        rf"--preset lego-cpu --data.path {capture}`"):
        _photos(capture, tmp_path / "out")
    shelf = tmp_path / "shelf"
    shutil.copytree(capture / "images", shelf / "photos")
    with pytest.raises(UserError, match=rf"its folder photos holds 4 photos: point INPUT at {shelf / 'photos'}"):
        _photos(shelf, tmp_path / "out")
