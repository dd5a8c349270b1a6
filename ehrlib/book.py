"""Tables and figures under the paper's stable IDs (``table1``, ``fig3``, ...).

:data:`ARTIFACTS` is the one place where an artifact's ID and caption are spelled: the file
name in the run folder, the caption on the book page and the browser test's expectations all
come from it. One helper saves figures (PNG + PDF), one saves tables (CSV + Markdown); both show
what they saved in the notebook page, under its ID and caption.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ehrlib.errors import ConfigError
from ehrlib.io import atomic_write
from ehrlib.metrics.display import OUTSIDE_FLAG, OUTSIDE_NOTE, plain_number, with_intervals

FIGURES_DIR = "figures"
TABLES_DIR = "tables"

#: Every table and figure the pipeline saves: ID -> caption (paper numbering where it has one).
ARTIFACTS: dict[str, str] = {
    "table1": "Table 1. Fidelity, utility and privacy of every generator, with uncertainty.",
    "table1_seeds": "Table 1 across seeds. Mean and spread of each metric over the runs of a seed sweep.",
    "table1_fidelity": "Table 1 (fidelity). Per-code prevalence of each generator against the training data.",
    "table1_utility": "Table 1 (utility). Can a classifier tell synthetic from real records? The paper's Disc. Score (RF for flat, LSTM for sequential models) and AUCs.",
    "table1_privacy": "Table 1 (privacy). Nearest-neighbour adversarial accuracy risk (NNAAR) and membership inference, as in the paper.",
    "table1_privacy_added": "Table 1 (privacy, our additions). Membership-inference AUC and TPR at 1% FPR, exact copies, distance to closest record.",
    "table1_utility_tstr": "Table 1 (utility, our addition). Train on synthetic, test on real: the mean TSTR/TRTR AUROC ratio over the phenotype tasks.",
    "table1_attribute_inference": "Table 1 (attribute inference, our addition). F1 of inferring sensitive diagnoses on members minus on non-members.",
    "fig_utility": "Utility. TSTR/TRTR AUROC per phenotype task and generator, with basic bootstrap intervals.",
    "table1_tidy": "Table 1 (tidy). Every metric behind Table 1, one row per model and metric.",
    "table_protocol_effects": "Protocol effects. Each difference between the paper's evaluation protocol and ours, measured on the same cohorts.",
    "table12_real": "Table 12 (real rows). Structure statistics of the real splits.",
    "table12": "Table 12. Structure statistics of the real training data and every synthetic cohort.",
    "table13": "Table 13. Code coverage and divergence from the training data.",
    "table14": "Table 14. Similarity of the top-50 code co-occurrence matrices.",
    "table_reference_generators": "Reference generators. Size and structure of the calibration rows' cohorts (holdout, marginals, memorizer).",
    "table_generated": "Generated cohorts. Size and structure of each model's synthetic cohort.",
    "table_user_generators": "User-supplied generators. Status, and size and structure of each one's synthetic cohort.",
    "table_corgan_pathway": "CorGAN encoder pathway. Length, kernel and stride of each convolution.",
    "fig2": "Figure 2. The long-tailed distribution of ICD-9 codes in the training data.",
    "fig3": "Figure 3. Long-tail ablation (corrected protocol): metrics recomputed on the codes at or below each frequency percentile.",
    "fig3_paper": "Figure 3 (paper protocol). The long-tail ablation with the paper's percentile, denominator and privacy rules.",
    "fig3_data": "Figure 3 (data). The long-tail ablation, one row per model, percentile and metric.",
    "fig4": "Figure 4. Rank-frequency of codes, real and synthetic.",
    "fig5": "Figure 5. The 20 most frequent codes of the training data and their synthetic prevalence.",
    "fig6": "Figure 6. Per-code prevalence, synthetic against real.",
    "fig7": "Figure 7. Cumulative share of code occurrences by code rank.",
    "fig8": "Figure 8. Fit of prevalence within ten code-frequency buckets, with the real holdout as a noise reference.",
    "fig8_data": "Figure 8 (data). Prevalence fit per frequency bucket.",
    "fig9": "Figure 9. Visits per patient.",
    "fig10": "Figure 10. Codes per visit.",
    "fig11": "Figure 11. Codes per patient.",
    "fig12": "Figure 12. Share of patients with a code of each ICD-9 chapter.",
    "fig12_data": "Figure 12 (data). Chapter prevalence per cohort.",
    "fig13": "Figure 13. Co-occurrence of the 50 most frequent training codes.",
    "fig14": "Figure 14. PromptEHR: effect of the frequency-guidance strength alpha.",
    "fig14_alpha_ablation": "Figure 14 (data). PromptEHR samples for each alpha.",
    "table12_released": "Table 12 (released samples). Structure statistics of the paper's five released samples, recomputed.",
    "table12_released_vs_paper": "Table 12 (released samples) beside the values printed in the paper.",
    "table_between_samples": "The released samples scored against each other (reference sample in the place of real data).",
    "table_audit_summary": "Memorisation audit. Copied / audited real patients per released sample and role, for records of at least 1, 5 and 10 codes, beside the marginals control.",
    "table_audit_copies": "Memorisation audit. Real patients whose whole record (code set) a released sample reproduces, per role and minimum record size, beside the controls.",
    "table_audit_distances": "Memorisation audit (data). Nearest set and Jaccard distances per role.",
    "table_audit_pairs": "Memorisation audit. Every copied (real patient, synthetic record) pair.",
    "table_paper_vs_ours": "The paper's printed numbers beside ours for this run (different data: not expected to agree).",
    "table_paper_vs_ours_1": "Table 1 as the paper's text states it, beside ours.",
    "table_paper_vs_ours_12": "Table 12 as the paper prints it, beside ours.",
    "table_paper_vs_ours_13": "Table 13 as the paper prints it, beside ours.",
    "table_paper_vs_ours_14": "Table 14 as the paper prints it, beside ours.",
    "claims": "The claims ledger. Each checkable claim of the paper, its verdict, the numbers its rule used and their source.",
    "fig4_released": "Figure 4 (released samples). Rank-frequency of codes in the paper's five released samples.",
    "fig9_released": "Figure 9 (released samples). Visits per patient in the paper's released samples.",
    "fig10_released": "Figure 10 (released samples). Codes per visit in the paper's released samples.",
    "fig11_released": "Figure 11 (released samples). Codes per patient in the paper's released samples.",
    "fig_audit": "Memorisation audit. Nearest distance of each real patient to the released samples and copy rates, beside the controls.",
    "table_calibration_checks": "Calibration of the simulated cohort. Every statistic beside its target range.",
    "table_calibration_structure": "Calibration. Table 12 statistics of the simulated cohort, the public references and the paper's real row.",
    "table_calibration_top20": "Calibration. How many of each reference's top-20 codes are in the simulated top 20.",
    "table_calibration_top_codes": "Calibration. The MIMIC-III demo's top-20 codes and their prevalence in the simulated cohort.",
    "table_calibration_chapters": "Calibration. Share of patients with a code of each ICD-9 chapter.",
    "table_calibration_cooccurrence": "Calibration. Top-50 co-occurrence similarity of the simulated cohort to each reference.",
    "table_appendix_f": "Tables 3–11. Every hyperparameter of appendix F beside our paper preset; differs marks a difference, deviation names its reason.",
    "fig_learning": "Learning curves. Fidelity of each generator's samples against its validation patients over training seconds (a figure of this project, not of the paper); filled marker: the restored best check, cross: where training stopped.",
    "table_floors": "Convergence floors. Each generated model's prevalence R² against train, distinct codes over the holdout reference's on as many records, and empty records drawn, beside the demo profile's floors, and how its training phases ended.",
    "table_stopping": "How each training ended. Per model and phase: epochs trained, the cap, what ended it (patience or cap), the criterion and the best epoch restored (epochs counted within the phase).",
    "training_medgan": "Training curves of MedGAN (binary mode): losses, then the fidelity checks against the validation patients, over training seconds (dashed: the best epoch, restored; dotted: the last epoch).",
    "training_medgan_count": "Training curves of MedGAN (count mode): losses, then the fidelity checks against the validation patients, over training seconds (dashed: the best epoch, restored; dotted: the last epoch).",
    "training_corgan": "Training curves of CorGAN: losses, then the fidelity checks against the validation patients, over training seconds (dashed: the best epoch, restored; dotted: the last epoch).",
    "training_promptehr": "Training curves of PromptEHR: losses, then the fidelity checks against the validation patients, over training seconds (dashed: the best epoch, restored; dotted: the last epoch).",
    "training_halo": "Training curves of HALO: losses, then the fidelity checks against the validation patients, over training seconds (dashed: the best epoch, restored; dotted: the last epoch).",
    "table_dp_models": "DP generators. Each trained DP model's target and accounted ε, its δ, noise multiplier, mechanism and accountant.",
    "table_dp_audit": "DP audit. Claimed ε beside the measured lower bound ε_lower (one-run canary audit, Steinke, Nasr & Jagielski 2023) for every DP model and budget, and the negative controls (noise off, memorizer).",
    "fig_dp_tradeoff": "Privacy against fidelity and utility. Prevalence R², TSTR/TRTR utility and membership-attack AUC of each DP generator against ε; its non-private model at ε = ∞ (hollow); holdout and memorizer as dashed lines.",
    "table_dp_tradeoff": "Privacy against fidelity and utility (data). One row per cohort: ε, prevalence R², utility ratio, membership-attack AUC.",
    "training_gpt": "Training curves of the GPT-2 baseline: losses, then the fidelity checks against the validation patients, over training seconds (dashed: the best epoch, restored; dotted: the last epoch).",
    "fig_privacy_power": "Power of the membership attacks. AUC and TPR at 1% and 0.1% FPR of each attack against the share of records a partial memorizer copies from training, beside the holdout row's interval (band) and the marginals row (dotted); filled markers: copy rates the attack detects.",
    "table_privacy_power": "Power calibration. Each membership attack on the holdout, marginals and partial-memorizer rows: AUC and TPR at 0.1% and 1% FPR with basic bootstrap intervals, exact copies, and whether the row is detected (its interval above the holdout's).",
    "table_privacy_detection": "Detection limits. The smallest share of copied training records each attack detects (empty: none of the rates calibrated).",
    "table_privacy_exposed": "Most exposed records. The training records each attack scores highest against the partial memorizer copying 20%, their codes (rarest first, with patient counts) and whether the release holds an exact copy.",
    "table_privacy_attacks": "Membership attacks on every generator. AUC and TPR at 0.1% and 1% FPR of each attack with basic bootstrap intervals, beside the holdout row, and whether the generator is above it (its AUC or TPR-at-1% interval above the holdout row's).",
    "table_privacy_exposed_models": "Most exposed records per generator. The training records each attack scores highest against each generator's release, their codes (rarest first, with patient counts).",
    "table_next_visit": "Next-visit task. TRTR and TSTR recall@k beside the reference rows trained on nothing (repeat the last visit, the most frequent codes), the task's headroom and each generator's TSTR minus repeat-last.",
    "table_temporal": "Temporal fidelity. Nested-visit share, visit-to-visit transitions and persistence of the top codes against train, and Wasserstein distances of the record-length distributions, with basic bootstrap intervals.",
    "fig_temporal": "Temporal fidelity. Transition and persistence error, persistence gap and the Wasserstein distance of codes per patient, per generator, with basic bootstrap intervals.",
    "table_sample_fidelity": "Sample-level fidelity. α-precision, β-recall and authenticity (Alaa et al., 2022) on a train-fitted SVD embedding, mean ± spread over subsamples.",
    "fig_alpha_precision": "Sample-level fidelity. α-precision and β-recall curves per generator; a faithful generator lies on the diagonal.",
    "table_prevalence_rank": "Prevalence rank correlation. Spearman r overall, and R², Pearson r and Spearman r per train-prevalence bucket, with basic bootstrap intervals.",
    "table_plausibility": "Implausible records. Share of each generator's records beyond anything train shows (visits, codes per visit, code repeats, codes of the other sex), with Wilson intervals.",
    "table_subgroups": "Subgroup fidelity. Prevalence R² and Pearson r within sex and age bands against train's, beside the holdout's (the ceiling), for generators that emit demographics.",
}


def notebooks(root: Path) -> list[Path]:
    """The stage notebooks (the book's stage pages) under ``root``, in run order (their numeric prefix)."""
    return sorted((Path(root) / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def caption(artifact_id: str) -> str:
    """The caption of a registered artifact; a :class:`ConfigError` for an unknown ID."""
    try:
        return ARTIFACTS[artifact_id]
    except KeyError:
        raise ConfigError(
            f"artifact id {artifact_id!r} is not registered in ehrlib.book.ARTIFACTS; add it there with its caption"
        ) from None


def is_figure(artifact_id: str) -> bool:
    """Figures are the ``fig<N>`` and ``training_*`` IDs without a ``_data`` suffix."""
    return (artifact_id.startswith("fig") or artifact_id.startswith("training_")) and not artifact_id.endswith(
        ("_data", "_alpha_ablation"))


def in_notebook() -> bool:
    """Whether this code runs in a notebook kernel (outputs go to the page)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def show(artifact_id: str, obj) -> None:
    """Display a saved table (DataFrame) or figure (PNG path) in the notebook, with its caption.

    Outside a notebook kernel it does nothing, so library users and scripts see no output.
    """
    if not in_notebook():
        return
    from IPython.display import Image, Markdown, display

    display(Markdown(f"**{caption(artifact_id)}** `{artifact_id}`"))
    if isinstance(obj, (str, Path)):
        display(Image(filename=str(obj)))
    elif isinstance(obj, pd.DataFrame):
        # the Styler's default writes every float with six decimals (45517.000000)
        # the class names the artifact, for the book's style sheet (the claims ledger's column widths)
        display(obj.style.hide(axis="index").format(plain_number)
                .set_table_attributes(f'class="artifact-{artifact_id}"'))
    else:
        display(obj)


def page_outputs() -> None:
    """In a notebook kernel, make what a stage prints fit for its page: each warning and each
    ``ehrlib`` log warning becomes one plain line (``Note: ...``) instead of a stderr block with the
    build machine's file paths, and a DataFrame shown as it is writes its floats with
    :func:`ehrlib.metrics.display.plain_number` (``45517``, not ``45517.000000``). Outside a kernel
    nothing changes."""
    if not in_notebook():
        return
    import logging
    import sys
    import warnings

    def note(message, category, filename, lineno, file=None, line=None):
        print(f"Note: {message}")

    warnings.showwarning = note
    logger = logging.getLogger("ehrlib")
    if not any(getattr(h, "ehrlib_page", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("Note: %(message)s"))
        handler.ehrlib_page = True
        logger.addHandler(handler)
    pd.set_option("display.float_format", plain_number)


def show_note(text: str) -> None:
    """Display a line of Markdown in the notebook (nothing outside a notebook kernel)."""
    if not in_notebook():
        return
    from IPython.display import Markdown, display

    display(Markdown(text))


def save_table(table: pd.DataFrame, paper_id: str, run, floatfmt: str = ".4g", show_it: bool = False) -> Path:
    """Write ``<run>/tables/<paper_id>.csv`` and ``.md``; return the CSV path."""
    caption(paper_id)
    d = run.dir(TABLES_DIR)
    shown = with_intervals(table)  # rounded to what each interval supports; the CSV keeps every digit
    # text columns as written (tabulate sees no column of a table without rows)
    text_columns = [i for i, c in enumerate(shown.columns) if not pd.api.types.is_numeric_dtype(shown[c])] if len(shown) else []
    atomic_write(d / f"{paper_id}.md", lambda tmp: Path(tmp).write_text(
        shown.to_markdown(index=False, floatfmt=floatfmt, disable_numparse=text_columns or False)))
    path = atomic_write(d / f"{paper_id}.csv", lambda tmp: table.to_csv(tmp, index=False))
    if show_it:
        show(paper_id, shown)
        if shown.astype(str).apply(lambda c: c.str.contains(OUTSIDE_FLAG, regex=False)).any().any():
            show_note(OUTSIDE_NOTE)
    return path


def save_figure(fig, paper_id: str, run, dpi: int = 150, show_it: bool = False) -> Path:
    """Write ``<run>/figures/<paper_id>.png`` and ``.pdf``; return the PNG path. The figure is closed."""
    caption(paper_id)
    d = run.dir(FIGURES_DIR)
    atomic_write(d / f"{paper_id}.pdf", lambda tmp: fig.savefig(tmp, format="pdf", bbox_inches="tight"))
    path = atomic_write(d / f"{paper_id}.png", lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))
    try:
        import matplotlib.pyplot as plt

        plt.close(fig)
    except Exception:  # a Figure made without pyplot is not registered: nothing to close
        pass
    if show_it:
        show(paper_id, path)
    return path
