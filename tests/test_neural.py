"""The shared neural training loop: presets, bad configs, checkpoints, exact resume, save/load."""
from dataclasses import dataclass

import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from ehrlib import models
from ehrlib.data.encode import Vocabulary, binary_matrix, from_binary_matrix
from ehrlib.data.simulate import simulate
from ehrlib.errors import ConfigError
from ehrlib.models.base import GeneratorError
from ehrlib.models.neural import CHECKPOINT, TorchConfig, TorchGenerator, batches, pick_device, sparse_rows_to_dense


@dataclass(frozen=True)
class ToyConfig(TorchConfig):
    epochs: int = 4
    batch_size: int = 32
    lr: float = 0.05

    def check(self):
        super().check()
        self._positive("epochs", "batch_size", "lr")


class Toy(TorchGenerator):
    """Independent Bernoulli codes with a noisy (dropout) logit layer: enough randomness to test resume."""

    name = "toy"
    config_class = ToyConfig
    presets = {"smoke": {"epochs": 2}, "demo": {}, "paper": {"epochs": 10}}

    def _prepare(self, train):
        self.vocab = Vocabulary.from_cohorts(train)
        self.x = binary_matrix(train, self.vocab)

    def _extra_state(self):
        return {"codes": list(self.vocab.codes)}

    def _set_extra_state(self, state):
        self.vocab = Vocabulary(state["codes"])

    def _build(self):
        return {"net": torch.nn.Sequential(torch.nn.Dropout(0.3), torch.nn.Linear(len(self.vocab), len(self.vocab)))}

    def _optimizers(self):
        return {"adam": torch.optim.Adam(self.modules["net"].parameters(), lr=self.config.lr)}

    def _train_epoch(self, epoch, rng):
        net, opt, total = self.modules["net"], self.optimizers["adam"], 0.0
        for rows in batches(self.x.shape[0], self.config.batch_size, rng):
            x = sparse_rows_to_dense(self.x, rows, self.device)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(torch.zeros_like(x)), x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        return {"loss": total}

    def _generate(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            p = torch.sigmoid(self.modules["net"].eval()(torch.zeros(1, len(self.vocab), device=self.device))).cpu()
        x = torch.bernoulli(p.expand(n, -1), generator=g).numpy()
        x[:, 0] = 1  # no empty record
        return from_binary_matrix(x, self.vocab)


@pytest.fixture(scope="module")
def train():
    return simulate(120, seed=3)


def weights(gen):
    return {k: v.clone() for k, v in gen.modules["net"].state_dict().items()}


def test_presets_and_overrides():
    assert Toy.preset("smoke").epochs == 2 and Toy.preset("paper").epochs == 10
    assert Toy.preset("smoke", lr=0.1).lr == 0.1
    with pytest.raises(ConfigError, match="profile='huge'"):
        Toy.preset("huge")
    with pytest.raises(GeneratorError, match=r"unknown config field\(s\) \['epoch'\]"):
        Toy.preset("demo", epoch=3)
    with pytest.raises(GeneratorError, match=r"ToyConfig.batch_size=0; expected a positive number"):
        Toy.preset("demo", batch_size=0)
    for field, value, expected in [("batch_size", 1.5, "an integer"), ("lr", float("nan"), "a finite number"),
                                   ("progress", "no", "True or False"), ("device", 0, "a string"),
                                   ("seed", -1, "an integer >= 0")]:
        with pytest.raises(GeneratorError, match=rf"ToyConfig.{field}=.*; expected {expected}"):
            Toy.preset("demo", **{field: value})


def test_device_choice():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(GeneratorError, match="CUDA is not available"):
            pick_device("cuda")
    with pytest.raises(GeneratorError, match="device='gpu"):
        pick_device("gpu")


def test_training_lowers_loss_and_is_deterministic(train):
    a = Toy.from_profile("demo", progress=False).fit(train)
    b = Toy.from_profile("demo", progress=False).fit(train)
    assert a.history[-1]["loss"] < a.history[0]["loss"]
    assert all(torch.equal(v, weights(b)[k]) for k, v in weights(a).items())


def test_interrupted_fit_resumes_exactly(train, tmp_path):
    full = Toy.from_profile("demo", progress=False).fit(train)

    def interrupt(epoch, stats):
        if epoch == 1:
            raise KeyboardInterrupt

    broken = Toy.from_profile("demo", progress=False)
    with pytest.raises(KeyboardInterrupt):
        broken.fit(train, checkpoint_dir=tmp_path, callback=interrupt)
    assert (tmp_path / CHECKPOINT).is_file() and not list(tmp_path.glob("*.tmp*"))
    seen = []
    resumed = Toy.from_profile("demo", progress=False).fit(train, checkpoint_dir=tmp_path,
                                                            callback=lambda e, s: seen.append(e))
    assert seen == [2, 3]
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in full.history], rel=0, abs=0)
    assert all(torch.equal(v, weights(full)[k]) for k, v in weights(resumed).items())


