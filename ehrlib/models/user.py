"""Your own generator through the whole book: the ``ehrlib.generators`` entry points and
``ehrbench reproduce --generator NAME=module:Class``.

Any class with the :class:`ehrlib.models.base.Generator` interface (a subclass, or any class
whose instances have ``fit(train)`` and ``generate(n, seed=...)`` returning an
:class:`ehrlib.Cohort`) can be named:

* on the command line: ``ehrbench reproduce --generator markov=examples.visit_markov:VisitMarkov``
  (repeatable; the module must be importable from the repository root or installed);
* by a package, in its ``pyproject.toml``::

      [project.entry-points."ehrlib.generators"]
      markov = "my_package.markov:VisitMarkov"

Stage ``17_user_generators`` builds each one with no arguments (``Class()``), fits it on the run's
training split and generates the profile's ``n_synthetic`` patients with the stage's seed, each
in a process of its own with a time limit. Its cohort is saved as ``synthetic/user_<NAME>``
(:data:`USER_PREFIX`), so every later stage evaluates it beside the paper's generators and every
table and figure names it ``NAME (user-supplied)``. A generator that raises, returns something
other than a Cohort, returns no patients or more than asked, names a patient with a real subject
id, or runs past the time limit is recorded by name as failed (Table 1, the results page, the
command's summary) and the rest of the run goes on.

Each generator is fenced in: its working directory is a scratch folder of its own (thrown away),
only the cohort ``generate`` returns is collected, a ``fit`` or ``generate`` that changes the
training cohort it was given fails by name (its checksum is compared before and after), files
that appear in the run's ``synthetic/`` folder while it runs are moved to ``refused/`` and never
evaluated, and codes the training data never had (or of the other ICD version) are counted
(:func:`code_report`) on the stage's page and in its Table 1 row. A cohort too small for a metric
fails that generator's row, naming the metric family, and Table 1 is still built.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ehrlib.errors import ConfigError, GeneratorError

#: The entry-point group a package registers its generators in.
ENTRY_POINT_GROUP = "ehrlib.generators"
#: Run-folder names of user generators' cohorts start with this (``synthetic/user_markov.parquet``).
USER_PREFIX = "user_"
#: How tables and figures mark a user generator (``markov (user-supplied)``).
USER_MARK = "user-supplied"
NAME_PATTERN = r"[a-z][a-z0-9_]{0,39}"
#: At most this many characters of what a generator prints are shown on the stage's page.
MAX_PRINTED = 3000
SPEC_PATTERN = r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*"
#: Each generator runs in a scratch folder of its own (its working directory), removed afterwards;
#: only the cohort it returns is collected.
SCRATCH = "work"
#: Files that appear in (or change under) the run's ``synthetic/`` folder while a user generator
#: runs are no generator's output: they are moved to this run subfolder, not evaluated.
REFUSED_DIR = "refused"


@dataclass(frozen=True)
class UserGenerator:
    """A named generator class: ``name`` as the user wrote it, ``spec`` its ``module:Class``."""

    name: str
    spec: str
    origin: str  # "--generator" or "entry point of <distribution>"

    @property
    def key(self) -> str:
        """The name of its cohort (and metrics rows) in the run folder."""
        return USER_PREFIX + self.name


def is_user(key: str) -> bool:
    """True for the run-folder name of a user generator's cohort."""
    return str(key).startswith(USER_PREFIX)


def label(key: str) -> str:
    """``user_markov`` -> ``markov (user-supplied)``."""
    return f"{str(key)[len(USER_PREFIX):]} ({USER_MARK})"


def check(name: str, spec: str, origin: str) -> UserGenerator:
    """A :class:`UserGenerator`, or a :class:`ConfigError` saying what a name or spec must look like."""
    from ehrlib.models import NAMES

    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise ConfigError(f"{origin}: generator name {name!r}; expected lower-case letters, digits and '_' "
                          "(starting with a letter, at most 40), e.g. markov")
    if name in NAMES:
        raise ConfigError(f"{origin}: generator name {name!r} is a built-in generator's; choose another name")
    if not isinstance(spec, str) or not re.fullmatch(SPEC_PATTERN, spec.strip()):
        raise ConfigError(f"{origin}: {name}={spec!r}; expected module:Class, e.g. examples.visit_markov:VisitMarkov")
    return UserGenerator(name, spec.strip(), origin)


def parse(text: str) -> list[UserGenerator]:
    """``"a=pkg.mod:Class, b=other:Gen"`` (the stage parameter; ``--generator`` values) -> generators."""
    out = []
    for item in (t.strip() for t in str(text or "").split(",")):
        if not item:
            continue
        name, sep, spec = item.partition("=")
        if not sep:
            raise ConfigError(f"--generator {item!r}: expected NAME=module:Class, e.g. "
                              "markov=examples.visit_markov:VisitMarkov")
        out.append(check(name.strip(), spec, "--generator"))
    return out


