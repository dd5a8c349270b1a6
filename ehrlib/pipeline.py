"""The work of each stage, one call per notebook: train, generate, evaluate, assemble.

Each function takes the notebook's :class:`ehrlib.runs.Stage` (inputs, typed settings, where
outputs go) and calls the library layers below it; the notebooks stay four cells long.
"""
from __future__ import annotations

import logging
import warnings

import pandas as pd

from ehrlib import stages
from ehrlib.errors import EhrlibError
from ehrlib.runs import CACHE_DIR, Stage

log = logging.getLogger("ehrlib.pipeline")


def train(stage: Stage, model: str, *, saved_as: str | None = None, force: bool = False, nproc: int = 1,
          **overrides):
    """Fit ``model`` on the run's training split (or load it when up to date), save it, show its
    training curves and one summary line. Returns the generator.

    ``nproc > 1`` trains with that many processes under ``torchrun`` (one per GPU on a CUDA
    machine; ``ehrlib.models.distributed``) and then loads the saved model here.
    """
    from ehrlib import models, plots

    saved_as = saved_as or model
    if "progress" not in overrides:
        from ehrlib import book

        overrides["progress"] = not book.in_notebook()  # live bars in a terminal only
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        from ehrlib.errors import ConfigError

        raise ConfigError(f"nproc={nproc!r}: expected a positive integer (processes for training)")
    if nproc > 1:
        from ehrlib.models.distributed import launch_fit

        stage.train  # noqa: B018  (records the training split as the stage's input)
        launch_fit(model, stage.run.path / "data" / "train.parquet", stage.model_dir(saved_as), stage.profile, nproc,
                   overrides={"seed": stage.seed, **{k: v for k, v in overrides.items() if k != "progress"}},
                   resume=not force, stream=True)
        force = False  # the model just trained is up to date: load it below
    generator = models.fit_or_load(model, stage.train, stage.model_dir(saved_as), profile=stage.profile, force=force,
                                   seed=stage.seed, **overrides)
    history = list(getattr(generator, "history", []) or [])
    stopping = list(getattr(generator, "stopping", []) or [])
    stage.record(**{saved_as: {"epochs": len(history), "stopping": stopping}})
    if history:
        label = plots.model_label(saved_as)
        print(f"{label}: {len(history)} epochs in {history[-1].get('seconds', float('nan')):.0f} s of training")
        for s in stopping:
            print(f"  {stopping_line(s)}")
        stage.save_figure(f"training_{saved_as}", plots.training_curves(history, title=label, stopping=stopping))
    return generator


def phase_epoch(s: dict, epoch):
    """A training epoch (counted over all phases, as the training log does) as the epoch of phase
    ``s`` (1 = its first); ``None`` stays ``None``."""
    return None if epoch is None else int(epoch) - (int(s["last_epoch"]) - int(s["epochs"]))


def stopping_line(s: dict) -> str:
    """One phase's end in words, e.g. ``adversarial: 14 of 30 epochs, stopped by its criterion (fidelity);
    best epoch 10 restored``, or why it ran to its cap."""
    head = f"{s['phase']}: {s['epochs']} of {s['cap']} epochs"
    if not s.get("criterion"):
        return f"{head}, fixed epochs"
    best = f"best epoch {phase_epoch(s, s['best_epoch'])} restored"
    if s["stopped_by"] == "patience":
        return f"{head}, stopped by its criterion ({s['criterion']}); {best}"
    if s["best_epoch"] == s["last_epoch"]:
        return (f"{head}, ran to its cap with its {s['criterion']} still improving (a larger budget would train "
                "further: see the curve)")
    return f"{head}, ran to its cap before its patience ran out ({s['criterion']}); {best}"


def learning_curves(stage: Stage) -> pd.DataFrame:
    """The learning-curves figure (every saved neural model's fidelity checks over training
    seconds) and the table of how each training ended; returns that table."""
    from ehrlib import plots
    from ehrlib.models.neural import training_log

    logs = {name: training_log(d) for name, d in stage.saved_models(neural=True).items()}
    if not logs:
        raise EhrlibError(f"run {stage.run.name}: no trained neural model in {stage.run.path / 'models'}; run the "
                          f"training stages ({', '.join(stages.TRAINING.values())}) first")
    rows = []
    for name, log_ in logs.items():
        hist = {h["epoch"]: h for h in log_["history"]}
        for s in log_["stopping"]:
            last = hist.get(s["last_epoch"], {})
            # the check at the best epoch, or the last one before it (checks run every few epochs)
            checked = [h for h in log_["history"] if "val_r2" in h and h["epoch"] <= (s.get("best_epoch") or -1)]
            best = checked[-1] if checked else {}
            def shown(v, fmt="{:.3f}"):
                return "–" if v is None else fmt.format(v)

            rows.append({"model": plots.model_label(name), "phase": s["phase"], "epochs": s["epochs"], "cap": s["cap"],
                         "ended by": "its criterion" if s["stopped_by"] == "patience" else "its cap",
                         "criterion": s.get("criterion") or "fixed epochs",
                         "best epoch": shown(phase_epoch(s, s.get("best_epoch")), "{}"), "training s": shown(last.get("seconds"), "{:.1f}"),
                         "val R² at best": shown(best.get("val_r2")),
                         "distinct / val at best": shown(best.get("val_distinct")),
                         "checked at epoch": shown(phase_epoch(s, best.get("epoch")), "{}")})
    table = pd.DataFrame(rows)
    stage.save_table("table_stopping", table)
    stage.save_figure("fig_learning", plots.learning_curves(logs))
    return table


def split_cohort(stage: Stage, cohort, split: str = "random", n_holdout: int = 0) -> dict:
    """Split ``cohort`` into the run's ``train``, ``holdout`` and ``reference`` and save them.

    ``split="random"``: seeded subject-level splits with the profile's sizes (``n_holdout`` > 0
    overrides the holdout size). ``split="paper"``: the paper's released train/test id lists
    (MIMIC-III ``SUBJECT_ID``s; a warning says how many listed ids the data lacks); the
    ``reference`` split is then the patients on neither list, and when there are none the
    ``holdout`` reference generator is disabled with a message (stage 15). ``split="meds"`` (with
    ``data="meds:PATH"``): the dataset's own ``metadata/subject_splits.parquet`` (``train``,
    ``held_out`` as holdout, ``tuning`` as reference; :func:`ehrlib.data.meds_splits`).
    """
    from ehrlib.data import make_splits, paper_split
    from ehrlib.errors import CohortError, ConfigError

    data = stage.settings.data
    if split == "random":
        splits = make_splits(cohort, n_holdout or data.n_holdout, data.n_reference, seed=stage.seed)
    elif split == "paper":
        ps = paper_split(cohort)
        print(ps.summary().to_string(index=False))
        splits = {"train": ps.train, "holdout": ps.holdout}
        try:
            splits["reference"] = ps.reference
        except CohortError as exc:
            print(f"No reference split: {exc}. The holdout reference generator is disabled for this run.")
    elif split == "meds":
        from ehrlib.data import meds_splits

        kind, _, path = str(stage.params.get("data", "")).partition(":")
        if kind not in ("meds", "meds-icd10") or not path:
            raise ConfigError(f"split='meds' uses a MEDS dataset's own splits: expected data='meds:PATH', "
                              f"got data={stage.params.get('data')!r}")
        splits = meds_splits(path, cohort)
        if "reference" not in splits:
            print("The MEDS dataset has no 'tuning' split: no reference split, so the holdout reference generator is "
                  "disabled for this run.")
    else:
        raise ConfigError(f"split={split!r}: expected 'random', 'paper' or 'meds'")
    stage.record(split=split, **{f"n_{k}": v.n_patients for k, v in splits.items()})
    return stage.save_splits(**splits)


