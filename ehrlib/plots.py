"""One function per paper figure: tidy metric output in, matplotlib Figure out.

Each ``figN_*`` takes the DataFrame returned by the metric that computes it (named in its
docstring) and returns a :class:`matplotlib.figure.Figure` that pyplot no longer tracks (it is
closed on creation), so nothing is shown twice or kept open as a side effect and it works
under any backend (Agg in CI); in a notebook, end a cell with the figure to display it. Saving
is :func:`ehrlib.book.save_figure`'s job.

Models keep one colour and line style in every figure (:data:`MODEL_COLORS`, keyed by model
name, case-insensitive; unknown names get a stable colour derived from the name). The real
training data is black, the reference generators are grey or muted, the models use the
paper's colours where it names them (HALO blue, PromptEHR red, CorGAN green, GPT purple).
"""
from __future__ import annotations

import zlib

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ehrlib.metrics.longtail import PERCENTILES, rank_frequency

#: Colour of every known model; keys are lower-case model names.
MODEL_COLORS = {
    "train": "#000000",
    "holdout": "#7f7f7f",
    "marginals": "#bcbd22",
    "memorizer": "#8c564b",
    "medgan": "#ff7f0e",
    "medgan_count": "#e7298a",  # magenta: MedGAN's two modes side by side must not read as one orange
    "corgan": "#2ca02c",
    "promptehr": "#d62728",
    "halo": "#1f77b4",
    "gpt": "#9467bd",
}
#: Display name of every known model.
MODEL_LABELS = {
    "train": "Real (train)",
    "holdout": "Holdout (real)",
    "marginals": "Marginals",
    "memorizer": "Memorizer",
    "medgan": "MedGAN",
    "medgan_count": "MedGAN (count)",
    "corgan": "CorGAN",
    "promptehr": "PromptEHR",
    "halo": "HALO",
    "gpt": "GPT baseline",
}
_ALIASES = {
    "real": "train", "real (train)": "train", "gpt2": "gpt", "gpt-2": "gpt",
    "gpt baseline": "gpt", "gpt_baseline": "gpt", "prompt_ehr": "promptehr", "medgan-count": "medgan_count",
}
_REFERENCES = {"holdout": "--", "marginals": ":", "memorizer": "-."}
_EXTRA_COLORS = ("#17becf", "#e377c2", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94")
REAL = "train"


# ---------------------------------------------------------------------------- styling
def _key(model) -> str:
    k = str(model).strip().lower()
    return _ALIASES.get(k, k)


def model_color(model: str) -> str:
    """The model's colour: from :data:`MODEL_COLORS`, else a stable choice from the name."""
    k = _key(model)
    if k in MODEL_COLORS:
        return MODEL_COLORS[k]
    return _EXTRA_COLORS[zlib.crc32(k.encode()) % len(_EXTRA_COLORS)]


def model_label(model: str) -> str:
    """The model's display name (``halo`` -> ``HALO``, a user generator's ``user_markov`` ->
    ``markov (user-supplied)``); unknown names are returned unchanged."""
    from ehrlib.models import user

    if user.is_user(model):
        return user.label(model)
    return MODEL_LABELS.get(_key(model), str(model))


def model_style(model: str) -> dict:
    """Line keyword arguments for the model: colour, line style, width, z-order, label."""
    k = _key(model)
    return {
        "color": model_color(model),
        "linestyle": _REFERENCES.get(k, "-"),
        "linewidth": 2.2 if k == REAL else 1.6,
        "zorder": 3 if k == REAL else 2,
        "label": model_label(model),
    }


def _models(df: pd.DataFrame, real_first: bool = True) -> list[str]:
    """Model names in order of appearance, the real one first."""
    names = list(pd.unique(df["model"]))
    if real_first:
        names.sort(key=lambda m: 0 if _key(m) == REAL else 1)
    return names


def _figure(width: float, height: float) -> Figure:
    """A new figure that pyplot does not manage.

    Created through pyplot so that, in Jupyter, the inline backend registers its image
    formatter for figures (a Figure built without pyplot displays as text there and glues as
    text), then closed at once so it is neither shown twice at the end of a cell nor kept
    open: the caller owns it.
    """
    fig = plt.figure(figsize=(width, height), layout="constrained")
    plt.close(fig)
    return fig


def _legend(fig: Figure, models: list[str], marker: str | None = None) -> None:
    """One figure-level legend with one entry per model, outside the plotting area."""
    handles = [Line2D([], [], marker=marker, **model_style(m)) for m in models]
    fig.legend(handles=handles, loc="outside right upper", frameon=False, title="Model")


def _legend_real_first(fig: Figure, ax, real: str) -> None:
    """Figure legend from the axes' labelled artists, the real (bar) entry first."""
    handles, labels = ax.get_legend_handles_labels()
    first = model_label(real)
    pairs = sorted(zip(handles, labels), key=lambda hl: 0 if hl[1] == first else 1)
    fig.legend([h for h, _ in pairs], [lab for _, lab in pairs], loc="outside right upper", frameon=False,
               title="Model")


def _require(df: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: the table lacks column(s) {missing}; found {list(df.columns)}")
    if df.empty:
        raise ValueError(f"{what}: the table is empty")


def _bars_and_dots(ax, df: pd.DataFrame, key: str, value: str, pos: dict, models: list[str], real: str,
                   spread: float, horizontal: bool) -> None:
    """The real model as grey bars and every other model as dots beside them (Figs. 5 and 12)."""
    others = [m for m in models if m != real]
    offsets = np.linspace(-spread, spread, len(others)) if len(others) > 1 else np.zeros(len(others))
    if real in models:
        d = df[df["model"] == real]
        bar = ax.barh if horizontal else ax.bar
        bar(d[key].map(pos), d[value], 0.75 if horizontal else 0.8, color="#d9d9d9", edgecolor="#555555",
            linewidth=0.6, label=model_label(real), zorder=1)
    for off, m in zip(offsets, others):
        d = df[df["model"] == m]
        st = model_style(m)
        at, val = d[key].map(pos) + off, d[value]
        ax.plot(*((val, at) if horizontal else (at, val)), marker="o", markersize=5, linestyle="none",
                color=st["color"], label=st["label"], zorder=3)


def _grid(n: int, ncols: int) -> tuple[int, int]:
    ncols = max(1, min(ncols, n))
    return int(np.ceil(n / ncols)), ncols


# ---------------------------------------------------------------------------- Fig. 2
def fig2_code_distribution(train, percentiles=PERCENTILES, bins: int = 50,
                           views=("histogram", "rank")) -> Figure:
    """Fig. 2: the long-tailed distribution of training code frequencies.

    The paper's Fig. 2 is a histogram of log occurrence counts (50 bins; its notebook's
    ``value_counts`` of the long table, one count per code). Beside it, the rank view: patients
    per code against the code's frequency rank, with the Fig. 3 cut-offs.

    Paper: section 1, Fig. 2.

    Args:
        train: the training Cohort, or :func:`ehrlib.metrics.longtail.rank_frequency` output
            (its first model; the histogram then uses patient counts, since occurrences need
            the cohort).
        percentiles: draw the Fig. 3 cut-offs (p-th percentile of code frequency) as lines;
            ``()`` for none.
        bins: histogram bins (the paper: 50).
        views: which panels, in order: ``"histogram"`` (the paper's) and/or ``"rank"``.

    Returns:
        One axes per view.
    """
    from ehrlib.metrics.longtail import occurrence_counts

    unknown = [v for v in views if v not in ("histogram", "rank")]
    if unknown or not views:
        raise ValueError(f"views={tuple(views)!r}: expected one or both of ('histogram', 'rank')")
    df = train if isinstance(train, pd.DataFrame) else rank_frequency({REAL: train})
    _require(df, ["model", "rank", "patients"], "fig2_code_distribution")
    d = df[df["model"] == _models(df)[0]].sort_values("rank")
    counts = d["patients"].to_numpy()
    if isinstance(train, pd.DataFrame):
        occurrences, what = counts, "patients with the code"
    else:
        occurrences, what = occurrence_counts(train).to_numpy(), "occurrences of the code"
    fig = _figure(6.0 * len(views) + 0.6, 4.2)
    axes = fig.subplots(1, len(views), squeeze=False)[0]
    for ax, view in zip(axes, views):
        if view == "histogram":
            logs = np.log10(occurrences)
            ax.hist(logs, bins=bins, color="#555555", edgecolor="white", linewidth=0.4)
            for p, thr in zip(percentiles, np.percentile(occurrences, list(percentiles)) if len(percentiles) else []):
                ax.axvline(np.log10(thr), color="#999999", linewidth=0.8, linestyle=":")
                ax.annotate(f"p{p:g}", (np.log10(thr), 1), xycoords=("data", "axes fraction"), xytext=(2, -10),
                            textcoords="offset points", fontsize=8, color="#666666")
            ax.set_xlabel(f"log10({what})")
            ax.set_ylabel("Number of codes")
            ax.set_title(f"{len(occurrences):,} training codes ({bins} bins)")
            ax.grid(True, axis="y", alpha=0.3)
        else:
            ax.fill_between(d["rank"], counts, 0.8, step="mid", color=MODEL_COLORS["train"], alpha=0.15, linewidth=0)
            ax.plot(d["rank"], counts, drawstyle="steps-mid", color=MODEL_COLORS["train"], linewidth=1.6,
                    label=f"{len(d):,} codes")
            ax.set_yscale("log")
            ax.set_ylim(bottom=0.8)
            for p, thr in zip(percentiles, np.percentile(counts, list(percentiles)) if len(percentiles) else []):
                ax.axhline(thr, color="#999999", linewidth=0.8, linestyle=":")
                ax.annotate(f"p{p:g}", (len(d), thr), xytext=(2, 0), textcoords="offset points",
                            va="center", fontsize=8, color="#666666", annotation_clip=False)
            ax.set_xlabel("Code rank by training frequency (1 = most frequent)")
            ax.set_ylabel("Patients with the code (log scale)")
            ax.set_title("Rank view")
            ax.legend(frameon=False)
            ax.grid(True, which="major", axis="y", alpha=0.3)
    fig.suptitle("Training code frequencies are long-tailed")
    return fig


# ---------------------------------------------------------------------------- Fig. 3
_ABLATION_PANELS = {
    "nnaar": "NNAAR",
    "mia_f1": "MIA F1",
    "mia_accuracy": "MIA accuracy",
    "prevalence_r2": "Prevalence R²",
    "prevalence_rmse": "Prevalence RMSE (share of patients)",
    "disc_score": "Discriminator privacy score",
}


def fig3_percentile_ablation(df: pd.DataFrame) -> Figure:
    """Fig. 3: every metric as the subset grows from the 75th to the 99th frequency percentile.

    Args:
        df: :func:`ehrlib.metrics.longtail.longtail_ablation` output (tidy: ``metric``,
            ``estimate``, ``ci_low``, ``ci_high``, ``spread``; the paper's six panels with
            intervals, or bars of ± spread for the privacy panels).

    Returns:
        One axes per metric present, one line per model; percentiles evenly spaced on the x
        axis. The x tick labels also give the share of code occurrences the tail holds.
    """
    _require(df, ["model", "percentile", "metric", "estimate"], "fig3_percentile_ablation")
    panels = [m for m in _ABLATION_PANELS if m in set(df["metric"])]
    if not panels:
        raise ValueError(f"fig3_percentile_ablation: none of {list(_ABLATION_PANELS)} in the table")
    pcts = np.sort(df["percentile"].unique())
    pos = {p: i for i, p in enumerate(pcts)}
    labels = [f"{p:g}" for p in pcts]
    if "tail_share" in df.columns:
        share = df.drop_duplicates("percentile").set_index("percentile")["tail_share"]
        labels = [f"{p:g}\n({share[p]:.0%})" for p in pcts]
    models = _models(df)
    ncols = min(3, len(panels))
    nrows = int(np.ceil(len(panels) / ncols))
    fig = _figure(3.6 * ncols + 1.8, 3.3 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, col in zip(axes, panels):
        for m in models:
            st = model_style(m)
            d = df[(df["model"] == m) & (df["metric"] == col)].sort_values("percentile")
            x, y = d["percentile"].map(pos).to_numpy(float), d["estimate"].to_numpy(float)
            low = d["ci_low"].to_numpy(float) if "ci_low" in d else np.full(len(d), np.nan)
            high = d["ci_high"].to_numpy(float) if "ci_high" in d else np.full(len(d), np.nan)
            spread = d["spread"].to_numpy(float) if "spread" in d else np.full(len(d), np.nan)
            low = np.where(np.isfinite(low), low, y - spread)
            high = np.where(np.isfinite(high), high, y + spread)
            ax.plot(x, y, marker="o", markersize=4, **st)
            ok = np.isfinite(low) & np.isfinite(high)
            if ok.any():
                ax.fill_between(x[ok], low[ok], high[ok], color=st["color"], alpha=0.15, linewidth=0)
        ax.set_xticks(range(len(pcts)), labels)
        ax.set_ylabel(_ABLATION_PANELS[col])
        ax.grid(True, alpha=0.3)
    for ax in axes[len(panels):]:
        fig.delaxes(ax)
    fig.supxlabel("Percentile of training code frequency (codes at or below it are kept)"
                  + ("; share of code occurrences kept" if "tail_share" in df.columns else ""))
    _legend(fig, models, marker="o")
    return fig


# ---------------------------------------------------------------------------- Fig. 4
def fig4_rank_frequency(df: pd.DataFrame) -> Figure:
    """Fig. 4: log-log rank-frequency curves of patient-level code prevalence.

    Args:
        df: :func:`ehrlib.metrics.longtail.rank_frequency` output.

    Returns:
        One axes, one line per model.
    """
    _require(df, ["model", "rank", "prevalence"], "fig4_rank_frequency")
    models = _models(df)
    fig = _figure(7.5, 4.5)
    ax = fig.add_subplot()
    for m in models:
        d = df[df["model"] == m].sort_values("rank")
        ax.plot(d["rank"], d["prevalence"], **model_style(m))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Code rank within the cohort (log scale)")
    ax.set_ylabel("Prevalence (share of patients, log scale)")
    ax.grid(True, which="major", alpha=0.3)
    _legend(fig, models)
    return fig


# ---------------------------------------------------------------------------- Fig. 5
def fig5_top20(df: pd.DataFrame, real: str = REAL) -> Figure:
    """Fig. 5: prevalence of the 20 most prevalent training codes in each model.

    Args:
        df: :func:`ehrlib.metrics.longtail.top_codes` output.
        real: the model name drawn as bars (the real training data).

    Returns:
        One axes: the real prevalence as grey bars, one marker series (a line without
        connecting segments) per other model; codes in training-rank order.
    """
    _require(df, ["model", "rank", "code", "prevalence"], "fig5_top20")
    models = _models(df)
    order = df.drop_duplicates("rank").sort_values("rank")
    x = np.arange(len(order))
    pos = dict(zip(order["code"], x))
    fig = _figure(max(7.5, 0.42 * len(order) + 2.5), 4.5)
    ax = fig.add_subplot()
    _bars_and_dots(ax, df, "code", "prevalence", pos, models, real, spread=0.28, horizontal=False)
    labels = [f"{c} {t}".strip() for c, t in zip(order["code"], order["title"])] if "title" in order else order["code"]
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=8)
    ax.set_xlabel("ICD-9 code and CMS short title (ranked by training prevalence)")
    ax.set_ylabel("Prevalence (share of patients)")
    ax.set_xlim(-0.6, len(order) - 0.4)
    ax.grid(True, axis="y", alpha=0.3)
    _legend_real_first(fig, ax, real)
    return fig


# ---------------------------------------------------------------------------- Fig. 6
def fig6_per_code_scatter(df: pd.DataFrame, ncols: int = 3) -> Figure:
    """Fig. 6: per-code real vs synthetic prevalence, symlog axes, one panel per model.

    Args:
        df: :func:`ehrlib.metrics.longtail.per_code_prevalence` output.
        ncols: panels per row.

    Returns:
        One axes per model (shared axes), each with the scatter and the diagonal y = x. The
        linear region of the symlog scale is the smallest non-zero prevalence in the table.
    """
    _require(df, ["model", "real", "synthetic"], "fig6_per_code_scatter")
    models = _models(df)
    nrows, ncols = _grid(len(models), ncols)
    fig = _figure(3.3 * ncols + 0.4, 3.1 * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
    values = df[["real", "synthetic"]].to_numpy()
    positive = values[values > 0]
    linthresh = float(positive.min()) if positive.size else 1e-4
    top = float(values.max()) * 1.5 if values.size else 1.0
    for ax, m in zip(axes, models):
        d = df[df["model"] == m]
        st = model_style(m)
        ax.scatter(d["real"], d["synthetic"], s=6, alpha=0.35, color=st["color"], linewidths=0, rasterized=True)
        ax.plot([0, top], [0, top], color="#444444", linewidth=0.8, linestyle="--")
        ax.set_xscale("symlog", linthresh=linthresh)
        ax.set_yscale("symlog", linthresh=linthresh)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_title(st["label"], color=st["color"], fontsize=10)
        ax.grid(True, alpha=0.3)
    for ax in axes[len(models):]:
        fig.delaxes(ax)
    for i, ax in enumerate(axes[:len(models)]):
        if i + ncols >= len(models):      # nothing below it: show its x tick labels
            ax.xaxis.set_tick_params(labelbottom=True)
    fig.supxlabel("Real (train) prevalence, share of patients (symlog scale)")
    fig.supylabel("Synthetic prevalence\n(share of patients, symlog)")
    return fig


# ---------------------------------------------------------------------------- Fig. 7
def fig7_cumulative_mass(df: pd.DataFrame) -> Figure:
    """Fig. 7: cumulative share of prevalence mass held by the top-k codes of each cohort.

    Args:
        df: :func:`ehrlib.metrics.longtail.cumulative_mass` output.

    Returns:
        One axes (log x), one line per model.
    """
    _require(df, ["model", "k", "cumulative_share"], "fig7_cumulative_mass")
    models = _models(df)
    fig = _figure(7.5, 4.5)
    ax = fig.add_subplot()
    for m in models:
        d = df[df["model"] == m].sort_values("k")
        ax.plot(d["k"], d["cumulative_share"], **model_style(m))
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("Top-k most prevalent codes of the cohort (k, log scale)")
    ax.set_ylabel("Cumulative share of prevalence mass")
    ax.grid(True, which="major", alpha=0.3)
    _legend(fig, models)
    return fig


# ---------------------------------------------------------------------------- Fig. 8
_BUCKET_PANELS = {
    "r2": "Prevalence R²",
    "pearson": "Prevalence Pearson r",
    "rmse": "Prevalence RMSE (share of patients)",
    "rmse_ratio": "RMSE / sampling-noise RMSE (symlog)",
    "mass_ratio": "Synthetic / real prevalence mass (symlog)",
    "rmse_ratio_reference": "RMSE / reference RMSE (symlog)",
}


def fig8_buckets(df: pd.DataFrame, panels=("r2", "rmse_ratio", "mass_ratio"), r2_floor: float = -1.0) -> Figure:
    """Fig. 8: prevalence fit per training-frequency bucket (Q1 = most frequent codes).

    Args:
        df: :func:`ehrlib.metrics.longtail.frequency_buckets` output; with its interval
            columns (``n_bootstrap``) the ``r2``, ``pearson`` and ``rmse`` panels get bands.
        panels: columns to draw, one panel each (any of ``r2``, ``pearson``, ``rmse``,
            ``rmse_ratio``, ``mass_ratio``, ``rmse_ratio_reference``). ``rmse_ratio_reference``
            is appended when the table has it. Ratio panels use a symlog scale (so 0, a
            bucket the model never emits, stays visible) with a dashed line at 1.
        r2_floor: R² values below it are drawn at it (hollow markers), since R² in the rare
            buckets can reach -100 and would flatten the panel; buckets where R² is undefined
            (all real prevalences equal) have no point.

    Returns:
        One axes per panel, one line per model.
    """
    panels = list(panels)
    if "rmse_ratio_reference" in df.columns and df["rmse_ratio_reference"].notna().any() \
            and "rmse_ratio_reference" not in panels:
        panels.append("rmse_ratio_reference")
    unknown = [p for p in panels if p not in _BUCKET_PANELS]
    if unknown:
        raise ValueError(f"fig8_buckets: unknown panel(s) {unknown}; expected some of {list(_BUCKET_PANELS)}")
    _require(df, ["model", "bucket", *panels], "fig8_buckets")
    models = _models(df)
    buckets = np.sort(df["bucket"].unique())
    fig = _figure(3.4 * len(panels) + 1.6, 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, col in zip(axes, panels):
        label = _BUCKET_PANELS[col]
        for m in models:
            d = df[df["model"] == m].sort_values("bucket")
            y = d[col].to_numpy(dtype=float)
            st = model_style(m)
            if col == "r2":
                clipped = y < r2_floor
                y = np.where(clipped, r2_floor, y)
                ax.plot(d["bucket"][clipped], y[clipped], marker="o", markersize=7, linestyle="none",
                        markerfacecolor="none", color=st["color"])
                label = f"Prevalence R² (clipped at {r2_floor:g})"
            ax.plot(d["bucket"], y, marker="o", markersize=4, **st)
            if f"{col}_ci_low" in d.columns:  # bootstrap intervals (frequency_buckets(n_bootstrap=...))
                low = d[f"{col}_ci_low"].to_numpy(dtype=float)
                high = d[f"{col}_ci_high"].to_numpy(dtype=float)
                if col == "r2":
                    low, high = np.maximum(low, r2_floor), np.maximum(high, r2_floor)
                ok = np.isfinite(low) & np.isfinite(high)
                ax.fill_between(d["bucket"].to_numpy()[ok], low[ok], high[ok], color=st["color"], alpha=0.15,
                                linewidth=0)
        if "ratio" in col:
            # symlog keeps a ratio of 0 (a bucket the model never emits) on the axis
            ax.set_yscale("symlog", linthresh=0.1, linscale=0.5)
            ax.set_ylim(bottom=0)
            ax.axhline(1.0, color="#444444", linewidth=0.8, linestyle="--")
        ax.set_xticks(buckets, [f"Q{b}" for b in buckets], fontsize=8)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    fig.supxlabel("Training-frequency bucket (equal numbers of codes; Q1 = most frequent)")
    _legend(fig, models, marker="o")
    return fig


# ---------------------------------------------------------------------------- Figs. 9-11
def _distribution_figure(df: pd.DataFrame, quantity: str, xlabel: str, unit: str, log_y: bool,
                         xmax: float | None, what: str) -> Figure:
    _require(df, ["model", "quantity", "value", "share"], what)
    d0 = df[df["quantity"] == quantity]
    if d0.empty:
        raise ValueError(f"{what}: no rows with quantity == {quantity!r}")
    models = _models(d0)
    fig = _figure(7.5, 4.3)
    ax = fig.add_subplot()
    for m in models:
        d = d0[d0["model"] == m].sort_values("value")
        st = model_style(m)
        if "mean" in d.columns:
            st["label"] = f"{st['label']} (mean {d['mean'].iloc[0]:.2f})"
        ax.plot(d["value"], d["share"], marker="o", markersize=3, **st)
    if log_y:
        ax.set_yscale("log")
    if xmax is not None:
        ax.set_xlim(right=xmax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"Share of {unit}" + (" (log scale)" if log_y else ""))
    ax.grid(True, alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right upper", frameon=False, title="Model")
    return fig


def fig9_visits_per_patient(df: pd.DataFrame, log_y: bool = True, xmax: float | None = None) -> Figure:
    """Fig. 9: distribution of visits per patient.

    Args:
        df: :func:`ehrlib.metrics.structure.distributions` output (the paper shows only the
            sequential models and train here: filter ``df`` first).
        log_y: log-scale the share axis (the long tail is invisible otherwise).
        xmax: optional right limit of the x axis.

    Returns:
        One axes, one line per model (legend shows each model's mean).
    """
    return _distribution_figure(df, "visits_per_patient", "Visits per patient", "patients", log_y, xmax,
                                "fig9_visits_per_patient")


def fig10_codes_per_visit(df: pd.DataFrame, log_y: bool = True, xmax: float | None = None) -> Figure:
    """Fig. 10: distribution of distinct codes per visit (input: ``structure.distributions``).

    Returns:
        One axes, one line per model.
    """
    return _distribution_figure(df, "codes_per_visit", "Distinct codes per visit", "visits", log_y, xmax,
                                "fig10_codes_per_visit")


def fig11_codes_per_patient(df: pd.DataFrame, log_y: bool = True, xmax: float | None = None) -> Figure:
    """Fig. 11: distribution of distinct codes per patient record (input: ``structure.distributions``).

    Returns:
        One axes, one line per model.
    """
    return _distribution_figure(df, "codes_per_patient", "Distinct codes per patient record", "patients",
                                log_y, xmax, "fig11_codes_per_patient")


# ---------------------------------------------------------------------------- Fig. 12
def fig12_chapters(df: pd.DataFrame, real: str = REAL) -> Figure:
    """Fig. 12: share of patients with at least one code in each ICD-9 chapter.

    Args:
        df: :func:`ehrlib.metrics.chapters.chapter_prevalence` output.
        real: the model drawn as bars.

    Returns:
        One axes with chapters on the y axis (in chapter order, top to bottom): the real
        share as grey bars and one marker series per other model.
    """
    _require(df, ["model", "chapter", "chapter_name", "share"], "fig12_chapters")
    models = _models(df)
    chapters = df.drop_duplicates("chapter")
    labels = [f"{c}. {n}" if c.isdigit() else n for c, n in zip(chapters["chapter"], chapters["chapter_name"])]
    y = np.arange(len(chapters))
    pos = dict(zip(chapters["chapter"], y))
    fig = _figure(9.0, 0.34 * len(chapters) + 1.6)
    ax = fig.add_subplot()
    _bars_and_dots(ax, df, "chapter", "share", pos, models, real, spread=0.25, horizontal=True)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, min(1.0, float(df["share"].max()) * 1.1 + 0.01))
    ax.set_xlabel("Share of patients with at least one code in the chapter")
    ax.set_ylabel("ICD-9-CM chapter")
    ax.grid(True, axis="x", alpha=0.3)
    _legend_real_first(fig, ax, real)
    return fig


# ---------------------------------------------------------------------------- Fig. 13
def fig13_cooccurrence(df: pd.DataFrame, ncols: int = 3, cmap: str = "viridis") -> Figure:
    """Fig. 13: patient-level co-occurrence of the top-k real codes, one heatmap per model.

    Args:
        df: :func:`ehrlib.metrics.cooccurrence.cooccurrence_matrices` output.
        ncols: heatmaps per row.
        cmap: matplotlib colour map.

    Returns:
        One axes per model plus one shared colour bar. The diagonal (prevalence) is masked so
        the colour scale shows pair structure; all panels share that scale.
    """
    _require(df, ["model", "i", "j", "share"], "fig13_cooccurrence")
    models = _models(df)
    k = int(df["i"].max()) + 1
    mats = {}
    for m in models:
        d = df[df["model"] == m]
        a = np.full((k, k), np.nan)
        a[d["i"].to_numpy(), d["j"].to_numpy()] = d["share"].to_numpy()
        np.fill_diagonal(a, np.nan)
        mats[m] = a
    vmax = max(float(np.nanmax(a)) if np.isfinite(a).any() else 0.0 for a in mats.values()) or 1.0
    nrows, ncols = _grid(len(models), ncols)
    fig = _figure(3.2 * ncols + 1.0, 3.1 * nrows + 0.3)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    ticks = [t for t in (0, 9, 19, 29, 39, 49, 99) if t < k]
    image = None
    for ax, m in zip(axes, models):
        image = ax.imshow(mats[m], vmin=0, vmax=vmax, cmap=cmap, interpolation="nearest")
        st = model_style(m)
        ax.set_title(st["label"], color=st["color"], fontsize=10)
        ax.set_xticks(ticks, [t + 1 for t in ticks], fontsize=7)
        ax.set_yticks(ticks, [t + 1 for t in ticks], fontsize=7)
    for ax in axes[len(models):]:
        fig.delaxes(ax)
    fig.colorbar(image, ax=list(axes[:len(models)]), shrink=0.8,
                 label="Share of patients with both codes")
    fig.supxlabel(f"Code rank among the top-{k} real codes")
    fig.supylabel(f"Code rank among the top-{k} real codes")
    return fig


# ---------------------------------------------------------------------------- training
#: The fidelity-check panels of a training page and of the learning-curves figure: key, title.
CHECK_PANELS = (("val_r2", "Prevalence R² (validation)"), ("val_distinct", "Distinct codes / validation's"),
                ("val_empty", "Empty records drawn"))
#: The lowest R² drawn: an untrained GAN's checks reach -400 and would flatten the rest of the curve.
R2_FLOOR_DRAWN = -1.0


def _check_values(d: pd.DataFrame, k: str):
    """A check's values as drawn: R² below :data:`R2_FLOOR_DRAWN` at that floor."""
    return d[k].clip(lower=R2_FLOOR_DRAWN) if k == "val_r2" else d[k]


def _check_axis(ax, k: str, label: str) -> None:
    if k == "val_r2":
        ax.set_ylim(R2_FLOOR_DRAWN - 0.05, 1.02)
        label += f"; below {R2_FLOOR_DRAWN:g} drawn at {R2_FLOOR_DRAWN:g}"
    ax.set_title(label, fontsize=10)


def _stopping_marks(ax, df: pd.DataFrame, stopping, x: str) -> None:
    """Dashed line at each phase's restored best epoch, dotted at each phase's last epoch."""
    for s in stopping or []:
        for epoch, style in ((s.get("best_epoch"), "--"), (s.get("last_epoch"), ":")):
            row = df[df["epoch"] == epoch]
            if epoch is not None and len(row):
                ax.axvline(float(row[x].iloc[0]), color="#999999", linestyle=style, linewidth=1)


def training_curves(history, title: str = "", stopping=None) -> Figure:
    """Training curves of one run over training seconds: losses, then the fidelity checks.

    Args:
        history: ``Generator.history`` of a neural generator: one dict per epoch with ``epoch``,
            ``seconds`` (training time so far), losses (``loss``, ``val_loss``, ``d_loss``) and, on
            checked epochs, the fidelity check's ``val_r2``, ``val_distinct`` and ``val_empty``.
        title: figure title, e.g. the model name.
        stopping: ``Generator.stopping`` (one dict per phase): a dashed line marks each phase's
            best epoch (its weights are restored), a dotted one its last epoch.
    """
    df = pd.DataFrame(list(history))
    _require(df, ["epoch"], "training_curves")
    x = "seconds" if "seconds" in df.columns else "epoch"
    skip = {"epoch", "seconds", "check_seconds", "phase", "tokens", "lr", "fidelity", *[k for k, _ in CHECK_PANELS]}
    losses = [c for c in df.columns if c not in skip and pd.api.types.is_numeric_dtype(df[c])]
    checks = [(k, t) for k, t in CHECK_PANELS if k in df.columns and df[k].notna().any()]
    panels = [(k, k) for k in losses] + checks
    if not panels:
        raise ValueError(f"training_curves: no numeric quantity besides 'epoch' in {list(df.columns)}")
    nrows, ncols = _grid(len(panels), 3)
    fig = _figure(3.2 * ncols, 2.5 * nrows + 0.5)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (k, label) in zip(axes, panels):
        d = df[df[k].notna()]
        ax.plot(d[x], _check_values(d, k), marker="o" if len(d) < 30 else None, markersize=3, color="#333333")
        if k == "val_empty":
            ax.set_ylim(0, max(0.05, 1.1 * float(d[k].max())))
        _stopping_marks(ax, df, stopping, x)
        _check_axis(ax, k, label)
        ax.set_xlabel("training seconds" if x == "seconds" else "epoch")
    for ax in axes[len(panels):]:
        fig.delaxes(ax)
    if title:
        fig.suptitle(title)
    return fig


def learning_curves(curves: dict) -> Figure:
    """Fidelity against training compute, every generator side by side (this project's figure).

    Args:
        curves: model name -> ``{"history": ..., "stopping": ...}`` as saved with each model. Each
            line follows the fidelity checks over training seconds; a filled marker shows the
            restored (best) check, a cross where training stopped.
    """
    panels = [p for p in CHECK_PANELS if any(p[0] in h for c in curves.values() for h in c["history"])]
    if not panels:
        raise ValueError("learning_curves: no model's history holds a fidelity check (val_r2)")
    # one panel per measure, stacked, at the page's width, so that its labels stay at reading size
    fig = _figure(LEARNING_WIDTH, 2.9 * len(panels) + 0.6)
    axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True).ravel()
    for name, c in curves.items():
        df = pd.DataFrame(list(c["history"]))
        if "val_r2" not in df.columns:
            continue
        stopping = c.get("stopping") or []
        best = stopping[-1].get("best_epoch") if stopping else None
        for ax, (k, label) in zip(axes, panels):
            d = df[df[k].notna()]
            style = model_style(name)
            ax.plot(d["seconds"], _check_values(d, k), **style)
            b = d[d["epoch"] == best]
            if len(b):
                ax.plot(b["seconds"], _check_values(b, k), "o", color=style["color"], markersize=6)
            ax.plot(d["seconds"].iloc[-1:], _check_values(d, k).iloc[-1:], "x", color=style["color"], markersize=7)
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    for ax, (k, label) in zip(axes, panels):
        _check_axis(ax, k, label)
        ax.title.set_fontsize(LEARNING_FONT)
        ax.tick_params(labelsize=LEARNING_FONT - 1)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        if k == "val_empty":
            ax.set_ylim(0, max(0.05, ax.get_ylim()[1]))
    axes[-1].set_xlabel("training seconds (log scale)", fontsize=LEARNING_FONT)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=LEARNING_FONT - 1, loc="outside upper center",
               ncol=min(4, max(1, len(labels))), frameon=False)
    return fig


LEARNING_WIDTH = 7.5
"""Width of the learning-curves figure in inches: the book page's text width, so that it is shown
at its own size (its fonts at :data:`LEARNING_FONT` points stay legible)."""
LEARNING_FONT = 11


# ---------------------------------------------------------------------------- Fig. 14 (ours)
def fig14_alpha_ablation(df: pd.DataFrame) -> Figure:
    """Fig. 14 (this project's, not the paper's): PromptEHR's frequency guidance strength α.

    Args:
        df: one row per α with columns ``alpha`` and the quantities to show, by default
            ``prevalence_r2``, ``unique_codes`` and ``codes_per_visit`` (plus optional
            ``real_unique_codes`` and ``real_codes_per_visit`` drawn as reference lines).
    """
    panels = [("prevalence_r2", "Prevalence R²"), ("unique_codes", "Unique codes"),
              ("codes_per_visit", "Codes per visit"), ("visits_per_patient", "Visits per patient")]
    panels = [(k, label) for k, label in panels if k in df.columns]
    _require(df, ["alpha"] + [k for k, _ in panels[:1]], "fig14_alpha_ablation")
    d = df.sort_values("alpha")
    fig = _figure(3.0 * len(panels), 2.8)
    axes = fig.subplots(1, len(panels), squeeze=False).ravel()
    color = model_color("promptehr")
    for ax, (k, label) in zip(axes, panels):
        ax.plot(d["alpha"], d[k], marker="o", color=color, label=model_label("promptehr"))
        if f"real_{k}" in d.columns:
            ax.axhline(float(d[f"real_{k}"].iloc[0]), color=model_color(REAL), linestyle="--", linewidth=1,
                       label=model_label(REAL))
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("α (frequency guidance)")
        ax.set_xticks(d["alpha"].to_numpy())
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="outside right upper", frameon=False)
    return fig


def fig_audit(nearest: pd.DataFrame, copies: pd.DataFrame, role: str | None = None, min_codes: int | None = None) -> Figure:
    """Memorisation audit: nearest-record distances and copy rates, each file beside its control.

    Args:
        nearest: ``Audit.nearest`` of :func:`ehrlib.metrics.audit.audit` (one row per real
            patient and synthetic file; ``comparison`` is ``sample`` or ``marginals``).
        copies: ``Audit.copies`` of the same audit.
        role: the real patients to show (default ``train-list`` if present, else the first role).
        min_codes: the minimum record size for the copy panel (default the smallest audited).

    Returns:
        Three axes: the cumulative share of real patients whose nearest synthetic record is
        within a set distance, the same for the Jaccard distance (solid: the file, dotted: its
        marginals control), and the copy rate with its exact interval for each file and control.
    """
    _require(nearest, ["synthetic", "comparison", "role", "set_distance", "jaccard_distance"], "fig_audit")
    _require(copies, ["synthetic", "comparison", "role", "min_codes", "rate", "ci_low", "ci_high", "copied", "eligible"],
             "fig_audit")
    roles = list(pd.unique(nearest["role"]))
    role = role or ("train-list" if "train-list" in roles else roles[0])
    if role not in roles:
        raise ValueError(f"fig_audit: role {role!r} not in the audit; found {roles}")
    min_codes = int(copies["min_codes"].min()) if min_codes is None else int(min_codes)
    files = list(pd.unique(nearest["synthetic"]))
    near = nearest[nearest["role"] == role]
    fig = _figure(13, 4.2)
    axes = fig.subplots(1, 3)
    for ax, column, label in ((axes[0], "set_distance", "Nearest set distance"),
                              (axes[1], "jaccard_distance", "Nearest Jaccard distance (codes)")):
        for name in files:
            for comparison, style in (("sample", "-"), ("marginals", ":")):
                values = np.sort(near.loc[(near["synthetic"] == name) & (near["comparison"] == comparison), column]
                                 .to_numpy(dtype=float))
                values = values[np.isfinite(values)]
                if not len(values):
                    continue
                share = np.arange(1, len(values) + 1) / len(values)
                ax.step(values, share, where="post", color=model_color(name), linestyle=style,
                        label=f"{model_label(name)}" + (" (marginals control)" if comparison == "marginals" else ""))
        ax.set_xlabel(label)
        ax.set_ylabel(f"Share of {role} patients at or below")
        ax.grid(True, alpha=0.3)
    axes[0].set_xscale("symlog", linthresh=1)
    sel = copies[(copies["role"] == role) & (copies["min_codes"] == min_codes)]
    ax = axes[2]
    for i, name in enumerate(files):
        for j, comparison in enumerate(("sample", "marginals")):
            r = sel[(sel["synthetic"] == name) & (sel["comparison"] == comparison)]
            if r.empty:
                continue
            r = r.iloc[0]
            x = i + (j - 0.5) * 0.35
            ax.bar(x, r["rate"], width=0.33, color=model_color(name), alpha=1.0 if comparison == "sample" else 0.35,
                   hatch=None if comparison == "sample" else "//", edgecolor=model_color(name))
            ax.errorbar(x, r["rate"], yerr=[[r["rate"] - r["ci_low"]], [r["ci_high"] - r["rate"]]], color="black",
                        capsize=3, linewidth=1)
            ax.annotate(f"{int(r['copied'])}/{int(r['eligible'])}", (x, r["ci_high"]), ha="center", va="bottom",
                        fontsize=7, rotation=90, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(files)), [model_label(f) for f in files], rotation=30, ha="right")
    ax.set_ylabel(f"Copy rate, {role} (≥ {min_codes} codes)")
    ax.grid(True, axis="y", alpha=0.3)
    handles = [Line2D([], [], color="grey", linestyle="-", label="synthetic file (solid bars)"),
               Line2D([], [], color="grey", linestyle=":", label="marginals control (hatched bars)")]
    handles += [Line2D([], [], color=model_color(f), label=model_label(f)) for f in files]
    fig.legend(handles=handles, loc="outside right upper", frameon=False, title="Audit")
    return fig


