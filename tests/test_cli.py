"""``ehrbench``: library errors are one line with exit status 2; the traceback only with --debug."""
import pytest

from ehrlib.cli import _synthetic_names, main
from ehrlib.errors import EhrlibError


@pytest.mark.parametrize("argv, words", [
    (["stats", "no/such/file.csv"], ["no/such/file.csv"]),
    (["reproduce", "--only", "99", "--no-book"], ["--only 99", "matches no notebook"]),
    (["reproduce", "--set", "nonsense=1", "--only", "30", "--no-book"], ["nonsense", "no selected notebook"]),
])
def test_library_errors_are_one_line_with_exit_status_2(argv, words, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ehrbench: error: ") and "Traceback" not in err
    for w in words:
        assert w in err


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("EHRLIB_RUNS_DIR", str(tmp_path / "runs"))
    with pytest.raises(EhrlibError):
        main(["--debug", "reproduce", "--only", "99", "--no-book"])


def test_a_malformed_setting_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "--set", "novalue"])
    assert exc.value.code == 2 and "KEY=VALUE" in capsys.readouterr().err


def test_synthetic_files_with_the_same_stem_get_distinct_names(tmp_path):
    a, b = tmp_path / "a" / "halo.csv", tmp_path / "b" / "halo.csv"
    names = _synthetic_names([str(a), str(b)])
    assert len(names) == 2 and set(names.values()) == {str(a), str(b)}
    assert _synthetic_names(["x/halo.csv", "y/gpt.csv"]) == {"halo": "x/halo.csv", "gpt": "y/gpt.csv"}
    with pytest.raises(EhrlibError, match="twice"):
        _synthetic_names([str(a), str(a)])
