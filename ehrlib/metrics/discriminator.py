"""Real-vs-synthetic discriminators: how easily a classifier tells the two cohorts apart.

Paper: section 3.1 ("Discriminator-Based Fidelity Evaluation") and appendix E: a Random
Forest over flattened multi-hot patients (E.2) or an LSTM over visit multi-hot sequences (E.1)
is trained on a patient-level split to label records real (1) or synthetic (0); the score is
``1 - 2|acc - 0.5|`` (1 = indistinguishable).

Two protocols (:data:`ehrlib.metrics.names.PROTOCOLS`), chosen by :func:`discriminator_family`:

* ``corrected`` (the book's methods page): the real class is drawn from ``train`` (``holdout`` as an
  option), both classes are subsampled to the smaller size (10,000 vs 10,000 at paper scale),
  each class is split 80/20 at patient level (stratified), and every statistic carries a basic
  bootstrap interval over the held-out predictions (patients resampled within each class);
* ``paper``: the paper's notebook: all real ``train`` patients against all synthetic ones
  (imbalanced), one unstratified 80/20 patient split of the union, the RF without the
  visit-count feature, the LSTM with 32 hidden units, 5 epochs and batches of 32; RF accuracy
  from ``predict`` (a tie goes to "synthetic"), LSTM accuracy from ``p >= 0.5``.

Both classes are encoded with one vocabulary (the union of the cohorts' codes), so encoding
carries no label.

Sensitivity: with the real class drawn from ``train``, a generator that copies training records
puts copies of real training-fold patients into the synthetic class; the fully grown forest
recalls each record with the label it saw, so held-out copies and their originals are
classified the wrong way round and AUC falls below 0.5 (a memorizer of 2,000 records from
11,000 simulated training patients: AUC ~0.37-0.39, accuracy ~0.44; when every synthetic record
copies a real-class patient, AUC ~0.02). ``disc_score`` only weakly flags it (0.88-0.90), and
``disc_auc_score = 1 - max(0, 2 AUC - 1)`` reads it as indistinguishable. Read an AUC below 0.5 as
a copying signal, or use ``real="holdout"`` for a generator that may memorise; the privacy
family's exact-copy rate is the direct test.

Reported: ``disc_accuracy`` (a prediction of exactly 0.5 counts as half right),
``disc_score = 1 - 2|acc - 0.5|``, ``disc_auc`` (ROC AUC of P(real), ties as midranks) and
``disc_auc_score = 1 - max(0, 2 AUC - 1)``, which does not depend on a threshold.

Deviations:
    The paper's notebook trained on all ~45.5k real training patients against 10k synthetic
    ones, so always answering "real" scored ~0.82 accuracy; here classes are balanced and
    the chance level is 0.5; it held out 20% of patients without stratifying, here 20% of
    each class (``corrected``). The RF sees one extra column, the number of visits (flat
    generators emit one visit per patient, which the paper's RF could not see); set
    ``RandomForestConfig(include_n_visits=False)`` for the paper's features. The LSTM embeds a
    visit with a linear map of its multi-hot vector (computed as a sum of code embeddings
    plus a bias, which is the same map without a dense V-wide tensor) and is trained for a
    fixed number of epochs without early stopping, as in the paper's notebook. AUC and its
    score are additions.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from sklearn.metrics import roc_auc_score

from ehrlib.cohort import Cohort, CohortError
from ehrlib.data.encode import Vocabulary, binary_matrix, visit_multihot
from ehrlib.metrics import names

log = logging.getLogger(__name__)

DISCRIMINATOR_KINDS = names.DISCRIMINATOR_KINDS
DISCRIMINATOR_METRICS = ("disc_accuracy", "disc_score", "disc_auc", "disc_auc_score")
REAL, SYNTHETIC = 1, 0  # class labels, as in the paper's notebook


@dataclass(frozen=True)
class RandomForestConfig:
    """Random Forest discriminator (appendix E.2).

    Rows that share features and label are merged before fitting (:func:`fit_forest`: the same
    trees, without the nodes of identical records with both labels that scikit-learn can only give
    up on after reading every feature column); the cost at paper scale is measured on the book's
    methods page (``benchmarks/bench_table1.py --full``).
    """

    n_estimators: int = 100        # trees (the paper's notebook: sklearn's default 100)
    min_samples_leaf: int = 1       # sklearn default: fully grown trees
    max_features: str = "sqrt"      # features tried per split
    include_n_visits: bool = True   # add the number of visits as a feature (a deviation)
    n_jobs: int | None = None       # threads for the trees (None: threads.pool_threads); results do not depend on it


@dataclass(frozen=True)
class LSTMConfig:
    """LSTM discriminator over visit multi-hot sequences (appendix E.1)."""

    hidden_size: int = 64          # visit embedding and LSTM state size
    epochs: int = 5                 # passes over the training patients (the paper's notebook: 5)
    batch_size: int = 64            # patients per step
    learning_rate: float = 1e-3     # Adam


PAPER_RF = RandomForestConfig(include_n_visits=False)
"""The paper notebook's forest: 100 fully grown trees over the flattened multi-hot record only."""
PAPER_LSTM = LSTMConfig(hidden_size=32, epochs=5, batch_size=32)
"""The paper notebook's LSTM: embedding and state size 32, 5 epochs, batches of 32."""
PAPER_LONGTAIL_LSTM = LSTMConfig(hidden_size=16, epochs=5, batch_size=32)
"""The LSTM of the paper notebook's long-tail loop (Figure 3): as :data:`PAPER_LSTM` with size 16;
:func:`ehrlib.metrics.longtail.longtail_ablation` uses it in the ``paper`` protocol."""
CONFIGS = {
    names.CORRECTED: {names.RF: RandomForestConfig(), names.LSTM: LSTMConfig()},
    names.PAPER: {names.RF: PAPER_RF, names.LSTM: PAPER_LSTM},
}
"""Default classifier settings per protocol and kind."""
TEST_SIZE = 0.2
"""Share of patients held out for testing (both protocols; the paper's ``test_size=0.2``)."""


