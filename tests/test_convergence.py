"""Training to convergence: validation shares, fidelity checks, phases stopped by patience, the
best epoch restored, resume and determinism with early stopping."""
from dataclasses import dataclass, replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ehrlib import models
from ehrlib.data.simulate import simulate
from ehrlib.models import fidelity
from ehrlib.models.neural import CHECKPOINT, Phase, validation_split
from tests.test_neural import Toy, ToyConfig, weights


@pytest.fixture(scope="module")
def train():
    return simulate(300, seed=5)


# ---------------------------------------------------------------------------- the pieces
def test_validation_split_is_seeded_disjoint_and_sized():
    a_train, a_val = validation_split(100, 0.1, seed=3)
    b_train, b_val = validation_split(100, 0.1, seed=3)
    c_train, c_val = validation_split(100, 0.1, seed=4)
    assert len(a_val) == 10 and len(a_train) == 90
    assert not set(a_val) & set(a_train) and sorted([*a_val, *a_train]) == list(range(100))
    assert list(a_val) == list(b_val) and list(a_val) != list(c_val)
    assert len(validation_split(100, 0.0, seed=3)[1]) == 0
    assert len(validation_split(5, 0.01, seed=3)[1]) == 1  # a positive share holds out at least one


def test_fidelity_of_the_validation_patients_themselves_is_perfect(train):
    from ehrlib.data.encode import Vocabulary

    val = train.subset(train.subject_ids[:80])
    ref = fidelity.Reference(val, Vocabulary.from_cohorts(train))
    same = ref.score(val, drawn=80)
    assert same == {"val_r2": 1.0, "val_empty": 0.0, "val_distinct": 1.0, "fidelity": 1.0}
    half = ref.score(val, drawn=160)  # as many empty records drawn as kept
    assert half["val_r2"] == 1.0 and half["val_empty"] == 0.5 and half["fidelity"] < 0.9
    nothing = ref.score(None, drawn=80)
    assert nothing["val_empty"] == 1.0 and nothing["val_distinct"] == 0.0 and nothing["fidelity"] < 0


# ---------------------------------------------------------------------------- val_loss phases
@dataclass(frozen=True)
class ScriptedConfig(ToyConfig):
    epochs: int = 8


class Scripted(Toy):
    """The toy model with a scripted val_loss: best at epoch 3, worse after."""

    name = "scripted"
    config_class = ScriptedConfig
    presets = {"smoke": {}, "demo": {}, "paper": {}}
    VAL = [5.0, 4.0, 3.0, 3.5, 3.6, 3.7, 3.8, 3.9]

    def _train_epoch(self, epoch, rng):
        stats = super()._train_epoch(epoch, rng)
        self.snapshots = getattr(self, "snapshots", {})
        self.snapshots[epoch + 1] = weights(self)
        return {**stats, "val_loss": self.VAL[epoch]}


def test_patience_stops_the_phase_and_restores_the_best_epoch(train):
    gen = Scripted.from_profile("demo", progress=False, val_fraction=0.2, patience=2).fit(train)
    assert [h["epoch"] for h in gen.history] == [1, 2, 3, 4, 5]  # two epochs without improvement after 3
    assert gen.stopping == [{"phase": "train", "stopped_by": "patience", "epochs": 5, "cap": 8, "last_epoch": 5,
                             "best_epoch": 3, "criterion": "val_loss"}]
    assert all(torch.equal(v, gen.snapshots[3][k]) for k, v in weights(gen).items())


def test_min_delta_counts_only_improvements_by_that_share(train):
    # val_loss 5.0, 4.0, 3.0, ...: with min_delta 0.2, 4.0 does not beat 5.0 by more than 20% but 3.0 does;
    # with 0.45 neither does, and epoch 1 stays the best
    gen = Scripted.from_profile("demo", progress=False, val_fraction=0.2, patience=2, min_delta=0.2).fit(train)
    assert gen.stopping[0]["best_epoch"] == 3 and gen.stopping[0]["last_epoch"] == 5
    gen = Scripted.from_profile("demo", progress=False, val_fraction=0.2, patience=2, min_delta=0.45).fit(train)
    assert gen.stopping[0]["best_epoch"] == 1 and gen.stopping[0]["last_epoch"] == 3


def test_without_patience_the_cap_ends_the_phase_and_the_best_epoch_is_kept(train):
    gen = Scripted.from_profile("demo", progress=False).fit(train)
    assert len(gen.history) == 8 and gen.stopping[0]["stopped_by"] == "cap"
    assert gen.stopping[0]["best_epoch"] == 3
    assert all(torch.equal(v, gen.snapshots[3][k]) for k, v in weights(gen).items())


def test_seconds_are_cumulative_training_time(train):
    gen = Scripted.from_profile("demo", progress=False).fit(train)
    seconds = [h["seconds"] for h in gen.history]
    assert all(b > a for a, b in zip(seconds, seconds[1:])) and seconds[0] > 0


# ---------------------------------------------------------------------------- the adversarial phase
GAN = dict(val_fraction=0.2, check_every=1, check_records=200, ae_epochs=4, gan_epochs=12, patience=2)


