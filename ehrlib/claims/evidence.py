"""The measured values the claim rules read, from a run folder's saved tables, by the names the
library defines (:mod:`ehrlib.metrics.names`, the artifact IDs of :mod:`ehrlib.book`).

Evidence in order of strength:

1. the paper's own artifacts: its released samples (Table 12 recomputed, notebook 50) and its
   printed tables (``book/paper_results.csv``, for claims the text makes about its own tables);
2. the open MIMIC-III demo's patients on the paper's training list (the memorisation audit,
   notebook 51);
3. the run's own cohort and profile (Table 1, Figure 3, Tables 13-14 of notebooks 33-44). A claim
   about MIMIC-III tested on another data source says so: :attr:`Evidence.run_scope`.

Nothing here computes a metric; a table the run lacks reads as ``None`` and the rule says which
notebook would compute it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ehrlib import book, stages
from ehrlib.claims.verdict import RUN_SOURCE_PREFIX
from ehrlib.data.registry import AUTHORS_FIG3, PAPER_SAMPLE_FILES
from ehrlib.errors import MetricError
from ehrlib.metrics import names
from ehrlib.metrics.bootstrap import bias_corrected
from ehrlib.metrics.display import OUTSIDE_FLAG
from ehrlib.metrics.paper import printed_decimals, paper_results

#: The stage that computes each kind of evidence (the notebook a verdict links to).
RELEASED_STAGE = stages.PAPER_SAMPLES
AUDIT_STAGE = stages.PAPER_AUDIT
TABLE1_STAGE = stages.TABLE1
FIG3_STAGE = stages.LONGTAIL_PERCENTILES
TABLE13_STAGE = stages.LONGTAIL_MARGINALS
TABLE14_STAGE = stages.COOCCURRENCE
AUTHORS_RESULTS = AUTHORS_FIG3
"""The authors' Figure 3 values (``results/long_tailed_ablation.csv`` of their repository, MIT),
shipped with ehrlib; ``ehrbench fetch paper-samples`` also copies it beside the released samples."""
AUTHORS_METRICS = {"Prevalence_R2": names.PREVALENCE_R2, "Prevalence_RMSE": names.PREVALENCE_RMSE,
                   "MIA_Accuracy": names.MIA_ACCURACY, "MIA_F1": names.MIA_F1, "nnaar": names.NNAAR,
                   "Privacy_Score": "disc_score"}
"""The authors' column names -> ours (:data:`ehrlib.metrics.names.FIG3_METRICS`)."""
AUTHORS = "the authors' own results file (long_tailed_ablation.csv, the values behind Figure 3)"
RELEASED = "the paper's released samples, recomputed"
AUDIT = "the open MIMIC-III demo's patients on the paper's training list"
PRINTED = "the paper's own printed table"
SPREADS = 2.0
"""A metric reported with a spread ``s`` over repeated subsamples (no bootstrap interval) is shown
as ``estimate ± s``, as Table 1 shows it, and decided on ``estimate ± SPREADS·s`` (about 95%)."""
FLAT_GANS = ("medgan", "corgan")
"""The paper's two GANs (their decoding rule is read off the run's profile)."""
REFERENCES = ("holdout", "marginals", "memorizer")
"""The reference rows every run-based rule reads: the real holdout (the ceiling this sample size
allows), marginals (the floor: right code frequencies, no co-occurrence) and the memorizer (the
positive control: copies of training records)."""


def number(x: float) -> str:
    """A measured number as the ledger prints it: whole numbers without decimals, others to four
    significant digits, never in exponent notation. Rounding never makes a number look rounder than
    it is: where four significant digits would drop to fewer (0.94995 to ``0.95``, which reads as
    the threshold itself), more are shown until four are (``0.94995``)."""
    x = float(x)
    if math.isfinite(x) and x == round(x) and abs(x) < 1e15:
        return str(int(round(x)))
    if not math.isfinite(x):
        return str(x)
    for digits in range(4, 13):
        text = f"{x:.{digits}g}"
        if "e" in text:
            text = f"{x:.{digits + 6}f}".rstrip("0").rstrip(".")
        shown = len(text.lstrip("-0.").replace(".", ""))
        if float(text) == x or shown >= 4:
            return text
    return text


