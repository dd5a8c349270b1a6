"""The evaluation context: what every metric family takes, built once per evaluated set.

Paper: section 3 (the evaluation suite); the book's methods page, "Inputs".

An :class:`EvaluationContext` holds the real cohorts (``train``, ``holdout``, optionally
``reference``, a third real split no generator saw), the synthetic cohorts by name, one
vocabulary (the union of every cohort's codes), and, made on first use and then kept, one
visit-position encoding per cohort (the distance's input), one patient x code binary matrix per
cohort, the holdout-overlap check and the real side's bootstrap resamples (shared by every
generator, so comparisons between generators are paired). Every family
(:data:`ehrlib.metrics.names.FAMILIES`) reads its inputs from it; the Cohort-level functions
(:func:`ehrlib.metrics.evaluate`, :func:`ehrlib.metrics.privacy.privacy_metrics`, ...) are thin
wrappers that build one.

**Once per run.** The evaluation notebooks of one run are separate processes (the runner starts
stages 30-32, 34 and 40 side by side), so a context kept in memory would be rebuilt by each.
:func:`shared_context` persists it in the run folder instead: the first stage that needs it
takes a file lock (``fcntl.flock``), builds it with every cohort's encodings, binary matrix and
the real-side resamples (:meth:`EvaluationContext.prepare`), writes it atomically (a temporary
file renamed into place) and releases the lock; stages that were waiting on the lock, and every
later one, load it. The file is named by a fingerprint of its input cohorts' contents, so a
changed cohort (a generator run again) gives a new build, never a stale load. This was chosen
over a dedicated stage that builds the context because it needs no change to the stage graph:
every evaluation notebook keeps needing only the generation stage, the cache costs nothing when
absent (it is rebuilt), and the lock makes concurrent stages wait rather than build twice. A
stage whose evaluated set is a part of the run's (the reference generators of the protocol
effects, the long-tail models of Figure 3, the sets without the reference split) takes
:meth:`EvaluationContext.subset`, whose vocabulary, encodings and matrices equal those of a
fresh build of that part, derived from the stored ones by renumbering columns. What each
process encoded is counted in :attr:`EvaluationContext.builds`; what the stored context was
built with in :attr:`EvaluationContext.stored_builds`.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import binom

from ehrlib.cohort import VISIT, Cohort, CohortError
from ehrlib.data.encode import Vocabulary, binary_matrix, visit_position_matrix
from ehrlib.metrics.bootstrap import RealResamples
from ehrlib.metrics.distance import EncodedCohort

OVERLAP_P_VALUE = 1e-6
"""A holdout is refused when this many exact train copies would happen by chance with at most this probability."""
OVERLAP_MARGIN = 0.05
"""... and its copy rate exceeds the chance rate by more than this (absolute share)."""

TRAIN, HOLDOUT, REFERENCE = "__train__", "__holdout__", "__reference__"
"""Keys of the real cohorts among the context's cohorts (synthetic cohorts use their names)."""


# ---------------------------------------------------------------------------- overlap
def _record_keys(cohort: Cohort) -> pd.Series:
    """One hashable key per patient: its visits' code sets in order (ids ignored)."""
    ev = cohort.events
    visit_key = ev[VISIT].astype(str) + ":" + ev["code"].astype(str)
    return visit_key.groupby(ev["subject_id"], sort=False).agg("|".join)


def holdout_overlap(train: Cohort, holdout: Cohort) -> dict:
    """How much ``holdout`` overlaps ``train``: shared subject ids and exact record copies.

    The chance level of exact copies is the share of train records that have an identical twin
    elsewhere in train (a fresh patient of the same population matches a train record about as
    often: short records such as a newborn's single code repeat by nature).

    Returns:
        dict with ``shared_ids`` (count), ``example_ids`` (up to 5), ``copies`` (holdout records
        identical to some train record), ``copy_rate``, ``chance_rate``, ``p_value`` (one-sided
        binomial probability of at least that many copies at the chance rate) and ``refuse``.
    """
    shared = pd.Index(train.subject_ids).intersection(pd.Index(holdout.subject_ids))
    train_keys = _record_keys(train)
    counts = train_keys.value_counts()
    chance = float((train_keys.map(counts) > 1).mean()) if len(train_keys) else 0.0
    holdout_keys = _record_keys(holdout)
    copies = int(holdout_keys.isin(counts.index).sum())
    n = len(holdout_keys)
    rate = copies / n if n else 0.0
    p_value = float(binom.sf(copies - 1, n, min(max(chance, 1e-12), 1.0))) if copies else 1.0
    refuse = len(shared) > 0 or (p_value < OVERLAP_P_VALUE and rate - chance > OVERLAP_MARGIN)
    return {"shared_ids": int(len(shared)), "example_ids": [str(s) for s in shared[:5]], "copies": copies,
            "copy_rate": rate, "chance_rate": chance, "p_value": p_value, "refuse": bool(refuse)}


