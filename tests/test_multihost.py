"""Two processes on this machine (jax.distributed over localhost, CPU collectives) train one run
together: they end with identical parameters, only process 0 writes the run directory, --resume
continues on both bit for bit, and a time budget stops both at the same step."""

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

DRIVER = """
import json, sys
from pathlib import Path
import jax
root, scene, run, out, port, pid, overrides, resume = sys.argv[1:]
sys.path[:0] = [root, str(Path(root) / "tests")]
jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=int(pid))
import numpy as np
from conftest import tiny_config
from tensorf.training.loop import train
result = train(tiny_config(Path(scene), Path(run), **json.loads(overrides)), resume=resume == "1")
assert jax.device_count() == 2
print("STEPS", result.steps)
np.savez(Path(out) / f"p{pid}.npz", *[np.asarray(x) for x in jax.tree.leaves(result.params)])
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _two_processes(tmp_path, scene, run, overrides: dict, resume: bool = False) -> tuple[list[str], list[np.ndarray]]:
    """Train with two processes; their outputs and the parameters process 0 ended with (after
    checking that process 1 ended with the very same)."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    port = str(_free_port())
    procs = [
        subprocess.Popen([sys.executable, str(driver), str(ROOT), str(scene), str(run), str(tmp_path), port, str(pid),
                          json.dumps(overrides), "1" if resume else "0"],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for pid in (0, 1)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    a, b = np.load(tmp_path / "p0.npz"), np.load(tmp_path / "p1.npz")
    assert len(a.files) == len(b.files) > 5
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])
    return outs, [a[k] for k in a.files]


@pytest.mark.slow  # two processes training three times, about 3 minutes on 2 cores: on its own CI line
def test_two_processes_train_resume_and_keep_one_clock(scene, tmp_path):
    run = tmp_path / "run"
    outs, straight = _two_processes(tmp_path, scene, run, {"steps": 6, "checkpoint_every": 3, "final_eval": True})
    # One writer: one TensorBoard event file, the config, the eval output, the checkpoints.
    assert len(list((run / "tb").iterdir())) == 1
    assert (run / "config.json").is_file() and (run / "eval" / "test_metrics.json").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.isdigit()) == ["3", "6"]
    assert outs[1].count("PSNR") == 0 and outs[0].count("PSNR") > 0  # only process 0 reports

    # --resume onto the two processes continues the run bit for bit.
    shutil.rmtree(run / "checkpoints" / "6")
    _, resumed = _two_processes(tmp_path, scene, run, {"steps": 6, "checkpoint_every": 3, "final_eval": True},
                                resume=True)
    for x, y in zip(straight, resumed, strict=True):
        np.testing.assert_array_equal(x, y)

    # A time budget: both processes follow process 0's clock, so they stop at the same step with
    # the same parameters (checked in _two_processes) instead of hanging in a collective.
    outs, _ = _two_processes(tmp_path, scene, tmp_path / "timed", {"time_budget_minutes": 0.25, "log_every": 5,
                                                                   "checkpoint_every": 0, "final_eval": False})
    steps = [int(out.split("STEPS ")[1].split()[0]) for out in outs]
    assert steps[0] == steps[1] > 5, outs[0][-2000:]
