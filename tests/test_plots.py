"""Each figure function returns a Figure with one axes per panel and one line per model."""
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from ehrlib import plots
from ehrlib.cohort import Cohort
from ehrlib.metrics import chapters, cooccurrence, longtail, structure

CODES = ["4019", "42731", "4280", "25000", "2724", "5849", "0389", "V5861", "E8781", "51881",
         "2859", "311", "99592", "5990", "V4582", "41401", "486", "2449", "496", "7455"]


def random_cohort(seed, n_patients, prefix):
    rng = np.random.default_rng(seed)
    p = 0.5 / np.arange(1, len(CODES) + 1)            # long-tailed prevalence
    rows = []
    for i in range(n_patients):
        for v in range(int(rng.integers(1, 4))):
            picked = [c for c, q in zip(CODES, p) if rng.random() < q] or [CODES[0]]
            rows += [(f"{prefix}{i:04d}", v, c) for c in picked]
    return Cohort.from_events(pd.DataFrame(rows, columns=["subject_id", "visit_id", "code"]))


@pytest.fixture(scope="module")
def train():
    return random_cohort(0, 150, "T")


@pytest.fixture(scope="module")
def synthetic():
    return {"halo": random_cohort(1, 80, "H"), "gpt": random_cohort(2, 80, "G")}


def legend_labels(fig):
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def model_lines(ax):
    """Lines drawn for models (labelled), not reference lines."""
    return [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]


# ---------------------------------------------------------------- palette
def test_colours_are_fixed_per_model_and_case_insensitive():
    assert plots.model_color("HALO") == plots.MODEL_COLORS["halo"]
    assert plots.model_color("real") == plots.model_color("train")
    assert plots.model_color("gpt2") == plots.MODEL_COLORS["gpt"]
    assert len(set(plots.MODEL_COLORS.values())) == len(plots.MODEL_COLORS)


def test_unknown_models_get_a_stable_colour():
    assert plots.model_color("my_new_gan") == plots.model_color("My_New_GAN")
    assert plots.model_label("promptehr") == "PromptEHR" and plots.model_label("xyz") == "xyz"


# ---------------------------------------------------------------- figures
def test_fig2_code_distribution(train):
    fig = plots.fig2_code_distribution(train)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    hist, rank = fig.axes
    assert len(hist.patches) == 50 and "log10(occurrences" in hist.get_xlabel()
    assert rank.get_yscale() == "log"


def test_fig2_histogram_counts_every_training_code_once(train):
    fig = plots.fig2_code_distribution(train, views=("histogram",), bins=10)
    (hist,) = fig.axes
    assert sum(p.get_height() for p in hist.patches) == len(train.codes())
    with pytest.raises(ValueError, match="views"):
        plots.fig2_code_distribution(train, views=("pie",))


def test_fig3_percentile_ablation_has_one_panel_per_metric(train, synthetic):
    holdout = random_cohort(3, 60, "E")
    df = longtail.longtail_ablation(train, holdout, synthetic, panels=("prevalence",), n_bootstrap=20)
    fig = plots.fig3_percentile_ablation(df)
    assert len(fig.axes) == 2
    assert all(len(ax.get_lines()) == 2 for ax in fig.axes)
    assert legend_labels(fig) == ["HALO", "GPT baseline"]


def test_fig3_adds_mia_panels_when_present(train, synthetic):
    holdout = random_cohort(3, 60, "E")
    df = longtail.longtail_ablation(train, holdout, synthetic, panels=("prevalence", "privacy"), n_bootstrap=20,
                                    repeats=2)
    assert len(plots.fig3_percentile_ablation(df).axes) == 5


def test_fig_utility_draws_one_bar_group_per_task_and_the_mean():
    from ehrlib.metrics import names

    rows = []
    for model in ("holdout", "marginals"):
        for task in ("diabetes", "sepsis"):
            for stat, value in ((names.TRTR_AUROC, 0.7), (names.TSTR_TRTR_RATIO, 0.9)):
                rows.append({"model": model, "metric": names.task_metric(stat, task), "estimate": value,
                             "ci_low": value - 0.05, "ci_high": value + 0.05})
        rows.append({"model": model, "metric": names.UTILITY_RATIO, "estimate": 0.9, "ci_low": 0.85, "ci_high": 0.95})
    fig = plots.fig_utility(pd.DataFrame(rows))
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["diabetes", "sepsis", "mean"]
    assert len(ax.patches) == 2 * 3


