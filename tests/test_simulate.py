import numpy as np
import pandas as pd
import pytest

from ehrlib.cohort import Cohort, CohortError
from ehrlib.errors import ConfigError
from ehrlib.data import icd9, load_mimic3, simulate, write_simulated
from ehrlib.metrics.structure import summary


@pytest.fixture(scope="module")
def cohort():
    return simulate(8000, seed=0)


def test_same_seed_same_cohort_other_seed_other_cohort():
    a, b, c = simulate(300, seed=5), simulate(300, seed=5), simulate(300, seed=6)
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.demographics, b.demographics)
    assert not a.events.equals(c.events)


def test_written_csvs_load_through_the_mimic3_loader_to_the_same_cohort(tmp_path):
    root = write_simulated(tmp_path / "sim", 300, seed=2)
    assert sorted(p.name for p in root.iterdir()) == ["ADMISSIONS.csv", "DIAGNOSES_ICD.csv", "PATIENTS.csv", "SIMULATED.txt"]
    loaded = load_mimic3(root)
    direct = simulate(300, seed=2)
    pd.testing.assert_frame_equal(loaded.events, direct.events)
    pd.testing.assert_frame_equal(loaded.demographics, direct.demographics)


def test_hadm_ids_are_not_in_time_order(tmp_path):
    root = write_simulated(tmp_path / "sim", 2000, seed=0)
    adm = pd.read_csv(root / "ADMISSIONS.csv").sort_values(["SUBJECT_ID", "ADMITTIME"])
    multi = adm.groupby("SUBJECT_ID").filter(lambda g: len(g) > 1)
    increasing = multi.groupby("SUBJECT_ID")["HADM_ID"].apply(lambda s: s.is_monotonic_increasing)
    assert 0.2 < increasing.mean() < 0.8


def test_codes_are_real_icd9_cm_v32_codes(cohort):
    assert set(cohort.codes()) <= set(icd9.codes())


def test_structure_is_mimic_shaped_at_moderate_size(cohort):
    s = summary(cohort)
    assert 1.2 < s["visits_per_patient"] < 1.35
    assert 10.5 < s["codes_per_visit"] < 11.6
    assert s["codes_per_patient"] < s["visits_per_patient"] * s["codes_per_visit"]  # chronic codes recur
    assert cohort.visits_per_patient().max() >= 15
    assert cohort.codes_per_visit().max() <= 39


def test_prevalence_is_long_tailed_over_four_decades(cohort):
    prev = cohort.events.drop_duplicates(["subject_id", "code"]).code.value_counts() / cohort.n_patients
    assert prev.max() > 0.1 and np.log10(prev.max() / prev.min()) > 3
    assert (prev < 10 / cohort.n_patients).mean() > 0.4  # many rare codes


def test_codes_co_occur_beyond_independence(cohort):
    from ehrlib.data.encode import Vocabulary, binary_matrix

    x = binary_matrix(cohort, Vocabulary.from_cohorts(cohort)).tocsc()
    p = np.asarray(x.mean(axis=0)).ravel()
    top = np.argsort(-p)[:30]
    joint = (x[:, top].T @ x[:, top]).toarray() / x.shape[0]
    lift = joint / np.outer(p[top], p[top])
    off = lift[~np.eye(len(top), dtype=bool)]
    assert np.mean(off > 1.5) > 0.1


def test_age_and_sex_shape_the_codes(cohort):
    demo = cohort.demographics.set_index("subject_id")
    ev = cohort.events.join(demo, on="subject_id")
    chapter = icd9.chapters(ev.code.to_numpy())
    newborn = ev.age.to_numpy() == 0
    assert (chapter[newborn] == "15").mean() > 0.2 and (chapter[~newborn] == "15").mean() < 0.02
    pregnancy = chapter == "11"
    assert (ev.sex.to_numpy()[pregnancy] == "F").all()
    assert demo.age.max() == 90 and (demo.age == 0).mean() > 0.1


def test_bad_size_is_an_error():
    with pytest.raises(ConfigError, match="n_patients"):
        simulate(0)