def generate(stage: Stage, model: str = "all", n: int = 0) -> pd.DataFrame:
    """Generate ``n`` patients (0: the profile's ``n_synthetic``) with every saved neural model
    (or the one named), save each cohort, and return the summary (Table 12 rows).

    A model that fails to generate is a recorded outcome, not the end of the run: its row says
    ``failed`` with the reason, the stage's manifest entry lists it, and the other models go on.
    """
    from ehrlib import models
    from ehrlib.metrics.structure import summary

    n = n or stage.settings.evaluation.n_synthetic
    folders = stage.saved_models(neural=True)
    if model != "all":
        if model not in folders:
            from ehrlib.errors import RunError

            raise RunError(f"model={model!r}: no saved model of that name in run {stage.run.name!r} "
                           f"(saved: {', '.join(folders) or 'none'})")
        folders = {model: folders[model]}
    rows, failed = [], {}
    for name, folder in folders.items():
        try:
            generator = models.load(folder)
            cohort = generator.generate(n, seed=stage.seed)
        except EhrlibError as exc:
            failed[name] = str(exc)
            rows.append({"dataset": name, "status": "failed", "reason": str(exc)})
            continue
        stage.save_synthetic(name, cohort)
        drawn = getattr(generator, "last_drawn", None) or cohort.n_patients
        rows.append({"dataset": name, "status": "ok", "reason": "", **summary(cohort),
                     "empty_drawn": 1.0 - cohort.n_patients / drawn})
    stage.record(n_synthetic=n, failed=failed)
    for name, reason in failed.items():
        log.error("%s failed to generate: %s", name, reason)
    from ehrlib.models import user

    supplied = stage.glob("synthetic", f"{user.USER_PREFIX}*.parquet")  # stage 17's cohorts
    if not supplied and (not rows or len(failed) == len(rows)):  # nothing generated: later stages have no input
        from ehrlib.errors import RunError

        raise RunError(f"run {stage.run.name!r}: no synthetic cohort generated: " + (
            "; ".join(f"{k}: {v}" for k, v in failed.items()) if failed else
            f"no trained model in {stage.run.path / 'models'}; run the training stages "
            f"({', '.join(stages.TRAINING.values())}) first"))
    return pd.DataFrame(rows)


#: The ``demo`` profile's convergence floors (book: *Training to convergence*): prevalence R² against
#: train for the models listed, distinct codes as a share of the holdout reference's on as many
#: records (CorGAN, the paper's weakest model, a lower one), and empty records drawn before redrawing.
FLOORS = {"r2": 0.80, "distinct": 0.40, "distinct_corgan": 0.20, "empty_drawn": 0.01}
R2_FLOOR_MODELS = ("medgan", "medgan_count", "promptehr", "halo", "gpt")


def convergence_floors(stage: Stage, generated: pd.DataFrame) -> pd.DataFrame:
    """Each generated model against the convergence floors (:data:`FLOORS`, set for the ``demo``
    profile): prevalence R² against train, distinct codes over the holdout reference's on the same
    number of records, the share of empty records drawn (``generated``: :func:`generate`'s table), and
    whether each training phase ended by its criterion or its cap."""
    import numpy as np

    from ehrlib.cohort import Cohort
    from ehrlib.metrics.prevalence import prevalence_metrics
    from ehrlib.models.neural import training_log
    from ehrlib.plots import model_label

    folder = stage.run.path / "synthetic"
    reference, train = stage.synthetic_cohort("holdout"), stage.train
    if reference is None:
        raise EhrlibError(f"run {stage.run.name}: no holdout reference cohort in {folder} (stage "
                          f"{stages.REFERENCE_GENERATORS}) to compare distinct codes with")
    folders = stage.saved_models(neural=True)
    rows = []
    for rec in generated.to_dict("records"):
        name = rec["dataset"]
        if rec["status"] != "ok":
            rows.append({"model": model_label(name), "id": name, "status": "failed"})
            continue
        syn = Cohort.load(folder / f"{name}.parquet")  # written by generate(), this stage's output
        n = min(syn.n_patients, reference.n_patients)
        pick = np.random.default_rng(stage.seed).permutation
        ref_n = reference.subset(reference.subject_ids[np.sort(pick(reference.n_patients)[:n])])
        syn_n = syn.subset(syn.subject_ids[np.sort(pick(syn.n_patients)[:n])])
        r2 = prevalence_metrics(train, syn)["prevalence_r2"]
        distinct = syn_n.events["code"].nunique() / max(ref_n.events["code"].nunique(), 1)
        floor = FLOORS["distinct_corgan"] if name == "corgan" else FLOORS["distinct"]
        ends = [s["stopped_by"] for s in training_log(folders[name])["stopping"] if s["cap"]] if name in folders else []
        row = {"model": model_label(name), "id": name, "status": "ok", "prevalence R² vs train": r2,
               "R² floor": FLOORS["r2"] if name in R2_FLOOR_MODELS else "–",
               "distinct codes / holdout's": distinct, "distinct floor": floor,
               "empty drawn": rec["empty_drawn"], "empty ceiling": FLOORS["empty_drawn"],
               "phases ended by": ", ".join("criterion" if e == "patience" else "cap" for e in ends)}
        met = ((name not in R2_FLOOR_MODELS or r2 >= FLOORS["r2"]) and distinct >= floor
               and rec["empty_drawn"] <= FLOORS["empty_drawn"])
        row["meets floors"] = "yes" if met else "no"
        rows.append(row)
    return pd.DataFrame(rows)


def reference_generators(stage: Stage) -> pd.DataFrame:
    """Fit the calibration rows (``holdout``, ``marginals``, ``memorizer``), save them (labelled
    as holding real records where they do), and save their synthetic cohorts."""
    from ehrlib import models
    from ehrlib.metrics.structure import summary

    n = stage.settings.evaluation.n_synthetic
    rows, real_records = [], []
    names = ["holdout", "marginals", "memorizer"]
    if not stage.has("data", "reference.parquet"):
        print("This run has no reference split (the paper's split leaves no patient outside its lists): "
              "the holdout reference generator is skipped.")
        names.remove("holdout")
    for name in names:
        extra = {"records": stage.reference} if name == "holdout" else {}
        generator = models.get(name, **extra).fit(stage.train)
        generator.save(stage.model_dir(name))
        size = min(n, stage.reference.n_patients) if name == "holdout" else n
        cohort = generator.generate(size, seed=stage.seed)
        stage.save_synthetic(name, cohort)
        if generator.holds_real_records:
            real_records.append(name)
        rows.append({"dataset": name, "holds_real_records": generator.holds_real_records, **summary(cohort)})
    # their saved models and cohorts are real records (renamed): labelled so in the manifest
    stage.record(n_synthetic=n, holds_real_records=real_records)
    return pd.DataFrame(rows)