SPLIT_STREAM = 1
"""Spawn key of the balanced split's random stream (the LSTM's batch order uses key 0)."""


class BalancedSplit(NamedTuple):
    """Patient positions (rows of each cohort) on each side of the discriminator's split."""

    real_train: np.ndarray
    real_test: np.ndarray
    synthetic_train: np.ndarray
    synthetic_test: np.ndarray


def balanced_split(n_real: int, n_synthetic: int, test_size: float = 0.2, seed: int = 0) -> BalancedSplit:
    """Subsample both cohorts to ``min(n_real, n_synthetic)`` patients and split each class alike.

    Each class gets ``round(test_size * n)`` test patients and the rest for training, so both
    parts are balanced. Positions are drawn without replacement from a stream of its own
    (:data:`SPLIT_STREAM` of ``seed``), never ``default_rng(seed)`` itself: a generator that
    samples training records with the same seed (the ``memorizer``) would otherwise copy
    exactly the patients drawn as the real class.

    Raises:
        CohortError: a class is too small to put a patient on both sides of the split.
        ValueError: ``test_size`` is not strictly between 0 and 1.
    """
    if not 0 < test_size < 1:
        raise ValueError(f"test_size={test_size!r}: expected a fraction strictly between 0 and 1")
    n = min(n_real, n_synthetic)
    n_test = int(round(test_size * n))
    if n_test < 1 or n - n_test < 1:
        raise CohortError(
            f"the discriminator needs patients on both sides of the split; with {n_real} real and "
            f"{n_synthetic} synthetic patients and test_size={test_size}, each class has {n} "
            f"({n_test} for testing)"
        )
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SPLIT_STREAM,)))
    real = rng.choice(n_real, size=n, replace=False)
    synthetic = rng.choice(n_synthetic, size=n, replace=False)
    return BalancedSplit(real[n_test:], real[:n_test], synthetic[n_test:], synthetic[:n_test])


