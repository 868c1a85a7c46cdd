"""The tyro CLI: every option documented, presets, and the config round trip of run directories."""

import dataclasses
import subprocess
import sys
from pathlib import Path

from tensorf.config import TrainConfig, from_json, to_json
from tensorf.presets import PRESETS

ROOT = Path(__file__).resolve().parents[1]


def test_help_documents_every_option():
    out = subprocess.run(
        [sys.executable, "train_lego.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    for opt in ("--steps", "--batch-size", "--data.path", "--model.n-voxels-final", "--optim.lr-grid",
                "--model.appearance-samples", "--model.compute-dtype", "--time-budget-minutes", "--num-devices",
                "--distributed", "--coordinator-address", "--num-processes", "--process-id",
                "--data.aabb", "--data.near-far"):
        assert opt in text, opt
    assert "--preset" in text and "--resume" in text
    # Every leaf option has a docstring: tyro would otherwise print a bare "(default: ...)".
    import dataclasses

    def undocumented(cls):
        src = __import__("inspect").getsource(cls)
        return [f.name for f in dataclasses.fields(cls) if f'{f.name}:' in src and not dataclasses.is_dataclass(f.default)
                and '"""' not in src.split(f"    {f.name}:", 1)[1].split("\n", 2)[1]]

    from tensorf.config import DataConfig, OptimConfig, TensoRFConfig

    for cls in (TrainConfig, DataConfig, TensoRFConfig, OptimConfig):
        assert undocumented(cls) == [], cls.__name__


def test_config_round_trip():
    for _, cfg in PRESETS.values():
        assert from_json(to_json(cfg)) == cfg
    assert TrainConfig().batch_size == 4096 and TrainConfig().optim.lr_grid == 0.02


def test_preset_then_override():
    import train_lego

    cfg, resume, _ = train_lego.parse(["--preset", "generated", "--steps", "7", "--model.max-samples", "9"])
    assert not resume and cfg.steps == 7 and cfg.model.max_samples == 9
    assert cfg.data.path == PRESETS["generated"][1].data.path


def test_a_gpu_sized_preset_on_a_cpu_gets_one_line_naming_the_way_to_minutes():
    import train_lego
    from tensorf.presets import GPU_SIZED

    assert set(GPU_SIZED) | {"generated", "lego-cpu", "llff-cpu", "unbounded-cpu"} == set(PRESETS)
    assert set(GPU_SIZED) == {name for name, (help_, _) in PRESETS.items() if "GPU-sized" in help_}  # --help agrees
    assert all(alt is None or alt in PRESETS for alt in GPU_SIZED.values())
    lego = PRESETS["lego"][1]
    note = train_lego.cpu_note("lego", lego, "cpu")
    assert note.startswith("note: --preset lego is sized for a GPU (30000 steps)") and "--preset lego-cpu, or" in note
    assert "--preset" not in train_lego.cpu_note("nerf", PRESETS["nerf"][1], "cpu").split("For minutes:")[1]
    assert train_lego.cpu_note("lego", lego, "gpu") is None
    assert train_lego.cpu_note("lego-cpu", PRESETS["lego-cpu"][1], "cpu") is None
    assert train_lego.cpu_note("lego", dataclasses.replace(lego, time_budget_minutes=20.0), "cpu") is None
    assert train_lego.cpu_note("lego", dataclasses.replace(lego, steps=200), "cpu") is None


def test_the_tools_cache_compiled_programs_unless_told_not_to(tmp_path):
    # JAX's persistent compilation cache in ~/.cache/tensorf-jax/xla (XDG_CACHE_HOME respected);
    # JAX_COMPILATION_CACHE_DIR moves it, or, set empty, turns it off.
    import os

    code = ("from tensorf.xla_cache import use_persistent_cache; use_persistent_cache(); import jax; "
            "jax.jit(lambda x: x * 2)(1.0).block_until_ready()")
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(XDG_CACHE_HOME=str(tmp_path / "home"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True)
    assert any((tmp_path / "home" / "tensorf-jax" / "xla").iterdir())
    subprocess.run([sys.executable, "-c", code], env={**env, "XDG_CACHE_HOME": str(tmp_path / "off"),
                                                      "JAX_COMPILATION_CACHE_DIR": ""}, cwd=ROOT, check=True)
    assert not (tmp_path / "off").exists()
    (tmp_path / "a_file").write_text("")  # a cache folder that cannot be made: one warning, the run goes on
    done = subprocess.run([sys.executable, "-c", code], env={**env, "XDG_CACHE_HOME": str(tmp_path / "a_file")},
                          cwd=ROOT, check=True, capture_output=True, text=True)
    assert done.stderr.count("warning: cannot keep compiled programs in") == 1, done.stderr


_FAULTS_PER_STEP = """
import resource, statistics
from tensorf.host_memory import keep_freed_memory
tuned = keep_freed_memory()
import jax, jax.numpy as jnp
step = jax.jit(lambda x: jnp.cumsum(jnp.sin(x) * 2 + 1).reshape(64, -1).T @ jnp.ones((64, 8)))
x = jnp.ones((1 << 22,))  # 16 MiB in, buffers of that size inside
for _ in range(15):  # the heap grows over the first steps, more of them when the CPU is busy
    step(x).block_until_ready()
per_step = []
for _ in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        step(x).block_until_ready()
    per_step.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3)
print(tuned, statistics.median(per_step))  # the median: the one heap still grows now and then
"""


def test_the_tools_keep_a_steps_freed_buffers_for_the_next():
    # glibc hands XLA's large step buffers back to the kernel and the next step faults them in
    # again (a quarter of a CPU run's time; benchmarks/host_memory.py); tuned, a step in steady
    # state faults no page. TENSORF_SYSTEM_MALLOC=1 keeps glibc's defaults.
    import os

    import pytest

    def faults(system: str) -> tuple[bool, float]:
        out = subprocess.run([sys.executable, "-c", _FAULTS_PER_STEP], env={**os.environ, "TENSORF_SYSTEM_MALLOC": system},
                             cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()
        return out[0] == "True", float(out[1])

    tuned, with_tuning = faults("0")
    if not tuned:
        pytest.skip("malloc is left as it is here (no glibc, or a GPU or TPU plugin installed)")
    untuned, as_it_comes = faults("1")
    assert not untuned
    assert with_tuning <= 0.05 * as_it_comes, (with_tuning, as_it_comes)


def test_resolve_decides_each_auto_weight_and_keeps_the_given_ones():
    """TV and L1 auto follow the capture (TensoRF's official recipes: lego's for objects, truck's
    for 360 captures); a weight given on the command line is kept as given."""
    import dataclasses

    from tensorf.config import L1_CAPTURE, L1_OBJECT, TensoRFConfig, resolve
    from tensorf.data.views import Scene

    scene = Scene(aabb=((-1.0,) * 3, (1.0,) * 3), near_far=(2.0, 6.0), background=1.0)
    weights = ("tv_weight_density", "tv_weight_appearance", "l1_weight", "l1_weight_rest")
    auto = TensoRFConfig()
    assert all(getattr(auto, w) == "auto" for w in weights)
    obj, capture = resolve(auto, scene, "cpu"), resolve(auto, scene, "cpu", capture_360=True)
    assert [getattr(obj, w) for w in weights] == [0.0, 0.0, *L1_OBJECT]
    assert [getattr(capture, w) for w in weights] == [0.1, 0.01, *L1_CAPTURE]
    given = resolve(dataclasses.replace(auto, tv_weight_density=0.5, l1_weight_rest=1e-5), scene, "cpu",
                    capture_360=True)
    assert [getattr(given, w) for w in weights] == [0.5, 0.01, L1_CAPTURE[0], 1e-5]
    assert given.density_lookup == "mixed" and resolve(auto, scene, "gpu").density_lookup == "volume"
    # A model refuses any choice left `auto`, rather than failing inside its loss.
    import pytest

    from tensorf.models.tensorf.model import TensoRF

    for weight in weights:
        with pytest.raises(ValueError, match="config.resolve"):
            TensoRF(dataclasses.replace(capture, **{weight: "auto"}), scene)