def user_generators(stage: Stage, generators: str = "", timeout_s: float = 3600) -> pd.DataFrame:
    """Fit and generate with every user generator (the ``ehrlib.generators`` entry points and
    ``generators``, ``"NAME=module:Class,..."``), each in a process of its own stopped after
    ``timeout_s`` seconds, and save their cohorts as ``synthetic/user_<NAME>`` for every later
    stage (:mod:`ehrlib.models.user`). Returns one row per generator (``ok`` or ``failed``).

    A generator that fails is recorded by name with the reason (Table 1 and the results page list
    it, ``ehrbench reproduce`` reports it) and leaves no cohort behind; the others go on. Cohorts
    of user generators no longer named are removed, so the run evaluates only those of this stage.
    """
    from ehrlib.errors import ConfigError
    from ehrlib.metrics.structure import summary
    from ehrlib.models import user

    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise ConfigError(f"timeout_s={timeout_s!r}: expected a positive number of seconds")
    failed: dict[str, str] = {}
    chosen = user.named(generators, problems=failed)  # a broken installed entry point fails alone
    keys = {g.key for g in chosen}
    folder = stage.run.path / "synthetic"
    for old in stage.glob("synthetic", f"{user.USER_PREFIX}*.parquet"):
        if old.stem not in keys:
            print(f"{old.stem}: no longer named; its cohort from an earlier run is removed")
            old.unlink()
    if not chosen:
        print("No user generator named (ehrbench reproduce --generator NAME=module:Class, or the "
              f"{user.ENTRY_POINT_GROUP!r} entry points).")
    n = stage.settings.evaluation.n_synthetic
    train = stage.train
    real_ids = set(train.subject_ids) | set(stage.holdout.subject_ids)
    if stage.has("data", "reference.parquet"):
        real_ids |= set(stage.reference.subject_ids)
    rows = [{"dataset": key, "spec": "", "status": "failed", "reason": reason} for key, reason in failed.items()]
    codes = {}
    for g in chosen:
        print(f"{g.name}: {g.spec} ({g.origin})")
        before = _folder_state(folder)
        try:
            cohort = user.fit_and_generate(g, stage.run.path / "data" / "train.parquet", n, stage.seed, timeout_s,
                                           real_ids)
            _no_strays(stage, folder, before, g)
        except Exception as exc:  # whatever one generator does, it fails alone (recorded, shown, reported)
            failed[g.key] = str(exc) if isinstance(exc, EhrlibError) else f"{g.name}: {type(exc).__name__}: {exc}"
            (folder / f"{g.key}.parquet").unlink(missing_ok=True)
            rows.append({"dataset": g.key, "spec": g.spec, "status": "failed", "reason": failed[g.key]})
            continue
        stage.save_synthetic(g.key, cohort)
        codes[g.key] = user.code_report(cohort, train)
        note = user.code_note(codes[g.key])
        if note:
            print(f"{g.name}: {note}; they are evaluated as they are (Table 1's row says so)")
        rows.append({"dataset": g.key, "spec": g.spec, "status": "ok", "reason": "", **summary(cohort),
                     "unseen_codes": codes[g.key]["unseen_codes"],
                     "other_icd_version_codes": codes[g.key]["other_icd_version"]})
    stage.record(n_synthetic=n, user_generators={g.key: g.spec for g in chosen}, failed=failed, codes=codes)
    for name, reason in failed.items():
        log.error("%s failed: %s", name, reason)
    return pd.DataFrame(rows, columns=None if rows else ["dataset", "spec", "status", "reason"])


def _folder_state(folder: Path) -> dict:
    """``{name: (size, mtime_ns)}`` of the files in ``folder`` (``{}`` when there is none)."""
    if not folder.is_dir():
        return {}
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()}


def _no_strays(stage: Stage, folder: Path, before: dict, g) -> None:
    """Files that appeared in the run's ``synthetic/`` folder while ``g`` ran are no generator's
    output: moved to ``refused/`` (kept, never evaluated); a changed cohort is named. Either fails
    ``g`` (a :class:`GeneratorError` naming the files)."""
    import os

    from ehrlib.errors import GeneratorError
    from ehrlib.models import user

    after = _folder_state(folder)
    new = sorted(set(after) - set(before))
    changed = sorted(k for k in set(after) & set(before) if after[k] != before[k])
    if not new and not changed:
        return
    if new:
        refused = stage.run.dir(user.REFUSED_DIR)
        for name in new:
            os.replace(folder / name, refused / name)
    raise GeneratorError(
        f"{g.name} ({g.spec}): wrote into the run's synthetic/ folder while it ran, which only the stages write: "
        + "; ".join(([f"new {', '.join(new)} (moved to {user.REFUSED_DIR}/, not evaluated)"] if new else [])
                    + ([f"changed {', '.join(changed)} (rerun the stage that made it, with --force)"] if changed else []))
        + "; only the cohort generate returns is collected")


def _protocols(ev) -> tuple[str, ...]:
    from ehrlib.metrics import names

    protocols = tuple(p.strip() for p in ev.protocols.split(",") if p.strip())
    for p in protocols:
        names.check_protocol(p)
    return protocols


#: The run folder's subfolder holding the run's stored evaluation context (a cache: removing it
#: only makes the next evaluation stage build it again).
CONTEXT_DIR = CACHE_DIR


def evaluation_context(stage: Stage, synthetic: dict | None = None, *, reference: bool = False):
    """The evaluation context of ``synthetic`` (default: every synthetic cohort of the run), with
    the reference split when ``reference`` and the run has one.

    It is a part (:meth:`~ehrlib.metrics.context.EvaluationContext.subset`) of the run's one
    context (train, holdout, reference, every synthetic cohort), which the first evaluation stage
    builds and stores in the run folder and the others load
    (:func:`ehrlib.metrics.context.shared_context`); :func:`record_context` notes in the stage's
    manifest entry what this stage encoded. Returns ``(run_context, context)``.
    """
    from ehrlib.metrics.context import shared_context

    has_reference = stage.has("data", "reference.parquet")
    everything = stage.synthetic
    whole = shared_context(stage.run.path / CONTEXT_DIR, stage.train, stage.holdout, everything,
                           stage.reference if has_reference else None,
                           n_bootstrap=stage.settings.evaluation.n_bootstrap, seed=stage.seed)
    part = whole.subset(list(everything if synthetic is None else synthetic), reference=reference and has_reference)
    return whole, part


def record_context(stage: Stage, whole, part) -> None:
    """Note in the stage's manifest entry which stored context it used, whether it built or
    loaded it, and what it encoded (``builds``: counts by ``encoded:<cohort>``, ...), so a run's
    entries together show each cohort encoded once."""
    builds = dict(whole.builds)
    for k, v in part.builds.items():
        builds[k] = builds.get(k, 0) + v
    stage.record(context={"fingerprint": whole.fingerprint[:16], "origin": whole.origin, "builds": builds})


