"""Profiles: one typed, validated Profile per name, read from one YAML file each."""
import dataclasses

import pytest
import yaml

from ehrlib import profiles
from ehrlib.errors import ConfigError

GOOD = {"name": "x", "data": {"n_patients": 10, "n_holdout": 2, "n_reference": 2},
        "evaluation": {"n_synthetic": 5, "n_bootstrap": 3, "nnaar_repeats": 1, "lstm": False},
        "models": {"gpt": {"epochs": 1, "lr": 0.01}}}


def test_every_name_loads_as_a_typed_profile():
    for name in profiles.NAMES:
        p = profiles.get(name)
        assert p.name == name and p.source.endswith(f"{name}.yaml")
        assert isinstance(p.data.n_patients, int) and isinstance(p.evaluation.lstm, bool)
        assert set(p.models) <= set(profiles.MODEL_NAMES)
    assert profiles.get("smoke").data.n_patients < profiles.get("demo").data.n_patients \
        < profiles.get("paper").data.n_patients


def test_load_keeps_the_older_dict_shape():
    d = profiles.load("smoke")
    assert set(d) == {"name", "data", "evaluation"}
    assert set(d["data"]) == {"n_patients", "n_holdout", "n_reference"}
    assert {"n_synthetic", "n_bootstrap", "nnaar_repeats", "lstm"} <= set(d["evaluation"])
    assert d["evaluation"]["n_synthetic"] == profiles.get("smoke").evaluation.n_synthetic


def test_profiles_are_frozen():
    p = profiles.get("demo")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "other"
    with pytest.raises(TypeError):
        p.models["gpt"]["epochs"] = 100


def test_paper_profile_overrides_no_model_default():
    assert all(not preset for preset in profiles.get("paper").models.values())


def test_model_configs_come_from_the_profile_yaml():
    torch = pytest.importorskip("torch")  # noqa: F841
    from ehrlib import models

    for name in profiles.MODEL_NAMES:
        config = models.get(name, "smoke").config
        for field, value in profiles.get("smoke").preset(name).items():
            assert getattr(config, field) == value, (name, field)


@pytest.mark.parametrize("bad", [None, "huge", 1, "Smoke"])
def test_unknown_names_are_config_errors(bad):
    with pytest.raises(ConfigError, match="expected one of"):
        profiles.get(bad)


@pytest.mark.parametrize("edit, words", [
    (lambda d: d.update(extra=1), "unknown key extra"),
    (lambda d: d["data"].update(n_patient=3), "unknown key data.n_patient"),
    (lambda d: d["data"].pop("n_holdout"), "key 'n_holdout' missing in data"),
    (lambda d: d["data"].update(n_patients="600"), "key 'data.n_patients' = '600'; expected a positive integer"),
    (lambda d: d["data"].update(n_patients=True), "expected a positive integer"),
    (lambda d: d["evaluation"].update(lstm="yes"), "key 'evaluation.lstm' = 'yes'; expected true or false"),
    (lambda d: d["models"].update(vae={}), "unknown key models.vae"),
    (lambda d: d["models"]["gpt"].update(lr=[1]), "key 'models.gpt.lr' = [1]"),
    (lambda d: d.update(models=[1]), "models must be a mapping"),
    (lambda d: d.update(name="y"), "key 'name' is 'y'; expected 'x'"),
])
def test_bad_profile_data_names_file_and_key(edit, words):
    raw = yaml.safe_load(yaml.safe_dump(GOOD))
    edit(raw)
    with pytest.raises(ConfigError) as err:
        profiles.parse(raw, "some/x.yaml", "x")
    assert "some/x.yaml" in str(err.value) and words in str(err.value)


def test_a_preset_field_the_model_does_not_have_names_file_and_key(monkeypatch):
    pytest.importorskip("torch")
    from ehrlib import models

    bad = profiles.parse({**GOOD, "name": "demo", "models": {"gpt": {"epoch": 3}}}, "ehrlib/profiles/demo.yaml")
    monkeypatch.setattr(profiles, "get", lambda name: bad)
    with pytest.raises(ConfigError, match=r"ehrlib/profiles/demo.yaml: unknown key 'models.gpt.epoch'"):
        models.get("gpt", "demo")
    bad = profiles.parse({**GOOD, "name": "demo", "models": {"gpt": {"epochs": -3}}}, "ehrlib/profiles/demo.yaml")
    monkeypatch.setattr(profiles, "get", lambda name: bad)
    with pytest.raises(ConfigError, match=r"ehrlib/profiles/demo.yaml: models.gpt: .*epochs=-3"):
        models.get("gpt", "demo")


def test_names_are_defined_once():
    from ehrlib.models import neural

    assert neural.PROFILES is profiles.NAMES


def test_figure3_covers_the_generators_the_profile_names():
    from types import SimpleNamespace

    from ehrlib import pipeline
    from ehrlib.errors import ConfigError

    stage = SimpleNamespace(synthetic={"halo": 1, "gpt": 2, "memorizer": 3},
                            settings=SimpleNamespace(source="ehrlib/profiles/demo.yaml"))
    assert pipeline._longtail_models(stage, "all") == stage.synthetic
    assert pipeline._longtail_models(stage, "halo, gpt, promptehr") == {"halo": 1, "gpt": 2}
    with pytest.raises(ConfigError, match="longtail_models.*names none"):
        pipeline._longtail_models(stage, "promptehr")
    demo = profiles.get("demo").evaluation.longtail_models
    assert {m.strip() for m in demo.split(",")} == {"medgan", "corgan", "promptehr", "halo", "gpt", "holdout"}
    assert profiles.get("smoke").evaluation.longtail_models == "all"
