"""Saved model folders: all-or-nothing saves, checked loads, one ModelLoadError for every bad folder."""
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from ehrlib import models
from ehrlib.data import simulate
from ehrlib.errors import EhrlibError, GeneratorError, ModelLoadError
from ehrlib.io import atomic_write, clean_stale_temporaries, frames_checksum
from ehrlib.models.base import META

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cohorts():
    return simulate(80, seed=1), simulate(80, seed=2)


def fitted(train):
    return models.get("marginals").fit(train)


def generated(gen) -> str:
    return frames_checksum(gen.generate(30, seed=1).events)


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.glob(f".{folder.name}.*"))


def test_save_writes_a_manifest_with_every_files_sha256(tmp_path, cohorts):
    d = fitted(cohorts[0]).save(tmp_path / "m")
    meta = json.loads((d / META).read_text())
    assert set(meta["files"]) == {"marginals.npz"} and len(meta["files"]["marginals.npz"]) == 64
    assert meta["holds_real_records"] is False
    assert temporaries(d) == []


@pytest.mark.parametrize("damage, words", [
    ("no_folder", "no such model folder"),
    ("a_file", "a file, not a model folder"),
    ("no_meta", "generator.json is missing"),
    ("bad_json", "not valid JSON"),
    ("not_an_object", "expected a JSON object"),
    ("old_format", "without a file manifest"),
    ("unknown_model", "unknown model 'vae'"),
    ("truncated", "'marginals.npz' does not match the sha256"),
    ("corrupt_same_size", "'marginals.npz' does not match the sha256"),
    ("missing_file", "'marginals.npz' listed in generator.json is missing"),
    ("changed_config_field", "unknown Config field(s) ['epochs']"),
    ("another_models_files", "cannot read the training records from 'train.parquet'"),
])
def test_a_bad_folder_is_one_model_load_error_naming_folder_and_problem(tmp_path, cohorts, damage, words):
    d = fitted(cohorts[0]).save(tmp_path / "m")
    meta_path, data = d / META, d / "marginals.npz"
    meta = json.loads(meta_path.read_text())
    if damage == "no_folder":
        d = tmp_path / "nothing"
    elif damage == "a_file":
        d = data
    elif damage == "no_meta":
        meta_path.unlink()
    elif damage == "bad_json":
        meta_path.write_text(meta_path.read_text()[:40])
    elif damage == "not_an_object":
        meta_path.write_text("[1, 2]")
    elif damage == "old_format":
        del meta["files"], meta["format"]
        meta_path.write_text(json.dumps(meta))
    elif damage == "unknown_model":
        meta_path.write_text(json.dumps({**meta, "name": "vae"}))
    elif damage == "truncated":
        data.write_bytes(data.read_bytes()[:100])
    elif damage == "corrupt_same_size":
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        data.write_bytes(bytes(raw))
    elif damage == "missing_file":
        data.unlink()
    elif damage == "changed_config_field":
        meta_path.write_text(json.dumps({**meta, "config": {"epochs": 3}}))
    elif damage == "another_models_files":  # a memorizer's generator.json over a marginals folder
        meta_path.write_text(json.dumps({**meta, "name": "memorizer"}))
    with pytest.raises(ModelLoadError) as err:
        models.load(d)
    message = str(err.value)
    assert words in message and str(d) in message
    assert "weights_only" not in message


def test_neural_weights_of_another_config_name_the_file(tmp_path, cohorts):
    pytest.importorskip("torch")
    gen = models.get("medgan", "smoke", ae_epochs=1, gan_epochs=1, progress=False, device="cpu").fit(cohorts[0])
    d = gen.save(tmp_path / "g")
    meta = json.loads((d / META).read_text())
    meta["config"]["embedding_dim"] = 64  # the weights were saved with 128
    (d / META).write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match=r"cannot read the encoder weights from 'encoder.safetensors'"):
        models.load(d)
    meta["config"]["embedding_dim"] = -1
    (d / META).write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match=r"'config'.*embedding_dim=-1"):
        models.load(d)
    (d / "generator.safetensors").write_bytes(b"\0" * 10)
    with pytest.raises(ModelLoadError, match="'generator.safetensors' does not match the sha256"):
        models.load(d)