def evaluate(stage: Stage, *families: str, lstm: str = "profile") -> pd.DataFrame:
    """Compute metric families for every synthetic cohort of the run in each protocol of the
    profile (``corrected`` and ``paper``), save each (a ``protocol`` column), and return a summary.

    The run's one evaluation context (:class:`ehrlib.metrics.context.EvaluationContext`: the
    overlap check, one encoding per cohort, the real-side resamples; built by the first
    evaluation stage and loaded by the others, :func:`evaluation_context`) serves every family
    and protocol of the call. ``lstm`` (discriminator family): ``yes``, ``no`` or ``profile`` (as the profile says).
    The prevalence family is the same in both protocols and is computed once; ``utility`` and
    ``attribute_inference`` are not part of the paper's protocol (their rows there say so). The
    utility family also draws its figure (TSTR/TRTR per task and generator, ``fig_utility``).
    """
    from ehrlib.errors import ConfigError
    from ehrlib.metrics import names
    from ehrlib.metrics.evaluate import evaluate_context

    if not families:
        raise ConfigError(f"pipeline.evaluate: name one or more families of {names.FAMILIES}")
    for family in families:
        if family not in names.FAMILIES:
            raise ConfigError(f"family={family!r}: expected one of {names.FAMILIES}")
    if lstm not in ("yes", "no", "profile"):
        raise ConfigError(f"lstm={lstm!r}: expected 'yes', 'no' or 'profile'")
    ev = stage.settings.evaluation
    protocols = _protocols(ev)
    whole, context = evaluation_context(stage, reference=names.ATTRIBUTE_INFERENCE in families)
    reference = context.reference
    common = dict(seed=stage.seed, n_bootstrap=ev.n_bootstrap, progress=False)
    outs, failed = [], {}

    def evaluate_context(ctx, fams, **kw):  # a cohort a metric cannot take fails its own row, by name
        return _each_model(ctx, fams, failed, **kw)

    for family in families:
        extra = {}
        if family == names.PRIVACY:
            extra = {"repeats": ev.nnaar_repeats}
        elif family == names.DISCRIMINATOR:
            with_lstm = ev.lstm if lstm == "profile" else lstm == "yes"
            extra = {"discriminators": ("rf", "lstm") if with_lstm else ("rf",), "real": ev.real_class}
        if family == names.PREVALENCE:
            once = evaluate_context(context, [family], **common)
            out = pd.concat([once.assign(protocol=p) for p in protocols], ignore_index=True)
        else:
            out = pd.concat([evaluate_context(context, [family], protocol=p, **common, **extra).assign(protocol=p)
                             for p in protocols], ignore_index=True)
        if family in names.CORRECTED_ONLY_FAMILIES and names.PAPER in protocols:
            print(f"The paper's protocol has no {family} family (the paper reports none): its rows are computed "
                  "in the corrected protocol only and say so in the paper protocol.")
        if family == names.ATTRIBUTE_INFERENCE and reference is None:
            print("This run has no reference split: the attribute-inference baseline (the same attack with a "
                  "disjoint real sample as the release) is left out, and its rows say so.")
        stage.save_metrics(family, out)
        if family == names.UTILITY and names.CORRECTED in protocols:
            from ehrlib import plots

            corrected = out[out["protocol"] == names.CORRECTED]
            ratios = corrected[corrected["metric"].map(lambda m: names.split_task_metric(m)[0] == names.TSTR_TRTR_RATIO)]
            if ratios["estimate"].notna().any():
                stage.save_figure("fig_utility", plots.fig_utility(corrected))
            else:
                print("No phenotype task has enough holdout patients at this profile's size (see the rows' notes): "
                      "no utility figure.")
        outs.append(out)
    record_context(stage, whole, context)
    if failed:
        stage.record(failed=failed)
        for name, reason in failed.items():
            log.error("%s: not evaluated: %s", name, reason)
            print(f"{name}: not evaluated: {reason}")
    out = pd.concat(outs, ignore_index=True)
    summary = out[out["metric"].map(lambda m: names.split_task_metric(m)[1] is None)]
    return summary.pivot_table(index=["model", "protocol"], columns="metric", values="estimate")


#: The metric stages whose per-generator failures (``results.failed``) Table 1 shows.
METRIC_STAGES = (stages.PREVALENCE, stages.DISCRIMINATOR, stages.PRIVACY)


def _each_model(context, families, failed: dict, **kw) -> pd.DataFrame:
    """:func:`ehrlib.metrics.evaluate.evaluate_context` for every synthetic cohort of ``context``
    (each is evaluated on its own there, so the rows are the same); when one cohort cannot be
    evaluated (too few patients for a metric, ...), it alone fails: ``failed[name]`` says which
    family and why, and the others' rows are returned. A failure of every cohort is raised."""
    from ehrlib.metrics.evaluate import evaluate_context

    try:
        return evaluate_context(context, families, **kw)
    except EhrlibError:
        if len(context.synthetic) <= 1:
            raise
    frames, last = [], None
    for name in context.synthetic:
        if name in failed:
            continue
        try:
            frames.append(evaluate_context(context, families, models=[name], **kw))
        except EhrlibError as exc:
            failed[name] = f"{', '.join(families)} metrics ({kw.get('protocol', 'corrected')} protocol): {exc}"
            last = exc
    if not frames:
        raise last
    return pd.concat(frames, ignore_index=True)


def odd_intervals(results: pd.DataFrame) -> list[str]:
    """Cells whose interval does not contain the estimate shown (bias-corrected where the row has a
    ``bias``), as ``model/metric``."""
    from ehrlib.metrics.bootstrap import bias_corrected

    ok = results[["estimate", "ci_low", "ci_high"]].notna().all(axis=1)
    r = results[ok]
    bias = r["bias"] if "bias" in r.columns else pd.Series(float("nan"), index=r.index)
    shown = pd.Series([bias_corrected(e, b, m) for e, b, m in zip(r["estimate"], bias, r["metric"])], index=r.index)
    odd = r[(shown < r["ci_low"]) | (shown > r["ci_high"])]
    keys = odd["model"] + "/" + odd["metric"] + (("/" + odd["protocol"]) if "protocol" in odd else "")
    return sorted(set(keys))


def protocols_where_they_differ(wide: pd.DataFrame, columns) -> pd.DataFrame:
    """The Table 1 ``columns`` with one row per model, or one per model and protocol where the
    protocols give different values (rows of one model side by side)."""
    keys = [c for c in ("model", "status") if c in wide.columns]
    cols = [c for c in columns if c in wide.columns]
    if "protocol" not in wide.columns:
        return wide[keys + cols]
    per_protocol = [g[cols].reset_index(drop=True) for _, g in wide.sort_values("model").groupby("protocol", sort=False)]
    if all(g.equals(per_protocol[0]) for g in per_protocol[1:]):
        first = wide["protocol"].dropna().iloc[0] if wide["protocol"].notna().any() else None
        return wide[(wide["protocol"] == first) | wide["protocol"].isna()][keys + cols].reset_index(drop=True)
    return wide.sort_values(["model", "protocol"])[keys + ["protocol"] + cols].reset_index(drop=True)


def table1(stage: Stage) -> pd.DataFrame:
    """Assemble Table 1 (wide, with intervals, one row per model and protocol) and its tidy form
    from the saved metric families; show it in the paper's groups (fidelity, utility, privacy)."""
    from ehrlib.metrics import names
    from ehrlib.metrics.evaluate import table1 as wide_table1

    results = stage.metrics()
    stage.save_table("table1_tidy", results.sort_values(["model", "family", "metric"]), show=False)
    wide = wide_table1(results)
    from ehrlib.runs import failed_generators

    manifest = stage.run.manifest()
    failed = {**failed_generators(manifest), **failed_generators(manifest, METRIC_STAGES)}
    evaluated = {k: v for k, v in failed.items() if k in set(wide["model"])}
    for k, v in evaluated.items():  # rows of the families it passed stay; the row says what failed
        wide.loc[wide["model"] == k, "status"] = f"failed: {v}"
    failed = {k: v for k, v in failed.items() if k not in evaluated}
    if failed:
        wide = pd.concat([wide, pd.DataFrame([{"model": k, "status": f"failed: {v}"} for k, v in failed.items()])],
                         ignore_index=True)
    codes = manifest.get("stages", {}).get(stages.USER_GENERATORS, {}).get("results", {}).get("codes", {}) or {}
    from ehrlib.models import user

    notes = {k: user.code_note(r) for k, r in codes.items() if user.code_note(r)}
    if notes:  # a user generator's codes the training data never had, on its Table 1 row
        wide["codes"] = wide["model"].map(notes).fillna("")
    stage.save_table("table1", wide, show=False)
    for group, columns in names.TABLE1_GROUPS.items():  # headed by the paper's names (ids: table1.csv)
        rows = wide
        if group in names.TABLE1_CORRECTED_ONLY_GROUPS and "protocol" in wide.columns:
            rows = wide[wide["protocol"] != names.PAPER]  # the paper's protocol has no such family
        shown = protocols_where_they_differ(rows, columns)
        shown = shown.astype(object).where(shown.notna(), "–")  # a metric a protocol does not compute
        stage.save_table(f"table1_{group}", shown.rename(columns={c: names.header(c) for c in shown.columns}))
    odd = odd_intervals(results)
    if odd:
        from ehrlib.metrics.display import OUTSIDE_NOTE

        print(f"{len(odd)} estimate(s) lie outside their interval ({', '.join(odd[:6])}{', ...' if len(odd) > 6 else ''}"
              f"). {OUTSIDE_NOTE}")
    return wide