def paper_split(n_real: int, n_synthetic: int, test_size: float = 0.2, seed: int = 0) -> BalancedSplit:
    """The paper notebook's split: every patient of both cohorts, one unstratified patient split.

    The union of the ``n_real + n_synthetic`` patients is shuffled and ``round(test_size * n)``
    of them held out, so the classes stay imbalanced (45,520 vs 10,000 at paper scale, where
    always answering "real" is ~82% accurate). Positions are drawn by ``default_rng(seed)``.

    Raises:
        CohortError: a class has no patient on one side of the split.
        ValueError: ``test_size`` is not strictly between 0 and 1.
    """
    if not 0 < test_size < 1:
        raise ValueError(f"test_size={test_size!r}: expected a fraction strictly between 0 and 1")
    n = n_real + n_synthetic
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(test_size * n))
    test, train = order[:n_test], order[n_test:]
    parts = BalancedSplit(np.sort(train[train < n_real]), np.sort(test[test < n_real]),
                          np.sort(train[train >= n_real]) - n_real, np.sort(test[test >= n_real]) - n_real)
    if min(len(p) for p in parts) < 1:
        raise CohortError(
            f"the discriminator needs both classes on both sides of the split; with {n_real} real and "
            f"{n_synthetic} synthetic patients and test_size={test_size} one side lacks a class"
        )
    return parts


def discriminator_scores(labels, probabilities) -> dict:
    """Accuracy, the paper's score, AUC and the AUC score from P(real) on the test patients.

    Args:
        labels: 1 for real, 0 for synthetic.
        probabilities: predicted P(real); a prediction of exactly 0.5 counts as half right.
    """
    y = np.asarray(labels)
    p = np.asarray(probabilities, dtype=np.float64)
    correct = np.where(p == 0.5, 0.5, (p > 0.5) == (y == REAL))
    accuracy = float(correct.mean())
    auc = float(roc_auc_score(y, p))
    return {
        "disc_accuracy": accuracy,
        "disc_score": 1.0 - 2.0 * abs(accuracy - 0.5),
        "disc_auc": auc,
        "disc_auc_score": 1.0 - max(0.0, 2.0 * auc - 1.0),
    }


# ---------------------------------------------------------------------------- Random Forest
def _flat_features(cohort: Cohort, vocab: Vocabulary, include_n_visits: bool,
                   binary: sp.csr_matrix | None = None) -> sp.csr_matrix:
    x = binary_matrix(cohort, vocab) if binary is None else binary
    if not include_n_visits:
        return x
    n_visits = cohort.visits_per_patient().to_numpy(np.float32)[:, None]
    return sp.hstack([x, sp.csr_matrix(n_visits)], format="csr")


def rf_threads(config: RandomForestConfig) -> int:
    """Threads for the forest: ``config.n_jobs``, else :func:`ehrlib.threads.pool_threads`
    (``OMP_NUM_THREADS`` when set, else every core: the forest's threads sleep while they wait)."""
    if config.n_jobs is not None:
        return config.n_jobs
    from ehrlib import threads

    return threads.pool_threads()


def _random_forest(real, synthetic, vocab, parts: BalancedSplit, seed, config: RandomForestConfig,
                   real_binary: sp.csr_matrix | None = None):
    """Fit on the training rows, P(real) of the test rows (:func:`fit_forest`)."""
    x_real = _flat_features(real, vocab, config.include_n_visits, real_binary)
    x_syn = _flat_features(synthetic, vocab, config.include_n_visits)

    def stack(real_rows, syn_rows):
        x = sp.vstack([x_real[real_rows], x_syn[syn_rows]], format="csr")
        y = np.r_[np.full(len(real_rows), REAL), np.full(len(syn_rows), SYNTHETIC)]
        return x, y

    x_train, y_train = stack(parts.real_train, parts.synthetic_train)
    x_test, y_test = stack(parts.real_test, parts.synthetic_test)
    trees = fit_forest(x_train, y_train, config, seed)
    return y_test, forest_proba(trees, x_test)


_MAX_SEED = np.iinfo(np.int32).max


