"""The public code profile behind the simulated cohort: what MIMIC-III looks like, in aggregates.

The profile is package data (``ehrlib/data/code_profile/``) built by
``scripts/build_code_profile.py`` from public sources only: the open MIMIC-III and MIMIC-IV
demos (ODbL) and the paper authors' released synthetic samples (MIT). It holds aggregates,
never a record of any source:

* **codes.csv.gz**: every CMS v32 diagnosis code with its patient-level prevalence in each
  source, the pooled prevalence, its recurrence rate (chance that a code of one visit appears
  again in the next visit of the same patient), its later- vs first-visit rate ratio and its
  calibrated background weight;
* **phenotypes.csv.gz**: the latent phenotypes (non-negative factors of the sources'
  patient-by-code matrix), one weight per phenotype and head code;
* **phenotype_profile.csv**: per phenotype its kind (adult, newborn), share of patients for
  whom it is the main phenotype, age and sex profile and its mean mixture over phenotypes;
* **chapters.csv**: per ICD-9 chapter the share of patients with a code in it, per source and
  pooled (the calibration target of Fig. 12);
* **profile.json**: sources, their pooling weights and licences, fitted scalars;
* **NOTICE.md**: which numbers come from which source and under which licence.

:func:`build_profile` fits everything but the calibration; :func:`ehrlib.data.simulate.calibrate` then adjusts the
code weights so that the simulator's patient-level prevalence matches the pooled profile.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ehrlib.cohort import CODE, SUBJECT, VISIT, Cohort
from ehrlib.data import icd9
from ehrlib.errors import CohortError, ConfigError

#: Folder of the package data, inside the installed package.
PROFILE_FILES = ("codes.csv.gz", "phenotypes.csv.gz", "phenotype_profile.csv", "chapters.csv", "profile.json",
                 "NOTICE.md")
KINDS = ("adult", "newborn")


def newborn_code_mask(codes) -> np.ndarray:
    """Perinatal (chapter 15), liveborn (``V30``-``V39``) and newborn observation (``V29``) codes.

    Only newborns carry them.
    """
    codes = np.asarray(codes, dtype=object).astype(str)
    ch = icd9.chapters(codes)
    return (ch == "15") | np.char.startswith(codes, "V3") | np.char.startswith(codes, "V29")


def first_visit_only_mask(codes) -> np.ndarray:
    """Liveborn codes (``V30``-``V39``: born in or out of hospital): only a birth admission holds them."""
    return np.char.startswith(np.asarray(codes, dtype=object).astype(str), "V3")


def _newborn_marker_mask(codes) -> np.ndarray:
    # newborn-only codes plus hepatitis B vaccination (V053), given to nearly every newborn
    codes = np.asarray(codes, dtype=object).astype(str)
    return newborn_code_mask(codes) | (codes == "V053")


def pregnancy_code_mask(codes) -> np.ndarray:
    """Pregnancy, childbirth and puerperium (chapter 11, ``V22``-``V24``, ``V27``, ``V28``)."""
    codes = np.asarray(codes, dtype=object).astype(str)
    ch = icd9.chapters(codes)
    prefix = np.array([c[:3] for c in codes], dtype=object)
    return (ch == "11") | np.isin(prefix, ["V22", "V23", "V24", "V27", "V28"])


def _three_digit(codes) -> np.ndarray:
    codes = np.asarray(codes, dtype=object).astype(str)
    return np.array([int(c[:3]) if c[:3].isdigit() else -1 for c in codes])


def male_only_mask(codes) -> np.ndarray:
    """Codes of male organs (prostate and testis cancer 185-187, male genital organs 600-608)."""
    t = _three_digit(codes)
    return np.isin(t, [185, 186, 187]) | ((t >= 600) & (t <= 608))


def female_only_mask(codes) -> np.ndarray:
    """Codes of female organs (breast cancer 174, uterus/ovary cancers 179-184, 614-629)."""
    t = _three_digit(codes)
    return (t == 174) | ((t >= 179) & (t <= 184)) | ((t >= 614) & (t <= 629))


@dataclass(frozen=True)
class CodeProfile:
    """The simulator's code profile (see the module docstring for the files it is read from).

    Attributes:
        codes: the V CMS v32 codes, in :func:`ehrlib.data.icd9.code_table` order.
        phenotypes: K x V non-negative code weights per phenotype (rows sum to 1; zero outside
            the head codes).
        kinds: K phenotype kinds (``"adult"`` or ``"newborn"``).
        share: K shares of patients whose main phenotype is each phenotype (sum to 1).
        mixtures: K x K mean phenotype mixture of the patients with each main phenotype.
        age_mean, age_sd, male_share: K age and sex profile per main phenotype.
        background: V weights of the background distribution: observed codes outside the
            phenotypes' head (sums to 1).
        background_share: the share of an adult's code draws that come from the background.
        tail: V weights of the tail: codes that no source holds, Zipf within their chapter
            (sums to 1).
        tail_share: the share of an adult's code draws that come from the tail.
        recurrence: V chances that a code of one visit recurs in the patient's next visit.
        later_ratio: V ratios of a code's rate in later visits to its rate in first visits
            (multi-visit patients of the sources), applied to fresh draws after the first visit.
        pooled: V pooled patient-level prevalences (the calibration target).
        chapters: per chapter (``"1"``..``"19"``) ``share_<source>`` and ``pooled`` share of
            patients with a code in the chapter.
        meta: the contents of ``profile.json``.
    """

    codes: np.ndarray
    phenotypes: np.ndarray
    kinds: np.ndarray
    share: np.ndarray
    mixtures: np.ndarray
    age_mean: np.ndarray
    age_sd: np.ndarray
    male_share: np.ndarray
    background: np.ndarray
    background_share: float
    tail: np.ndarray
    tail_share: float
    recurrence: np.ndarray
    later_ratio: np.ndarray
    pooled: np.ndarray
    chapters: pd.DataFrame
    meta: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict, repr=False, compare=False)


def _package_dir() -> Path:
    return Path(__file__).with_name("code_profile")


@lru_cache(maxsize=4)
def load_code_profile(path: str | None = None) -> CodeProfile:
    """Read the code profile (the package data by default, or a folder written by :func:`save_profile`).

    Raises:
        ConfigError: a profile file is missing or does not match the CMS v32 code list.
    """
    root = Path(path) if path is not None else _package_dir()
    missing = [f for f in PROFILE_FILES if not (root / f).is_file()]
    if missing:
        raise ConfigError(f"code profile folder {root}: missing {', '.join(missing)}; "
                          "rebuild it with scripts/build_code_profile.py")
    codes_df = pd.read_csv(root / "codes.csv.gz", dtype={"code": str, "chapter": str})
    table = icd9.code_table()
    if codes_df["code"].tolist() != table["code"].tolist():
        raise ConfigError(f"{root / 'codes.csv.gz'}: column 'code' does not list the CMS v32 codes in "
                          "icd9.code_table() order; rebuild it with scripts/build_code_profile.py")
    meta = json.loads((root / "profile.json").read_text())
    prof = pd.read_csv(root / "phenotype_profile.csv")
    K = len(prof)
    ph = pd.read_csv(root / "phenotypes.csv.gz", dtype={"code": str})
    col = pd.Index(codes_df["code"]).get_indexer(ph["code"])
    if (col < 0).any() or ph["phenotype"].max() >= K or ph["phenotype"].min() < 0:
        raise ConfigError(f"{root / 'phenotypes.csv.gz'}: codes or phenotype ids outside the profile")
    phen = np.zeros((K, len(codes_df)))
    phen[ph["phenotype"].to_numpy(), col] = ph["weight"].to_numpy()
    bad_kind = set(prof["kind"]) - set(KINDS)
    if bad_kind:
        raise ConfigError(f"{root / 'phenotype_profile.csv'}: column 'kind' has {sorted(bad_kind)}; expected {KINDS}")
    return CodeProfile(
        codes=codes_df["code"].to_numpy(dtype=object),
        phenotypes=phen / phen.sum(axis=1, keepdims=True),
        kinds=prof["kind"].to_numpy(dtype=object),
        share=prof["share"].to_numpy() / prof["share"].sum(),
        mixtures=prof[[f"mix_{k}" for k in range(K)]].to_numpy(),
        age_mean=prof["age_mean"].to_numpy(),
        age_sd=prof["age_sd"].to_numpy(),
        male_share=prof["male_share"].to_numpy(),
        background=codes_df["background"].to_numpy() / codes_df["background"].sum(),
        background_share=float(meta["background_share"]),
        tail=codes_df["tail"].to_numpy() / codes_df["tail"].sum(),
        tail_share=float(meta["tail_share"]),
        recurrence=codes_df["recurrence"].to_numpy(),
        later_ratio=codes_df["later_visit_ratio"].to_numpy(),
        pooled=codes_df["pooled_prevalence"].to_numpy(),
        chapters=pd.read_csv(root / "chapters.csv", dtype={"chapter": str}),
        meta=meta,
        tables={"codes": codes_df},
    )


def code_distributions(profile: CodeProfile, later: bool = False) -> np.ndarray:
    """K x V code distribution of each phenotype, background and tail included (rows sum to 1).

    Row k mixes the phenotype's head codes (weight ``1 - background_share - tail_share``),
    the background and the tail. Background and tail codes are tilted towards the chapters
    the phenotype itself covers, ``w_k(ch) = (m_k(ch) + s * m(ch)) / ((1 + s) * m(ch))`` with
    ``m_k`` the phenotype's and ``m`` the mean head mass per chapter and ``s`` the profile's
    ``background_smoothing``, so that a patient's rare codes fall in the organ systems of
    its phenotypes (rare cardiac codes in cardiac patients) and chapters cluster within
    patients as in the sources. Newborn phenotypes take no background or tail. With
    ``later=True`` every part is reweighted by ``later_ratio`` first (the draws of visits after
    the first).
    """
    chapters = icd9.chapters(profile.codes)
    names = np.array(list(icd9.CHAPTER_NAMES), dtype=object)
    onehot = (chapters[:, None] == names[None, :]).astype(np.float64)        # V x C
    m_k = profile.phenotypes @ onehot                                        # K x C
    m = m_k.mean(axis=0)
    s = float(profile.meta.get("background_smoothing", 1.0))
    w = (m_k + s * m) / ((1 + s) * np.maximum(m, 1e-12))                     # K x C
    tilt = w @ onehot.T                                                      # K x V
    bg = profile.background[None, :] * tilt
    bg /= np.maximum(bg.sum(axis=1, keepdims=True), 1e-300)
    tail = profile.tail[None, :] * tilt
    tail /= np.maximum(tail.sum(axis=1, keepdims=True), 1e-300)
    phen = profile.phenotypes
    if later:
        phen, bg, tail = (_renormalised(x * profile.later_ratio[None, :]) for x in (phen, bg, tail))
    b = np.where(profile.kinds == "newborn", 0.0, profile.background_share)[:, None]
    t = np.where(profile.kinds == "newborn", 0.0, profile.tail_share)[:, None]
    return (1 - b - t) * phen + b * bg + t * tail


def _renormalised(x: np.ndarray) -> np.ndarray:
    total = x.sum(axis=1, keepdims=True)
    return np.where(total > 0, x / np.where(total > 0, total, 1.0), 0.0)


# ----------------------------------------------------------------------------------------------
# building (used by scripts/build_code_profile.py)

def patient_prevalence(cohort: Cohort, codes) -> np.ndarray:
    """Share of the cohort's patients holding each of ``codes`` (0 for codes it lacks)."""
    counts = cohort.events.drop_duplicates([SUBJECT, CODE])[CODE].value_counts()
    return counts.reindex(pd.Index(codes), fill_value=0).to_numpy(dtype=np.float64) / cohort.n_patients


