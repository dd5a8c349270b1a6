"""The work of each stage, one call per notebook: train, generate, evaluate, assemble.

Each function takes the notebook's :class:`ehrlib.runs.Stage` (inputs, typed settings, where
outputs go) and calls the library layers below it; the notebooks stay four cells long.
"""
from __future__ import annotations

import logging

import pandas as pd

from ehrlib.errors import EhrlibError
from ehrlib.runs import Stage

log = logging.getLogger("ehrlib.pipeline")

#: How models are named on pages and figures (saved-folder name -> label).
LABELS = {"medgan": "MedGAN", "medgan_count": "MedGAN (count)", "corgan": "CorGAN", "promptehr": "PromptEHR",
          "halo": "HALO", "gpt": "GPT-2 baseline"}


def _in_notebook() -> bool:
    from ehrlib import book

    return book._in_notebook()


def train(stage: Stage, model: str, *, saved_as: str | None = None, force: bool = False, **overrides):
    """Fit ``model`` on the run's training split (or load it when up to date), save it, show its
    training curves and one summary line. Returns the generator."""
    from ehrlib import models, plots

    saved_as = saved_as or model
    if "progress" not in overrides:
        overrides["progress"] = not _in_notebook()  # live bars in a terminal only
    generator = models.fit_or_load(model, stage.train, stage.model_dir(saved_as), profile=stage.profile, force=force,
                                   seed=stage.seed, **overrides)
    history = list(getattr(generator, "history", []) or [])
    stage.record(**{saved_as: {"epochs": len(history)}})
    if history:
        last = {k: round(v, 4) for k, v in history[-1].items() if k != "epoch" and isinstance(v, float)}
        print(f"{LABELS.get(saved_as, saved_as)}: {len(history)} epochs; last epoch {last}")
        stage.save_figure(f"training_{saved_as}", plots.training_curves(history, title=LABELS.get(saved_as, saved_as)))
    return generator


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
            cohort = models.load(folder).generate(n, seed=stage.seed)
        except EhrlibError as exc:
            failed[name] = str(exc)
            rows.append({"dataset": name, "status": "failed", "reason": str(exc)})
            continue
        stage.save_synthetic(name, cohort)
        rows.append({"dataset": name, "status": "ok", "reason": "", **summary(cohort)})
    stage.record(n_synthetic=n, failed=failed)
    for name, reason in failed.items():
        log.error("%s failed to generate: %s", name, reason)
    return pd.DataFrame(rows)


def reference_generators(stage: Stage) -> pd.DataFrame:
    """Fit the calibration rows (``holdout``, ``marginals``, ``memorizer``), save them (labelled
    as holding real records where they do), and save their synthetic cohorts."""
    from ehrlib import models
    from ehrlib.metrics.structure import summary

    n = stage.settings.evaluation.n_synthetic
    rows = []
    for name in ("holdout", "marginals", "memorizer"):
        extra = {"records": stage.reference} if name == "holdout" else {}
        generator = models.get(name, **extra).fit(stage.train)
        generator.save(stage.model_dir(name))
        size = min(n, stage.reference.n_patients) if name == "holdout" else n
        cohort = generator.generate(size, seed=stage.seed)
        stage.save_synthetic(name, cohort)
        rows.append({"dataset": name, **summary(cohort)})
    stage.record(n_synthetic=n)
    return pd.DataFrame(rows)


def _protocols(ev) -> tuple[str, ...]:
    from ehrlib.metrics import names

    protocols = tuple(p.strip() for p in ev.protocols.split(",") if p.strip())
    for p in protocols:
        names.check_protocol(p)
    return protocols


