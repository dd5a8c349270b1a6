import functools
import http.server
import shutil
import threading

import pytest

from conftest import SHARED_DATA, needs_demo
from ehrlib.cohort import CohortError
from ehrlib.data import registry

pytestmark = needs_demo


@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1 serving ../shared/data, stopped after the test."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(SHARED_DATA))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("name,folder", [("mimic3-demo", "mimic-iii-demo"), ("mimic4-demo", "mimic-iv-demo")])
def test_download_verifies_checksums_and_loads(tmp_path, server, name, folder):
    got = registry.fetch(name, tmp_path, download=True, base_url=f"{server}/{folder}")
    assert got == tmp_path / folder
    cohort = registry.load(name, root=tmp_path)
    assert cohort.n_patients == (100 if name == "mimic3-demo" else 76)


def test_cached_files_are_not_downloaded_again(tmp_path, server):
    registry.fetch("mimic3-demo", tmp_path, download=True, base_url=f"{server}/mimic-iii-demo")
    # a dead URL proves nothing is fetched the second time
    registry.fetch("mimic3-demo", tmp_path, download=True, base_url="http://127.0.0.1:9/none")


def test_bad_checksum_download_writes_nothing(tmp_path, server, monkeypatch):
    files = dict(registry.DATASETS["mimic3-demo"].files)
    files["PATIENTS.csv"] = "0" * 64
    monkeypatch.setitem(registry.DATASETS, "mimic3-demo",
                        registry.Dataset("mimic3-demo", "mimic-iii-demo", "x", files, ""))
    with pytest.raises(CohortError, match="sha256"):
        registry.fetch("mimic3-demo", tmp_path, download=True, base_url=f"{server}/mimic-iii-demo")
    assert not (tmp_path / "mimic-iii-demo" / "PATIENTS.csv").exists()
    assert not [p for p in (tmp_path / "mimic-iii-demo").iterdir() if p.name.startswith(".")]


def test_offline_error_says_how_to_use_local_copies(tmp_path):
    with pytest.raises(CohortError, match="EHRLIB_DATA_DIR"):
        registry.fetch("mimic3-demo", tmp_path, download=True, base_url="http://127.0.0.1:9/none", timeout=2)


def test_missing_files_without_download_permission_is_an_error(tmp_path):
    with pytest.raises(CohortError, match="download=True"):
        registry.fetch("mimic3-demo", tmp_path)


def test_corrupted_local_copy_is_refused(tmp_path):
    d = tmp_path / "mimic-iii-demo"
    d.mkdir()
    for f in registry.DATASETS["mimic3-demo"].files:
        shutil.copy(SHARED_DATA / "mimic-iii-demo" / f, d / f)
    with open(d / "PATIENTS.csv", "a") as fh:
        fh.write("tampered\n")
    with pytest.raises(CohortError, match="does not match"):
        registry.fetch("mimic3-demo", tmp_path)


def test_env_var_points_at_local_copies(monkeypatch):
    monkeypatch.setenv("EHRLIB_DATA_DIR", str(SHARED_DATA))
    assert registry.load("mimic3-demo").n_events == 1761


def test_unknown_source_lists_the_choices():
    with pytest.raises(CohortError, match="mimic3:PATH"):
        registry.load("mimic5")


@pytest.mark.skipif(not (SHARED_DATA / "paper-samples").is_dir(), reason="../shared/data/paper-samples not present")
def _linked_samples(root):
    """A data folder whose released samples link to ../shared/data's copies."""
    d = root / registry.DATASETS["paper-samples"].folder
    d.mkdir(parents=True)
    for f in registry.DATASETS["paper-samples"].files:
        (d / f).symlink_to(SHARED_DATA / "paper-samples" / f)
    return d


def test_fetching_the_paper_samples_adds_the_authors_results_file_and_reading_never_writes_it(tmp_path):
    ds = registry.DATASETS["paper-samples"]
    read_only = _linked_samples(tmp_path / "read")
    registry.fetch("paper-samples", tmp_path / "read")  # reading: the extra is neither required nor written
    assert not (read_only / registry.AUTHORS_FIG3.name).exists()

    _linked_samples(tmp_path / "fetched")
    got = registry.fetch("paper-samples", tmp_path / "fetched", download=True, base_url="http://127.0.0.1:9/none")
    copied = got / registry.AUTHORS_FIG3.name
    assert copied.read_bytes() == registry.AUTHORS_FIG3.read_bytes()
    assert registry.sha256(copied) == ds.extras[registry.AUTHORS_FIG3.name]
    assert (got / "LICENSE").read_text().startswith("MIT License")


@pytest.mark.skipif(not (SHARED_DATA / "paper-samples").is_dir(), reason="../shared/data/paper-samples not present")
def test_a_tampered_copy_of_the_authors_results_file_is_refused(tmp_path):
    d = _linked_samples(tmp_path)
    (d / registry.AUTHORS_FIG3.name).write_text(registry.AUTHORS_FIG3.read_text().replace("75.0", "80.0"))
    with pytest.raises(CohortError, match="long_tailed_ablation.csv: sha256 .* does not match"):
        registry.fetch("paper-samples", tmp_path)