# ---------------------------------------------------------------------------- utility (TSTR / TRTR)
def fig_utility(results: pd.DataFrame) -> Figure:
    """TSTR/TRTR AUROC ratio per phenotype task and generator, with basic bootstrap intervals.

    Paper: none (the utility family, :mod:`ehrlib.metrics.utility`; the book's methods page).

    Args:
        results: the utility family's tidy rows (``model``, ``metric``, ``estimate``, ``ci_low``,
            ``ci_high``), e.g. :func:`ehrlib.metrics.evaluate_all` with ``families=["utility"]``.

    Returns:
        One axes: a group of bars per task (and the mean, ``utility_ratio``), one bar per
        generator; a line at 1 (as useful as real data) and at 0.5 / mean TRTR AUROC (chance).
    """
    from ehrlib.metrics import names

    _require(results, ["model", "metric", "estimate", "ci_low", "ci_high"], "fig_utility")
    split = results["metric"].map(names.split_task_metric)
    ratio = results[split.map(lambda t: t[0] == names.TSTR_TRTR_RATIO)].assign(task=split.map(lambda t: t[1]))
    summary = results[results["metric"] == names.UTILITY_RATIO].assign(task="mean")
    data = pd.concat([ratio, summary], ignore_index=True)
    data = data[np.isfinite(data["estimate"].to_numpy(float))]
    if data.empty:
        raise ValueError("fig_utility: no finite TSTR/TRTR ratio in the table (every task skipped?)")
    tasks = list(pd.unique(data["task"]))
    models = _models(data)
    width = 0.8 / max(len(models), 1)
    fig = _figure(max(6.0, 1.1 * len(tasks) + 2.5), 3.8)
    ax = fig.subplots()
    for i, m in enumerate(models):
        d = data[data["model"] == m].set_index("task").reindex(tasks)
        x = np.arange(len(tasks)) - 0.4 + width * (i + 0.5)
        y = d["estimate"].to_numpy(float)
        err = np.vstack([y - d["ci_low"].to_numpy(float), d["ci_high"].to_numpy(float) - y])
        ax.bar(x, y, width, color=model_color(m), label=model_label(m), yerr=np.where(np.isfinite(err), err, 0),
               error_kw={"linewidth": 0.8, "capsize": 1.5})
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    trtr = results[split.map(lambda t: t[0] == names.TRTR_AUROC)]["estimate"].to_numpy(float)
    if np.isfinite(trtr).any():
        ax.axhline(0.5 / np.nanmean(trtr), color="grey", linewidth=0.8, linestyle=":")
    ax.set_xticks(range(len(tasks)), [t.replace("_", " ") for t in tasks])
    ax.set_ylabel("TSTR / TRTR AUROC")
    ax.set_title("Train on synthetic, test on real (dashed: as real data; dotted: chance)", fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=min(4, len(models)), loc="lower right")
    return fig


