"""The one real cohort every user has: the open MIMIC-III demo, end to end (smoke profile, no book)."""
import json

import pytest

from conftest import MIMIC3_DEMO, ROOT, needs_demo
from ehrlib.errors import RunError
from ehrlib.runner import notebooks, reproduce


@pytest.mark.slow
@needs_demo
def test_the_mimic3_demo_runs_every_stage_and_names_every_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("EHRLIB_DATA_DIR", str(MIMIC3_DEMO.parent))
    try:
        reproduce(ROOT, profile="smoke", data="mimic3-demo", run="demo3", book=False)
        failed_error = None
    except RunError as exc:  # a failed stage is reported after every stage ran
        failed_error = str(exc)
    stages = json.loads((tmp_path / "runs" / "demo3" / "manifest.json").read_text())["stages"]
    for nb in notebooks(ROOT):
        assert stages[nb.stem]["runner"]["status"] in ("ok", "failed", "not run"), nb.stem
    failed = [name for name, s in stages.items() if s.get("runner", {}).get("status") == "failed"]
    assert bool(failed) == bool(failed_error), (failed, failed_error)
    for name in failed:
        assert stages[name]["runner"]["error"].startswith(name), stages[name]["runner"]["error"]
    for name, s in stages.items():  # a stage is only left out because a stage it needs failed
        if s["runner"]["status"] == "not run":
            assert s["runner"]["error"].startswith("needs "), s["runner"]["error"]
    # generators that cannot sample on 100 real patients are recorded, not fatal
    generate = stages["20_generate"]
    assert generate["runner"]["status"] == "ok"
    assert "Contains information from the MIMIC-III" in (tmp_path / "runs" / "demo3" / "executed" /
                                                          "00_data.ipynb").read_text()