def _longtail_models(stage: Stage, setting: str) -> dict:
    """The run's synthetic cohorts that the profile's ``longtail_models`` names (``all``: every one)."""
    from ehrlib.errors import ConfigError

    available = stage.synthetic
    if setting.strip() == "all":
        return available
    wanted = [m.strip() for m in setting.split(",") if m.strip()]
    chosen = {m: available[m] for m in wanted if m in available}
    if not chosen:
        raise ConfigError(f"{stage.settings.source}: evaluation.longtail_models = {setting!r} names none of this "
                          f"run's synthetic cohorts {sorted(available)}")
    missing = [m for m in wanted if m not in available]
    left_out = sorted(set(available) - set(chosen))
    print(f"Figure 3 covers {', '.join(chosen)} (profile setting longtail_models)"
          + (f"; not in this run: {', '.join(missing)}" if missing else "")
          + (f"; left out: {', '.join(left_out)}" if left_out else "") + ".")
    return chosen


def longtail(stage: Stage) -> pd.DataFrame:
    """Figure 3 in each protocol: the six panels per percentile with intervals (saved as
    ``fig3_data``; ``fig3`` is the corrected protocol, ``fig3_paper`` the paper's)."""
    from ehrlib import plots
    from ehrlib.metrics.longtail import longtail_ablation

    ev = stage.settings.evaluation
    protocols = _protocols(ev)
    synthetic = _longtail_models(stage, ev.longtail_models)
    whole, context = evaluation_context(stage, synthetic)  # one for both protocols
    with warnings.catch_warnings(record=True) as caught:  # stated under the figure, not as stderr
        warnings.simplefilter("always")
        frames = [longtail_ablation(context.train, context.holdout, synthetic, protocol=p, n_bootstrap=ev.n_bootstrap,
                                    repeats=ev.nnaar_repeats, seed=stage.seed, real=ev.real_class, context=context)
                  .assign(protocol=p) for p in protocols]
    data = pd.concat(frames, ignore_index=True)
    stage.save_table("fig3_data", data, show=False)
    for p, frame in zip(protocols, frames):
        stage.save_figure("fig3" if p == "corrected" else f"fig3_{p}", plots.fig3_percentile_ablation(frame))
    sentence = longtail_note(data, caught, ev.n_bootstrap)
    print(sentence)
    stage.record(note=sentence)
    record_context(stage, whole, context)
    return data


def protocol_effects(stage: Stage) -> pd.DataFrame:
    """The deviations page's table: each protocol difference measured on the reference generators
    (``holdout``, ``marginals``, ``memorizer``: those of the run), from the run's evaluation context."""
    from ehrlib.metrics.protocols import protocol_effects as measure

    from ehrlib.models import REFERENCE

    names_ = [n for n in REFERENCE if n in stage.synthetic]
    if not names_:
        raise EhrlibError(f"run {stage.run.name}: no reference generator's cohort in {stage.run.path / 'synthetic'}; "
                          f"run stage {stages.REFERENCE_GENERATORS} first")
    whole, context = evaluation_context(stage, {n: stage.synthetic[n] for n in names_})
    table = measure(context.train, context.holdout, context.synthetic, seed=stage.seed, context=context)
    stage.save_table("table_protocol_effects", table)
    record_context(stage, whole, context)
    return table


def longtail_note(data: pd.DataFrame, caught, n_bootstrap: int) -> str:
    """The sentence under Figure 3: how many values could not be computed on a small tail, and how
    many intervals rest on fewer than all replicates (a resample holding none of a tail's codes
    has no R²), with the counts; other warnings are quoted."""
    from ehrlib.metrics.bootstrap import NONFINITE, nonfinite_replicates

    intervals, replicates = nonfinite_replicates(caught)
    missing = data[data["estimate"].isna()]
    parts = []
    if len(missing):
        where = ", ".join(sorted({f"p{p:g}" for p in missing["percentile"]}))
        parts.append(f"{len(missing)} of {len(data)} values could not be computed (too few patients or codes left "
                     f"in the tail at {where}) and are left out of the plot rather than drawn as zeros")
    if intervals:
        parts.append(f"{intervals} interval(s) rest on fewer than the B = {n_bootstrap} bootstrap replicates "
                     f"({replicates} replicates in all were not finite, typically a resample that holds none of a "
                     "tail's codes, and were left out)")
    other = sorted({str(w.message) for w in caught if not str(w.message).endswith(NONFINITE)
                    and "could not be computed" not in str(w.message)})
    text = ("Figure 3 notes: " + "; ".join(parts) + ".") if parts else "Figure 3: every value and interval was computed."
    return text + "".join(f" Note: {m}" for m in other)


# ---------------------------------------------------------------------------- the paper's artifacts
def paper_samples(stage: Stage) -> dict | None:
    """The paper's five released samples (``{generator: Cohort}``), or ``None`` with a notice on
    the page when they are not in the data folder (``ehrbench fetch paper-samples`` gets them)."""
    from ehrlib.data import registry
    from ehrlib.errors import CohortError

    try:
        samples = registry.load_paper_samples()
    except CohortError as exc:
        print(f"The paper's released samples are not available here: {exc}\n"
              "Download them once (sha256-checked, MIT licence) with `ehrbench fetch paper-samples`, or set "
              f"{registry.ENV_DATA_DIR} to a folder holding paper-samples/. This page shows nothing else until then.")
        stage.record(skipped="paper samples not available")
        return None
    print(registry.DATASETS["paper-samples"].notice)
    return samples


def released_samples(stage: Stage, samples: dict | None) -> pd.DataFrame | None:
    """Table 12 recomputed from the released samples beside the paper's printed values, and the
    structure and top-code figures of the five samples side by side."""
    if samples is None:
        return None
    from ehrlib import plots
    from ehrlib.metrics import longtail, paper, structure

    table12 = structure.summary_table(samples)
    stage.save_table("table12_released", table12)
    compared = paper.compare(paper.tidy(table12, "dataset"), data="the paper's released samples", same_artifacts=True,
                             tables=["12"])
    stage.save_table("table12_released_vs_paper", compared[compared["model"] != "train"][
        ["row", "column", "paper", "ours", "difference", "within_rounding"]])
    d = structure.distributions(samples)
    stage.save_figure("fig9_released", plots.fig9_visits_per_patient(d))
    stage.save_figure("fig10_released", plots.fig10_codes_per_visit(d))
    stage.save_figure("fig11_released", plots.fig11_codes_per_patient(d))
    stage.save_figure("fig4_released", plots.fig4_rank_frequency(longtail.rank_frequency(samples)))
    return compared


def samples_against_each_other(stage: Stage, samples: dict | None) -> pd.DataFrame | None:
    """The released samples scored against each other (prevalence, Table 13 and 14 metrics)."""
    if samples is None:
        return None
    from ehrlib.metrics import paper

    table = paper.between_samples(samples).pivot_table(index=["reference", "model"], columns="metric",
                                                       values="estimate").reset_index()
    stage.save_table("table_between_samples", table.round(3))
    return table