def chapter_shares(cohort: Cohort) -> np.ndarray:
    """Share of the cohort's patients with a code in each chapter ``"1"``..``"19"`` (in that order)."""
    ev = cohort.events.drop_duplicates([SUBJECT, CODE])
    ch = pd.Series(icd9.chapters(ev[CODE].to_numpy()), index=ev.index)
    pairs = pd.DataFrame({SUBJECT: ev[SUBJECT], "chapter": ch}).dropna().drop_duplicates()
    counts = pairs.groupby("chapter").size().reindex(list(icd9.CHAPTER_NAMES), fill_value=0)
    return counts.to_numpy(dtype=np.float64) / cohort.n_patients


def recurrence_counts(cohort: Cohort, codes) -> tuple[np.ndarray, np.ndarray]:
    """Per code: visits holding it that have a next visit, and how many of those the next visit repeats."""
    ev = cohort.events[[SUBJECT, VISIT, CODE]]
    last = ev.groupby(SUBJECT)[VISIT].transform("max")
    has_next = ev[ev[VISIT] < last]
    nxt = ev.assign(**{VISIT: ev[VISIT] - 1})
    both = has_next.merge(nxt, on=[SUBJECT, VISIT, CODE], how="inner")
    idx = pd.Index(codes)
    n_prev = has_next[CODE].value_counts().reindex(idx, fill_value=0).to_numpy(np.float64)
    n_rec = both[CODE].value_counts().reindex(idx, fill_value=0).to_numpy(np.float64)
    return n_prev, n_rec