def test_interrupted_write_leaves_no_partial_folder(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", boom)
    with pytest.raises(OSError):
        write_simulated(tmp_path / "sim", 50)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- the public code profile
from ehrlib.data import codeprofile  # noqa: E402
from ehrlib.data.simulate import SimulationConfig, calibrate, simulate_events  # noqa: E402


def test_default_cohort_leads_with_mimics_common_diagnoses(cohort):
    top = cohort.events.drop_duplicates(["subject_id", "code"]).code.value_counts().index[:10]
    # hypertension, coronary atherosclerosis, atrial fibrillation, heart failure
    assert {"4019", "41401", "42731", "4280"} <= set(top)


def test_random_mode_keeps_the_old_random_popularity():
    a = simulate(2000, seed=0, config=SimulationConfig(code_profile="random"))
    top = a.events.drop_duplicates(["subject_id", "code"]).code.value_counts().index[:20]
    assert "4019" not in set(top)
    s = summary(a)
    assert 1.15 < s["visits_per_patient"] < 1.4 and 10 < s["codes_per_visit"] < 12


def test_unknown_code_profile_is_a_config_error():
    with pytest.raises(ConfigError, match="code_profile='mimic9'"):
        simulate(10, config=SimulationConfig(code_profile="mimic9"))


def test_sex_gated_codes_follow_sex(cohort):
    ev = cohort.events.join(cohort.demographics.set_index("subject_id"), on="subject_id")
    codes = ev.code.to_numpy()
    male_only, female_only = codeprofile.male_only_mask(codes), codeprofile.female_only_mask(codes)
    assert male_only.sum() > 10 and female_only.sum() > 10
    assert (ev.sex.to_numpy()[male_only] == "M").all()
    assert (ev.sex.to_numpy()[female_only] == "F").all()
    preg = codeprofile.pregnancy_code_mask(codes)
    assert ((ev.age.to_numpy()[preg] >= 15) & (ev.age.to_numpy()[preg] < 50)).all()


def test_newborn_codes_only_in_newborns_and_newborns_carry_no_adult_chronic_disease(cohort):
    ev = cohort.events.join(cohort.demographics.set_index("subject_id"), on="subject_id")
    newborn_code = codeprofile.newborn_code_mask(ev.code.to_numpy())
    assert (ev.age.to_numpy()[newborn_code] == 0).all()
    newborn_codes = set(ev.code[ev.age == 0])
    assert not newborn_codes & {"4019", "41401", "4280", "25000"}


def test_recurrence_follows_the_profile_rates(cohort):
    """Codes with a high recurrence rate in the sources recur across visits more often."""
    prof = codeprofile.load_code_profile()
    ev = cohort.events
    nxt = ev.assign(visit_id=ev.visit_id - 1)
    last = ev.groupby("subject_id").visit_id.transform("max")
    has_next = ev[ev.visit_id < last]
    both = has_next.merge(nxt, on=["subject_id", "visit_id", "code"])
    n_prev = has_next.code.value_counts()
    rate = (both.code.value_counts().reindex(n_prev.index, fill_value=0) / n_prev)[n_prev >= 40]
    expected = pd.Series(prof.recurrence, index=prof.codes).reindex(rate.index)
    assert len(rate) >= 20
    assert np.corrcoef(rate, expected)[0, 1] > 0.7


def test_profile_holds_aggregates_only_and_pools_its_sources():
    prof = codeprofile.load_code_profile()
    root = codeprofile._package_dir()
    assert sorted(p.name for p in root.iterdir()) == sorted(codeprofile.PROFILE_FILES)
    codes = pd.read_csv(root / "codes.csv.gz", dtype={"code": str})
    assert len(codes) == len(icd9.codes()) and codes["code"].is_unique  # one row per CMS v32 code
    phen = pd.read_csv(root / "phenotypes.csv.gz", dtype={"code": str})
    assert list(phen.columns) == ["phenotype", "code", "weight"]
    weights = {name: src["weight"] for name, src in prof.meta["sources"].items()}
    assert sum(weights.values()) == pytest.approx(1.0)
    pooled = sum(w * codes[f"prevalence_{name}"] for name, w in weights.items())
    np.testing.assert_allclose(codes["pooled_prevalence"], pooled, rtol=1e-4, atol=1e-8)
    notice = (root / "NOTICE.md").read_text()
    assert "ODbL" in notice and "MIT" in notice
    assert all(f"`{name}`" in notice for name in weights)


def test_missing_profile_file_is_a_config_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="missing codes.csv.gz"):
        codeprofile.load_code_profile(str(tmp_path))