def _row_groups(x: sp.csr_matrix, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group id of every row (rows with the same features and label share one) and the first row
    of each group, in order of first appearance."""
    x = x.tocsr(copy=True)
    x.sum_duplicates()  # sorted indices, no explicit duplicates: equal rows have equal bytes
    ids: dict[bytes, int] = {}
    group = np.empty(x.shape[0], dtype=np.int64)
    ptr, ind, dat = x.indptr, x.indices, x.data
    for i in range(x.shape[0]):
        a, b = ptr[i], ptr[i + 1]
        key = ind[a:b].tobytes() + dat[a:b].tobytes() + int(y[i]).to_bytes(8, "little", signed=True)
        group[i] = ids.setdefault(key, len(ids))
    first = np.full(len(ids), x.shape[0], dtype=np.int64)
    np.minimum.at(first, group, np.arange(x.shape[0]))
    return group, first


def fit_forest(x: sp.csr_matrix, y: np.ndarray, config: RandomForestConfig, seed: int,
               deduplicate: bool | None = None) -> list:
    """scikit-learn's Random Forest, grown on one row per distinct record.

    The same forest as ``RandomForestClassifier(n_estimators, max_features, min_samples_leaf,
    random_state=seed)``: each tree's seed is drawn from ``RandomState(seed)`` in turn, each
    tree's bootstrap from its own seed, and (as scikit-learn does) the bootstrap counts are the
    rows' sample weights. With ``deduplicate`` (the default when ``min_samples_leaf == 1``), the
    rows that share features and label are merged into one row carrying the sum of their counts
    before the tree is grown. Gini impurity, the best split and the leaf probabilities depend on
    the class weights of a node only, and a node's constant features on its distinct records, so
    every tree is the same, split for split (``tests/test_discriminator.py`` compares the two
    against scikit-learn's forest). What changes is the cost: a fully grown tree ends in nodes of
    identical records with both labels, and scikit-learn reads every feature column of such a
    node before it stops; copies of training records (a memorizer against its own real class)
    made ~2,500 such leaves per tree.

    Trees are grown on :func:`rf_threads` threads; the result does not depend on their number.
    """
    from concurrent.futures import ThreadPoolExecutor

    from sklearn.tree import DecisionTreeClassifier

    if deduplicate is None:
        deduplicate = config.min_samples_leaf == 1
    elif deduplicate and config.min_samples_leaf != 1:
        raise ValueError(f"min_samples_leaf={config.min_samples_leaf}: merging equal rows changes the "
                         "forest unless min_samples_leaf is 1")
    n = x.shape[0]
    y = np.asarray(y)
    if deduplicate:
        group, first = _row_groups(x, y)
        x_fit, y_fit = x[first], y[first]
    else:
        group, x_fit, y_fit = np.arange(n), x, y
    x_fit = sp.csc_matrix(x_fit, dtype=np.float32)
    x_fit.sort_indices()
    seeds = np.random.RandomState(seed).randint(_MAX_SEED, size=config.n_estimators)

    def grow(tree_seed):
        counts = np.bincount(np.random.RandomState(tree_seed).randint(0, n, n), minlength=n)
        weight = np.bincount(group, weights=counts, minlength=x_fit.shape[0])
        tree = DecisionTreeClassifier(max_features=config.max_features, min_samples_leaf=config.min_samples_leaf,
                                      random_state=tree_seed)
        return tree.fit(x_fit, y_fit, sample_weight=weight)

    with ThreadPoolExecutor(max_workers=max(1, rf_threads(config))) as pool:
        return list(pool.map(grow, seeds))


def forest_proba(trees: list, x) -> np.ndarray:
    """P(real) of each row: the trees' class probabilities averaged in tree order (one thread, so
    a tie at exactly 0.5 cannot flip with the order threads finish in)."""
    x = sp.csr_matrix(x, dtype=np.float32)
    total = np.zeros(x.shape[0])
    for tree in trees:
        total += tree.predict_proba(x)[:, list(tree.classes_).index(REAL)]
    return total / len(trees)


# ---------------------------------------------------------------------------- LSTM
class _Visits:
    """The visit multi-hot rows of the real then the synthetic patients, one table.

    Patient ``i`` of the table is real patient ``i`` for ``i < n_real``, else synthetic patient
    ``i - n_real``.
    """

    def __init__(self, real: Cohort, synthetic: Cohort, vocab: Vocabulary):
        (m_real, off_real), (m_syn, off_syn) = visit_multihot(real, vocab), visit_multihot(synthetic, vocab)
        self.n_real = real.n_patients
        self.matrix = sp.vstack([m_real, m_syn], format="csr")
        self.starts = np.r_[off_real[:-1], off_syn[:-1] + m_real.shape[0]]
        self.lengths = np.r_[np.diff(off_real), np.diff(off_syn)]

    def patients(self, real_rows: np.ndarray, synthetic_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Table positions of the given real and synthetic patients, and their labels."""
        labels = np.r_[np.full(len(real_rows), REAL), np.full(len(synthetic_rows), SYNTHETIC)]
        return np.r_[real_rows, synthetic_rows + self.n_real], labels.astype(np.float32)

    def batch(self, patients: np.ndarray):
        """The patients' visits as EmbeddingBag input (code indices, bag offsets), each visit's
        position in the batch and step, and the patients' numbers of visits."""
        lengths = self.lengths[patients]
        step = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        sub = self.matrix[np.repeat(self.starts[patients], lengths) + step]
        patient = np.repeat(np.arange(len(patients)), lengths)
        return sub.indices.astype(np.int64), sub.indptr[:-1].astype(np.int64), patient, step, lengths


def _lstm_model(n_codes: int, hidden: int):
    import torch
    from torch import nn

    class VisitLSTM(nn.Module):
        """Linear visit embedding (sum of code vectors + bias) -> LSTM -> logit of P(real)."""

        def __init__(self):
            super().__init__()
            self.embed = nn.EmbeddingBag(n_codes, hidden, mode="sum")
            self.bias = nn.Parameter(torch.zeros(hidden))
            self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
            self.out = nn.Linear(hidden, 1)

        def forward(self, codes, bag_offsets, patient, step, lengths):
            visits = self.embed(codes, bag_offsets) + self.bias
            padded = visits.new_zeros((len(lengths), int(lengths.max()), visits.shape[1]))
            padded[patient, step] = visits
            packed = nn.utils.rnn.pack_padded_sequence(padded, lengths, batch_first=True, enforce_sorted=False)
            _, (h, _) = self.lstm(packed)
            return self.out(h[-1]).squeeze(-1)

    return VisitLSTM()


def _lstm(real, synthetic, vocab, parts: BalancedSplit, seed, config: LSTMConfig, device):
    try:
        import torch
    except ImportError as err:  # torch is not a hard dependency of ehrlib
        raise ImportError("the LSTM discriminator needs PyTorch; install torch or use kind='rf'") from err

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    visits = _Visits(real, synthetic, vocab)
    train, y_train = visits.patients(parts.real_train, parts.synthetic_train)
    test, y_test = visits.patients(parts.real_test, parts.synthetic_test)
    log.info("lstm discriminator on %s: %d training, %d test patients, %d codes",
             device, len(train), len(test), len(vocab))

    def tensors(patients):
        codes, bags, patient, step, lengths = visits.batch(patients)
        as_t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
        return as_t(codes), as_t(bags), as_t(patient), as_t(step), torch.from_numpy(lengths)

    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])  # apart from the split's
    fork = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork):
        torch.manual_seed(seed)
        model = _lstm_model(len(vocab), config.hidden_size).to(device)
        optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        model.train()
        for _ in range(config.epochs):
            order = rng.permutation(len(train))
            for start in range(0, len(order), config.batch_size):
                batch = order[start:start + config.batch_size]
                optimiser.zero_grad()
                loss = loss_fn(model(*tensors(train[batch])), torch.from_numpy(y_train[batch]).to(device))
                loss.backward()
                optimiser.step()
        model.eval()
        with torch.no_grad():
            probabilities = [
                torch.sigmoid(model(*tensors(test[start:start + 1024]))).cpu().numpy()
                for start in range(0, len(test), 1024)
            ]
    return y_test.astype(np.int64), np.concatenate(probabilities)


