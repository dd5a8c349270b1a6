"""evaluate(): one tidy table; the calibration generators land where they must."""
import numpy as np
import pandas as pd
import pytest

from ehrlib import models
from ehrlib.cohort import Cohort, CohortError
from ehrlib.data import simulate, split
from ehrlib.errors import ConfigError, MetricError
from ehrlib.metrics import evaluate, evaluate_all, names
from ehrlib.metrics.discriminator import LSTMConfig
from ehrlib.metrics.evaluate import COLUMNS, holdout_overlap, table1

TINY_LSTM = LSTMConfig(hidden_size=8, epochs=1, batch_size=64)


@pytest.fixture(scope="module")
def calibration():
    cohort = simulate(4000, seed=11)
    train, holdout = split(cohort, n_holdout=1000, seed=0)
    train, reference = split(train, n_holdout=1000, seed=1)
    synthetic = {
        "holdout": models.get("holdout", records=reference).fit(train).generate(1000, seed=0),
        "marginals": models.get("marginals").fit(train).generate(1000, seed=0),
        "memorizer": models.get("memorizer").fit(train).generate(1000, seed=0),
    }
    results = evaluate_all(train, holdout, synthetic, seed=0, n_bootstrap=200, repeats=5)
    return results.set_index(["model", "metric"])["estimate"]


def test_output_is_tidy_with_the_documented_metric_names(small_cohort):
    train, holdout = split(small_cohort, 100, seed=0)
    syn = models.get("marginals").fit(train).generate(100, seed=0)
    out = evaluate(train, holdout, syn, n_bootstrap=20, repeats=2, progress=False)
    assert list(out.columns) == COLUMNS
    expected = {"prevalence_r2", "prevalence_pearson", "prevalence_rmse", "nnaar", "mia_accuracy", "mia_precision",
                "mia_recall", "mia_f1", "mia_auc", "mia_tpr_at_1pct_fpr", "exact_copy_rate", "dcr_share",
                "rf_disc_accuracy", "rf_disc_auc", "rf_disc_score", "rf_disc_auc_score",
                names.UTILITY_RATIO, names.ATTRIBUTE_ADVANTAGE}
    per_task = {names.split_task_metric(m)[0] for m in out.metric if names.split_task_metric(m)[1]}
    assert set(m for m in out.metric if not names.split_task_metric(m)[1]) == expected
    assert per_task == {*names.UTILITY_PHENOTYPE_STATS, *names.NEXT_VISIT_STATS, *names.NEXT_VISIT_BASELINE_STATS,
                        *(names.attribute_metric(s, "x").split(names.TASK_SEPARATOR)[0] for s in names.ATTRIBUTE_STATS)}
    assert set(out.family) == set(names.FAMILIES)
    assert (out["note"].str.len() > 0).all()


def test_both_discriminators_in_one_call_are_named_by_kind(small_cohort):
    train, holdout = split(small_cohort, 100, seed=0)
    syn = models.get("marginals").fit(train).generate(100, seed=0)
    out = evaluate(train, holdout, syn, families=["discriminator"], discriminators=("rf", "lstm"), n_bootstrap=50,
                   lstm=TINY_LSTM, progress=False)
    assert list(out.metric) == [names.disc_metric(k, s) for k in ("rf", "lstm") for s in names.DISCRIMINATOR_STATS]
    assert (out.ci_low <= out.estimate).all() and (out.estimate <= out.ci_high).all()
    assert out.note.str.contains("real class: train").all()


def test_discriminator_real_class_is_train_by_default_and_holdout_on_request(small_cohort):
    train, holdout = split(small_cohort, 100, seed=0)
    syn = models.get("marginals").fit(train).generate(200, seed=0)
    default = evaluate(train, holdout, syn, families=["discriminator"], n_bootstrap=20, progress=False)
    assert default.note.str.contains("real class: train \\(200 real vs 200 synthetic").all()
    other = evaluate(train, holdout, syn, families=["discriminator"], real="holdout", n_bootstrap=20, progress=False)
    assert other.note.str.contains("real class: holdout \\(100 real vs 100 synthetic").all()


def test_unknown_protocol_kind_or_real_class_is_a_config_error(small_cohort):
    train, holdout = split(small_cohort, 100, seed=0)
    syn = models.get("marginals").fit(train).generate(100, seed=0)
    with pytest.raises(ConfigError, match="protocol='papr'"):
        evaluate(train, holdout, syn, protocol="papr", progress=False)
    with pytest.raises(ConfigError, match="kind='svm'"):
        evaluate(train, holdout, syn, discriminators=("rf", "svm"), progress=False)
    with pytest.raises(ConfigError, match="real='reference'"):
        evaluate(train, holdout, syn, families=["discriminator"], real="reference", progress=False)


