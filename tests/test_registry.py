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