# ---------------------------------------------------------------------------- entry point
def discriminator_metrics(
    real: Cohort,
    synthetic: Cohort,
    kind: str = "rf",
    seed: int = 0,
    test_size: float = TEST_SIZE,
    *,
    rf: RandomForestConfig | None = None,
    lstm: LSTMConfig | None = None,
    device: str | None = None,
) -> dict:
    """Train a real-vs-synthetic classifier on a balanced split and score it on held-out patients.

    Paper: section 3.1 and appendix E (LSTM for sequential generators, Random Forest for flat
    ones); score ``1 - 2|acc - 0.5|``.

    Args:
        real: the real cohort (``holdout``, or a ``train`` sample).
        synthetic: the synthetic cohort.
        kind: ``"rf"`` or ``"lstm"``.
        seed: seeds the subsampling, the split and the model.
        test_size: share of each class's patients held out for testing.
        rf: Random Forest settings (default :class:`RandomForestConfig`).
        lstm: LSTM settings (default :class:`LSTMConfig`).
        device: torch device for the LSTM; default CUDA when available, else CPU. Results
            repeat exactly on CPU; on CUDA the embedding's backward pass adds with atomics,
            so reruns can differ in the last digits.

    Returns:
        ``{"disc_accuracy", "disc_score", "disc_auc", "disc_auc_score"}`` as floats.

    Raises:
        CohortError: a cohort is empty or too small to split.
        ValueError: an unknown ``kind`` or a ``test_size`` outside (0, 1).

    Deviations:
        Balanced classes, the number of visits as an extra RF feature, AUC (module docstring).
    """
    if kind not in DISCRIMINATOR_KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {DISCRIMINATOR_KINDS}")
    for role, cohort in (("real", real), ("synthetic", synthetic)):
        if cohort.n_patients == 0:
            source = f" ({cohort.source})" if cohort.source else ""
            raise CohortError(f"{role} cohort{source} has no patients; the discriminator needs both classes")
    parts = balanced_split(real.n_patients, synthetic.n_patients, test_size, seed)
    vocab = Vocabulary.from_cohorts(real, synthetic)
    if kind == "rf":
        labels, p_real = _random_forest(real, synthetic, vocab, parts, seed, rf or RandomForestConfig())
    else:
        labels, p_real = _lstm(real, synthetic, vocab, parts, seed, lstm or LSTMConfig(), device)
    return discriminator_scores(labels, p_real)