def audit_samples(stage: Stage, samples: dict | None, real: str) -> None:
    """The memorisation audit of the released samples against a real source with the paper's split."""
    if samples is None:
        return None
    from ehrlib import plots
    from ehrlib.data import load, notice, paper_split
    from ehrlib.errors import CohortError
    from ehrlib.metrics.audit import audit

    try:
        cohort = load(real)
    except CohortError as exc:
        print(f"The real source {real!r} is not available here: {exc}")
        stage.record(skipped=f"{real} not available")
        return None
    print(notice(real))
    roles = paper_split(cohort)
    print(roles.summary())
    result = audit(cohort, samples, roles, seed=stage.seed)
    stage.save_table("table_audit_copies", result.copies, show=False)
    c = result.copies.assign(cell=lambda d: d["copied"].astype(str) + " / " + d["eligible"].astype(str))
    summary = c.pivot_table(index=["synthetic", "role"], columns=["comparison", "min_codes"], values="cell",
                            aggfunc="first")
    summary.columns = [f"{comparison}, ≥{m} codes" for comparison, m in summary.columns]
    stage.save_table("table_audit_summary", summary.reset_index())
    stage.save_table("table_audit_distances", result.distances, show=False)
    stage.save_table("table_audit_pairs", result.pairs)
    stage.save_figure("fig_audit", plots.fig_audit(result.nearest, result.copies))
    print("What these counts can and cannot tell:")
    for line in result.limits():
        print(" *", line)
    return result


def paper_vs_ours(stage: Stage) -> pd.DataFrame:
    """Every printed number of the paper's Tables 1 and 12-14 beside ours for this run, one table
    per paper table, each under one note naming the data its two columns come from."""
    from ehrlib import book
    from ehrlib.metrics import paper

    data = stage.run.manifest().get("stages", {}).get(stages.DATA, {}).get("params", {}).get("data", "unknown")
    frames = []
    t1 = stage.read_table("table1_tidy")
    if t1 is not None:
        if "protocol" in t1.columns:
            t1 = t1[t1["protocol"] == "paper"]
        if "bias" in t1.columns:  # the estimate Table 1 shows: bias-corrected where it has a bias
            from ehrlib.metrics.bootstrap import bias_corrected

            t1 = t1.assign(estimate=[bias_corrected(e, b, m) for e, b, m in zip(t1["estimate"], t1["bias"], t1["metric"])])
        frames.append(t1[["model", "metric", "estimate", "ci_low", "ci_high"]])
    for table_id, key in (("table12", "dataset"), ("table13", "model"), ("table14", "model")):
        table = stage.read_table(table_id)
        if table is not None:
            frames.append(paper.tidy(table, key))
    ours = pd.concat(frames, ignore_index=True).drop_duplicates(["model", "metric"]) if frames else \
        pd.DataFrame(columns=["model", "metric", "estimate"])
    source = f"this run ({stage.run.name}: data {data}, profile {stage.profile})"
    out = paper.compare(ours, data=source)
    stage.save_table("table_paper_vs_ours", out[["table", "row", "column", "paper", "ours", "ours_ci_low",
                                                 "ours_ci_high", "ours_data"]], show=False)
    protocol = " (our Table 1 values in the paper's protocol)"
    for table, group in out.groupby("table", sort=False):
        extra = {"1": protocol, "12": " (the released samples' own Table 12, recomputed, is on page 50)"}
        book.show_note(f"**Table {table}.** Paper: {paper.PAPER_DATA}. Ours: {source}{extra.get(str(table), '')}.")
        stage.save_table(f"table_paper_vs_ours_{table}", paper.shown_beside(group))
    return out


def claims(stage: Stage) -> pd.DataFrame:
    """The claims ledger decided on this run's evidence (:mod:`ehrlib.claims`): a summary line, then
    each claim with its verdict, the numbers its rule used and where they come from."""
    from ehrlib import book
    from ehrlib.claims import ledger_of_run, summary
    from ehrlib.claims.ledger import display_table, saved_form

    ledger = ledger_of_run(stage.run, stage.read_table)
    stage.save_table("claims", saved_form(ledger), show=False)
    book.show_note(f"**{summary(ledger)}**")
    book.show("claims", display_table(ledger, markdown=False))
    return ledger


# ---------------------------------------------------------------------------- the simulated cohort
def calibration(stage: Stage, n_patients: int) -> pd.DataFrame | None:
    """The simulated cohort (``n_patients``, the stage's seed) beside the public references (the
    MIMIC-III demo, the MIMIC-IV demo's ICD-9 part, the released HALO sample) on every
    calibration statistic, with its target range; ``None`` with a notice when the references are
    not in the data folder."""
    from ehrlib.data import registry, simulate
    from ehrlib.data.codeprofile import load_code_profile
    from ehrlib.errors import CohortError
    from ehrlib.metrics import calibration as cal

    try:
        refs = cal.load_references(registry.data_dir())
    except CohortError as exc:
        print(f"The public references are not available here: {exc}\nGet them once with `ehrbench fetch mimic3-demo`, "
              f"`ehrbench fetch mimic4-demo` and `ehrbench fetch paper-samples` (or set {registry.ENV_DATA_DIR}).")
        stage.record(skipped="references not available")
        return None
    print(registry.notice("mimic3-demo"), registry.notice("mimic4-demo"), sep="\n")
    profile = load_code_profile()
    sim = simulate(n_patients, seed=stage.seed)
    checks = cal.calibration_checks(sim, refs, pooled=profile.chapters)
    stage.save_table("table_calibration_checks", checks)
    stage.save_table("table_calibration_structure", cal.structure_table(sim, refs))
    stage.save_table("table_calibration_top20", cal.top_code_overlap(sim, refs))
    stage.save_table("table_calibration_top_codes", cal.top_codes_table(sim, refs["mimic3_demo"],
                                                                         reference_name="mimic3_demo"))
    stage.save_table("table_calibration_chapters", cal.chapter_table(sim, refs, pooled=profile.chapters))
    stage.save_table("table_calibration_cooccurrence", cal.cooccurrence_table(sim, refs))
    stage.record(checks_passed=int(checks["passed"].sum()), checks=len(checks))
    return checks


#: The partial memorizer whose most exposed records the privacy-power page lists.
EXPOSED_ROW = "memorizer_20"


def privacy_power(stage: Stage, top: int = 5) -> pd.DataFrame | None:
    """Stage 35: every membership attack (:mod:`ehrlib.metrics.membership`) on the calibration rows
    (holdout, marginals, partial memorizers copying 1-100%), members the training split and
    non-members the holdout split: the power curves (``fig_privacy_power``), the power table
    (``table_privacy_power``), each attack's smallest detected copy rate
    (``table_privacy_detection``) and the ``top`` training records each attack scores as most
    exposed against :data:`EXPOSED_ROW` (``table_privacy_exposed``). Returns the power table, or
    ``None`` for a run without a reference split (the density reference and the holdout row come
    from it).
    """
    import warnings

    from ehrlib import plots
    from ehrlib.metrics import membership
    from ehrlib.metrics.privacy import copied_records

    if not stage.has("data", "reference.parquet"):
        print("This run has no reference split: the density attack's reference and the holdout row come from it, "
              "so the power calibration is skipped.")
        stage.record(skipped="no reference split")
        return None
    ev = stage.settings.evaluation
    train = stage.train
    attacks, left_out = membership.usable_attacks(stage.reference)
    if left_out:
        print(f"This run's {left_out}.")
    scores: dict = {}
    power = membership.calibration_rows(train, stage.holdout, stage.reference, n_synthetic=ev.n_synthetic,
                                        seed=stage.seed, n_bootstrap=ev.n_bootstrap, attacks=attacks,
                                        marginals=stage.synthetic_cohort("marginals"), scores=scores)
    stage.save_figure("fig_privacy_power", plots.fig_privacy_power(power))
    stage.save_table("table_privacy_power", power)
    detected = membership.detection(power)
    stage.save_table("table_privacy_detection", detected)
    copies = power.drop_duplicates("generator").set_index("generator")
    for rec in detected.to_dict("records"):
        rate = rec["min_detected_copy_rate"]
        print(f"{rec['attack']} attack: " + (f"detects copying of {rate:.0%} of the records and more"
                                             if rate == rate else "detects none of the copy rates calibrated"))
    print("Exact copies of a training record's code set: " + ", ".join(
        f"{g} {int(copies.loc[g, 'exact_copies'])}/{int(copies.loc[g, 'n_synthetic'])}" for g in copies.index))
    exposed = []
    release = scores["cohorts"][EXPOSED_ROW]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copied = set(copied_records(train, release)["real_subject"])
    for attack in attacks:
        member_scores, _ = scores[(EXPOSED_ROW, attack)]
        table = membership.most_exposed(train, member_scores, top=top)
        import numpy as np

        order = np.argsort(-np.asarray(member_scores), kind="stable")[:top]  # most_exposed's order
        table.insert(0, "attack", attack)
        table["copied"] = [train.subject_ids[i] in copied for i in order]
        exposed.append(table)
    stage.save_table("table_privacy_exposed", pd.concat(exposed, ignore_index=True))
    stage.record(detected={r["attack"]: r["min_detected_copy_rate"] for r in detected.to_dict("records")},
                 n_members=int(power["n_members"].iloc[0]), n_nonmembers=int(power["n_nonmembers"].iloc[0]))
    return power


