"""The simulated cohort against the public references (issue: a cohort a clinician would recognise)."""
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import SHARED_DATA
from ehrlib.cohort import Cohort
from ehrlib.data import simulate
from ehrlib.data.codeprofile import load_code_profile
from ehrlib.data.simulate import SimulationConfig
from ehrlib.metrics import calibration as cal

DATA = Path(os.environ.get("EHRLIB_TEST_SHARED_DATA", SHARED_DATA))
needs_data = pytest.mark.skipif(not (DATA / "paper-samples").is_dir(), reason="../shared/data not present")


@pytest.fixture(scope="module")
def references():
    return cal.load_references(DATA)


@pytest.fixture(scope="module")
def simulated():
    return simulate(5000, seed=0)


def _check(table, check, reference):
    row = table[(table.check == check) & (table.reference == reference)]
    assert len(row) == 1, (check, reference)
    return row.iloc[0]


@needs_data
def test_references_are_the_three_public_cohorts(references):
    assert list(references) == list(cal.REFERENCES)
    assert references["mimic3_demo"].n_patients == 100
    assert references["mimic4_demo_icd9"].n_patients == 76
    assert references["halo_sample"].n_patients == 9989


@needs_data
def test_prevalence_correlates_with_mimic_demo_and_halo_sample(simulated, references):
    t = cal.prevalence_correlation(simulated, references).set_index("reference")
    assert t.loc["mimic3_demo", "pearson_shared"] >= 0.85
    assert t.loc["halo_sample", "pearson_shared"] >= 0.9
    assert (t["n_shared"] <= t["n_union"]).all()


@needs_data
def test_random_mode_fails_the_prevalence_target(references):
    """The check can fail: a cohort without clinical signal is far below the targets."""
    random = simulate(5000, seed=0, config=SimulationConfig(code_profile="random"))
    t = cal.prevalence_correlation(random, references).set_index("reference")
    assert t.loc["halo_sample", "pearson_shared"] < 0.3
    assert cal.top_code_overlap(random, references).set_index("reference").loc["mimic3_demo", "overlap"] <= 3


@needs_data
def test_top20_codes_of_the_mimic3_demo_lead_the_simulated_cohort(simulated, references):
    t = cal.top_code_overlap(simulated, references, k=20).set_index("reference")
    assert t.loc["mimic3_demo", "overlap"] >= 14
    shown = cal.top_codes_table(simulated, references["mimic3_demo"], reference_name="mimic3_demo")
    assert shown.groupby("model").size().to_dict() == {"mimic3_demo": 20, "simulated": 20}
    assert shown["in_simulated_top"].sum() == 2 * t.loc["mimic3_demo", "overlap"]


@needs_data
def test_top50_cooccurrence_resembles_the_halo_sample(simulated, references):
    t = cal.cooccurrence_table(simulated, {"halo_sample": references["halo_sample"]}).set_index("reference")
    assert t.loc["halo_sample", "cosine"] >= 0.85


@needs_data
def test_structure_table_ends_with_the_papers_real_row(simulated, references):
    t = cal.structure_table(simulated, references)
    assert t["dataset"].tolist() == ["simulated", *cal.REFERENCES, "paper_real"]
    assert t.iloc[-1]["codes_per_visit"] == 11.04
    s = t.iloc[0]
    assert 1.15 <= s["visits_per_patient"] <= 1.40 and 9 <= s["codes_per_visit"] <= 13


def test_chapter_table_has_every_chapter_and_the_pooled_difference(simulated):
    pooled = load_code_profile().chapters
    t = cal.chapter_table(simulated, {}, pooled=pooled)
    assert t["chapter"].tolist() == [str(i) for i in range(1, 20)]
    np.testing.assert_allclose(t["diff_pooled"], t["simulated"] - t["pooled_profile"])
    assert t.set_index("chapter").loc["7", "simulated"] > 0.6  # circulatory leads, as in MIMIC-III


def test_simulated_is_a_reserved_reference_name(simulated):
    with pytest.raises(ValueError, match="reserved"):
        cal.structure_table(simulated, {"simulated": simulated})


def test_checks_compare_values_with_their_ranges(simulated):
    tiny = {"visits_per_patient": {"paper_real": (5.0, 6.0)}, "codes_per_visit": {"paper_real": (1.0, 30.0)}}
    t = cal.calibration_checks(simulated, {}, targets=tiny).set_index("check")
    assert not t.loc["visits_per_patient", "passed"] and t.loc["codes_per_visit", "passed"]


@needs_data
def test_every_target_holds_at_the_papers_size(references):
    """46,520 patients, seed 0: the calibration targets, and Table 12's real row."""
    sim = simulate(46_520, seed=0)
    refs = {k: references[k] for k in ("mimic3_demo", "halo_sample")}
    checks = cal.calibration_checks(sim, refs, pooled=load_code_profile().chapters)
    assert len(checks) == sum(len(v) for v in cal.TARGETS.values())
    assert checks["passed"].all(), checks[~checks["passed"]].to_dict("records")
    s = cal.structure_table(sim, {}).iloc[0]
    assert s["visits_per_patient"] == pytest.approx(1.27, abs=0.02)
    assert s["codes_per_visit"] == pytest.approx(11.04, abs=0.3)
    assert s["codes_per_patient"] == pytest.approx(12.61, abs=0.5)
    assert s["unique_codes"] == pytest.approx(6955, rel=0.05)