def test_resume_refuses_another_config(train, tmp_path):
    Toy.from_profile("smoke", progress=False).fit(train, checkpoint_dir=tmp_path)
    seen = []
    Toy.from_profile("smoke", progress=True, checkpoint_every=2).fit(train, checkpoint_dir=tmp_path,
                                                                    callback=lambda e, s: seen.append(e))
    assert seen == []  # runtime-only fields differ: the finished checkpoint is reused
    with pytest.raises(GeneratorError, match="another config"):
        Toy.from_profile("demo", progress=False).fit(train, checkpoint_dir=tmp_path)
    with pytest.raises(GeneratorError, match="other data"):
        Toy.from_profile("smoke", progress=False).fit(simulate(60, seed=9), checkpoint_dir=tmp_path)
    (tmp_path / CHECKPOINT).write_bytes(b"garbage")
    with pytest.raises(GeneratorError, match="not a readable checkpoint") as err:
        Toy.from_profile("smoke", progress=False).fit(train, checkpoint_dir=tmp_path)
    assert "weights_only" not in str(err.value)


def test_save_load_generate_identical(train, tmp_path, monkeypatch):
    gen = Toy.from_profile("smoke", progress=False).fit(train)
    gen.save(tmp_path / "toy")
    assert (tmp_path / "toy" / "net.safetensors").is_file()
    monkeypatch.setitem(models.NEURAL, "toy", f"{__name__}:Toy")
    monkeypatch.setattr(models, "NAMES", (*models.NAMES, "toy"))
    again = models.load(tmp_path / "toy")
    a, b = gen.generate(50, seed=7), again.generate(50, seed=7)
    pd.testing.assert_frame_equal(a.events, b.events)
    assert a.subject_ids[0] == "SYNTH_000001"
    assert not set(a.subject_ids) & set(train.subject_ids)


def test_registry_names_and_errors():
    with pytest.raises(GeneratorError, match="unknown model 'vae'"):
        models.get("vae")
    with pytest.warns(UserWarning, match="no presets"):
        assert models.get("marginals", profile="smoke").name == "marginals"
    with pytest.raises(ConfigError, match="profile='huge'"):
        models.get("marginals", profile="huge")
    assert set(models.NEURAL) == {"medgan", "corgan", "promptehr", "halo", "gpt"}


def test_fit_or_load_reuses_up_to_date_models(train, tmp_path, monkeypatch):
    monkeypatch.setitem(models.NEURAL, "toy", f"{__name__}:Toy")
    monkeypatch.setattr(models, "NAMES", (*models.NAMES, "toy"))
    calls = []
    monkeypatch.setattr(Toy, "_prepare", lambda self, t, f=Toy._prepare: (calls.append(1), f(self, t))[1])
    first = models.fit_or_load("toy", train, tmp_path / "toy", profile="smoke", progress=False)
    again = models.fit_or_load("toy", train, tmp_path / "toy", profile="smoke", progress=False)
    assert len(calls) == 1 and again.history == first.history
    models.fit_or_load("toy", train, tmp_path / "toy", profile="smoke", progress=True)
    assert len(calls) == 1
    assert not (tmp_path / "toy" / "checkpoints").exists()  # the saved model supersedes them
    models.fit_or_load("toy", train, tmp_path / "toy", profile="smoke", progress=False, lr=0.01)
    models.fit_or_load("toy", simulate(80, seed=5), tmp_path / "toy", profile="smoke", progress=False, lr=0.01,
                       force=True)
    assert len(calls) == 3


def test_draw_nonempty_redraws_from_the_same_generator():
    from ehrlib.models.neural import draw_nonempty

    def sample(k, g):  # half of the rows are empty
        return (torch.rand(k, 3, generator=g) > 0.7).numpy().astype(float)

    rows, drawn = draw_nonempty(50, sample, lambda r: r.any(axis=1), generator=torch.Generator().manual_seed(1),
                                batch_size=16, rounds=20, name="t")
    again, _ = draw_nonempty(50, sample, lambda r: r.any(axis=1), generator=torch.Generator().manual_seed(1),
                             batch_size=16, rounds=20, name="t")
    assert rows.shape == (50, 3) and rows.any(axis=1).all() and drawn > 50
    assert (rows == again).all()
    lists, _ = draw_nonempty(5, lambda k, g: ([[1], []] * k)[:k], lambda r: [bool(x) for x in r],
                             generator=None, batch_size=4, rounds=5, name="t")
    assert lists == [[1]] * 5
    with pytest.raises(GeneratorError, match="t: only 0 of 6 generated records hold any code after 2 rounds"):
        draw_nonempty(3, lambda k, g: [[]] * k, lambda r: [bool(x) for x in r], generator=None, batch_size=4,
                      rounds=2, name="t")


def test_fit_options_are_keyword_only_and_progress_overrides_the_config(train, tmp_path):
    with pytest.raises(TypeError):
        Toy.from_profile("smoke").fit(train, tmp_path)
    seen = []
    gen = Toy.from_profile("smoke", progress=True).fit(train, progress=False, callback=lambda e, s: seen.append(e))
    assert seen == [0, 1] and gen.fitted
    key = gen.training_key(train)
    assert key["name"] == "toy" and key["data"] == train.checksum()
    assert "progress" not in key["config"] and "device" not in key["config"]
    assert Toy.from_profile("smoke", progress=False).training_key(train) == key
    assert Toy.from_profile("smoke", lr=0.5).training_key(train) != key
