"""Tables 3-11: every `paper` preset matches appendix F, or the difference is listed with a reason."""
import pytest

pytest.importorskip("torch")

from ehrlib.models.hyperparameters import appendix_f, appendix_f_data  # noqa: E402

MODELS = ["medgan", "corgan", "promptehr", "halo", "gpt"]


@pytest.fixture(scope="module")
def table():
    return appendix_f()


def test_every_model_has_its_appendix_f_rows(table):
    assert list(table.model.unique()) == MODELS
    assert table.groupby("model").size().min() >= 8


def test_a_preset_that_drifts_from_appendix_f_has_a_listed_deviation(table):
    unexplained = table[table.differs & (table.deviation == "")]
    assert unexplained.empty, unexplained[["model", "field", "paper", "ours"]].to_string()


def test_every_listed_deviation_is_a_real_difference(table):
    stale = table[(table.deviation != "") & ~table.differs]
    assert stale.empty, stale[["model", "field", "paper", "ours"]].to_string()
    listed = {(m, f) for m, e in appendix_f_data().items() for f in (e.get("deviations") or {})}
    assert listed == set(map(tuple, table[table.deviation != ""][["model", "field"]].to_numpy()))


def test_a_changed_preset_is_caught(monkeypatch):
    from ehrlib.models.halo import HALOConfig

    monkeypatch.setattr(HALOConfig, "__init__", _with(HALOConfig.__init__, n_layer=6))
    t = appendix_f(["halo"])
    row = t[t.field == "n_layer"].iloc[0]
    assert row.differs and row.deviation == "" and row.ours == 6 and row.paper == 12


def test_fixed_deviations_match_the_originals(table):
    ours = table.set_index(["model", "field"]).ours
    assert ours[("medgan", "generator_layers")] == 3   # generator_size (128, 128) + the embedding layer
    assert ours[("halo", "dropout")] == 0.0             # the original has no dropout


def test_ranges_and_missing_values(table):
    gpt = table[table.model == "gpt"].set_index("field")
    assert gpt.loc["n_layer", "paper"] == [2, 8] and not gpt.loc["n_layer", "differs"]
    lr = table[(table.model == "promptehr") & (table.field == "lr")].iloc[0]
    assert lr.paper is None and lr.against == "" and not lr.differs


def _with(init, **forced):
    def patched(self, *args, **kwargs):
        init(self, *args, **{**kwargs, **forced})
    return patched
