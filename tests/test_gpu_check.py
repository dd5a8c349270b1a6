"""The GPU check's code path on CPU (``--cpu-smoke``), the step probe, and the GPU-only
training switches exercised on CPU (bf16 autocast can run on the CPU when forced)."""
import importlib.util
import json
import math
from pathlib import Path

import pytest

from ehrlib.errors import GeneratorError

torch = pytest.importorskip("torch")

from ehrlib import models  # noqa: E402
from ehrlib.data import simulate  # noqa: E402
from ehrlib.models.neural import StepProbe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("medgan", "corgan", "promptehr", "halo", "gpt")
#: one short epoch per phase at sizes that train in well under a second
TINY = {
    "medgan": dict(ae_epochs=1, gan_epochs=1),
    "corgan": dict(ae_epochs=1, gan_epochs=1, latent_dim=16, bottleneck=16, channels=2, critic_channels=4,
                   critic_steps=2),
    "promptehr": dict(epochs=1), "halo": dict(epochs=1), "gpt": dict(epochs=1),
}


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def train():
    return simulate(120, seed=4)


def test_cpu_smoke_writes_one_json_with_an_extrapolation_per_model(tmp_path, capsys):
    gpu_check = load_script()
    out = gpu_check.main(["--cpu-smoke", "--json", str(tmp_path / "check.json")])
    saved = json.loads((tmp_path / "check.json").read_text())
    assert saved["models"] == out["models"] and [r["model"] for r in saved["models"]] == list(NAMES)
    printed = capsys.readouterr().out
    for r in saved["models"]:
        assert r["model"] in printed
        preset = models.get(r["model"], "smoke").config
        assert [p["epochs"] for p in r["phases"]] == [e for _, e in gpu_check.phase_epochs(preset)]
        for p in r["phases"]:
            assert p["timed_steps"] >= 1 and p["seconds_per_step"] > 0
            assert p["hours"] == pytest.approx(p["epochs"] * p["steps_per_epoch"] * p["seconds_per_step"] / 3600)
        assert r["train_hours"] == pytest.approx(sum(p["hours"] for p in r["phases"]))
        assert r["peak_gib_train"] is None  # no GPU memory on the CPU
        assert r["generate_seconds"] is not None or r["generate_note"].startswith("not measured")
    assert saved["total_train_hours"] == pytest.approx(sum(r["train_hours"] for r in saved["models"]))


def test_the_step_probe_limits_and_times_each_epoch(train):
    gen = models.get("halo", "smoke", device="cpu", progress=False, epochs=2, batch_size=16)
    gen.step_probe = StepProbe(warmup=1, steps=2)
    gen.fit(train)
    n_train = len(gen.train_idx)
    assert [e["steps_per_epoch"] for e in gen.step_probe.epochs] == [math.ceil(n_train / 16)] * 2
    assert [e["timed"] for e in gen.step_probe.epochs] == [2, 2]
    assert all(e["seconds"] > 0 for e in gen.step_probe.epochs)


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_training_runs_for_every_model(train, name):
    """The CUDA bf16 path, forced on the CPU: training completes with finite losses and generates."""
    gen = models.get(name, "smoke", device="cpu", progress=False, precision="bf16", **TINY[name])
    assert gen.uses_bf16()
    gen.fit(train)
    assert all(math.isfinite(h["loss"]) for h in gen.history)
    if name != "corgan":  # one adversarial epoch of CorGAN may decode only empty records
        assert gen.generate(5, seed=1).n_patients == 5


def test_precision_auto_is_float32_on_the_cpu_and_changes_nothing(train):
    auto = models.get("gpt", "smoke", device="cpu", progress=False, epochs=1)
    assert auto.config.precision == "auto" and not auto.uses_bf16()
    fp32 = models.get("gpt", "smoke", device="cpu", progress=False, epochs=1, precision="fp32")
    bf16 = models.get("gpt", "smoke", device="cpu", progress=False, epochs=1, precision="bf16")
    losses = [[h["loss"] for h in g.fit(train).history] for g in (auto, fp32, bf16)]
    assert losses[0] == losses[1]
    assert losses[2] != losses[0]  # the forced bf16 path does compute something else
    assert auto.training_key(train) == bf16.training_key(train)  # precision is a runtime field


def test_an_unknown_precision_is_refused():
    with pytest.raises(GeneratorError, match=r"precision='fp16'; expected one of \['auto', 'fp32', 'bf16'\]"):
        models.get("halo", "smoke", precision="fp16")