def test_an_interrupted_save_keeps_the_old_model_whole(tmp_path, cohorts, monkeypatch):
    d = fitted(cohorts[0]).save(tmp_path / "m")
    before = generated(models.load(d))
    other = fitted(cohorts[1])

    def half_then_interrupt(self, folder):
        (folder / "marginals.npz").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(type(other), "_save_state", half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        other.save(d)
    assert generated(models.load(d)) == before
    assert temporaries(d) == []


def test_a_killed_save_keeps_the_old_model_and_its_leftovers_are_cleaned(tmp_path, cohorts):
    d = fitted(cohorts[0]).save(tmp_path / "m")
    before = generated(models.load(d))
    script = textwrap.dedent(f"""
        import os, signal
        from ehrlib import models
        from ehrlib.data import simulate
        from ehrlib.models.reference import Marginals

        def half_then_die(self, folder):
            (folder / "marginals.npz").write_bytes(b"partial")
            os.kill(os.getpid(), signal.SIGKILL)

        Marginals._save_state = half_then_die
        models.get("marginals").fit(simulate(80, seed=2)).save({str(d)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert [n for n in temporaries(d) if n.startswith(".m.new-")]  # the dead save's folder is left...
    assert generated(models.load(d)) == before  # ...and the model is the old one, whole
    fitted(cohorts[1]).save(d)
    assert temporaries(d) == []  # the next save removed the dead process's folder
    assert generated(models.load(d)) == generated(fitted(cohorts[1]))


def test_two_processes_saving_one_folder_never_leave_a_mix(tmp_path, cohorts):
    d = tmp_path / "m"
    script = textwrap.dedent("""
        import sys
        from ehrlib import models
        from ehrlib.data import simulate

        gen = models.get("marginals").fit(simulate(80, seed=int(sys.argv[1])))
        for _ in range(60):
            gen.save(sys.argv[2])
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(seed), str(d)], env=env) for seed in (1, 2)]
    expected = {generated(fitted(c)) for c in cohorts}
    loads = errors = 0
    while any(p.poll() is None for p in procs):
        try:
            assert generated(models.load(d)) in expected
            loads += 1
        except ModelLoadError:  # caught mid-swap: an error, never a mix
            errors += 1
    assert all(p.wait(timeout=120) == 0 for p in procs)
    assert loads + errors > 0
    assert generated(models.load(d)) in expected
    assert temporaries(d) == []


def test_save_refuses_to_replace_a_folder_that_is_not_a_model(tmp_path, cohorts, monkeypatch):
    d = tmp_path / "project"
    (d / "src").mkdir(parents=True)
    (d / "notes.txt").write_text("mine")
    with pytest.raises(GeneratorError, match="not a saved generator"):
        fitted(cohorts[0]).save(d)
    assert (d / "notes.txt").read_text() == "mine" and (d / "src").is_dir()
    assert temporaries(d) == []
    with pytest.raises(GeneratorError, match="not a folder"):
        fitted(cohorts[0]).save(d / "notes.txt")
    assert (d / "notes.txt").read_text() == "mine"
    calls = []
    monkeypatch.setattr(models.REFERENCE["marginals"], "_fit", lambda self, t, o: calls.append(1))
    with pytest.raises(GeneratorError, match="not a saved generator"):
        models.fit_or_load("marginals", cohorts[0], d)
    assert calls == [] and (d / "notes.txt").read_text() == "mine"


def test_stale_atomic_write_temporaries_of_dead_processes_are_cleaned(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".checkpoint.pt.{pid}.abc123.tmp"
    stale.write_bytes(b"half")
    live = tmp_path / f".checkpoint.pt.{os.getpid()}.def456.tmp"
    live.write_bytes(b"being written")
    other = tmp_path / ".notes.txt.tmp"
    other.write_text("not ours")
    assert clean_stale_temporaries(tmp_path, "checkpoint.pt") == [stale]
    assert live.exists() and other.exists()
    atomic_write(tmp_path / "x.txt", lambda t: Path(t).write_text("ok"))
    assert (tmp_path / "x.txt").read_text() == "ok"


def test_fit_or_load_records_the_training_key_in_the_model_folder(tmp_path, cohorts):
    train = cohorts[0]
    first = models.fit_or_load("memorizer", train, tmp_path / "mem")
    meta = json.loads((tmp_path / "mem" / META).read_text())
    assert meta["training_key"] == first.training_key(train)
    assert meta["holds_real_records"] is True
    again = models.fit_or_load("memorizer", train, tmp_path / "mem")
    pd.testing.assert_frame_equal(first.generate(10, seed=0).events, again.generate(10, seed=0).events)
    (tmp_path / "mem" / "train.parquet").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match=r"sha256.*force=True"):
        models.fit_or_load("memorizer", train, tmp_path / "mem")
    models.fit_or_load("memorizer", train, tmp_path / "mem", force=True)
    assert isinstance(models.load(tmp_path / "mem"), models.REFERENCE["memorizer"])


def test_model_load_error_is_a_generator_error_and_an_ehrlib_error():
    assert issubclass(ModelLoadError, GeneratorError) and issubclass(ModelLoadError, EhrlibError)


def test_a_save_killed_between_its_two_renames_gives_back_the_old_model(tmp_path, cohorts):
    d = fitted(cohorts[0]).save(tmp_path / "m")
    before = generated(models.load(d))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    os.rename(d, tmp_path / f".m.old-{int(dead.stdout)}-abcd1234")  # what a kill after the first rename leaves
    assert generated(models.load(d)) == before
    assert temporaries(d) == []
