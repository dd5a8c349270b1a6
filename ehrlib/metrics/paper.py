"""The paper's printed numbers (Tables 1, 12, 13, 14) beside ours.

Paper: Table 1 (section 4), Tables 12-14 (appendix G). The numbers live in
``book/paper_results.csv``, transcribed from the paper's text: one row per printed number with
its ``table``, ``row``, ``column``, the matching ``model`` and ``metric`` names of ``ehrlib``,
the ``printed`` string, the ``line`` of the paper text it comes from and that ``source`` text.
Table 1's cells did not survive the text extraction; only the two Table 1 numbers that the
results text states (the GPT baseline's discriminative score and prevalence R²) are there.

The paper's numbers were computed on MIMIC-III (its 45,520 training patients) and its released
samples; ours on whatever data the run used. :func:`compare` puts them side by side and
computes a difference only where ours were computed from the same artifacts (the released
samples), never suggesting that numbers on different data should agree.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ehrlib.errors import MetricError

PAPER_RESULTS = Path(__file__).resolve().parents[2] / "book" / "paper_results.csv"
PAPER_DATA = "MIMIC-III (the paper's 45,520 training patients) and the paper's 10,000-record samples"
RESULT_COLUMNS = ("table", "row", "column", "model", "metric", "value", "printed", "line", "note", "source")
COMPARE_COLUMNS = ("table", "row", "column", "model", "metric", "paper", "paper_data", "ours", "ours_ci_low",
                   "ours_ci_high", "ours_data", "comparable", "difference", "within_rounding", "line", "note", "printed")


def printed_decimals(printed: str) -> int:
    """Digits after the decimal point of a printed number (``"0.3550"`` -> 4, ``"45,517"`` -> 0)."""
    text = str(printed).strip()
    return len(text.split(".", 1)[1]) if "." in text else 0


def paper_results(path=None) -> pd.DataFrame:
    """The paper's printed numbers, one row per number (columns :data:`RESULT_COLUMNS`).

    Args:
        path: the CSV; default ``book/paper_results.csv`` of the repository this package runs from.

    Raises:
        MetricError: the file is missing (e.g. ``ehrlib`` installed without the repository) or
            lacks a column.
    """
    path = Path(path) if path is not None else PAPER_RESULTS
    if not path.is_file():
        raise MetricError(f"{path}: the paper's numbers are not there; pass path= to a copy of book/paper_results.csv "
                          "from the ehrlib repository")
    frame = pd.read_csv(path, dtype={"table": str, "printed": str})
    missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
    if missing:
        raise MetricError(f"{path}: missing column(s) {missing}; expected {list(RESULT_COLUMNS)}")
    return frame


def tidy(wide: pd.DataFrame, model_column: str = "model") -> pd.DataFrame:
    """Turn a one-row-per-model table (``structure.summary_table``, ``longtail.coverage_table``,
    ``cooccurrence.cooccurrence_similarity``) into ``model, metric, estimate`` rows for :func:`compare`."""
    if model_column not in wide.columns:
        raise MetricError(f"tidy: no column {model_column!r}; found {list(wide.columns)}")
    values = wide.drop(columns=[model_column]).select_dtypes("number")
    out = values.assign(model=wide[model_column].astype(str).to_numpy()).melt(
        id_vars="model", var_name="metric", value_name="estimate")
    return out[["model", "metric", "estimate"]]


def compare(ours: pd.DataFrame, data: str, *, same_artifacts: bool = False, tables=None,
            path=None) -> pd.DataFrame:
    """Each printed number of the paper beside ours for the same model and metric.

    Args:
        ours: tidy rows with ``model``, ``metric``, ``estimate`` and optionally ``ci_low``,
            ``ci_high`` (e.g. ``ehrlib.metrics.evaluate`` output, or :func:`tidy` of a wide
            table). Model names as in ``ehrlib`` (``halo``, ``promptehr``, ``gpt``, ``medgan``,
            ``corgan``, ``train``).
        data: what ours were computed from, in words (e.g. ``"simulated cohort, demo profile"``,
            ``"the paper's released samples"``); shown on every row.
        same_artifacts: ours were computed from the paper's own artifacts (the released
            samples), so a ``difference`` is meaningful for the synthetic rows; it is always
            left empty for the real (``train``) rows, which only MIMIC-III can give.
        tables: restrict to these tables (e.g. ``["12"]``); default all.
        path: the paper's numbers (see :func:`paper_results`).

    Returns:
        One row per printed number (columns :data:`COMPARE_COLUMNS`; ``printed`` is the number
        as the paper prints it), ours NaN where the run
        did not compute that metric for that model. ``within_rounding`` (comparable rows
        only) says whether ours rounds to the printed value: ``|ours - paper|`` at most half a
        unit of the printed number's last digit.

    Raises:
        MetricError: ``ours`` lacks a needed column or holds one (model, metric) twice.
    """
    needed = ["model", "metric", "estimate"]
    missing = [c for c in needed if c not in ours.columns]
    if missing:
        raise MetricError(f"compare: ours lacks column(s) {missing}; expected {needed} (+ ci_low, ci_high)")
    if not str(data).strip():
        raise MetricError("compare: say which data ours came from (data=...)")
    mine = ours.copy()
    mine["model"] = mine["model"].astype(str).str.lower()
    dup = mine.duplicated(["model", "metric"])
    if dup.any():
        r = mine[dup].iloc[0]
        raise MetricError(f"compare: ours has model {r['model']!r}, metric {r['metric']!r} more than once")
    for c in ("ci_low", "ci_high"):
        if c not in mine.columns:
            mine[c] = np.nan
    paper = paper_results(path)
    if tables is not None:
        paper = paper[paper["table"].isin([str(t) for t in tables])]
    comparable = np.asarray(same_artifacts & (paper["model"] != "train"), dtype=bool)  # the real rows are MIMIC-III
    merged = paper.merge(mine[["model", "metric", "estimate", "ci_low", "ci_high"]], on=["model", "metric"], how="left")
    out = pd.DataFrame({
        "table": merged["table"], "row": merged["row"], "column": merged["column"], "model": merged["model"],
        "metric": merged["metric"], "paper": merged["value"], "paper_data": PAPER_DATA,
        "ours": merged["estimate"], "ours_ci_low": merged["ci_low"], "ours_ci_high": merged["ci_high"],
        "ours_data": str(data), "comparable": comparable,
        "difference": np.where(comparable, merged["estimate"] - merged["value"], np.nan),
        "within_rounding": np.nan, "line": merged["line"], "note": merged["note"].fillna(""),
        "printed": merged["printed"],
    }, columns=list(COMPARE_COLUMNS))
    half_unit = 0.5 * 10.0 ** -merged["printed"].map(printed_decimals).to_numpy(dtype=float)
    close = np.abs(out["difference"].to_numpy(dtype=float)) <= half_unit + 1e-12
    out["within_rounding"] = pd.array(np.where(comparable & out["ours"].notna(), close, pd.NA), dtype="boolean")
    return out.reset_index(drop=True)


def between_samples(samples: dict, k: int = 50) -> pd.DataFrame:
    """The released samples scored against each other, where no real data is needed.

    Paper: the marginal and co-occurrence metrics of section 3.1 and appendix G (Tables 13-14),
    with one sample in the place of the real data. Every ordered pair ``(reference, model)`` of
    distinct samples gets prevalence R², Pearson r and RMSE (:func:`ehrlib.metrics.prevalence.prevalence_metrics`),
    the Table 13 columns (:func:`ehrlib.metrics.longtail.coverage_table`) and the Table 14
    co-occurrence cosine and Frobenius difference over the reference's top ``k`` codes
    (:func:`ehrlib.metrics.cooccurrence.cooccurrence_similarity`). These say how alike two
    generators' outputs are, not how close either is to MIMIC-III.

    Returns:
        Tidy rows: ``reference``, ``model``, ``metric``, ``estimate``.

    Raises:
        MetricError: fewer than two samples.
    """
    from ehrlib.metrics.cooccurrence import cooccurrence_similarity
    from ehrlib.metrics.longtail import coverage_table
    from ehrlib.metrics.prevalence import prevalence_metrics

    if len(samples) < 2:
        raise MetricError(f"between_samples needs at least two samples, got {list(samples)}")
    frames = []
    for ref_name, ref in samples.items():
        others = {name: c for name, c in samples.items() if name != ref_name}
        rows = [{"model": name, **prevalence_metrics(ref, c)} for name, c in others.items()]
        wide = pd.DataFrame(rows).merge(coverage_table(ref, others), on="model")
        wide = wide.merge(cooccurrence_similarity(ref, others, k=k)[["model", "cosine", "frobenius"]], on="model")
        frames.append(tidy(wide).assign(reference=ref_name))
    out = pd.concat(frames, ignore_index=True)
    return out[["reference", "model", "metric", "estimate"]]


def shown_beside(compared: pd.DataFrame) -> pd.DataFrame:
    """A :func:`compare` table for reading: ``row``, ``column``, ``paper`` as printed and ``ours``
    with its interval where it has one (rounded to what the interval supports), else to the
    printed number's decimals; ``difference`` kept where it is meaningful (``comparable`` rows)."""
    from ehrlib.metrics.display import interval_cell

    ours = []
    for r in compared.itertuples():
        if pd.isna(r.ours):
            ours.append("not computed")
        elif pd.notna(r.ours_ci_low) and pd.notna(r.ours_ci_high):
            ours.append(interval_cell(float(r.ours), float(r.ours_ci_low), float(r.ours_ci_high)))
        else:
            ours.append(f"{float(r.ours):.{printed_decimals(r.printed)}f}")
    out = pd.DataFrame({"row": compared["row"].to_numpy(), "column": compared["column"].to_numpy(),
                        "paper": compared["printed"].to_numpy(), "ours": ours})
    if compared["comparable"].any():
        out["within rounding"] = compared["within_rounding"].astype("object").where(compared["comparable"], "")
    return out