def privacy(stage: Stage, top: int = 3) -> pd.DataFrame:
    """Stage 32: the privacy and attribute-inference families (:func:`evaluate`), then every
    membership attack of :mod:`ehrlib.metrics.membership` on each synthetic cohort of the run
    beside the holdout row: AUC and TPR at 0.1% and 1% FPR with intervals, and whether each
    generator is above the holdout row (``table_privacy_attacks``); the ``top`` training records
    each attack scores as most exposed for each generator (``table_privacy_exposed_models``).
    Returns :func:`evaluate`'s summary.

    The members (train), non-members (holdout), density reference and holdout row
    (:func:`ehrlib.metrics.membership.holdout_row`) and the seed are those of stage 35, whose
    power calibration says which copy rate each attack detects; the run's own ``holdout``
    reference cohort is left out (it holds the density reference's records). Without a reference
    split there is no density reference and no holdout row: the attacks are skipped, and say so.
    """
    from ehrlib.metrics import membership

    summary = evaluate(stage, "privacy", "attribute_inference")
    if not stage.has("data", "reference.parquet"):
        print("This run has no reference split (the density attack's reference and the holdout row come from it): "
              "the membership attacks are skipped.")
        return summary
    from ehrlib.errors import MetricError

    ev = stage.settings.evaluation
    density_reference, held = membership.holdout_row(stage.reference, n_synthetic=ev.n_synthetic, seed=stage.seed)
    train, holdout = stage.train, stage.holdout
    attacks, left_out = membership.usable_attacks(stage.reference)
    if left_out:
        print(f"This run's {left_out}.")
    cohorts = {membership.BASELINE: held, **{k: v for k, v in stage.synthetic.items() if k != membership.BASELINE}}
    rows, exposed, failed = [], [], {}
    for name, cohort in cohorts.items():
        scores: dict = {}
        try:
            table = membership.membership_attacks(train, holdout, cohort, density_reference, seed=stage.seed,
                                                  n_bootstrap=ev.n_bootstrap, attacks=attacks, scores=scores)
        except MetricError as exc:  # e.g. a release of one record repeated: recorded and shown, the others go on
            failed[name] = str(exc)
            print(f"{name}: the membership attacks failed: {exc}")
            continue
        rows += [{"model": name, **rec} for rec in table.to_dict("records")]
        if name != membership.BASELINE:
            for attack, (member_scores, _) in scores.items():
                part = membership.most_exposed(train, member_scores, top=top)
                part.insert(0, "attack", attack)
                part.insert(0, "model", name)
                exposed.append(part)
    if membership.BASELINE in failed:
        stage.record(membership_attacks_failed=failed)
        print("No holdout row to read the membership attacks against: none is shown.")
        return summary
    results = pd.DataFrame(rows).rename(columns={"model": "generator"})
    results = membership.mark_detected(results.assign(copy_rate=float("nan"))).drop(columns="copy_rate")
    results = results.rename(columns={"generator": "model", "detected": "above_holdout"})
    stage.save_table("table_privacy_attacks", results)
    for rec in results[results["model"] != membership.BASELINE].to_dict("records"):
        verdict = "above the holdout row" if rec["above_holdout"] else "within the holdout row"
        print(f"{rec['model']}, {rec['attack']} attack: AUC {rec['auc']:.3f} [{rec['auc_low']:.3f}, "
              f"{rec['auc_high']:.3f}], TPR at 1% FPR {rec['tpr_at_1pct']:.3f}: {verdict}")
    print(f"Which share of copied records each attack detects: stage {stages.PRIVACY_POWER}.")
    stage.record(membership_attacks_failed=failed)
    if exposed:
        stage.save_table("table_privacy_exposed_models", pd.concat(exposed, ignore_index=True))
    return summary
def dp_key(name: str, epsilon: float) -> str:
    """The run-folder name of a DP generator trained at ``epsilon`` (``dp_medgan_eps1``, ``dp_gpt_eps0.5``)."""
    return f"{name}_eps{float(epsilon):g}"