def visit_position_counts(cohort: Cohort, codes) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Among patients with 2+ visits: first visits holding each code, later visits holding it, and the two totals."""
    ev = cohort.events[[SUBJECT, VISIT, CODE]]
    multi = ev[ev.groupby(SUBJECT)[VISIT].transform("max") > 0]
    first = multi[multi[VISIT] == 0]
    later = multi[multi[VISIT] > 0]
    idx = pd.Index(codes)
    n_first = first[CODE].value_counts().reindex(idx, fill_value=0).to_numpy(np.float64)
    n_later = later[CODE].value_counts().reindex(idx, fill_value=0).to_numpy(np.float64)
    n_visits_first = multi[SUBJECT].nunique()
    n_visits_later = len(later.drop_duplicates([SUBJECT, VISIT]))
    return n_first, n_later, int(n_visits_first), int(n_visits_later)


def _binary(cohort: Cohort, col_of: pd.Index):
    import scipy.sparse as sp

    ev = cohort.events.drop_duplicates([SUBJECT, CODE])
    col = col_of.get_indexer(ev[CODE])
    rows = pd.Index(cohort.subject_ids).get_indexer(ev[SUBJECT])
    keep = col >= 0
    return sp.csr_matrix((np.ones(keep.sum()), (rows[keep], col[keep])), shape=(cohort.n_patients, len(col_of)))


@dataclass(frozen=True)
class BuildSettings:
    """Choices of :func:`build_profile` (recorded in ``profile.json``)."""

    weights: dict = field(default_factory=dict)   # source name -> pooling weight (sum to 1)
    n_head: int = 800                              # codes modelled by the phenotypes
    n_phenotypes: int = 32
    nmf_max_iter: int = 400
    recurrence_prior: float = 20.0                 # pseudo-visits shrinking a code's rate to its chapter's
    position_prior: float = 50.0                   # pseudo-visits shrinking a code's later/first-visit ratio to 1
    demographic_prior: float = 3.0                 # pseudo-patients shrinking a phenotype's age/sex to the mean
    newborn_mass: float = 0.4                      # newborn-code mass that makes a phenotype a newborn one
    tail_exponent: float = 1.1                     # Zipf exponent of unobserved codes within a chapter
    tail_share: float = 0.005                      # initial share of draws from the tail (calibrated)
    background_smoothing: float = 0.05             # tilt of rare codes towards a phenotype's chapters
    seed: int = 0


def build_profile(sources: dict[str, Cohort], settings: BuildSettings,
                  licences: dict[str, str] | None = None) -> CodeProfile:
    """Pool the sources' prevalence, fit phenotypes and recurrence (before calibration).

    Args:
        sources: source name -> cohort (codes outside CMS v32 are dropped: the simulator emits
            v32 codes only). Cohorts with demographics (the demos) give the phenotypes' age and
            sex profile; cohorts with several visits give recurrence rates.
        settings: pooling weights per source (every source must have one) and fit sizes.
        licences: source name -> licence text recorded in ``profile.json``.

    Returns:
        An uncalibrated :class:`CodeProfile` (background and phenotype weights proportional to
        pooled prevalence).

    The phenotypes are an NMF of the stacked patient x head-code 0/1 matrix of all sources,
    each patient counted once (so the 10k-patient samples shape them most); the pooling
    weights set the phenotypes' shares and mean mixtures. A phenotype's age mean and male
    share are the demos' patients' values weighted by their projection on it, shrunk to the
    overall mean by ``demographic_prior`` pseudo-patients; the age spread is the demos' overall
    standard deviation.

    Raises:
        ConfigError: weights do not match the sources, or no source has demographics.
    """
    import scipy.sparse as sp
    from sklearn.decomposition import NMF

    w = settings.weights
    if set(w) != set(sources) or not np.isclose(sum(w.values()), 1.0) or min(w.values()) < 0:
        raise ConfigError(f"weights {w}: expected one non-negative weight per source {sorted(sources)}, summing to 1")
    table = icd9.code_table()
    codes = table["code"].to_numpy(dtype=object)
    chapters = table["chapter"].to_numpy()
    V = len(codes)
    src = dict(sources)  # codes outside CMS v32 fall out of every reindex below
    prev = {name: patient_prevalence(c, codes) for name, c in src.items()}
    pooled = sum(w[n] * prev[n] for n in src)
    ch_share = pd.DataFrame({"chapter": list(icd9.CHAPTER_NAMES)})
    for name, c in src.items():
        ch_share[f"share_{name}"] = chapter_shares(c)
    ch_share["pooled"] = sum(w[n] * ch_share[f"share_{n}"] for n in src)

    # recurrence: pooled per-code rate over multi-visit sources, shrunk to the chapter's rate
    num = np.zeros(V)
    den = np.zeros(V)
    for name, c in src.items():
        if c.n_visits > c.n_patients:
            n_prev, n_rec = recurrence_counts(c, codes)
            num += w[name] * n_rec / c.n_patients
            den += w[name] * n_prev / c.n_patients
    ch_rate = pd.Series(num).groupby(chapters).sum() / pd.Series(den).groupby(chapters).sum().replace(0, np.nan)
    ch_rate = ch_rate.fillna(float(num.sum() / den.sum()))
    prior = ch_rate.reindex(chapters).to_numpy()
    # den is per patient; express the prior as pseudo-visits per 10,000 patients
    scale = 1e4
    recurrence = (num * scale + settings.recurrence_prior * prior) / (den * scale + settings.recurrence_prior)

    # first vs later visits: pooled per-code rates over multi-visit sources, each shrunk by
    # ``position_prior`` pseudo-visits at the code's overall rate; liveborn codes stay first-only
    f = np.zeros(V)
    lt = np.zeros(V)
    nf = nl = 0.0
    for name, c in src.items():
        if c.n_visits > c.n_patients:
            a, b, n_a, n_b = visit_position_counts(c, codes)
            f += w[name] * a / max(n_a, 1)
            lt += w[name] * b / max(n_b, 1)
            nf += w[name] * n_a
            nl += w[name] * n_b
    total_w = sum(w[n] for n, c in src.items() if c.n_visits > c.n_patients)
    if total_w > 0:
        f, lt, nf, nl = f / total_w, lt / total_w, nf / total_w, nl / total_w
        rate = (f * nf + lt * nl) / max(nf + nl, 1e-12)
        m = settings.position_prior
        later_ratio = ((lt * nl + m * rate) / (nl + m) + 1e-12) / ((f * nf + m * rate) / (nf + m) + 1e-12)
        later_ratio = np.where(rate > 0, np.clip(later_ratio, 0.25, 4.0), 1.0)
    else:
        later_ratio = np.ones(V)

    # phenotypes: NMF of the stacked patient x head-code matrix of all sources
    order = np.argsort(-pooled, kind="stable")
    head = order[: settings.n_head]
    head = head[pooled[head] > 0]
    col_of = pd.Index(codes[head])
    mats = {name: _binary(c, col_of) for name, c in src.items()}
    X = sp.vstack(list(mats.values())).tocsr()
    row_w = np.concatenate([np.full(m.shape[0], w[n] / m.shape[0]) for n, m in mats.items()])
    nmf = NMF(n_components=settings.n_phenotypes, init="nndsvda", beta_loss="frobenius", solver="cd",
              max_iter=settings.nmf_max_iter, random_state=settings.seed)
    W = nmf.fit_transform(X)
    H = nmf.components_
    mass = H.sum(axis=1)
    theta = W * mass[None, :]
    has = theta.sum(axis=1) > 0
    theta, row_w = theta[has], row_w[has]
    theta /= theta.sum(axis=1, keepdims=True)
    K = settings.n_phenotypes
    primary = theta.argmax(axis=1)
    share = np.bincount(primary, weights=row_w, minlength=K)
    mixtures = np.zeros((K, K))
    for k in range(K):
        sel = primary == k
        mixtures[k] = (theta[sel] * row_w[sel, None]).sum(axis=0) / max(row_w[sel].sum(), 1e-12) if sel.any() else np.eye(K)[k]
    phen = np.zeros((K, V))
    phen[:, head] = H
    phen /= phen.sum(axis=1, keepdims=True)
    newborn = _newborn_marker_mask(codes)
    kinds = np.where(phen[:, newborn].sum(axis=1) > settings.newborn_mass, "newborn", "adult").astype(object)

    # age and sex profiles from the cohorts that have demographics
    ages, males, thetas = [], [], []
    for name, c in src.items():
        if c.demographics is None:
            continue
        d = c.demographics.set_index(SUBJECT).reindex(c.subject_ids)
        t = nmf.transform(mats[name]) * mass[None, :]
        ok = (t.sum(axis=1) > 0) & d["age"].notna().to_numpy() & d["sex"].isin(["M", "F"]).to_numpy()
        thetas.append(t[ok] / t[ok].sum(axis=1, keepdims=True))
        ages.append(d["age"].to_numpy(dtype=float)[ok])
        males.append((d["sex"] == "M").to_numpy(dtype=float)[ok])
    if not ages or sum(len(a) for a in ages) == 0:
        raise ConfigError(f"sources {sorted(src)}: none has demographics (age, sex) with codes; the phenotypes' "
                          "age and sex profile needs at least one (the MIMIC demos have them)")
    T, A, M = np.vstack(thetas), np.concatenate(ages), np.concatenate(males)
    adult = A > 0
    T, A, M = T[adult], A[adult], M[adult]
    m0 = settings.demographic_prior
    tw = T.sum(axis=0)
    age_mean = (T.T @ A + m0 * A.mean()) / (tw + m0)
    age_sd = np.full(K, float(A.std()))
    male_share = (T.T @ M + m0 * M.mean()) / (tw + m0)
    age_mean[kinds == "newborn"] = 0.0
    age_sd[kinds == "newborn"] = 0.0

    # background: codes outside the head at their pooled prevalence, a Zipf tail for the rest
    in_head = np.zeros(V, bool)
    in_head[head] = True
    background = np.where(in_head, 0.0, pooled)
    unseen = pooled == 0
    rng = np.random.default_rng(settings.seed)
    floor = float(pooled[pooled > 0].min())
    tail = np.zeros(V)
    for ch in np.unique(chapters):
        idx = np.flatnonzero(unseen & (chapters == ch))
        if len(idx) == 0:
            continue
        ranks = rng.permutation(len(idx)) + 1
        tail[idx] = floor * ranks ** -settings.tail_exponent
    bg_share = float(background.sum() / pooled.sum())
    meta = {
        "sources": {n: {"weight": float(w[n]), "patients": int(c.n_patients), "licence": (licences or {}).get(n, "")}
                    for n, c in src.items()},
        "n_head": int(len(head)),
        "n_phenotypes": int(K),
        "recurrence_prior": settings.recurrence_prior,
        "position_prior": settings.position_prior,
        "demographic_prior": settings.demographic_prior,
        "tail_exponent": settings.tail_exponent,
        "tail_share": settings.tail_share,
        "background_smoothing": settings.background_smoothing,
        "background_share": bg_share,
        "nmf_reconstruction_err": float(nmf.reconstruction_err_),
        "seed": settings.seed,
    }
    codes_df = pd.DataFrame({"code": codes, "chapter": chapters, "pooled_prevalence": pooled,
                             **{f"prevalence_{n}": prev[n] for n in src}, "recurrence": recurrence,
                             "later_visit_ratio": later_ratio, "observed_background": background, "tail": tail})
    return CodeProfile(
        codes=codes, phenotypes=phen, kinds=kinds, share=share / share.sum(), mixtures=mixtures,
        age_mean=age_mean, age_sd=age_sd, male_share=male_share,
        background=background / background.sum(), background_share=bg_share,
        tail=tail / tail.sum(), tail_share=settings.tail_share,
        recurrence=recurrence, later_ratio=later_ratio, pooled=pooled, chapters=ch_share, meta=meta, tables={"codes": codes_df},
    )


def save_profile(profile: CodeProfile, root, notice: str) -> Path:
    """Write the profile files into ``root`` (all or nothing: written beside it, then moved in)."""
    import tempfile

    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    codes_df = profile.tables["codes"].copy()
    if "background" not in codes_df:
        codes_df["background"] = profile.background
    K = len(profile.kinds)
    nz = np.nonzero(profile.phenotypes > 0)
    ph = pd.DataFrame({"phenotype": nz[0], "code": profile.codes[nz[1]], "weight": profile.phenotypes[nz]})
    prof = pd.DataFrame({"phenotype": np.arange(K), "kind": profile.kinds, "share": profile.share,
                         "age_mean": profile.age_mean, "age_sd": profile.age_sd, "male_share": profile.male_share,
                         **{f"mix_{k}": profile.mixtures[:, k] for k in range(K)}})
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=f".{root.name}.") as tmp:
        tmp = Path(tmp)
        float_fmt = "%.6g"
        codes_df.to_csv(tmp / "codes.csv.gz", index=False, float_format=float_fmt,
                        compression={"method": "gzip", "mtime": 0})
        ph.to_csv(tmp / "phenotypes.csv.gz", index=False, float_format=float_fmt,
                  compression={"method": "gzip", "mtime": 0})
        prof.to_csv(tmp / "phenotype_profile.csv", index=False, float_format=float_fmt)
        profile.chapters.to_csv(tmp / "chapters.csv", index=False, float_format=float_fmt)
        (tmp / "profile.json").write_text(json.dumps(profile.meta, indent=1, sort_keys=True) + "\n")
        (tmp / "NOTICE.md").write_text(notice)
        root.mkdir(parents=True, exist_ok=True)
        for f in tmp.iterdir():
            f.replace(root / f.name)
    load_code_profile.cache_clear()
    return root


def check_sources(sources: dict[str, Cohort]) -> None:
    """Raise :class:`CohortError` naming a source without patients or without any CMS v32 code."""
    v32 = set(icd9.codes())
    for name, c in sources.items():
        if c.n_patients == 0 or not (set(c.events[CODE].unique()) & v32):
            raise CohortError(f"source {name!r} ({c.source}): no patients with CMS v32 diagnosis codes")
