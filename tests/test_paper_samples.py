"""The `paper-samples` registry entry and reader, on the shared copies (no network)."""
import re
import shutil
import warnings

import pytest

from conftest import SHARED_DATA
from ehrlib.cohort import CohortError
from ehrlib.data import registry

SAMPLES = SHARED_DATA / "paper-samples"
pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/data/paper-samples not present")


def test_shared_copies_verify_without_download():
    assert registry.fetch("paper-samples", SHARED_DATA) == SAMPLES


def test_license_is_stored_with_the_samples_when_missing(tmp_path):
    folder = tmp_path / "paper-samples"
    folder.mkdir()
    for name in registry.PAPER_SAMPLE_FILES.values():
        shutil.copy(SAMPLES / name, folder / name)
    registry.fetch("paper-samples", tmp_path)  # no download: the LICENSE comes from the package
    assert (folder / "LICENSE").read_text().startswith("MIT License")


def test_missing_sample_without_download_is_an_error(tmp_path):
    with pytest.raises(CohortError, match="download=True"):
        registry.fetch("paper-samples", tmp_path)


def test_gpt_sample_url_points_into_its_subfolder():
    ds = registry.DATASETS["paper-samples"]
    assert registry.PAPER_COMMIT in ds.url
    assert ds.remote["transformer_baseline_synthetic_ehr.csv"].startswith("transformer_baseline/")


def test_every_released_layout_reads_and_dropped_rows_are_reported():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples = registry.load_paper_samples(SHARED_DATA)
    assert set(samples) == {"medgan", "corgan", "promptehr", "halo", "gpt"}
    for cohort in samples.values():
        cohort.validate()
    assert samples["medgan"].n_visits == samples["medgan"].n_patients  # no visit column: one visit each
    assert samples["halo"].n_visits > samples["halo"].n_patients
    messages = [str(w.message) for w in caught]
    gpt = [m for m in messages if "transformer_baseline_synthetic_ehr.csv" in m]
    assert any("missing code" in m for m in gpt) and any("a code within" in m for m in gpt)


def test_dropped_counts_are_exact(tmp_path):
    f = tmp_path / "s.csv"
    f.write_text("SUBJECT_ID,HADM_ID,ICD9_CODE\na,1,4019\na,1,4019\na,1,nan\na,2,4019\nb,1,V3000\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cohort = registry.read_sample(f)
    said = " ".join(str(w.message) for w in caught if "s.csv" in str(w.message))
    assert re.search(r"\b1 row\(s\) with a missing code", said)
    assert re.search(r"\b1 (row\(s\) repeating|repeat\(s\) of) a code within", said)
    assert cohort.n_events == 3


def test_unknown_layout_names_the_file_and_line(tmp_path):
    f = tmp_path / "odd.csv"
    f.write_text("patient,code,when\n1,4019,0\n")
    with pytest.raises(CohortError, match=r"odd.csv, line 1: header 'PATIENT,CODE,WHEN'"):
        registry.read_sample(f)