def _raise_overlap(o: dict, holdout: Cohort) -> None:
    what = []
    if o["shared_ids"]:
        what.append(f"{o['shared_ids']} subject id(s) are in both (e.g. {', '.join(o['example_ids'])})")
    if o["copy_rate"] - o["chance_rate"] > OVERLAP_MARGIN and o["p_value"] < OVERLAP_P_VALUE:
        what.append(f"{o['copies']} of {holdout.n_patients} holdout records ({o['copy_rate']:.1%}) are exact "
                    f"copies of train records, where {o['chance_rate']:.1%} is expected by chance")
    raise CohortError(
        f"the holdout overlaps train: {'; '.join(what)}. Membership and NNAAR metrics would treat "
        "training patients as unseen; split the data again (ehrlib.data.split) or pass "
        "allow_overlap=True if the overlap is intended"
    )


def check_holdout(train: Cohort, holdout: Cohort, allow_overlap: bool = False) -> dict:
    """Raise :class:`CohortError` when ``holdout`` shares subject ids with ``train`` or copies its
    records beyond chance (:func:`holdout_overlap`): a memorising generator would then pass every
    membership test. ``allow_overlap``: never raise. Returns the check's result."""
    o = holdout_overlap(train, holdout)
    if o["refuse"] and not allow_overlap:
        _raise_overlap(o, holdout)
    return o


