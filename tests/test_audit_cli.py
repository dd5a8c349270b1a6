"""``ehrbench audit``: output folder rules and a run on the MIMIC-III demo with released samples."""
import json

import pandas as pd
import pytest

from conftest import SHARED_DATA, needs_demo
from ehrlib.audit_cli import AUDIT_MANIFEST, check_out, run_audit
from ehrlib.cli import main
from ehrlib.errors import RunError

SAMPLES = SHARED_DATA / "paper-samples"


def test_folder_with_another_commands_file_is_refused_before_any_work(tmp_path):
    (tmp_path / "audit_copies.csv").write_text("someone else's\n")
    # an unknown real source and a missing file would fail later: the folder is checked first
    with pytest.raises(RunError, match="another command wrote"):
        run_audit("no-such-source", ["x.csv"], tmp_path)
    assert (tmp_path / "audit_copies.csv").read_text() == "someone else's\n"


def test_cli_reports_the_refused_folder(tmp_path, capsys):
    (tmp_path / "audit_copies.csv").write_text("someone else's\n")
    try:
        code = main(["audit", "--real", "no-such-source", "--synthetic", "x.csv", "--out", str(tmp_path)])
    except RunError as exc:  # a CLI without one-line error handling
        message = str(exc)
    else:
        assert code != 0
        message = capsys.readouterr().err
    assert "another command wrote" in message


def test_folder_with_unrelated_files_or_an_earlier_audit_is_accepted(tmp_path):
    (tmp_path / "metrics.csv").write_text("x\n")
    check_out(tmp_path)
    (tmp_path / "audit_copies.csv").write_text("old\n")
    (tmp_path / AUDIT_MANIFEST).write_text("{}")
    check_out(tmp_path)


def test_out_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "f"
    f.write_text("")
    with pytest.raises(RunError, match="is a file"):
        check_out(f)


@needs_demo
@pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/data/paper-samples not present")
def test_audit_of_released_samples_against_the_demo(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EHRLIB_DATA_DIR", str(SHARED_DATA))
    out = tmp_path / "out"
    files = [str(SAMPLES / "synthetic_10k_halo.csv"), str(SAMPLES / "synthetic_10k_medgan.csv")]
    assert main(["audit", "--real", "mimic3-demo", "--split", "paper", "--synthetic", *files, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "98 patients audited" in printed
    copies = pd.read_csv(out / "audit_copies.csv")
    assert set(copies["synthetic"]) == {"halo", "medgan"}
    assert set(copies["comparison"]) == {"sample", "marginals"}
    assert set(copies["role"]) == {"train-list", "test-list"}
    train = copies[(copies["role"] == "train-list") & (copies["min_codes"] == 1)]
    assert (train["eligible"] == 98).all()
    pairs = pd.read_csv(out / "audit_pairs.csv", dtype=str)
    assert set(pairs["role"]) <= {"train-list", "test-list"}
    assert json.loads((out / AUDIT_MANIFEST).read_text())["split"] == "paper"
    assert (out / "audit.png").stat().st_size > 0