@pytest.mark.filterwarnings("ignore:Maximum number of iterations")  # a short NMF fit is enough here
def test_build_calibrate_save_load_round_trip(tmp_path):
    """The build pipeline on small stand-in sources: fit, calibrate, write, read, simulate."""
    rnd = SimulationConfig(code_profile="random")
    a, b = simulate(400, seed=1, config=rnd), simulate(300, seed=2, config=rnd)
    settings = codeprofile.BuildSettings(weights={"a": 0.6, "b": 0.4}, n_head=150, n_phenotypes=6,
                                           nmf_max_iter=50)
    prof = codeprofile.build_profile({"a": a, "b": b}, settings, licences={"a": "x", "b": "y"})
    assert prof.phenotypes.shape == (6, len(icd9.codes()))
    np.testing.assert_allclose(prof.phenotypes.sum(axis=1), 1.0)
    prof = calibrate(prof, 500, target_unique=800, iterations=1, progress=lambda m: None)
    root = codeprofile.save_profile(prof, tmp_path / "profile", notice="test\n")
    back = codeprofile.load_code_profile(str(root))
    np.testing.assert_allclose(back.phenotypes, prof.phenotypes, rtol=1e-4, atol=1e-9)
    ev = simulate_events(200, seed=0, profile=back)
    assert len(ev["code"]) > 0 and ev["patient"].max() < 200


def test_build_rejects_weights_that_do_not_match_the_sources():
    a = simulate(50, seed=1, config=SimulationConfig(code_profile="random"))
    with pytest.raises(ConfigError, match="weights"):
        codeprofile.build_profile({"a": a}, codeprofile.BuildSettings(weights={"a": 0.5, "b": 0.5}))


def test_build_without_any_demographics_is_a_config_error():
    a = simulate(200, seed=1, config=SimulationConfig(code_profile="random"))
    bare = Cohort.from_events(a.events)
    settings = codeprofile.BuildSettings(weights={"a": 1.0}, n_head=100, n_phenotypes=4)
    with pytest.raises(ConfigError, match="demographics"):
        codeprofile.build_profile({"a": bare}, settings)


def test_liveborn_codes_only_in_the_first_visit_and_later_visits_follow_the_profile(cohort):
    ev = cohort.events
    liveborn = codeprofile.first_visit_only_mask(ev.code.to_numpy())
    assert liveborn.sum() > 100 and (ev.visit_id.to_numpy()[liveborn] == 0).all()
    # codes the sources hold more in later visits (history, long-term drugs) than in first ones
    prof = codeprofile.load_code_profile()
    ratio = pd.Series(prof.later_ratio, index=prof.codes)
    multi = ev[ev.groupby("subject_id").visit_id.transform("max") > 0]
    first = multi[multi.visit_id == 0].code.value_counts() / multi.subject_id.nunique()
    later_visits = multi[multi.visit_id > 0].drop_duplicates(["subject_id", "visit_id"]).shape[0]
    later = multi[multi.visit_id > 0].code.value_counts() / later_visits
    common = first.index.intersection(later.index)
    common = common[(first[common] > 0.01)]
    measured = np.log(later[common] / first[common])
    assert len(common) > 100
    assert np.corrcoef(measured, np.log(ratio[common]))[0, 1] > 0.6


def test_a_source_without_v32_codes_is_a_cohort_error_naming_it():
    bad = Cohort.from_events(pd.DataFrame({"subject_id": ["a"], "visit_id": [0], "code": ["99999"]}))
    with pytest.raises(CohortError, match="source 'old'"):
        codeprofile.check_sources({"old": bad})