def test_fig3_draws_the_six_paper_panels_with_intervals_from_the_tidy_ablation(train, synthetic):
    rows = []
    for model in ("halo", "gpt"):
        for p in longtail.PERCENTILES:
            for metric in ("nnaar", "mia_f1", "mia_accuracy", "prevalence_r2", "prevalence_rmse", "disc_score"):
                rows.append({"model": model, "percentile": p, "tail_share": p / 200, "metric": metric,
                             "estimate": 0.5, "ci_low": 0.4, "ci_high": 0.6, "spread": np.nan})
    fig = plots.fig3_percentile_ablation(pd.DataFrame(rows))
    assert len(fig.axes) == 6
    assert all(len(ax.get_lines()) == 2 and len(ax.collections) == 2 for ax in fig.axes)
    assert fig.axes[0].get_xticklabels()[0].get_text() == "75\n(38%)"


def test_fig8_draws_interval_bands_when_the_table_has_them(train, synthetic):
    df = longtail.frequency_buckets(train, synthetic, n_buckets=4, n_bootstrap=30)
    fig = plots.fig8_buckets(df, panels=("r2", "rmse"))
    assert all(len(ax.collections) == 2 for ax in fig.axes)  # one band per model


def test_fig4_rank_frequency_is_log_log(train, synthetic):
    fig = plots.fig4_rank_frequency(longtail.rank_frequency({"train": train, "halo": synthetic["halo"]}))
    ax, = fig.axes
    assert len(ax.get_lines()) == 2 and ax.get_xscale() == ax.get_yscale() == "log"
    assert legend_labels(fig) == ["Real (train)", "HALO"]


def test_fig5_top20_bars_for_real_markers_for_models(train, synthetic):
    fig = plots.fig5_top20(longtail.top_codes(train, synthetic, k=10))
    ax, = fig.axes
    assert len(ax.patches) == 10 and len(model_lines(ax)) == 2
    assert legend_labels(fig) == ["Real (train)", "HALO", "GPT baseline"]
    top = longtail.top_codes(train, synthetic, k=10).drop_duplicates("rank")
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == [f"{c} {t}".strip() for c, t in zip(top["code"], top["title"])]
    assert any(t for t in top["title"]), "the simulated cohort's top codes are ICD-9 codes with titles"


def test_fig6_one_symlog_panel_per_model(train, synthetic):
    fig = plots.fig6_per_code_scatter(longtail.per_code_prevalence(train, synthetic))
    assert len(fig.axes) == 2
    assert all(ax.get_xscale() == "symlog" and ax.get_yscale() == "symlog" for ax in fig.axes)


def test_fig7_cumulative_mass(train, synthetic):
    fig = plots.fig7_cumulative_mass(longtail.cumulative_mass({"train": train, **synthetic}))
    ax, = fig.axes
    assert len(ax.get_lines()) == 3 and ax.get_xscale() == "log"


def test_fig8_buckets_panels_and_reference(train, synthetic):
    df = longtail.frequency_buckets(train, synthetic, n_buckets=5)
    fig = plots.fig8_buckets(df)
    assert len(fig.axes) == 3 and all(len(model_lines(ax)) == 2 for ax in fig.axes)
    with_ref = longtail.frequency_buckets(train, {"halo": synthetic["halo"]}, n_buckets=5, reference=synthetic["gpt"])
    assert len(plots.fig8_buckets(with_ref).axes) == 4


@pytest.mark.parametrize("fn", [plots.fig9_visits_per_patient, plots.fig10_codes_per_visit,
                                plots.fig11_codes_per_patient])
def test_structure_figures_have_one_line_per_model(fn, train, synthetic):
    fig = fn(structure.distributions({"train": train, "halo": synthetic["halo"]}))
    ax, = fig.axes
    assert len(ax.get_lines()) == 2 and ax.get_yscale() == "log"
    assert legend_labels(fig)[0].startswith("Real (train) (mean ")


def test_fig12_chapters(train, synthetic):
    df = chapters.chapter_prevalence({"train": train, **synthetic})
    fig = plots.fig12_chapters(df)
    ax, = fig.axes
    assert len(ax.patches) == df["chapter"].nunique() and len(model_lines(ax)) == 2


def test_fig13_one_heatmap_per_model_and_a_colour_bar(train, synthetic):
    df = cooccurrence.cooccurrence_matrices(train, synthetic, k=8)
    fig = plots.fig13_cooccurrence(df)
    assert len(fig.axes) == 3 + 1
    assert [ax.get_title() for ax in fig.axes[:3]] == ["Real (train)", "HALO", "GPT baseline"]


def test_missing_columns_are_reported():
    with pytest.raises(ValueError, match="lacks column"):
        plots.fig4_rank_frequency(pd.DataFrame({"model": ["a"]}))


def test_training_curves_one_panel_per_quantity():
    fig = plots.training_curves([{"epoch": 1, "loss": 2.0, "val_loss": 2.5}, {"epoch": 2, "loss": 1.0, "val_loss": 2.1}],
                                title="toy")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "val_loss"]
    assert list(fig.axes[0].lines[0].get_ydata()) == [2.0, 1.0]
    with pytest.raises(ValueError, match="no numeric quantity"):
        plots.training_curves([{"epoch": 1}])