# ---------------------------------------------------------------------------- privacy power
def fig_privacy_power(power: pd.DataFrame) -> Figure:
    """Power curves of the membership attacks: each attack's AUC and TPR at 1% and 0.1% FPR against
    the copy rate of the partial memorizers, with the holdout and marginals rows as bands.

    Args:
        power: :func:`ehrlib.metrics.membership.calibration_rows`' table (``attack``,
            ``generator``, ``copy_rate``, ``auc`` and the TPRs with ``_low``/``_high`` bounds,
            ``detected``).

    Returns:
        One axes per statistic; x: the copy rate (log scale), one line per attack with its
        intervals; filled markers: rates the attack detects (interval above the holdout's); the
        holdout row's interval as a grey band per attack and the marginals row as a dotted line.
    """
    _require(power, ["attack", "generator", "copy_rate", "auc", "auc_low", "auc_high", "tpr_at_1pct",
                     "tpr_at_1pct_low", "tpr_at_1pct_high", "tpr_at_0_1pct", "tpr_at_0_1pct_low",
                     "tpr_at_0_1pct_high", "detected"], "fig_privacy_power")
    panels = (("auc", "ROC AUC"), ("tpr_at_1pct", "TPR at 1% FPR"), ("tpr_at_0_1pct", "TPR at 0.1% FPR"))
    attacks = list(pd.unique(power["attack"]))
    colors = {a: _EXTRA_COLORS[i % len(_EXTRA_COLORS)] if i else "#1f77b4" for i, a in enumerate(attacks)}
    if len(attacks) > 1:
        colors[attacks[1]] = "#d62728"
    fig = _figure(13, 4.0)
    axes = fig.subplots(1, len(panels))
    copying = power[power["copy_rate"] > 0]
    for ax, (stat, label) in zip(axes, panels):
        for attack in attacks:
            c = colors[attack]
            rows = copying[copying["attack"] == attack].sort_values("copy_rate")
            x = rows["copy_rate"].to_numpy(float)
            y = rows[stat].to_numpy(float)
            err = [y - rows[f"{stat}_low"].to_numpy(float), rows[f"{stat}_high"].to_numpy(float) - y]
            ax.errorbar(x, y, yerr=np.clip(err, 0, None), color=c, capsize=3, linewidth=1.4, label=attack)
            det = rows["detected"].astype(bool).to_numpy()
            ax.scatter(x[det], y[det], color=c, zorder=3, s=28)
            ax.scatter(x[~det], y[~det], facecolor="white", edgecolor=c, zorder=3, s=28)
            base = power[(power["attack"] == attack) & (power["generator"] == "holdout")]
            if len(base):
                b = base.iloc[0]
                ax.axhspan(b[f"{stat}_low"], b[f"{stat}_high"], color=c, alpha=0.12, linewidth=0)
            marg = power[(power["attack"] == attack) & (power["generator"] == "marginals")]
            if len(marg):
                ax.axhline(marg.iloc[0][stat], color=c, linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_xticks(sorted(copying["copy_rate"].unique()),
                      [f"{r:.0%}" for r in sorted(copying["copy_rate"].unique())])
        ax.minorticks_off()
        ax.set_xlabel("Share of records copied from training")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], color=colors[a], marker="o", label=a) for a in attacks]
    handles += [Line2D([], [], color="grey", linewidth=6, alpha=0.25, label="holdout row (interval)"),
                Line2D([], [], color="grey", linestyle=":", label="marginals row"),
                Line2D([], [], color="grey", marker="o", linestyle="", label="detected"),
                Line2D([], [], color="grey", marker="o", markerfacecolor="white", linestyle="", label="not detected")]
    fig.legend(handles=handles, loc="outside right upper", frameon=False, title="Attack")
    return fig