def train_dp(stage: Stage) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stage ``19_train_dp``: fit every DP generator of the profile's ``dp`` settings at each of its
    budgets on the training split and save it (``models/<dp_key>``), then audit every guarantee
    (:func:`ehrlib.metrics.dp_audit.audit_budgets`: one more training per budget, with canaries,
    and the negative controls). Returns ``(models, audit)``: each model's privacy record (target
    and accounted ε, δ, noise multiplier), and claimed ε beside measured ε_lower per audit run."""
    from ehrlib import models
    from ehrlib.metrics import dp_audit

    settings = stage.settings.dp
    rows = []
    runs = [(name, eps) for name in settings.model_list() for eps in settings.epsilon_list()]
    runs += [("dp_marginals", eps) for eps in settings.epsilon_list("marginals_epsilons")]
    for name, eps in runs:
        if name == "dp_marginals":
            gen = models.get(name, epsilon=eps, seed=stage.seed)
        else:
            gen = models.get(name, stage.profile, epsilon=eps, delta=settings.delta, progress=False)
        gen.fit(stage.train)
        gen.save(stage.model_dir(dp_key(name, eps)))
        p = gen.privacy
        rows.append({"model": name, "target_epsilon": eps, "epsilon": p["epsilon"], "delta": p["delta"],
                     "noise_multiplier": p.get("noise_multiplier"), "mechanism": p.get("mechanism", "DP-SGD"),
                     "accountant": p.get("accountant", "exact (Laplace)")})
    audit = dp_audit.audit_budgets(stage.train, stage.profile, seed=stage.seed)
    stage.record(dp_models=[dp_key(n, e) for n, e in runs])
    return pd.DataFrame(rows), audit


def dp_tradeoff(stage: Stage) -> pd.DataFrame:
    """Stage ``36_dp_tradeoff``: every DP generator saved by ``19_train_dp`` and its non-private
    counterpart (ε = ∞), beside the reference rows, scored on prevalence R², the TSTR/TRTR utility
    ratio and the strongest membership attack's AUC (corrected protocol). One row per cohort:
    ``model``, ``base``, ``epsilon`` and the three metrics."""
    from ehrlib import models
    from ehrlib.metrics import names
    from ehrlib.metrics.evaluate import evaluate
    from ehrlib.models.dp import BASELINE

    ev = stage.settings.evaluation
    cohorts = {}
    for key, folder in stage.saved_models(neural=False).items():
        name = key.split("_eps")[0]
        if name in BASELINE and "_eps" in key:
            gen = models.load(folder)
            cohorts[key] = (name, float(key.split("_eps")[1]), gen.generate(ev.n_synthetic, seed=stage.seed))
    for name in sorted(set(BASELINE.values()) | {"holdout", "memorizer"}):
        cohort = stage.synthetic_cohort(name)
        if cohort is not None:
            cohorts[name] = (name, float("inf"), cohort)
    rows = []
    for key, (name, eps, cohort) in cohorts.items():
        out = evaluate(stage.train, stage.holdout, cohort, families=[names.PREVALENCE, names.UTILITY, names.PRIVACY],
                       discriminator=None, n_bootstrap=ev.n_bootstrap, seed=stage.seed, repeats=ev.nnaar_repeats,
                       progress=False)
        value = dict(zip(out["metric"], out["estimate"]))
        rows.append({"model": key, "base": name.removeprefix("dp_"), "epsilon": eps, names.PREVALENCE_R2: value.get(names.PREVALENCE_R2),
                     names.UTILITY_RATIO: value.get(names.UTILITY_RATIO), names.MIA_AUC: value.get(names.MIA_AUC)})
    return pd.DataFrame(rows)
# ---------------------------------------------------------------------------- fidelity beyond marginals
def fidelity(stage: Stage, *families: str) -> dict:
    """Compute families of :data:`ehrlib.metrics.names.FIDELITY_FAMILIES` for every synthetic
    cohort of the run from its one evaluation context and save each (``protocol`` corrected: the
    paper has none of them, and they do not depend on its protocol). Returns ``family -> rows``."""
    from ehrlib.errors import ConfigError
    from ehrlib.metrics import names
    from ehrlib.metrics.evaluate import evaluate_context

    for family in families:
        if family not in names.FIDELITY_FAMILIES:
            raise ConfigError(f"family={family!r}: expected one of {names.FIDELITY_FAMILIES}")
    whole, context = evaluation_context(stage)
    out = {}
    for family in families:
        df = evaluate_context(context, [family], seed=stage.seed, n_bootstrap=stage.settings.evaluation.n_bootstrap,
                              progress=False).assign(protocol=names.CORRECTED)
        stage.save_metrics(family, df)
        out[family] = df
    record_context(stage, whole, context)
    return out


def _wide(results: pd.DataFrame, metrics) -> pd.DataFrame:
    from ehrlib.metrics.evaluate import table1 as wide_table1

    return wide_table1(results.drop(columns=["protocol"], errors="ignore"), metrics=tuple(metrics), flat=())


def _left_out(results: pd.DataFrame, metric: str) -> dict:
    """``model -> note`` of the rows of ``metric`` that are NaN (left out, not applicable, skipped)."""
    rows = results[(results["metric"] == metric) & results["estimate"].isna()]
    return dict(zip(rows["model"], rows["note"]))


def temporal(stage: Stage) -> pd.DataFrame:
    """The page of stage 45: the next-visit task with its reference rows (from the saved utility
    family), then the temporal family (transitions, persistence, Wasserstein distances of the
    record-length distributions), each generator beside the holdout (the ceiling) and the
    marginals (the floor). Returns the temporal family's rows."""
    from ehrlib import plots
    from ehrlib.metrics import names

    nv = lambda s: names.task_metric(s, names.NEXT_VISIT)  # noqa: E731
    utility = stage.metrics([names.UTILITY])
    if "protocol" in utility.columns:
        utility = utility[utility["protocol"] == names.CORRECTED]
    columns = [nv(s) for s in (*names.NEXT_VISIT_STATS[:2], *names.NEXT_VISIT_BASELINE_STATS)]
    if utility["metric"].isin(columns[2:]).any():
        table = _wide(utility, columns)
        table["left out"] = table["model"].map(_left_out(utility, nv(names.NEXT_VISIT_STATS[1]))).fillna("")
        stage.save_table("table_next_visit", table)
        head = utility[utility["metric"] == nv(names.NEXT_VISIT_BASELINE_STATS[2])]["estimate"].dropna()
        rep = utility[utility["metric"] == nv(names.NEXT_VISIT_BASELINE_STATS[0])]["estimate"].dropna()
        if len(head):
            print(f"The next-visit task's headroom (TRTR recall@k minus repeating the last visit): {head.iloc[0]:.3f}; "
                  f"repeating the last visit alone scores {rep.iloc[0]:.3f}.")
        else:
            print("The next-visit task was skipped at this run's size (see the rows' notes): no headroom to state.")
    else:
        print("The saved utility family has no next-visit reference rows (no sequential generator, or a run saved "
              "before they existed): no next-visit table.")
    rows = fidelity(stage, names.TEMPORAL)[names.TEMPORAL]
    stage.save_table("table_temporal", _wide(rows, [names.NESTED_VISIT_SHARE, *names.TEMPORAL_STATS,
                                                    *(names.task_metric(names.WASSERSTEIN, q)
                                                      for q in ("visits_per_patient", "codes_per_visit",
                                                                "codes_per_patient"))]))
    for model, why in _left_out(rows, names.TRANSITION_RMSE).items():
        print(f"{model}: {why}")
    stage.save_figure("fig_temporal", plots.fig_metric_bars(
        rows, [names.TRANSITION_RMSE, names.PERSISTENCE_RMSE, names.PERSISTENCE_GAP,
               names.task_metric(names.WASSERSTEIN, "codes_per_patient")], "Temporal fidelity against train"))
    return rows


def sample_fidelity(stage: Stage) -> dict:
    """The page of stage 46: α-precision, β-recall and authenticity; prevalence rank correlation
    overall and per frequency bucket; implausible records; subgroup prevalence where a generator
    emits demographics. Returns ``family -> rows``."""
    from ehrlib import plots
    from ehrlib.metrics import names
    from ehrlib.metrics.sample_level import precision_recall_curves

    out = fidelity(stage, names.SAMPLE_FIDELITY, names.PREVALENCE_RANK, names.PLAUSIBILITY, names.SUBGROUPS)
    stage.save_table("table_sample_fidelity", _wide(out[names.SAMPLE_FIDELITY], names.SAMPLE_FIDELITY_STATS))
    _, context = evaluation_context(stage)
    stage.save_figure("fig_alpha_precision", plots.fig_alpha_precision(precision_recall_curves(context, seed=stage.seed)))
    rank = out[names.PREVALENCE_RANK]
    stage.save_table("table_prevalence_rank", _wide(rank, pd.unique(rank["metric"])))
    plaus = out[names.PLAUSIBILITY]
    stage.save_table("table_plausibility", _wide(plaus, pd.unique(plaus["metric"])))
    sub = out[names.SUBGROUPS]
    judged = sub[(sub["metric"] == names.SUBGROUP_JUDGED) & (sub["estimate"] > 0)]["model"].tolist()
    not_judged = _left_out(sub.assign(estimate=sub["estimate"].where(sub["estimate"] != 0)), names.SUBGROUP_JUDGED)
    if judged:
        stage.save_table("table_subgroups", _wide(sub[sub["model"].isin(judged)], pd.unique(sub["metric"])))
    else:
        print("No generator of this run emits demographics: no subgroup table.")
    if not_judged:
        print(f"Not judged by subgroup ({len(not_judged)}): {', '.join(not_judged)}; they emit no demographics (no sex "
              "or age per record), so their records cannot be grouped.")
    return out