def evaluate(stage: Stage, family: str, *, lstm: str = "profile") -> pd.DataFrame:
    """Compute one metric family for every synthetic cohort of the run in each protocol of the
    profile (``corrected`` and ``paper``), save it (a ``protocol`` column), and return a summary.

    ``lstm`` (discriminator family): ``yes``, ``no`` or ``profile`` (as the profile says).
    The prevalence family is the same in both protocols and is computed once.
    """
    from ehrlib.errors import ConfigError
    from ehrlib.metrics import evaluate_all, names

    ev = stage.settings.evaluation
    protocols = _protocols(ev)
    train, holdout, synthetic = stage.train, stage.holdout, stage.synthetic
    common = dict(seed=stage.seed, n_bootstrap=ev.n_bootstrap, families=[family], progress=False)
    if family == names.PREVALENCE:
        once = evaluate_all(train, holdout, synthetic, **common)
        out = pd.concat([once.assign(protocol=p) for p in protocols], ignore_index=True)
    elif family in (names.PRIVACY, names.DISCRIMINATOR):
        extra = {"repeats": ev.nnaar_repeats} if family == names.PRIVACY else {}
        if family == names.DISCRIMINATOR:
            if lstm not in ("yes", "no", "profile"):
                raise ConfigError(f"lstm={lstm!r}: expected 'yes', 'no' or 'profile'")
            with_lstm = ev.lstm if lstm == "profile" else lstm == "yes"
            extra = {"discriminators": ("rf", "lstm") if with_lstm else ("rf",),
                     "real": ev.real_class}
        out = pd.concat([evaluate_all(train, holdout, synthetic, protocol=p, **common, **extra).assign(protocol=p)
                         for p in protocols], ignore_index=True)
    else:
        raise ConfigError(f"family={family!r}: expected one of {names.FAMILIES}")
    stage.save_metrics(family, out)
    return out.pivot_table(index=["model", "protocol"], columns="metric", values="estimate")


def odd_intervals(results: pd.DataFrame) -> list[str]:
    """Cells whose basic bootstrap interval does not contain the point estimate (``model/metric``)."""
    ok = results[["estimate", "ci_low", "ci_high"]].notna().all(axis=1)
    r = results[ok]
    odd = r[(r["estimate"] < r["ci_low"]) | (r["estimate"] > r["ci_high"])]
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
    failed = stage.run.manifest().get("stages", {}).get("20_generate", {}).get("results", {}).get("failed", {})
    if failed:
        wide = pd.concat([wide, pd.DataFrame([{"model": k, "status": f"failed: {v}"} for k, v in failed.items()])],
                         ignore_index=True)
    stage.save_table("table1", wide, show=False)
    for group, columns in names.TABLE1_GROUPS.items():
        stage.save_table(f"table1_{group}", protocols_where_they_differ(wide, columns))
    odd = odd_intervals(results)
    if odd:
        print(f"Note: {len(odd)} basic interval(s) do not contain their point estimate ({', '.join(odd[:6])}"
              f"{', ...' if len(odd) > 6 else ''}). A basic interval targets the population value; for a generator "
              "as good as real data (e.g. holdout, population R² = 1) sampling noise biases the estimate down, so "
              "the interval can lie above it.")
    return wide


def longtail(stage: Stage) -> pd.DataFrame:
    """Figure 3 in each protocol: the six panels per percentile with intervals (saved as
    ``fig3_data``; ``fig3`` is the corrected protocol, ``fig3_paper`` the paper's)."""
    from ehrlib import plots
    from ehrlib.metrics import names
    from ehrlib.metrics.longtail import longtail_ablation

    ev = stage.settings.evaluation
    protocols = _protocols(ev)
    frames = [longtail_ablation(stage.train, stage.holdout, stage.synthetic, protocol=p, n_bootstrap=ev.n_bootstrap,
                                repeats=ev.nnaar_repeats, seed=stage.seed, real=ev.real_class)
              .assign(protocol=p) for p in protocols]
    data = pd.concat(frames, ignore_index=True)
    stage.save_table("fig3_data", data, show=False)
    for p, frame in zip(protocols, frames):
        stage.save_figure("fig3" if p == "corrected" else f"fig3_{p}", plots.fig3_percentile_ablation(frame))
    return data
