"""Real-vs-synthetic discriminators: how easily a classifier tells the two cohorts apart.

Paper: section 3.1 ("Discriminator-Based Fidelity Evaluation") and appendix E: a Random
Forest over flattened multi-hot patients (E.2) or an LSTM over visit multi-hot sequences (E.1)
is trained on a patient-level split to label records real (1) or synthetic (0); the score is
``1 - 2|acc - 0.5|`` (1 = indistinguishable).

Protocol (``shared/notes/EVALUATION.md``): the classes are balanced by subsampling both cohorts
to the smaller size (seeded), each class is split into train and test parts of the same sizes
(a stratified, patient-level split), and both classes are encoded with one vocabulary (the
union of the two cohorts' codes), so encoding carries no label.

Reported: ``disc_accuracy`` (a prediction of exactly 0.5 counts as half right),
``disc_score = 1 - 2|acc - 0.5|``, ``disc_auc`` (ROC AUC of P(real), ties as midranks) and
``disc_auc_score = 1 - max(0, 2 AUC - 1)``, which does not depend on a threshold.

Deviations:
    The paper's notebook trained on all ~45.5k real training patients against 10k synthetic
    ones, so always answering "real" scored ~0.82 accuracy; here classes are balanced and
    the chance level is 0.5; it held out 20% of patients without stratifying, here
    ``test_size`` (default 30%) of each class. The RF sees one extra column, the number of visits (flat
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

log = logging.getLogger(__name__)

DISCRIMINATOR_KINDS = ("rf", "lstm")
DISCRIMINATOR_METRICS = ("disc_accuracy", "disc_score", "disc_auc", "disc_auc_score")
REAL, SYNTHETIC = 1, 0  # class labels, as in the paper's notebook


@dataclass(frozen=True)
class RandomForestConfig:
    """Random Forest discriminator (appendix E.2): 2 x 10,000 patients take ~20 s on one core."""

    n_estimators: int = 100        # trees (the paper's notebook: sklearn's default 100)
    min_samples_leaf: int = 1       # sklearn default: fully grown trees
    max_features: str = "sqrt"      # features tried per split
    include_n_visits: bool = True   # add the number of visits as a feature (a deviation)


@dataclass(frozen=True)
class LSTMConfig:
    """LSTM discriminator over visit multi-hot sequences (appendix E.1)."""

    hidden_size: int = 64          # visit embedding and LSTM state size
    epochs: int = 5                 # passes over the training patients (the paper's notebook: 5)
    batch_size: int = 64            # patients per step
    learning_rate: float = 1e-3     # Adam


class BalancedSplit(NamedTuple):
    """Patient positions (rows of each cohort) of the balanced, stratified split."""

    real_train: np.ndarray
    real_test: np.ndarray
    synthetic_train: np.ndarray
    synthetic_test: np.ndarray


def balanced_split(n_real: int, n_synthetic: int, test_size: float = 0.3, seed: int = 0) -> BalancedSplit:
    """Subsample both cohorts to ``min(n_real, n_synthetic)`` patients and split each class alike.

    Each class gets ``round(test_size * n)`` test patients and the rest for training, so both
    parts are balanced. Positions are drawn without replacement by ``default_rng(seed)``.

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
    rng = np.random.default_rng(seed)
    real = rng.choice(n_real, size=n, replace=False)
    synthetic = rng.choice(n_synthetic, size=n, replace=False)
    return BalancedSplit(real[n_test:], real[:n_test], synthetic[n_test:], synthetic[:n_test])


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
def _flat_features(cohort: Cohort, vocab: Vocabulary, include_n_visits: bool) -> sp.csr_matrix:
    x = binary_matrix(cohort, vocab)
    if not include_n_visits:
        return x
    n_visits = cohort.visits_per_patient().to_numpy(np.float32)[:, None]
    return sp.hstack([x, sp.csr_matrix(n_visits)], format="csr")


def _random_forest(real, synthetic, vocab, parts: BalancedSplit, seed, config: RandomForestConfig):
    from sklearn.ensemble import RandomForestClassifier

    x_real = _flat_features(real, vocab, config.include_n_visits)
    x_syn = _flat_features(synthetic, vocab, config.include_n_visits)

    def stack(real_rows, syn_rows):
        x = sp.vstack([x_real[real_rows], x_syn[syn_rows]], format="csr")
        y = np.r_[np.full(len(real_rows), REAL), np.full(len(syn_rows), SYNTHETIC)]
        return x, y

    x_train, y_train = stack(parts.real_train, parts.synthetic_train)
    x_test, y_test = stack(parts.real_test, parts.synthetic_test)
    forest = RandomForestClassifier(
        n_estimators=config.n_estimators,
        min_samples_leaf=config.min_samples_leaf,
        max_features=config.max_features,
        n_jobs=1,
        random_state=seed,
    )
    forest.fit(x_train, y_train)
    p_real = forest.predict_proba(x_test)[:, list(forest.classes_).index(REAL)]
    return y_test, p_real


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
    test_size: float = 0.3,
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
