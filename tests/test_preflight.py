"""``ehrbench preflight``: sizes, parameters, a real step and a generation batch per model, the
GPU-memory and hours estimates, and early failures naming the field to change (smoke profile)."""
import pytest

from ehrlib import preflight
from ehrlib.cli import main


def test_preflight_prints_a_row_per_model_from_a_real_step(capsys, tmp_path):
    assert main(["preflight", "--profile", "smoke", "--models", "gpt", "halo", "--csv", str(tmp_path / "p.csv")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["model", "vocab", "context"]
    import pandas as pd

    table = pd.read_csv(tmp_path / "p.csv")
    assert list(table["model"]) == ["gpt", "halo"]
    train = preflight.training_cohort("smoke")
    from ehrlib.data.encode import Vocabulary

    assert (table["vocabulary"] == len(Vocabulary.from_cohorts(train))).all()  # every code of the training split
    assert (table["parameters"] > 0).all() and (table["step_seconds"] > 0).all()
    assert (table["generate_seconds"] > 0).all()
    # the estimate: 16 bytes per parameter, the saved activations and the CUDA allowance, and nothing else
    for r in table.to_dict("records"):
        expected = r["parameters"] * 16 / 1024 ** 3 + r["activations_gib"] + preflight.CUDA_OVERHEAD_GIB
        assert r["gpu_memory_gib_estimate"] == pytest.approx(expected) and r["activations_gib"] > 0
        assert r["paper_reported"] == preflight.PAPER_HOURS[r["model"]]
    assert "estimate" in out


def test_a_record_beyond_the_context_fails_naming_the_field():
    with pytest.raises(preflight.PreflightError, match=r"gpt.*max_positions"):
        preflight.preflight("smoke", models=("gpt",), overrides={"gpt": {"max_positions": 8}})


def test_a_batch_that_does_not_fit_the_stated_gpu_memory_fails_naming_the_field():
    with pytest.raises(preflight.PreflightError, match=r"does not fit --gpu-memory 0\.5; lower models\.halo\.batch_size"):
        preflight.preflight("smoke", models=("halo",), gpu_memory=0.5)