@dataclass(frozen=True)
class Value:
    """A measured value and its interval (``low == high == estimate`` when it has none).

    ``spread``: the spread over repeated subsamples where the value has no bootstrap interval (the
    interval is then ``estimate ± SPREADS·spread``, shown as ``estimate ± spread``)."""

    estimate: float
    low: float
    high: float
    spread: float = float("nan")

    @classmethod
    def of(cls, estimate, low=np.nan, high=np.nan, spread=np.nan) -> "Value":
        e = float(estimate)
        lo, hi = float(low) if pd.notna(low) else np.nan, float(high) if pd.notna(high) else np.nan
        s = np.nan
        if math.isnan(lo) or math.isnan(hi):
            s = float(spread) if pd.notna(spread) else np.nan
            lo, hi = (e - SPREADS * s, e + SPREADS * s) if not math.isnan(s) else (e, e)
        return cls(e, min(lo, hi), max(lo, hi), s)

    @property
    def outside(self) -> bool:
        """The estimate lies outside its own interval (a plug-in value the interval corrects)."""
        return not self.low <= self.estimate <= self.high

    @property
    def decided(self) -> float:
        """The estimate a rule decides on: the estimate where its interval covers it, else the
        interval's midpoint (the bias-corrected value a basic interval is centred on), never a
        plug-in value its own interval excludes."""
        return 0.5 * (self.low + self.high) if self.outside else self.estimate

    def text(self) -> str:
        if not math.isnan(self.spread):
            return f"{number(self.estimate)} ± {number(self.spread)}"
        if self.low == self.high:
            return number(self.estimate)
        if self.outside:
            return (f"{number(self.decided)} [{number(self.low)}, {number(self.high)}] (the interval's midpoint; "
                    f"plug-in {number(self.estimate)}{OUTSIDE_FLAG})")
        return f"{number(self.estimate)} [{number(self.low)}, {number(self.high)}]"


def _row_value(r) -> Value:
    """A tidy metric row as a :class:`Value`: the bias-corrected estimate where the row has a bias
    (the estimand of its basic interval, as Table 1 shows it)."""
    estimate = bias_corrected(r["estimate"], r.get("bias", np.nan), str(r.get("metric", "")))
    return Value.of(estimate, r.get("ci_low", np.nan), r.get("ci_high", np.nan), r.get("spread", np.nan))


def read_authors_fig3(path) -> pd.DataFrame:
    """The authors' Figure 3 values as tidy rows ``model, percentile, metric, estimate`` (models by
    ``ehrlib``'s names, from the released sample file each row names).

    Raises:
        MetricError: a column this reading needs is missing (naming the file and the column).
    """
    raw = pd.read_csv(path)
    need = ["method", "long_tailed_percentile", *AUTHORS_METRICS]
    missing = [c for c in need if c not in raw.columns]
    if missing:
        raise MetricError(f"{path}: missing column(s) {missing}; expected the authors' long_tailed_ablation.csv "
                          f"with columns {need}")
    model = {Path(f).stem: m for m, f in PAPER_SAMPLE_FILES.items()}
    unknown = sorted(set(raw["method"]) - set(model))
    if unknown:
        raise MetricError(f"{path}: column method has {unknown[0]!r}; expected one of {sorted(model)}")
    out = raw.melt(id_vars=["method", "long_tailed_percentile"], value_vars=list(AUTHORS_METRICS),
                   var_name="metric", value_name="estimate")
    return pd.DataFrame({"model": out["method"].map(model), "percentile": out["long_tailed_percentile"].astype(float),
                         "metric": out["metric"].map(AUTHORS_METRICS), "estimate": out["estimate"].astype(float)})