# ---------------------------------------------------------------------------- the context
class EvaluationContext:
    """The cohorts of one evaluated set and everything derived from them, each made once.

    Build with :meth:`build` (which runs the overlap check); a family reads:

    * ``train``, ``holdout``, ``reference`` (or ``None``) and ``synthetic`` (``name -> Cohort``);
    * :attr:`vocab`: the union of every cohort's codes; :meth:`union` the vocabulary of some of them;
    * :meth:`encoded`: a cohort's visit-position encoding (one number of positions for all);
    * :meth:`binary`: a cohort's patient x code 0/1 matrix, over :attr:`vocab` or a sub-vocabulary;
    * :meth:`real_resamples`: the train side's bootstrap prevalence replicates (B, seed);
    * :attr:`overlap`: the holdout-overlap check's result (:func:`holdout_overlap`).

    Counters (:attr:`builds`) say how often each cohort was encoded, for the benchmark and tests.
    """

    def __init__(self, train: Cohort, holdout: Cohort, synthetic: dict[str, Cohort], reference: Cohort | None = None,
                 *, overlap: dict | None = None):
        for role, c in (("train", train), ("holdout", holdout), *((f"synthetic {n!r}", c) for n, c in synthetic.items()),
                        *((("reference", reference),) if reference is not None else ())):
            if not isinstance(c, Cohort):
                raise TypeError(f"{role}: expected a Cohort, got {type(c).__name__}")
            if c.n_patients == 0:
                raise CohortError(f"{role} cohort is empty: nothing to evaluate")
        clash = [n for n in synthetic if n in (TRAIN, HOLDOUT, REFERENCE)]
        if clash:
            raise CohortError(f"synthetic cohort name {clash[0]!r} is reserved for a real cohort; rename it")
        self.train, self.holdout, self.reference = train, holdout, reference
        self.synthetic = dict(synthetic)
        self.cohorts = {TRAIN: train, HOLDOUT: holdout, **({REFERENCE: reference} if reference is not None else {}),
                        **self.synthetic}
        self.codes = {k: frozenset(pd.unique(c.events["code"]).tolist()) for k, c in self.cohorts.items()}
        self.vocab = Vocabulary(frozenset().union(*self.codes.values()))
        self.n_positions = max((int(c.events[VISIT].max()) + 1 for c in self.cohorts.values() if c.n_events),
                               default=1)
        self.overlap = overlap
        self.builds: dict[str, int] = {}
        self.stored_builds: dict[str, int] = {}  # what a loaded context's builder made (:func:`shared_context`)
        self.origin = "built"  # or "loaded" (:func:`shared_context`), "subset" (:meth:`subset`)
        self.fingerprint: str | None = None  # of the input cohorts, once computed (:func:`fingerprint`)
        self._parent: EvaluationContext | None = None  # the context a subset derives its matrices from
        self._enc: dict = {}
        self._binary: dict = {}
        self._resamples: dict = {}
        self._memo: dict = {}

    @classmethod
    def build(cls, train: Cohort, holdout: Cohort, synthetic: dict[str, Cohort] | Cohort,
              reference: Cohort | None = None, *, allow_overlap: bool = False) -> "EvaluationContext":
        """The context of one evaluated set, after the holdout-overlap check.

        Args:
            train: the real cohort the generators were fitted on.
            holdout: real patients no generator saw (the non-members).
            synthetic: ``name -> Cohort`` (one Cohort is named ``synthetic``).
            reference: a third real split, disjoint from both (the attribute-inference baseline).
            allow_overlap: evaluate even when ``holdout`` overlaps ``train`` (:func:`check_holdout`).

        Raises:
            CohortError: an empty cohort, or a holdout that overlaps train.
        """
        if isinstance(synthetic, Cohort):
            synthetic = {"synthetic": synthetic}
        return cls(train, holdout, synthetic, reference, overlap=check_holdout(train, holdout, allow_overlap))

    def key(self, name: str) -> str:
        """Check that ``name`` is one of this context's cohorts: :data:`TRAIN`, :data:`HOLDOUT`,
        :data:`REFERENCE` or a synthetic cohort's name (a generator may be called ``holdout``, so
        the real cohorts have keys of their own)."""
        if name not in self.cohorts:
            raise CohortError(f"no cohort {name!r} in this evaluation context (have: {', '.join(self.cohorts)})")
        return name

    @staticmethod
    def real_key(real: str) -> str:
        """The key of a real class name ``"train"``, ``"holdout"`` or ``"reference"``."""
        return {"train": TRAIN, "holdout": HOLDOUT, "reference": REFERENCE}[real]

    def _count(self, what: str) -> None:
        self.builds[what] = self.builds.get(what, 0) + 1

    def encoded(self, role: str):
        """The cohort's :class:`ehrlib.metrics.distance.EncodedCohort` (shared vocabulary and positions)."""
        key = self.key(role)
        if key not in self._enc:
            derived = self._derive("encoded", key)
            if derived is None:
                self._count(f"encoded:{key}")
                derived = EncodedCohort.from_matrix(
                    visit_position_matrix(self.cohorts[key], self.vocab, self.n_positions), len(self.vocab))
            self._enc[key] = derived
        return self._enc[key]

    def union(self, *roles: str):
        """The vocabulary of the named cohorts' codes (each family compares over its pair's union)."""
        return Vocabulary(frozenset().union(*(self.codes[self.key(r)] for r in roles)))

    def binary(self, role: str, vocab=None):
        """The cohort's patients x codes 0/1 matrix over ``vocab`` (default :attr:`vocab`; any
        sub-vocabulary of it): built once over :attr:`vocab`, then its columns taken."""
        key = self.key(role)
        if key not in self._binary:
            derived = self._derive("binary", key)
            if derived is None:
                self._count(f"binary:{key}")
                derived = binary_matrix(self.cohorts[key], self.vocab)
            self._binary[key] = derived
        full = self._binary[key]
        return full if vocab is None or vocab is self.vocab else full[:, self.vocab.index(vocab.codes)]

    def real_resamples(self, n_bootstrap: int, seed: int):
        """:class:`ehrlib.metrics.bootstrap.RealResamples` of ``train`` (drawn once per B and seed)."""
        k = (int(n_bootstrap), int(seed))
        if k not in self._resamples:
            self._count("resamples:train")
            vocab = self.union(TRAIN)
            self._resamples[k] = RealResamples.draw(self.train, n_bootstrap=n_bootstrap, seed=seed,
                                                    matrix=self.binary(TRAIN, vocab), vocab=vocab)
        return self._resamples[k]

    def memo(self, key, build):
        """``build()`` once per ``key`` for this context (fits and resamples that a family shares
        across generators, e.g. the utility family's TRTR classifiers)."""
        if key not in self._memo:
            self._count(f"memo:{key[0] if isinstance(key, tuple) else key}")
            self._memo[key] = build()
        return self._memo[key]

    def prepare(self, n_bootstrap: int | None = None, seed: int = 0) -> "EvaluationContext":
        """Make every cohort's encoding and binary matrix now, and the real-side resamples for
        ``(n_bootstrap, seed)`` when ``n_bootstrap`` is given (what :func:`shared_context` stores)."""
        for key in self.cohorts:
            self.encoded(key)
            self.binary(key)
        if n_bootstrap is not None:
            self.real_resamples(n_bootstrap, seed)
        return self

    def subset(self, models=None, *, reference: bool = True) -> "EvaluationContext":
        """The context of a part of this evaluated set: the synthetic cohorts ``models`` (default
        all), with the reference split when ``reference`` (and this context has one).

        Its vocabulary and number of visit positions are those of its own cohorts, as a fresh
        :meth:`build` of the part would make them; each encoding and binary matrix made here is
        derived from this context's by renumbering columns (the codes' order is kept, so the
        result equals a fresh encoding entry for entry); the overlap check and the real-side
        resamples (drawn from ``train`` alone) are shared. Derived matrices are counted in
        :attr:`builds` as ``derived:...``, not as encodings.
        """
        models = list(self.synthetic if models is None else models)
        missing = [m for m in models if m not in self.synthetic]
        if missing:
            raise CohortError(f"no synthetic cohort {missing[0]!r} in this evaluation context "
                              f"(have: {', '.join(self.synthetic)})")
        part = EvaluationContext(self.train, self.holdout, {m: self.synthetic[m] for m in models},
                                 self.reference if reference else None, overlap=self.overlap)
        part.origin = "subset"
        part._parent = self
        part._resamples = dict(self._resamples)
        return part

    def _derive(self, what: str, key: str):
        """``what`` (``"encoded"`` or ``"binary"``) of cohort ``key`` from the parent context, or ``None``."""
        parent = self._parent
        if parent is None:
            return None
        source = parent.encoded(key) if what == "encoded" else parent.binary(key)  # made there if not yet
        if self.vocab == parent.vocab and (what == "binary" or self.n_positions == parent.n_positions):
            return source
        self._count(f"derived:{what}:{key}")
        remap = np.full(len(parent.vocab), -1, dtype=np.int64)
        remap[parent.vocab.index(self.vocab.codes)] = np.arange(len(self.vocab))
        if what == "binary":
            return sp.csr_matrix((source.data.copy(), remap[source.indices], source.indptr.copy()),
                                 shape=(source.shape[0], len(self.vocab)))
        v_old, v_new = len(parent.vocab), len(self.vocab)
        m = source.matrix
        cols = (m.indices // v_old) * v_new + remap[m.indices % v_old]
        matrix = sp.csr_matrix((m.data.copy(), cols, m.indptr.copy()), shape=(m.shape[0], self.n_positions * v_new))
        return EncodedCohort(matrix, v_new, source.totals.copy(), source.lengths.copy())

    def restrict(self, codes) -> "EvaluationContext":
        """The context with every cohort restricted to ``codes`` (the long-tail ablation).

        Cohorts left without a record are dropped from :attr:`synthetic` (train or holdout left
        empty raise); the overlap check is the parent's (restriction removes no patient's membership).
        """
        keep = set(codes)

        def cut(c: Cohort) -> Cohort | None:
            if not keep & set(pd.unique(c.events["code"]).tolist()):
                return None
            return c.restrict_codes(keep)

        t, e = cut(self.train), cut(self.holdout)
        if t is None or e is None:
            raise CohortError(f"no {'train' if t is None else 'holdout'} record holds one of the {len(keep)} codes kept")
        syn = {n: r for n, r in ((n, cut(c)) for n, c in self.synthetic.items()) if r is not None}
        ref = cut(self.reference) if self.reference is not None else None
        return EvaluationContext(t, e, syn, ref, overlap=self.overlap)


def as_context(train: Cohort, holdout: Cohort, synthetic, reference: Cohort | None = None, *,
               allow_overlap: bool = False, context: EvaluationContext | None = None) -> EvaluationContext:
    """``context`` if given (its cohorts must be these), else :meth:`EvaluationContext.build`."""
    if context is not None:
        if context.train is not train or context.holdout is not holdout:
            raise ValueError("context was built from other train/holdout cohorts than the ones given")
        named = {"synthetic": synthetic} if isinstance(synthetic, Cohort) else dict(synthetic)
        foreign = [n for n, c in named.items() if context.synthetic.get(n) is not c]
        if foreign:
            raise ValueError(f"synthetic cohort {foreign[0]!r} is not the context's cohort of that name "
                             f"(the context holds {', '.join(context.synthetic)})")
        return context
    return EvaluationContext.build(train, holdout, synthetic, reference, allow_overlap=allow_overlap)


# ---------------------------------------------------------------------------- once per run
FORMAT = 1
"""Version of the stored context's layout; a file of another version is rebuilt, never read."""
CONTEXT_FILE = "context-{}.npz"
"""The stored context's file name in its folder, from the first 16 hex digits of :func:`fingerprint`."""
LOCK_FILE = ".context.lock"


def fingerprint(train: Cohort, holdout: Cohort, synthetic: dict[str, Cohort], reference: Cohort | None = None) -> str:
    """sha256 of an evaluated set's cohorts (their names, roles and events, in order): equal
    fingerprints, equal contexts; any changed event, patient order or name gives another."""
    h = hashlib.sha256(f"ehrlib evaluation context, format {FORMAT}".encode())
    named = {TRAIN: train, HOLDOUT: holdout, **({REFERENCE: reference} if reference is not None else {}),
             **dict(sorted(synthetic.items()))}
    for key, cohort in named.items():
        ev = cohort.events
        h.update(f"|{key}|{len(ev)}|{','.join(map(str, ev.columns))}|".encode())
        h.update(pd.util.hash_pandas_object(ev, index=False).to_numpy().tobytes())
    return h.hexdigest()


def _csr_arrays(prefix: str, m) -> dict:
    return {f"{prefix}.data": m.data, f"{prefix}.indices": m.indices, f"{prefix}.indptr": m.indptr,
            f"{prefix}.shape": np.asarray(m.shape, dtype=np.int64)}


def _csr(z, prefix: str):
    return sp.csr_matrix((z[f"{prefix}.data"], z[f"{prefix}.indices"], z[f"{prefix}.indptr"]),
                         shape=tuple(int(x) for x in z[f"{prefix}.shape"]))


def save_context(context: EvaluationContext, path) -> Path:
    """Write ``context``'s vocabulary, encodings, binary matrices, real-side resamples and overlap
    check to ``path`` (``.npz``, no pickled objects), atomically; what was made so far is what is stored."""
    from ehrlib.io import atomic_write

    keys = list(context.cohorts)
    fp = context.fingerprint or fingerprint(context.train, context.holdout, context.synthetic, context.reference)
    arrays = {}
    for i, key in enumerate(keys):
        if key in context._enc:
            e = context._enc[key]
            arrays.update(_csr_arrays(f"enc{i}", e.matrix))
            arrays[f"enc{i}.totals"], arrays[f"enc{i}.lengths"] = e.totals, e.lengths
        if key in context._binary:
            arrays.update(_csr_arrays(f"bin{i}", context._binary[key]))
    resamples = []
    for j, ((b, seed), r) in enumerate(context._resamples.items()):
        arrays[f"res{j}.estimate"], arrays[f"res{j}.replicates"] = r.estimate, r.replicates
        resamples.append({"n_bootstrap": b, "seed": seed, "drawn_seed": r.seed, "codes": r.vocab.codes,
                          "n_patients": r.n_patients, "n_events": r.n_events})
    header = {"format": FORMAT, "fingerprint": fp, "keys": keys, "vocab": context.vocab.codes,
              "n_positions": context.n_positions, "overlap": context.overlap,
              "encoded": [i for i, k in enumerate(keys) if k in context._enc],
              "binary": [i for i, k in enumerate(keys) if k in context._binary],
              "resamples": resamples, "builds": {**context.stored_builds, **context.builds}}
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return atomic_write(path, write)


def load_context(path, train: Cohort, holdout: Cohort, synthetic: dict[str, Cohort],
                 reference: Cohort | None = None, *, allow_overlap: bool = False) -> EvaluationContext:
    """The context :func:`save_context` wrote to ``path``, over the given cohorts (which must be
    the ones it was built from: their :func:`fingerprint` is checked).

    Raises:
        ValueError: the file is of another format or was built from other cohorts.
        CohortError: the stored overlap check refuses the holdout and ``allow_overlap`` is False.
    """
    from ehrlib.data.encode import Vocabulary
    from ehrlib.metrics.bootstrap import RealResamples

    fp = fingerprint(train, holdout, synthetic, reference)
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(z["header"].tobytes().decode())
        if header.get("format") != FORMAT:
            raise ValueError(f"{path}: stored evaluation context of format {header.get('format')!r}; expected {FORMAT}")
        if header["fingerprint"] != fp:
            raise ValueError(f"{path}: stored evaluation context was built from other cohorts (fingerprint "
                             f"{header['fingerprint'][:16]}, the cohorts given have {fp[:16]})")
        context = EvaluationContext(train, holdout, synthetic, reference, overlap=header["overlap"])
        if list(context.cohorts) != header["keys"] or context.vocab.codes != header["vocab"] or \
                context.n_positions != header["n_positions"]:
            raise ValueError(f"{path}: stored evaluation context does not match its cohorts' keys, vocabulary "
                             "or visit positions")
        keys = header["keys"]
        for i in header["encoded"]:
            context._enc[keys[i]] = EncodedCohort(_csr(z, f"enc{i}"), len(context.vocab), z[f"enc{i}.totals"],
                                                  z[f"enc{i}.lengths"])
        for i in header["binary"]:
            context._binary[keys[i]] = _csr(z, f"bin{i}")
        for j, r in enumerate(header["resamples"]):
            context._resamples[(r["n_bootstrap"], r["seed"])] = RealResamples(
                Vocabulary(r["codes"]), z[f"res{j}.estimate"], z[f"res{j}.replicates"], r["drawn_seed"],
                r["n_patients"], r["n_events"])
    if context.overlap["refuse"] and not allow_overlap:
        _raise_overlap(context.overlap, holdout)
    context.stored_builds = dict(header["builds"])
    context.fingerprint, context.origin = fp, "loaded"
    return context


@contextlib.contextmanager
def _folder_lock(folder: Path):
    with open(folder / LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def shared_context(folder, train: Cohort, holdout: Cohort, synthetic: dict[str, Cohort],
                   reference: Cohort | None = None, *, n_bootstrap: int | None = None, seed: int = 0,
                   allow_overlap: bool = False) -> EvaluationContext:
    """The evaluated set's context stored in ``folder``: loaded when a context of these cohorts is
    there, else built (:meth:`EvaluationContext.build`, then :meth:`~EvaluationContext.prepare`
    with ``n_bootstrap`` and ``seed``) and stored for the next caller (module docstring).

    Callers in other processes wait on a lock on the folder while one builds, then load. Building
    removes the folder's contexts of other cohorts (a run keeps the one of its current cohorts).
    ``origin`` of the result says ``"built"`` or ``"loaded"``; :attr:`~EvaluationContext.builds`
    counts what this call encoded.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fp = fingerprint(train, holdout, synthetic, reference)
    path = folder / CONTEXT_FILE.format(fp[:16])
    with _folder_lock(folder):
        if path.is_file():
            try:
                return load_context(path, train, holdout, synthetic, reference, allow_overlap=allow_overlap)
            except ValueError:
                pass  # another format, or a 64-bit prefix clash: built again below and replaced
        from ehrlib.io import clean_stale_temporaries

        clean_stale_temporaries(folder)  # what a killed builder left
        context = EvaluationContext.build(train, holdout, synthetic, reference, allow_overlap=allow_overlap)
        context.prepare(n_bootstrap, seed)
        context.fingerprint = fp
        save_context(context, path)
        for old in folder.glob(CONTEXT_FILE.format("*")):
            if old != path:
                old.unlink(missing_ok=True)
    return context
