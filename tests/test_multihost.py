"""Two processes on this machine (jax.distributed over localhost, CPU collectives) train one run
together: they end with identical parameters and only process 0 writes the run directory."""

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

DRIVER = """
import sys
from pathlib import Path
import jax
root, scene, run, out, port, pid = sys.argv[1:]
sys.path[:0] = [root, str(Path(root) / "tests")]
jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=int(pid))
import numpy as np
from conftest import tiny_config
from tensorf.training.loop import train
result = train(tiny_config(Path(scene), Path(run), steps=6, checkpoint_every=3, final_eval=True))
assert jax.device_count() == 2 and result.steps == 6
np.savez(Path(out) / f"p{pid}.npz", *[np.asarray(x) for x in jax.tree.leaves(result.params)])
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two processes training, 62 s on 2 cores: on its own CI line
def test_two_processes_train_one_run(scene, tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    run, port = tmp_path / "run", str(_free_port())
    procs = [
        subprocess.Popen([sys.executable, str(driver), str(ROOT), str(scene), str(run), str(tmp_path), port, str(pid)],
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
    # One writer: one TensorBoard event file, the config, the eval output, the checkpoints.
    assert len(list((run / "tb").iterdir())) == 1
    assert (run / "config.json").is_file() and (run / "eval" / "test_metrics.json").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.isdigit()) == ["3", "6"]
    assert outs[1].count("PSNR") == 0 and outs[0].count("PSNR") > 0  # only process 0 reports
