"""Time the nearest-neighbour distances and the privacy family at the paper's scale.

Paper scale: 45,520 train, 1,000 holdout and 10,000 synthetic patients over ~7k ICD-9 codes
(~1.27 visits per patient, ~11 codes per visit). All three are disjoint parts of one simulated
cohort, so the synthetic set is a perfect generator (a disjoint real sample); timings do not
depend on what a generator learned. A memorizer (copies of train records) is scored as well,
to show what the metrics report for a leaky generator at this scale.

Prints: nearest synthetic -> train (target <= 5 s), a pure-Python double loop on a few
queries extrapolated to all of them and the speed-up (target >= 50x), the full privacy family
(NNAAR R = 10, MIA, copies, DCR; target <= 30 s) and its peak traced memory (target <= 2 GB).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_privacy.py [--scale 0.1] [--naive-queries 20]``
"""
from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np

from ehrlib.cohort import CODE, SUBJECT, VISIT, Cohort
from ehrlib.data import simulate, split
from ehrlib.metrics.distance import CHUNK_SIZE, encode_cohorts, nearest
from ehrlib.metrics.privacy import privacy_metrics
from ehrlib.models import get

N_TRAIN = 45_520  # training patients (paper)
N_HOLDOUT = 1_000  # holdout patients (paper)
N_SYNTHETIC = 10_000  # synthetic patients per generator (paper)
REPEATS = 10  # NNAAR / MIA / DCR subsample repeats (the book's methods page: R >= 10)


def nested_sets(cohort: Cohort) -> list[list[set[str]]]:
    """Records as lists of visit sets (the input a pure-Python implementation would use)."""
    out: list[list[set[str]]] = []
    last = None
    for subject, visit, code in zip(cohort.events[SUBJECT], cohort.events[VISIT], cohort.events[CODE]):
        if subject != last:
            out.append([])
            last = subject
        record = out[-1]
        if visit == len(record):
            record.append(set())
        record[visit].add(code)
    return out


def naive_distance(a: list[set[str]], b: list[set[str]]) -> int:
    """The set distance written directly: aligned symmetric differences plus extra visits."""
    d = 0
    for i in range(max(len(a), len(b))):
        if i < len(a) and i < len(b):
            d += len(a[i] ^ b[i])
        else:
            d += len(a[i]) if i < len(a) else len(b[i])
    return d


def naive_nearest(queries, refs) -> list[int]:
    return [min(naive_distance(q, r) for r in refs) for q in queries]


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the paper's patient counts")
    parser.add_argument("--naive-queries", type=int, default=20, help="queries for the pure-Python loop")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    n_train, n_holdout, n_synthetic = (max(10, round(n * args.scale)) for n in (N_TRAIN, N_HOLDOUT, N_SYNTHETIC))
    (real, synthetic), t_data = timed(
        split, simulate(n_train + n_holdout + n_synthetic, seed=args.seed), n_holdout=n_synthetic, seed=args.seed
    )
    train, holdout = split(real, n_holdout=n_holdout, seed=args.seed)
    synthetic = synthetic.renamed()
    print(f"data: simulate(seed={args.seed}) split into train {train!r}, holdout {holdout!r}, "
          f"synthetic {synthetic!r} ({t_data:.1f} s)")
    print("device: CPU, one thread (OMP_NUM_THREADS=1); timings on a shared machine")

    (enc_train, enc_synthetic), t_encode = timed(encode_cohorts, train, synthetic)
    print(f"encode train + synthetic: {t_encode:.2f} s, {enc_train.matrix.shape[1]} columns "
          f"({enc_train.n_positions} visit positions x {enc_train.n_codes} codes)")
    fast, t_fast = timed(nearest, enc_synthetic, enc_train)
    print(f"nearest synthetic -> train ({len(enc_synthetic)} x {len(enc_train)}), chunk {CHUNK_SIZE}: "
          f"{t_fast:.2f} s (target <= 5 s)")
    _, t_256 = timed(nearest, enc_synthetic, enc_train, chunk_size=256)
    print(f"nearest synthetic -> train, chunk 256: {t_256:.2f} s")

    queries, refs = nested_sets(synthetic)[: args.naive_queries], nested_sets(train)
    slow, t_slow = timed(naive_nearest, queries, refs)
    assert np.array_equal(np.asarray(slow), fast.distance[: len(queries)]), "pure-Python and sparse disagree"
    t_slow_all = t_slow / len(queries) * len(enc_synthetic)
    print(f"pure Python: {len(queries)} queries x {len(refs)} in {t_slow:.2f} s -> all "
          f"{len(enc_synthetic)} queries ~ {t_slow_all:.0f} s ({t_slow_all / 60:.1f} min); "
          f"speed-up {t_slow_all / t_fast:.0f}x (target >= 50x); distances agree")

    table, t_family = timed(privacy_metrics, train, holdout, synthetic, seed=args.seed, repeats=REPEATS)
    print(f"privacy family (encode + NNAAR R={REPEATS}, MIA R={REPEATS}, copies, DCR R={REPEATS}): "
          f"{t_family:.2f} s (target <= 30 s)")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))

    memorizer = get("memorizer").fit(train).generate(n_synthetic, seed=args.seed)
    tracemalloc.start()
    leaky, t_leaky = timed(privacy_metrics, train, holdout, memorizer, seed=args.seed, repeats=REPEATS)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"privacy family on a memorizer ({n_synthetic} copies of train records), under tracemalloc: "
          f"{t_leaky:.2f} s")
    print(leaky.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print(f"peak traced memory of the privacy family: {peak / 2**20:.0f} MiB (target <= 2048 MiB)")
    print(f"peak resident memory of this process (data generation included): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")


if __name__ == "__main__":
    main()