def entry_points(problems: dict | None = None) -> list[UserGenerator]:
    """The generators installed packages register in :data:`ENTRY_POINT_GROUP`. An entry point
    with a bad name or value is left out, its reason put in ``problems`` (by ``user_<name>``)
    when given, else raised as :class:`ConfigError`."""
    from importlib.metadata import entry_points as found

    out = []
    for ep in found(group=ENTRY_POINT_GROUP):
        dist = getattr(getattr(ep, "dist", None), "name", None) or "an installed package"
        try:
            out.append(check(ep.name, ep.value, f"entry point {ep.name!r} of {dist} ({ENTRY_POINT_GROUP})"))
        except ConfigError as exc:
            if problems is None:
                raise
            problems[USER_PREFIX + str(ep.name)] = str(exc)
    return out


def named(text: str = "", problems: dict | None = None) -> list[UserGenerator]:
    """Every user generator of a run: the installed entry points, then those named in ``text``.

    A name on the command line (``text``) takes the place of an entry point of the same name,
    and of two entry points with one name the first found is used; each such case is logged.
    With ``problems`` (a dict), a malformed installed entry point is left out with its reason
    there, so one broken package does not stop a run (see :func:`entry_points`).

    Raises:
        ConfigError: a bad name or spec in ``text``, or one name given twice in it.
    """
    import logging

    out: dict[str, UserGenerator] = {}
    for g in entry_points(problems):
        if g.name in out:
            logging.getLogger("ehrlib.models").warning("%s: %s is used, not %s", g.name, out[g.name].origin, g.origin)
            continue
        out[g.name] = g
    seen = set()
    for g in parse(text):
        if g.name in seen:
            raise ConfigError(f"generator name {g.name!r} is given twice on the command line; choose distinct names")
        seen.add(g.name)
        if g.name in out and out[g.name].spec != g.spec:
            logging.getLogger("ehrlib.models").warning("%s: the command line's %s is used, not %s (%s)", g.name,
                                                       g.spec, out[g.name].spec, out[g.name].origin)
        out[g.name] = g
    return list(out.values())


def load_class(spec: str) -> type:
    """The class ``module:Class`` names, checked to have ``fit`` and ``generate``."""
    import importlib

    module, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise GeneratorError(f"{spec}: module {e.name!r} not found (run from the repository root, or install the "
                             "package that holds it)") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise GeneratorError(f"{spec}: module {module!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise GeneratorError(f"{spec}: {attr!r} is a {type(obj).__name__}, not a class")
    missing = [m for m in ("fit", "generate") if not callable(getattr(obj, m, None))]
    if missing:
        raise GeneratorError(f"{spec}: class {obj.__name__} has no {' or '.join(missing)} method; expected the "
                             "ehrlib.models.base.Generator interface (fit(train), generate(n, seed))")
    return obj


def _child_env() -> dict:
    """This process's environment, with its import path (so the child imports the same code)."""
    paths = [p or os.getcwd() for p in sys.path]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(p for p in paths if os.path.isdir(p)))}


def fit_and_generate(generator: UserGenerator, train_path, n: int, seed: int, timeout_s: float, real_ids=()):
    """Fit ``generator`` on the cohort in ``train_path`` and generate ``n`` patients with ``seed``,
    in a process of its own stopped after ``timeout_s`` seconds; returns the checked Cohort.

    Raises:
        GeneratorError: naming the generator and what went wrong (its exception, the phase it
            raised in, a wrong return type, a real subject id, too many or no patients, the
            time limit, or the process dying).
    """
    from ehrlib.cohort import Cohort

    who = f"{generator.name} ({generator.spec})"
    with tempfile.TemporaryDirectory(prefix="ehrlib-user-") as tmp:
        out, err = Path(tmp) / "synthetic.parquet", Path(tmp) / "error.json"
        scratch = Path(tmp) / SCRATCH  # its working directory: what it writes there is thrown away
        scratch.mkdir()
        cmd = [sys.executable, "-m", "ehrlib.models.user", generator.spec, str(Path(train_path).resolve()), str(n),
               str(seed), str(out), str(err)]
        log = Path(tmp) / "output.txt"
        with open(log, "wb") as sink:  # what the generator prints goes to the page, not the console
            proc = subprocess.Popen(cmd, env=_child_env(), start_new_session=True, stdout=sink,
                                    stderr=subprocess.STDOUT, cwd=scratch)
            try:
                code = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _stop(proc)
                code = None
        printed = log.read_text(errors="replace").strip()
        if printed:
            print(f"{generator.name} printed:\n{printed[-MAX_PRINTED:]}")
        if code is None:
            raise GeneratorError(f"{who}: did not finish fit and generate within {timeout_s:g} s; stopped")
        if err.is_file():
            failure = json.loads(err.read_text())
            raise GeneratorError(f"{who}: {failure['phase']} failed: {failure['error']}")
        if code != 0 or not out.is_file():
            raise GeneratorError(f"{who}: its process ended with exit code {code} before returning a cohort")
        cohort = Cohort.load(out)
    return check_cohort(generator, cohort, n, real_ids)