def test_gan_phases_stop_by_their_criteria_and_restore_the_best_check(train):
    gen = models.get("medgan", "smoke", progress=False, **GAN).fit(train)
    assert [s["phase"] for s in gen.stopping] == ["autoencoder", "adversarial"]
    ae, adv = gen.stopping
    assert ae["criterion"] == "val_loss" and adv["criterion"] == "fidelity"
    assert gen.validation.n_patients == 60 and gen.x.n == 240  # 20% of 300 held out
    checks = [h for h in gen.history if "fidelity" in h]
    assert [h["epoch"] for h in checks] == list(range(ae["last_epoch"] + 1, adv["last_epoch"] + 1))
    if adv["stopped_by"] == "patience":
        assert adv["last_epoch"] - adv["best_epoch"] == GAN["patience"]
    best = next(h for h in gen.history if h["epoch"] == adv["best_epoch"])
    assert best["fidelity"] == max(h["fidelity"] for h in checks)
    again = gen._fidelity_check()  # the restored weights score what the best check scored
    assert again["fidelity"] == pytest.approx(best["fidelity"], abs=1e-12)


def test_fidelity_checks_do_not_change_what_training_computes(train):
    on = models.get("medgan", "smoke", progress=False, **GAN).fit(train)
    off = models.get("medgan", "smoke", progress=False, **{**GAN, "check_every": 0, "patience": 0,
                                                           "gan_epochs": on.stopping[1]["epochs"]})
    off.fit(train)
    # same losses epoch by epoch up to the last epoch the checked fit trained
    n = on.stopping[1]["last_epoch"]
    assert [h["loss"] for h in on.history] == [h["loss"] for h in off.history[:n]]


def test_early_stopped_fit_is_deterministic_and_resumes_exactly(train, tmp_path):
    full = models.get("medgan", "smoke", progress=False, **GAN).fit(train)

    def interrupt(epoch, stats):
        if epoch == 6:  # inside the adversarial phase
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        models.get("medgan", "smoke", progress=False, **GAN).fit(train, checkpoint_dir=tmp_path, callback=interrupt)
    assert (tmp_path / CHECKPOINT).is_file()
    resumed = models.get("medgan", "smoke", progress=False, **GAN).fit(train, checkpoint_dir=tmp_path)
    again = models.get("medgan", "smoke", progress=False, **GAN).fit(train)
    for other in (resumed, again):
        assert other.stopping == full.stopping
        assert [h["loss"] for h in other.history] == [h["loss"] for h in full.history]
        assert [h.get("fidelity") for h in other.history] == [h.get("fidelity") for h in full.history]
        assert other.generate(50, seed=1).checksum() == full.generate(50, seed=1).checksum()


def test_a_zero_epoch_phase_is_skipped(train):
    gen = models.get("medgan", "smoke", progress=False, **{**GAN, "ae_epochs": 0, "gan_epochs": 2}).fit(train)
    assert gen.stopping[0] == {"phase": "autoencoder", "stopped_by": "cap", "epochs": 0, "cap": 0, "last_epoch": 0,
                               "best_epoch": None, "criterion": None}
    assert len(gen.history) == 2


def test_bad_stopping_settings_name_the_field():
    from ehrlib.models.base import GeneratorError

    for field, value in [("check_every", -1), ("check_records", 0), ("val_fraction", 0.7), ("patience", -2),
                         ("min_delta", 1.5)]:
        with pytest.raises(GeneratorError, match=field):
            models.get("medgan", "smoke", **{field: value})


def test_phases_are_declared_by_the_models():
    assert [p.name for p in models.get("corgan", "smoke").phases()] == ["autoencoder", "adversarial"]
    assert models.get("halo", "smoke").phases() == [Phase("train", models.get("halo", "smoke").config.epochs,
                                                          "val_loss")]


@pytest.mark.parametrize("name", ["medgan", "corgan", "promptehr", "halo", "gpt"])
def test_the_paper_profile_keeps_fixed_epochs_and_demo_stops_on_criteria(name):
    paper, demo = models.get(name, "paper").config, models.get(name, "demo").config
    assert paper.patience == 0 and paper.check_every == 0  # appendix F's fixed epochs unless a user opts in
    if name in ("medgan", "corgan"):
        assert paper.val_fraction == 0  # the paper trains the GANs on every patient
    assert demo.patience > 0 and demo.check_every > 0 and demo.val_fraction > 0


def test_a_phases_end_counts_its_best_epoch_within_the_phase():
    """The training log counts epochs over all phases; what a reader sees counts them in the phase."""
    from ehrlib.pipeline import phase_epoch, stopping_line

    s = {"phase": "adversarial", "epochs": 10, "cap": 16, "last_epoch": 29, "best_epoch": 26,
         "criterion": "fidelity", "stopped_by": "patience"}
    assert phase_epoch(s, 26) == 7 and phase_epoch(s, 29) == 10 and phase_epoch(s, None) is None
    assert stopping_line(s) == ("adversarial: 10 of 16 epochs, stopped by its criterion (fidelity); "
                                "best epoch 7 restored")