def test_paper_protocol_reports_the_papers_privacy_metrics_and_an_imbalanced_discriminator(small_cohort):
    train, holdout = split(small_cohort, 100, seed=0)
    syn = models.get("marginals").fit(train).generate(100, seed=0)
    out = evaluate(train, holdout, syn, protocol="paper", n_bootstrap=20, repeats=2, progress=False)
    privacy = out[out.family == "privacy"]
    assert tuple(privacy.metric) == names.PAPER_PRIVACY_METRICS
    assert privacy.note.str.contains("self-match|strict").all()
    disc = out[out.family == "discriminator"]
    assert disc.note.str.contains(f"{train.n_patients} real vs 100 synthetic").all()
    assert disc.note.str.contains("unstratified").all()


def test_holdout_sharing_subject_ids_with_train_is_refused(small_cohort):
    train, holdout = split(small_cohort, 100, seed=0)
    leaky = train.subset(train.subject_ids[:100])
    syn = models.get("marginals").fit(train).generate(100, seed=0)
    with pytest.raises(CohortError, match="holdout overlaps train: 100 subject id"):
        evaluate(train, leaky, syn, progress=False)
    out = evaluate(train, leaky, syn, families=["prevalence"], n_bootstrap=20, allow_overlap=True, progress=False)
    assert len(out) == 3


def test_holdout_of_renamed_train_records_is_refused(small_cohort):
    train, holdout = split(small_cohort, 100, seed=0)
    copies = train.subset(train.subject_ids[:100]).renamed("COPY_")
    overlap = holdout_overlap(train, copies)
    assert overlap["shared_ids"] == 0 and overlap["copy_rate"] == 1.0 and overlap["refuse"]
    syn = models.get("marginals").fit(train).generate(100, seed=0)
    with pytest.raises(CohortError, match="exact copies of train records"):
        evaluate_all(train, copies, {"m": syn}, progress=False)


def test_an_honest_holdout_is_accepted(small_cohort):
    train, holdout = split(small_cohort, 100, seed=0)
    overlap = holdout_overlap(train, holdout)
    assert overlap["shared_ids"] == 0 and not overlap["refuse"]


def test_families_and_discriminator_none_select_rows(small_cohort):
    train, holdout = split(small_cohort, 100, seed=0)
    syn = models.get("marginals").fit(train).generate(100, seed=0)
    assert set(evaluate(train, holdout, syn, families=["privacy"], progress=False).family) == {"privacy"}
    out = evaluate(train, holdout, syn, discriminator=None, n_bootstrap=20, repeats=2, progress=False)
    assert "discriminator" not in set(out.family)
    with pytest.raises(MetricError, match="unknown metric family"):
        evaluate(train, holdout, syn, families=["vibes"])


def test_empty_synthetic_cohort_is_a_clear_error(small_cohort):
    train, holdout = split(small_cohort, 100, seed=0)
    empty = Cohort.from_visits([])
    with pytest.raises(CohortError, match="empty"):
        evaluate(train, holdout, empty, progress=False)


def test_holdout_scores_near_ideal(calibration):
    h = calibration["holdout"]
    assert 0.45 <= h["mia_auc"] <= 0.55
    assert abs(h["nnaar"]) <= 0.03
    assert 0.4 <= h["rf_disc_auc"] <= 0.6
    assert h["exact_copy_rate"] < 0.05


def test_memorizer_is_flagged_by_every_privacy_metric(calibration):
    m, h = calibration["memorizer"], calibration["holdout"]
    assert m["exact_copy_rate"] == 1.0
    assert m["mia_auc"] > 0.6
    assert m["nnaar"] > 0.1 and m["nnaar"] > h["nnaar"] + 0.1
    assert m["dcr_share"] > h["dcr_share"] + 0.1


def test_a_train_real_class_turns_a_memorizers_copies_into_an_auc_far_below_one_half(calibration):
    # documented in ehrlib.metrics.discriminator ("Sensitivity"): copies flip the forest's answers
    m = calibration["memorizer"]
    assert m["rf_disc_auc"] < 0.3 and m["rf_disc_score"] < 0.6


def test_marginals_matches_prevalence_but_a_discriminator_separates_it(calibration):
    mg, h = calibration["marginals"], calibration["holdout"]
    assert mg["prevalence_r2"] > 0.8
    assert mg["rf_disc_auc"] > 0.65 and mg["rf_disc_auc"] > h["rf_disc_auc"] + 0.1


def test_table1_has_a_row_per_model_and_intervals(calibration):
    df = calibration.reset_index().assign(family="x", ci_low=np.nan, ci_high=np.nan, spread=np.nan)
    wide = table1(df)
    assert list(wide.model) == ["holdout", "marginals", "memorizer"]
    assert "prevalence_r2" in wide.columns and isinstance(wide.iloc[0]["nnaar"], str)