# ---------------------------------------------------------------------------- intervals
ACCURACY_RULES = ("half", "rf_predict", "at_least_half")
"""How a probability becomes a prediction: ``half`` counts p = 0.5 as half right (corrected);
``rf_predict`` is sklearn's ``predict`` (p = 0.5 goes to class 0, "synthetic"); ``at_least_half``
predicts "real" for p >= 0.5 (the paper notebook's LSTM)."""


def _correct(labels: np.ndarray, p: np.ndarray, rule: str) -> np.ndarray:
    real = labels == REAL
    if rule == "half":
        return np.where(p == 0.5, 0.5, (p > 0.5) == real).astype(np.float64)
    if rule == "rf_predict":
        return ((p > 0.5) == real).astype(np.float64)
    if rule == "at_least_half":
        return ((p >= 0.5) == real).astype(np.float64)
    raise ValueError(f"rule={rule!r}: expected one of {ACCURACY_RULES}")


def _weighted_auc(labels: np.ndarray, p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC (ties ½) of each row of patient weights ``(B, N)``: P(score real > score synthetic)."""
    _, group = np.unique(p, return_inverse=True)
    n_groups = int(group.max()) + 1
    pos = labels == REAL
    onehot = sp.csr_matrix((np.ones(len(p)), (np.arange(len(p)), group)), shape=(len(p), n_groups))
    pos_w = np.asarray(onehot[pos].T @ weights[:, pos].T).T          # (B, G)
    neg_w = np.asarray(onehot[~pos].T @ weights[:, ~pos].T).T
    below = np.cumsum(neg_w, axis=1) - neg_w
    num = np.sum(pos_w * (below + 0.5 * neg_w), axis=1)
    den = pos_w.sum(axis=1) * neg_w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def prediction_intervals(labels, probabilities, n_bootstrap: int = 1000, seed: int = 0, *, rule: str = "half",
                         stratified: bool = True, level: float = 0.95) -> dict:
    """Accuracy, the paper's score, AUC and the AUC score with basic bootstrap intervals.

    The held-out patients are resampled with replacement ``n_bootstrap`` times (within each
    class when ``stratified``, so the class balance of the test set is kept); the classifier is
    not refitted, so the interval covers the test-set sampling only, as the paper's bootstrap
    of the LSTM accuracy does.

    Paper: appendix E and the paper's eval notebook (100 bootstrap resamples of the LSTM's
    test predictions, mean ± std); here basic intervals (the book's methods page, "Uncertainty").

    Args:
        labels: 1 real, 0 synthetic.
        probabilities: predicted P(real).
        n_bootstrap: B (>= 2).
        seed: seeds the resamples.
        rule: one of :data:`ACCURACY_RULES`.
        stratified: resample within each class.
        level: confidence level.

    Returns:
        ``{stat: (estimate, ci_low, ci_high)}`` for each of
        :data:`ehrlib.metrics.names.DISCRIMINATOR_STATS`.
    """
    from ehrlib.metrics.bootstrap import basic_interval, resample_weights

    y = np.asarray(labels)
    p = np.asarray(probabilities, dtype=np.float64)
    if not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 2:
        raise ValueError(f"n_bootstrap={n_bootstrap!r}: expected an integer >= 2")
    correct = _correct(y, p, rule)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7]))
    weights = np.zeros((n_bootstrap, len(y)), dtype=np.float64)
    groups = [np.flatnonzero(y == c) for c in (REAL, SYNTHETIC)] if stratified else [np.arange(len(y))]
    for rows in groups:
        weights[:, rows] = resample_weights(len(rows), n_bootstrap, rng)
    accuracy = float(correct.mean())
    auc = float(roc_auc_score(y, p))
    acc_b = weights @ correct / len(y)
    auc_b = _weighted_auc(y, p, weights)
    estimates = {"accuracy": accuracy, "score": 1 - 2 * abs(accuracy - 0.5), "auc": auc,
                 "auc_score": 1 - max(0.0, 2 * auc - 1)}
    replicates = {"accuracy": acc_b, "score": 1 - 2 * np.abs(acc_b - 0.5), "auc": auc_b,
                  "auc_score": 1 - np.maximum(0.0, 2 * auc_b - 1)}
    return {k: (estimates[k], *basic_interval(estimates[k], replicates[k], level, (0.0, 1.0)))
            for k in names.DISCRIMINATOR_STATS}


def discriminator_family(
    train: Cohort,
    holdout: Cohort | None,
    synthetic: Cohort,
    kinds=(names.RF,),
    *,
    protocol: str = names.CORRECTED,
    real: str = "train",
    n_bootstrap: int = 1000,
    seed: int = 0,
    test_size: float = TEST_SIZE,
    rf: RandomForestConfig | None = None,
    lstm: LSTMConfig | None = None,
    device: str | None = None,
    context=None,
):
    """The discriminator family for :func:`ehrlib.metrics.evaluate`: one row per kind and statistic.

    Paper: section 3.1 and appendix E (score ``1 - 2|acc - 0.5|``; RF for flat generators,
    LSTM for sequential ones).

    Args:
        train, holdout, synthetic: the cohorts; ``holdout`` is needed only with ``real="holdout"``.
        kinds: discriminators to run, a subset of ``("rf", "lstm")``; rows are named by kind
            (``rf_disc_auc``, ``lstm_disc_score``; :func:`ehrlib.metrics.names.disc_metric`).
        protocol: ``"corrected"`` (balanced, stratified, real class from ``real``) or ``"paper"``
            (all of ``train`` vs all synthetic, unstratified; module docstring).
        real: ``"train"`` (default) or ``"holdout"``: where the real class comes from. ``holdout``
            is the right class for a generator that may have memorised ``train``.
        n_bootstrap: B for the intervals over held-out predictions.
        seed: seeds the split, the classifiers and the resamples.
        test_size: share of patients held out for testing (0.2 as in the paper).
        rf, lstm: classifier settings; default :data:`CONFIGS` of the protocol.
        device: torch device for the LSTM.
        context: an :class:`ehrlib.metrics.context.EvaluationContext` holding these cohorts
            (``synthetic`` among its synthetic ones): the real class's binary matrix is taken from
            it (made once for every generator); encoded here otherwise.

    Returns:
        DataFrame with columns ``metric``, ``estimate``, ``ci_low``, ``ci_high``, ``spread`` (NaN)
        and ``note`` (which real class, how many patients per class, which split).

    Raises:
        ConfigError: an unknown protocol, kind or real class.
        CohortError: an empty cohort or too few patients to split.
    """
    import pandas as pd

    names.check_protocol(protocol)
    kinds = [names.check_kind(k) for k in kinds]
    if real not in names.REAL_CLASSES:
        from ehrlib.errors import ConfigError

        raise ConfigError(f"real={real!r}: expected one of {names.REAL_CLASSES}")
    real_cohort = train if real == "train" else holdout
    if real_cohort is None:
        raise CohortError(f"real={real!r} needs the {real} cohort; got None")
    for role, cohort in (("real", real_cohort), ("synthetic", synthetic)):
        if cohort.n_patients == 0:
            source = f" ({cohort.source})" if cohort.source else ""
            raise CohortError(f"{role} cohort{source} has no patients; the discriminator needs both classes")
    if protocol == names.CORRECTED:
        parts = balanced_split(real_cohort.n_patients, synthetic.n_patients, test_size, seed)
        rule, stratified = "half", True
        how = "balanced, stratified patient-level split"
    else:
        parts = paper_split(real_cohort.n_patients, synthetic.n_patients, test_size, seed)
        stratified = False
        how = "imbalanced, unstratified patient-level split (the paper's)"
    if context is None:
        vocab, real_binary = Vocabulary.from_cohorts(real_cohort, synthetic), None
    else:
        named = [n for n, c in context.synthetic.items() if c is synthetic]
        if context.train is not train or (holdout is not None and context.holdout is not holdout) or not named:
            raise ValueError("context does not hold the train, holdout and synthetic cohorts given")
        key = context.real_key(real)
        vocab = context.union(key, named[0])  # the pair's codes, as without a context
        real_binary = context.binary(key, vocab) if names.RF in kinds else None
    rows = []
    for kind in kinds:
        if kind == names.RF:
            config = rf or CONFIGS[protocol][names.RF]

            def fit():
                return _random_forest(real_cohort, synthetic, vocab, parts, seed, config, real_binary)
            rule = "half" if protocol == names.CORRECTED else "rf_predict"
        else:
            config = lstm or CONFIGS[protocol][names.LSTM]

            def fit():
                return _lstm(real_cohort, synthetic, vocab, parts, seed, config, device)
            rule = "half" if protocol == names.CORRECTED else "at_least_half"
        if context is None:
            labels, p_real = fit()
        else:  # the same fit asked again of this context (the protocol-effects table's whole protocols)
            labels, p_real = context.memo(("discriminator", named[0], kind, protocol, real, int(seed),
                                           float(test_size), config, device if kind == names.LSTM else None), fit)
        stats = prediction_intervals(labels, p_real, n_bootstrap, seed, rule=rule, stratified=stratified)
        n_real = len(parts.real_train) + len(parts.real_test)
        n_syn = len(parts.synthetic_train) + len(parts.synthetic_test)
        note = (f"real class: {real} ({n_real} real vs {n_syn} synthetic patients), {how}, test share "
                f"{test_size:g} ({len(parts.real_test)} + {len(parts.synthetic_test)}); basic bootstrap interval, "
                f"B={n_bootstrap}, over held-out predictions")
        for stat, (est, low, high) in stats.items():
            rows.append({"metric": names.disc_metric(kind, stat), "estimate": est, "ci_low": low, "ci_high": high,
                         "spread": float("nan"), "note": note})
    return pd.DataFrame(rows, columns=["metric", "estimate", "ci_low", "ci_high", "spread", "note"])


def discriminator_from_context(context, name: str, kinds=(names.RF,), *, real: str = "train", **options):
    """The discriminator family of one synthetic cohort of an :class:`ehrlib.metrics.context.EvaluationContext`.

    Paper: section 3.1 and appendix E. Equals :func:`discriminator_family` of the context's
    cohorts, over the union of the real class's and the synthetic cohort's codes, with the real
    class's binary matrix taken from the context (built once for every generator).
    ``options``: the other arguments of :func:`discriminator_family`.
    """
    if real not in names.REAL_CLASSES:
        from ehrlib.errors import ConfigError

        raise ConfigError(f"real={real!r}: expected one of {names.REAL_CLASSES}")
    return discriminator_family(context.train, context.holdout, context.synthetic[name], kinds, real=real,
                                context=context, **options)