HISTORY = [{"epoch": 1, "seconds": 1.0, "loss": 3.0, "phase": 0.0},
           {"epoch": 2, "seconds": 2.0, "loss": 2.0, "d_loss": 0.5, "phase": 1.0, "val_r2": 0.4, "val_distinct": 0.2,
            "val_empty": 0.3, "fidelity": 0.3},
           {"epoch": 3, "seconds": 3.5, "loss": 1.5, "d_loss": 0.6, "phase": 1.0, "val_r2": 0.8, "val_distinct": 0.5,
            "val_empty": 0.0, "fidelity": 0.8},
           {"epoch": 4, "seconds": 5.0, "loss": 1.4, "d_loss": 0.6, "phase": 1.0, "val_r2": 0.7, "val_distinct": 0.6,
            "val_empty": 0.0, "fidelity": 0.7}]
STOPPING = [{"phase": "autoencoder", "stopped_by": "cap", "epochs": 1, "cap": 1, "last_epoch": 1, "best_epoch": None,
             "criterion": None},
            {"phase": "adversarial", "stopped_by": "patience", "epochs": 3, "cap": 9, "last_epoch": 4, "best_epoch": 3,
             "criterion": "fidelity"}]


def test_training_curves_over_seconds_with_checks_and_the_stopping_point():
    fig = plots.training_curves(HISTORY, title="toy", stopping=STOPPING)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "d_loss", "Prevalence R² (validation); below -1 drawn at -1", "Distinct codes / validation's",
                      "Empty records drawn"]
    r2 = fig.axes[2]
    assert list(r2.lines[0].get_xdata()) == [2.0, 3.5, 5.0] and list(r2.lines[0].get_ydata()) == [0.4, 0.8, 0.7]
    marks = sorted((ln.get_linestyle(), ln.get_xdata()[0]) for ln in r2.lines[1:])
    assert marks == [("--", 3.5), (":", 1.0), (":", 5.0)]  # best epoch 3; each phase's last epoch
    assert r2.get_xlabel() == "training seconds"


def test_learning_curves_one_line_per_model_with_best_and_stop_marks():
    fig = plots.learning_curves({"medgan": {"history": HISTORY, "stopping": STOPPING},
                                 "halo": {"history": [{**h, "val_r2": h.get("val_r2", 0.1) + 0.1} for h in HISTORY],
                                          "stopping": []}})
    ax = fig.axes[0]
    labelled = [ln.get_label() for ln in ax.lines if not ln.get_label().startswith("_")]
    assert labelled == ["MedGAN", "HALO"]
    best = [ln for ln in ax.lines if ln.get_marker() == "o"]
    assert [(list(b.get_xdata()), list(b.get_ydata())) for b in best] == [([3.5], [0.8])]
    assert sum(ln.get_marker() == "x" for ln in ax.lines) == 2
    with pytest.raises(ValueError, match="fidelity check"):
        plots.learning_curves({"x": {"history": [{"epoch": 1, "loss": 1.0, "seconds": 1.0}], "stopping": []}})


def test_learning_curves_stack_one_panel_per_measure_at_page_width_with_medgans_modes_apart():
    from matplotlib.colors import to_rgb

    hist = [{**h, "val_distinct": 0.5, "val_empty": 0.0} if "val_r2" in h else h for h in HISTORY]
    fig = plots.learning_curves({"medgan": {"history": hist, "stopping": STOPPING},
                                 "medgan_count": {"history": hist, "stopping": []}})
    assert len(fig.axes) == 3 and len({round(ax.get_position().x0, 3) for ax in fig.axes}) == 1  # stacked
    assert fig.get_figwidth() <= plots.LEARNING_WIDTH
    assert all(ax.title.get_fontsize() >= 10 for ax in fig.axes)
    colours = [to_rgb(plots.model_color(m)) for m in ("medgan", "medgan_count")]
    assert sum(abs(a - b) for a, b in zip(*colours)) > 0.7  # not two shades of one orange


def test_fig14_alpha_ablation_panels_and_reference_lines():
    df = pd.DataFrame({"alpha": [2.0, 0.0, 1.0], "prevalence_r2": [0.9, 0.5, 0.7], "unique_codes": [10, 30, 20],
                       "codes_per_visit": [5.0, 9.0, 7.0], "real_codes_per_visit": 8.0})
    fig = plots.fig14_alpha_ablation(df)
    assert len(fig.axes) == 3
    assert list(fig.axes[0].lines[0].get_xdata()) == [0.0, 1.0, 2.0]
    assert len(fig.axes[2].lines) == 2 and len(fig.axes[0].lines) == 1
    with pytest.raises(ValueError, match="alpha"):
        plots.fig14_alpha_ablation(df.drop(columns="alpha"))