def test_table1_has_every_column_of_the_papers_table_in_its_order(calibration):
    df = calibration.reset_index().assign(family="x", ci_low=np.nan, ci_high=np.nan, spread=np.nan)
    wide = table1(df)
    paper = [c for c in wide.columns if c in names.TABLE1_PAPER_COLUMNS]
    assert paper == list(names.TABLE1_PAPER_COLUMNS)
    assert names.PREVALENCE_RMSE in wide.columns


def test_table1_reads_the_rf_for_flat_models_and_the_lstm_for_sequential_ones():
    rows = []
    for model in ("medgan", "halo"):
        for kind, value in (("rf", 0.25), ("lstm", 0.75)):
            rows.append({"model": model, "family": "discriminator", "metric": names.disc_metric(kind, "score"),
                         "estimate": value, "ci_low": value - 0.1, "ci_high": value + 0.1, "spread": np.nan})
    rows.append({"model": "corgan", "family": "discriminator", "metric": names.disc_metric("rf", "score"),
                 "estimate": 0.5, "ci_low": np.nan, "ci_high": np.nan, "spread": np.nan})
    rows.append({"model": "gpt", "family": "discriminator", "metric": names.disc_metric("rf", "score"),
                 "estimate": 0.5, "ci_low": np.nan, "ci_high": np.nan, "spread": np.nan})
    wide = table1(pd.DataFrame(rows)).set_index("model")
    assert wide.at["medgan", names.PAPER_DISC_SCORE] == "0.25 [0.15, 0.35]"
    assert wide.at["halo", names.PAPER_DISC_SCORE] == "0.75 [0.65, 0.85]"
    assert wide.at["corgan", names.PAPER_DISC_KIND] == "rf"
    assert wide.at["gpt", names.PAPER_DISC_SCORE] == "not run (lstm)"


def test_table1_puts_both_protocols_side_by_side_when_results_carry_a_protocol_column(small_cohort):
    train, holdout = split(small_cohort, 100, seed=0)
    syn = {"medgan": models.get("marginals").fit(train).generate(100, seed=0)}
    both = pd.concat([evaluate_all(train, holdout, syn, protocol=p, n_bootstrap=20, repeats=2, progress=False)
                      .assign(protocol=p) for p in names.PROTOCOLS], ignore_index=True)
    wide = table1(both)
    assert list(zip(wide.model, wide.protocol)) == [("medgan", "corrected"), ("medgan", "paper")]
    paper_row = wide[wide.protocol == "paper"].iloc[0]
    assert paper_row[names.EXACT_COPY_RATE] is np.nan or pd.isna(paper_row[names.EXACT_COPY_RATE])
    assert wide[names.PAPER_DISC_KIND].tolist() == ["rf", "rf"]


def test_cli_evaluates_long_format_files(tmp_path, small_cohort):
    from ehrlib.cli import main

    train, holdout = split(small_cohort, 100, seed=0)
    syn = models.get("marginals").fit(train).generate(80, seed=0)
    paths = {}
    for name, c in {"train": train, "holdout": holdout, "mymodel": syn}.items():
        paths[name] = tmp_path / f"{name}.csv"
        c.events.to_csv(paths[name], index=False)
    assert main(["evaluate", "--train", str(paths["train"]), "--holdout", str(paths["holdout"]),
                 "--synthetic", str(paths["mymodel"]), "--out", str(tmp_path / "out"), "--n-bootstrap", "20"]) == 0
    import pandas as pd

    metrics = pd.read_csv(tmp_path / "out" / "metrics.csv")
    assert set(metrics.model) == {"mymodel"} and "nnaar" in set(metrics.metric)
    assert {names.UTILITY, names.ATTRIBUTE_INFERENCE} <= set(metrics.family)
    assert {names.UTILITY_RATIO, names.ATTRIBUTE_ADVANTAGE} <= set(metrics.metric)
    assert (tmp_path / "out" / "table1.md").is_file()


def test_evaluate_all_shares_the_real_side_encoding_without_changing_the_discriminator():
    from ehrlib.metrics.discriminator import RandomForestConfig, discriminator_family

    train, holdout = split(simulate(1600, seed=5), n_holdout=300, seed=0)
    synthetic = {f"marginals_{s}": models.get("marginals").fit(train).generate(300, seed=s) for s in (0, 1)}
    rf = RandomForestConfig(n_estimators=10, n_jobs=1)
    out = evaluate_all(train, holdout, synthetic, families=[names.DISCRIMINATOR], n_bootstrap=50, rf=rf,
                       progress=False)
    for name, syn in synthetic.items():
        alone = discriminator_family(train, holdout, syn, ("rf",), n_bootstrap=50, rf=rf)
        ours = out[out.model == name]
        np.testing.assert_array_equal(ours[["estimate", "ci_low", "ci_high"]].to_numpy(),
                                      alone[["estimate", "ci_low", "ci_high"]].to_numpy())