class Evidence:
    """What the rules may read: the run's saved tables and the paper's printed numbers.

    Args:
        read_table: ``table_id -> DataFrame | None`` (e.g. :meth:`ehrlib.runs.Stage.read_table`).
        data: the run's data source (``simulated``, ``mimic3-demo``, ``mimic3:PATH``, ...).
        profile: the run's profile.
        printed: the paper's printed numbers (:func:`ehrlib.metrics.paper.paper_results`).
        authors_fig3: the authors' Figure 3 values (:func:`read_authors_fig3`), or ``None``.
    """

    def __init__(self, read_table: Callable[[str], pd.DataFrame | None], data: str, profile: str,
                 printed: pd.DataFrame, authors_fig3: pd.DataFrame | None = None, scope: str = ""):
        self._read, self.data, self.profile, self._printed = read_table, str(data), str(profile), printed
        self.authors_fig3 = authors_fig3
        self.scope = scope
        self._cache: dict = {}

    #: The tables of each ledger's evidence: the paper's artifacts (A) and the run's own (B).
    ARTIFACT_TABLES = ("table12_released", "table_audit_copies", "table_audit_pairs", "table_between_samples")

    def view(self, ledger: str) -> "Evidence":
        """The evidence one ledger may read: ``"A"`` the paper's artifacts only (released samples,
        printed tables, the authors' results file, the audit), ``"B"`` the run's own tables only."""
        if ledger == "A":
            read = lambda t: self.table(t) if t in self.ARTIFACT_TABLES else None  # noqa: E731
            return Evidence(read, self.data, self.profile, self._printed, self.authors_fig3, "A")
        read = lambda t: None if t in self.ARTIFACT_TABLES else self.table(t)  # noqa: E731
        return Evidence(read, self.data, self.profile, self._printed.iloc[0:0], None, "B")

    @property
    def on_artifacts(self) -> bool:
        """This evidence is ledger A's (the paper's artifacts)."""
        return self.scope == "A"

    @classmethod
    def of_run(cls, run, read_table=None) -> "Evidence":
        """The evidence of a run folder (:class:`ehrlib.runs.Run`); ``read_table`` defaults to its CSVs."""
        def read(table_id):
            path = run.path / book.TABLES_DIR / f"{table_id}.csv"
            return pd.read_csv(path) if path.is_file() else None

        params = run.manifest().get("stages", {}).get(stages.DATA, {}).get("params", {})
        return cls(read_table or read, params.get("data", "unknown"), params.get("profile", "unknown"),
                   paper_results(), read_authors_fig3(AUTHORS_RESULTS))

    def table(self, table_id: str) -> pd.DataFrame | None:
        if table_id not in self._cache:
            self._cache[table_id] = self._read(table_id)
        return self._cache[table_id]

    # ------------------------------------------------------------------ the run
    @property
    def on_mimic3(self) -> bool:
        """The run's data is MIMIC-III itself (full or demo), the paper's data."""
        return self.data.startswith("mimic3")

    @property
    def run_source(self) -> str:
        return f"{RUN_SOURCE_PREFIX} (data {self.data}, profile {self.profile})"

    @property
    def run_scope(self) -> str:
        """What a verdict on the run's own data means for the paper's claim, in one clause."""
        if self.data.startswith("mimic3:"):
            return ""
        return (f"measured on this run's data ({self.data}, profile {self.profile}), not on the paper's models and "
                "MIMIC-III: rerun with data=mimic3:PATH, profile=paper to test it in the paper's setting")

    def _tidy(self, table_id: str) -> pd.DataFrame | None:
        t = self.table(table_id)
        if t is None or "protocol" not in t.columns:
            return t
        # the paper's protocol where the run computed it (its claims are about its protocol)
        has_paper = t["protocol"].eq(names.PAPER)
        return t[has_paper | t["protocol"].isna()] if has_paper.any() else t

    def run_models(self) -> list[str]:
        t = self.table("table1_tidy")
        return [] if t is None else sorted(t["model"].astype(str).unique())

    def metric(self, model: str, metric: str, protocol: str | None = None, kind: str | None = None) -> Value | None:
        """Table 1's ``metric`` for ``model`` (``paper_disc_score``: the paper's discriminator for it,
        or ``kind``'s) in the paper's protocol where the run computed it, or in ``protocol``."""
        t = self._tidy("table1_tidy") if protocol is None else self.table("table1_tidy")
        if t is None:
            return None
        if protocol is not None and "protocol" in t.columns:
            t = t[t["protocol"] == protocol]
        if metric == names.PAPER_DISC_SCORE:
            metric = names.disc_metric(kind or names.paper_discriminator(model), "score")
        rows = t[(t["model"].astype(str) == model) & (t["metric"] == metric)]
        rows = rows[rows["estimate"].notna()]
        return None if rows.empty else _row_value(rows.iloc[0])

    def references(self, metric: str, protocol: str | None = None, kind: str | None = None) -> dict:
        """The reference rows' ``metric`` (:data:`REFERENCES`), those the run has."""
        return {r: v for r in REFERENCES if (v := self.metric(r, metric, protocol, kind)) is not None}

    def protocols(self) -> list[str]:
        """The protocols of the run's Table 1 (empty when it has none or no protocol column)."""
        t = self.table("table1_tidy")
        return [] if t is None or "protocol" not in t.columns else sorted(t["protocol"].dropna().unique())

    def seed_spread(self, model: str, metric: str) -> tuple[float, float, int] | None:
        """``(mean, sd_across_seeds, seeds)`` of ``metric`` for ``model`` over a seed sweep's runs
        (``table1_seeds``), or ``None`` with fewer than two seeds."""
        t = self.table("table1_seeds")
        if t is None or "sd_across_seeds" not in t.columns:
            return None
        if metric == names.PAPER_DISC_SCORE:
            metric = names.disc_metric(names.paper_discriminator(model), "score")
        rows = t[(t["model"].astype(str) == model) & (t["metric"] == metric)]
        if rows.empty or int(rows.iloc[0]["seeds"]) < 2 or pd.isna(rows.iloc[0]["sd_across_seeds"]):
            return None
        r = rows.iloc[0]
        return float(r["mean"]), float(r["sd_across_seeds"]), int(r["seeds"])

    def floors(self) -> pd.DataFrame | None:
        """The convergence floors of the run's trained models (``table_floors``), or ``None``."""
        return self.table("table_floors")

    def decoding(self) -> dict:
        """``{model: decoding rule}`` of the run's GANs where their profile decodes otherwise than
        the paper's rule (the 0.5 threshold of appendix F), e.g. ``{"medgan": "sample"}``."""
        from ehrlib import profiles
        from ehrlib.errors import EhrlibError

        try:
            profile = profiles.get(self.profile)
        except (EhrlibError, OSError):
            return {}
        out = {}
        for model in FLAT_GANS:
            try:
                rule = (profile.preset(model) or {}).get("decoding")
            except (EhrlibError, KeyError):
                continue
            if rule and rule != "threshold":
                out[model] = str(rule)
        return out

    def caveats(self, models) -> list[str]:
        """What a verdict resting on ``models`` must say about them: a model that misses its
        convergence floors (``table_floors``), a GAN that decodes otherwise than the paper."""
        out = []
        t = self.floors()
        if t is not None and {"id", "meets floors", "status"} <= set(t.columns):
            missed = [str(r["id"]) for _, r in t.iterrows() if r["status"] == "ok" and r["meets floors"] == "no"
                      and str(r["id"]) in set(models)]
            if missed:
                out.append(f"{', '.join(missed)} miss{'es' if len(missed) == 1 else ''} the convergence floors "
                           "(Table: did the models learn?)")
        dec = {m: r for m, r in self.decoding().items() if m in set(models)}
        if dec:
            out.append(", ".join(f"{m} decodes by {r}" for m, r in dec.items())
                       + " (the paper thresholds at 0.5; the deviations page)")
        return out

    def fig3(self, model: str, metric: str) -> dict[float, Value]:
        """Figure 3's ``metric`` for ``model`` by percentile (empty when the run has none)."""
        t = self._tidy("fig3_data")
        if t is None:
            return {}
        rows = t[(t["model"].astype(str) == model) & (t["metric"] == metric) & t["estimate"].notna()]
        return {float(r["percentile"]): _row_value(r) for _, r in rows.sort_values("percentile").iterrows()}

    def authors(self, model: str, metric: str) -> dict[float, Value]:
        """The authors' Figure 3 ``metric`` for ``model`` by percentile (empty without their file)."""
        t = self.authors_fig3
        if t is None:
            return {}
        rows = t[(t["model"] == model) & (t["metric"] == metric) & t["estimate"].notna()].sort_values("percentile")
        return {float(p): Value.of(e) for p, e in zip(rows["percentile"], rows["estimate"])}

    def wide(self, table_id: str, model: str, metric: str) -> Value | None:
        """A column of a one-row-per-model table (``table13``, ``table14``) with its interval columns."""
        t = self.table(table_id)
        if t is None or metric not in t.columns or "model" not in t.columns:
            return None
        rows = t[t["model"].astype(str) == model]
        if rows.empty or pd.isna(rows.iloc[0][metric]):
            return None
        r = rows.iloc[0]
        return Value.of(r[metric], r.get(f"{metric}_ci_low", np.nan), r.get(f"{metric}_ci_high", np.nan))

    # ------------------------------------------------------------------ the paper's artifacts
    def released(self, model: str, metric: str) -> float | None:
        """A Table 12 statistic of the paper's released sample of ``model`` (notebook 50)."""
        t = self.table("table12_released")
        if t is None or metric not in t.columns:
            return None
        rows = t[t["dataset"].astype(str) == model]
        return None if rows.empty else float(rows.iloc[0][metric])

    def printed(self, table: str, model: str, metric: str) -> float | None:
        """The number the paper prints in ``table`` for ``model`` and ``metric``."""
        p = self._printed
        rows = p[(p["table"].astype(str) == str(table)) & (p["model"] == model) & (p["metric"] == metric)]
        return None if rows.empty else float(rows.iloc[0]["value"])

    def printed_half_unit(self, table: str, model: str, metric: str) -> float:
        """Half a unit of the last printed digit of that number (what rounding allows)."""
        p = self._printed
        rows = p[(p["table"].astype(str) == str(table)) & (p["model"] == model) & (p["metric"] == metric)]
        return 0.5 * 10.0 ** -printed_decimals(rows.iloc[0]["printed"]) if not rows.empty else 0.0

    def printed_lines(self, table: str) -> str:
        p = self._printed[self._printed["table"].astype(str) == str(table)]
        return f"lines {int(p['line'].min())}-{int(p['line'].max())}" if not p.empty else ""

    def audit(self) -> pd.DataFrame | None:
        """The memorisation audit's copy counts (notebook 51), or ``None``."""
        return self.table("table_audit_copies")
