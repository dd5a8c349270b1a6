"""Multi-process training (DDP under torchrun) on CPU with gloo and 2 processes.

One torchrun launch trains all five neural models (smoke presets, fewer epochs) on a tiny
simulated cohort; a second pair of launches interrupts and resumes a GPT run and must end with
the same model as the uninterrupted launch.
"""
import json

import pytest

from ehrlib.errors import ConfigError, GeneratorError, RunError

torch = pytest.importorskip("torch")

from ehrlib import models  # noqa: E402
from ehrlib.data import simulate  # noqa: E402
from ehrlib.data.simulate import SimulationConfig  # noqa: E402
from ehrlib.models import distributed  # noqa: E402
from ehrlib.models.neural import CHECKPOINT  # noqa: E402

NAMES = ("medgan", "corgan", "promptehr", "halo", "gpt")
#: per-model overrides: few epochs; CorGAN at the sizes that decode non-empty records after
#: 2 + 2 epochs on a tiny cohort (as tests/test_model_pins.py)
OVERRIDES = {
    "medgan.ae_epochs": 2, "medgan.gan_epochs": 2,
    "corgan.ae_epochs": 3, "corgan.gan_epochs": 2, "corgan.latent_dim": 16, "corgan.bottleneck": 16,
    "corgan.channels": 2, "corgan.critic_channels": 4, "corgan.critic_steps": 2,
    "promptehr.epochs": 3, "halo.epochs": 3, "gpt.epochs": 3,
}
TIMEOUT = 240


@pytest.fixture(scope="module")
def train_path(tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp")
    # the random-popularity cohort the small presets below were sized on (on 150 MIMIC-like
    # patients the tiny CorGAN decodes only empty records)
    return simulate(150, seed=11, config=SimulationConfig(code_profile="random")).save(base / "train.parquet")


@pytest.fixture(scope="module")
def trained(train_path):
    """All five models trained by one 2-process torchrun launch: the folder of their folders."""
    out = train_path.parent / "models"
    distributed.launch_fit(",".join(NAMES), train_path, out, "smoke", nproc=2, overrides=OVERRIDES,
                           timeout=TIMEOUT)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_two_process_training_saves_a_model_that_loads_and_generates(trained, name):
    gen = models.load(trained / name)
    assert gen.fitted and not (trained / name / "checkpoints").exists()
    history = gen.history
    expected = {"medgan": 4, "corgan": 5}.get(name, 3)
    assert [h["epoch"] for h in history] == list(range(1, expected + 1))
    assert history[1]["loss"] < history[0]["loss"]  # the first epochs (autoencoder phase for the GANs)
    cohort = gen.generate(15, seed=3)
    assert cohort.n_patients == 15
    assert all(s.startswith("SYNTH") for s in cohort.subject_ids)


def test_an_interrupted_two_process_run_resumes_to_the_same_model(trained, train_path, tmp_path):
    out, ckpt = tmp_path / "gpt", tmp_path / "ckpt"
    gpt = {k.split(".", 1)[1]: v for k, v in OVERRIDES.items() if k.startswith("gpt.")}
    distributed.launch_fit("gpt", train_path, out, "smoke", nproc=2, overrides=gpt, checkpoint_dir=ckpt,
                           epochs_per_launch=1, timeout=TIMEOUT)
    assert not out.exists()  # stopped after one epoch: no model yet, a checkpoint to resume from
    state = torch.load(ckpt / CHECKPOINT, weights_only=True)
    assert state["epochs_done"] == 1 and state["world_size"] == 2
    distributed.launch_fit("gpt", train_path, out, "smoke", nproc=2, overrides=gpt, checkpoint_dir=ckpt,
                           timeout=TIMEOUT)
    resumed, whole = models.load(out), models.load(trained / "gpt")
    assert resumed.history[0] == state["history"][0]
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]  # exact on CPU
    a, b = resumed.modules["gpt2"].state_dict(), whole.modules["gpt2"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_failed_launch_is_a_run_error_with_the_workers_message(train_path, tmp_path):
    with pytest.raises(RunError, match="unknown config field"):
        distributed.launch_fit("gpt", train_path, tmp_path / "m", "smoke", nproc=2, overrides={"no_such": 1},
                               timeout=TIMEOUT)
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------------- no processes started
def test_torchrun_environment_is_detected_or_refused_clearly():
    assert distributed.torchrun_env({}) is None
    assert distributed.torchrun_env({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}) is None
    assert distributed.torchrun_env({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (1, 4, 1)
    with pytest.raises(ConfigError, match=r"\['LOCAL_RANK'\] missing"):
        distributed.torchrun_env({"RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(ConfigError, match="expected integers"):
        distributed.torchrun_env({"RANK": "a", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    with pytest.raises(ConfigError, match="0 <= RANK < WORLD_SIZE"):
        distributed.torchrun_env({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})


def test_ranks_split_every_global_batch_into_disjoint_parts():
    rows = torch.arange(11)
    parts = [distributed.shard(distributed.DistContext(r, 3, r, "gloo"), rows) for r in range(3)]
    assert sorted(torch.cat(parts).tolist()) == rows.tolist()
    assert [len(p) for p in parts] == [4, 4, 3]
    assert distributed.shard(None, rows) is rows
    ctx = distributed.DistContext(0, 3, 0, "gloo")
    assert distributed.keeps(ctx, rows[:6], 2) and not distributed.keeps(ctx, rows[:5], 2)
    assert distributed.keeps(None, rows[:1])


def test_a_batch_too_small_for_the_world_is_refused_before_training():
    gen = models.get("medgan", "smoke", batch_size=4)
    gen._dist = distributed.DistContext(0, 3, 0, "gloo")
    with pytest.raises(GeneratorError, match="batch_size=4 cannot be split over 3 processes"):
        gen._check_world()


def test_the_launch_command_is_torchrun_on_the_training_module(tmp_path):
    cmd = distributed.train_command("halo", tmp_path / "t.parquet", tmp_path / "m", "paper", nproc=4,
                                    overrides={"epochs": 2})
    assert cmd[1:3] == ["-m", "torch.distributed.run"] and "--standalone" in cmd and "--nproc_per_node=4" in cmd
    assert cmd[cmd.index("-m", 3) + 1] == "ehrlib.models.train"
    assert cmd[-2:] == ["--set", f"epochs={json.dumps(2)}"]
    multi = distributed.train_command("gpt", "t", "m", "paper", nproc=8, nnodes=2, rdzv_endpoint="node1:29400")
    assert "--rdzv_endpoint=node1:29400" in multi and "--standalone" not in multi
    with pytest.raises(ConfigError, match="rdzv_endpoint"):
        distributed.train_command("gpt", "t", "m", "paper", nnodes=2)
    with pytest.raises(ConfigError, match="nproc=0"):
        distributed.train_command("gpt", "t", "m", "paper", nproc=0)


def test_a_torchrun_trained_model_is_reused_by_fit_or_load(trained, train_path, monkeypatch):
    from ehrlib.cohort import Cohort
    from ehrlib.models.neural import TorchGenerator

    def no_training(self, train, options):
        raise AssertionError("fit_or_load trained again")

    monkeypatch.setattr(TorchGenerator, "_fit", no_training)
    gen = models.fit_or_load("halo", Cohort.load(train_path), trained / "halo", "smoke", epochs=3)
    assert len(gen.history) == 3