def check_cohort(generator: UserGenerator, cohort, n: int, real_ids=()):
    """The generated cohort if it is usable: 1..n patients, none with a real subject id."""
    who = f"{generator.name} ({generator.spec})"
    if cohort.n_patients == 0:
        raise GeneratorError(f"{who}: generate({n}) returned no patients")
    if cohort.n_patients > n:
        raise GeneratorError(f"{who}: generate({n}) returned {cohort.n_patients} patients, more than asked")
    real = set(map(str, real_ids))
    leaked = [s for s in cohort.subject_ids if s in real]
    if leaked:
        raise GeneratorError(f"{who}: returns records with real subject ids ({len(leaked)}, e.g. {leaked[0]!r}); a "
                             "generator must name its patients with synthetic ids (Cohort.renamed, as "
                             "Generator.generate does)")
    return cohort


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the generator's children go too
    except ProcessLookupError:
        pass
    proc.wait()


class TrainingMutated(GeneratorError):
    """A user generator changed the training cohort it was given."""


def _unchanged(train, before: str, phase: str) -> None:
    """The training cohort still has the checksum it had before ``fit``; else :class:`TrainingMutated`."""
    try:
        after = train.checksum()
    except Exception as exc:  # a frame changed so much that it cannot be hashed
        after = f"unreadable ({type(exc).__name__})"
    if after != before:
        raise TrainingMutated(f"{phase} changed the training cohort it was given (checksum {before[:12]} before fit, "
                              f"{after[:12]} after {phase}); the run's data file is intact: a generator must not modify "
                              "its input (copy train.events before changing it)")


def code_report(cohort, train) -> dict:
    """Codes of ``cohort`` that ``train`` never had: how many distinct codes and events, how many of
    them have the other ICD version's shape (``I10`` in an ICD-9 run), and a few examples."""
    from ehrlib.cohort import CODE, CODE_SHAPES

    known = set(train.events[CODE].astype(str))
    codes = cohort.events[CODE].astype(str)
    unseen = codes[~codes.isin(known)]
    distinct = sorted(set(unseen))
    shapes = {v: re.compile(CODE_SHAPES[v]) for v in (9, 10)}
    version = next((v for v in (9, 10) if all(shapes[v].fullmatch(c) for c in known)), None)
    other = [] if version is None else [c for c in distinct if shapes[19 - version].fullmatch(c)
                                        and not shapes[version].fullmatch(c)]
    return {"unseen_codes": len(distinct), "unseen_events": int(len(unseen)), "other_icd_version": len(other),
            "icd_version": version, "examples": distinct[:5]}


def code_note(report: dict) -> str:
    """The one-line reading of :func:`code_report` (``""`` when every code was seen in training)."""
    if not report.get("unseen_codes"):
        return ""
    other = report.get("other_icd_version", 0)
    version = report.get("icd_version")
    return (f"{report['unseen_codes']} code(s) unseen in training ({report['unseen_events']} event(s), e.g. "
            f"{', '.join(report['examples'][:3])})" + (f", {other} of them ICD-{19 - version}-shaped in an "
                                                       f"ICD-{version} run" if other else ""))


def _child(spec: str, train_path: str, n: int, seed: int, out: str, err: str) -> int:
    """In the child process: build, fit, generate, save; a failure is written to ``err``."""
    phase = "import"
    try:
        from ehrlib.cohort import Cohort

        cls = load_class(spec)
        phase = "construction"
        generator = cls()
        phase = "fit"
        train = Cohort.load(train_path)
        before = train.checksum()
        generator.fit(train)
        _unchanged(train, before, "fit")
        phase = "generate"
        cohort = generator.generate(n, seed=seed)
        _unchanged(train, before, "generate")
        if not isinstance(cohort, Cohort):
            raise GeneratorError(f"returned a {type(cohort).__name__}, expected an ehrlib.Cohort")
        phase = "saving the cohort"
        cohort.validate().save(out)
    except BaseException as exc:  # everything a user's code can raise is reported, by phase
        text = str(exc).splitlines()[0][:300] if str(exc) else ""
        Path(err).write_text(json.dumps({"phase": phase, "error": f"{type(exc).__name__}: {text}".rstrip(": ")}))
        return 1
    return 0


if __name__ == "__main__":
    spec, train, n, seed, out, err = sys.argv[1:7]
    sys.exit(_child(spec, train, int(n), int(seed), out, err))