def fig_dp_tradeoff(data: pd.DataFrame) -> Figure:
    """Privacy against fidelity and utility: prevalence R², the TSTR/TRTR utility ratio and the
    membership attack's AUC of every DP generator against its ε, each generator's non-private model
    at ε = ∞ (the right-most point, hollow), the reference rows (holdout, memorizer) as lines.

    Paper: none (the DP generators of :mod:`ehrlib.models.dp`; the book's DP trade-off page).

    Args:
        data: :func:`ehrlib.pipeline.dp_tradeoff`'s rows (``model``, ``base``, ``epsilon``,
            ``prevalence_r2``, ``utility_ratio``, ``mia_auc``).
    """
    from ehrlib.metrics import names

    metrics = [(names.PREVALENCE_R2, "prevalence R²"), (names.UTILITY_RATIO, "TSTR / TRTR AUROC"),
               (names.MIA_AUC, "membership attack AUC")]
    _require(data, ["model", "base", "epsilon", *(m for m, _ in metrics)], "fig_dp_tradeoff")
    reference = data[data["base"].isin(["holdout", "memorizer"])]
    curves = data[~data["base"].isin(["holdout", "memorizer"])]
    finite = curves["epsilon"].to_numpy(float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        from ehrlib import stages

        raise ValueError(f"fig_dp_tradeoff: no DP generator in the table (run stage {stages.DP_TRAIN} first)")
    at_inf = float(finite.max()) * 4  # where eps = inf is drawn
    fig = _figure(11.0, 3.4)
    axes = fig.subplots(1, 3)
    for ax, (metric, label) in zip(axes, metrics):
        for base in sorted(pd.unique(curves["base"])):
            d = curves[curves["base"] == base].sort_values("epsilon")
            x = np.where(np.isfinite(d["epsilon"].to_numpy(float)), d["epsilon"].to_numpy(float), at_inf)
            y = d[metric].to_numpy(float)
            style = model_style(base)
            ax.plot(x, y, marker="o", color=style.get("color"), label=model_label(base), linewidth=1.2)
            inf = ~np.isfinite(d["epsilon"].to_numpy(float))
            ax.scatter(x[inf], y[inf], facecolors="white", edgecolors=style.get("color"), zorder=3)
        for _, r in reference.iterrows():
            if np.isfinite(float(r[metric])):
                ax.axhline(float(r[metric]), color=model_color(r["base"]), linestyle="--", linewidth=0.8,
                           label=model_label(r["base"]))
        ax.set_xscale("log")
        ticks = sorted(set(finite.tolist()))
        ax.set_xticks([*ticks, at_inf], [*(f"{t:g}" for t in ticks), "∞"])
        ax.set_xlabel("ε")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    fig.legend(list(seen.values()), list(seen.keys()), loc="outside right upper", frameon=False, title="Model")
    return fig
def fig_metric_bars(results: pd.DataFrame, metrics, title: str) -> Figure:
    """One panel per metric, one bar per generator with its interval (or ± spread).

    Paper: none (the families of stages 45 and 46). Rows whose estimate is NaN (left out, not
    applicable) have no bar; the reference generators are drawn in their own colours, so each
    generator reads against the holdout (ceiling) and the marginals (floor).

    Args:
        results: tidy rows (``model``, ``metric``, ``estimate``, ``ci_low``, ``ci_high``, ``spread``).
        metrics: the metrics to show, one panel each, in order (those without rows are skipped).
        title: the figure's title.
    """
    from ehrlib.metrics import names

    _require(results, ["model", "metric", "estimate", "ci_low", "ci_high"], "fig_metric_bars")
    metrics = [m for m in metrics if (results["metric"] == m).any()]
    if not metrics:
        raise ValueError("fig_metric_bars: none of the metrics has rows")
    models = _models(results)
    rows, cols = _grid(len(metrics), min(4, len(metrics)))
    fig = _figure(3.0 * cols, 2.8 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, metric in zip(axes, metrics):
        d = results[results["metric"] == metric].set_index("model").reindex(models)
        y = d["estimate"].to_numpy(float)
        low, high = d["ci_low"].to_numpy(float), d["ci_high"].to_numpy(float)
        spread = d["spread"].to_numpy(float) if "spread" in d else np.full(len(y), np.nan)
        err_low = np.where(np.isfinite(low), y - low, np.where(np.isfinite(spread), spread, 0))
        err_high = np.where(np.isfinite(high), high - y, np.where(np.isfinite(spread), spread, 0))
        x = np.arange(len(models))
        ax.bar(x, np.nan_to_num(y), color=[model_color(m) for m in models],
               yerr=np.clip(np.nan_to_num(np.vstack([err_low, err_high])), 0, None), error_kw={"linewidth": 0.8,
                                                                                                  "capsize": 1.5})
        for i in np.flatnonzero(~np.isfinite(y)):
            ax.text(i, 0, "n/a", ha="center", va="bottom", fontsize=6, rotation=90)
        ax.set_xticks(x, [model_label(m) for m in models], rotation=60, ha="right", fontsize=7)
        ax.set_title(names.header(metric), fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=9)
    return fig


def fig_alpha_precision(curves: pd.DataFrame) -> Figure:
    """α-precision ``P_α`` and β-recall ``R_β`` curves per generator (Alaa et al., 2022).

    Paper: none (:mod:`ehrlib.metrics.sample_level`). A faithful generator lies on the diagonal;
    above it, its records crowd the centre of the real support; below it, they fall outside.

    Args:
        curves: :func:`ehrlib.metrics.sample_level.precision_recall_curves` output.
    """
    _require(curves, ["model", "alpha", "precision", "recall"], "fig_alpha_precision")
    fig = _figure(8.0, 3.4)
    axes = fig.subplots(1, 2)
    for ax, column, label in ((axes[0], "precision", "α-precision P_α"), (axes[1], "recall", "β-recall R_β")):
        for m in _models(curves):
            d = curves[curves["model"] == m]
            ax.plot(d["alpha"], d[column], color=model_color(m), label=model_label(m),
                    linestyle=_REFERENCES.get(_key(m), "-"), linewidth=1.2)
        ax.plot([0, 1], [0, 1], color="black", linewidth=0.6)
        ax.set_xlabel("α" if column == "precision" else "β")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    return fig
