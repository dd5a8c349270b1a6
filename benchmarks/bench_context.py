"""The evaluation context against today's path, and the two new families' time, in one run.

Demo profile sizes (the profile's data and evaluation settings): the simulated cohort split into
train / holdout / reference, and eight synthetic cohorts of ``n_synthetic`` patients standing in
for the run's generators (the three reference generators, and ``marginals`` draws in the place
of the five neural models, two of them flattened to one visit like MedGAN and CorGAN), so the
script needs no trained model.

1. The two new families (``utility``, ``attribute_inference``) for every generator from one
   context, B = the profile's ``n_bootstrap`` (target: <= 60 s on 2 cores).
2. The families the evaluation notebooks run (prevalence, privacy, discriminator with the RF,
   utility, attribute inference; ``--families`` selects) in both protocols, once with one context for everything (the
   new path) and once as before this change: one context per family and protocol call, each
   with its own encodings, overlap check and real-side resamples (every cohort encoded once per
   call). Prints the encodings made and the wall and CPU seconds of each (the faster of two
   alternated runs), and their ratios.
3. Across the stages of one run (30, 31, 32, 34 and 40 each evaluate a set of their own: all
   generators with or without the reference split, the reference generators, Figure 3's models),
   the contexts the stages make: today's path, where each stage builds its own (overlap check,
   encodings, binary matrices, real-side resamples), against the stored context
   (:func:`ehrlib.metrics.context.shared_context`: the first stage builds and stores it, the others
   load it and take their part). Prints the encodings made per cohort in each path and the
   seconds of both (the faster of two alternated runs). The families' own work is the same in
   both paths (their results are equal) and is left out.

    OMP_NUM_THREADS=1 python benchmarks/bench_context.py [--profile demo] [--repeats 3] [--parts 1 3]
"""
from __future__ import annotations

import argparse
import tempfile
import time

from ehrlib import models, profiles
from ehrlib.cohort import Cohort
from ehrlib.data import make_splits, simulate
from ehrlib.metrics import names
from ehrlib.metrics.context import EvaluationContext, shared_context
from ehrlib.metrics.discriminator import RandomForestConfig
from ehrlib.metrics.evaluate import evaluate_context

STAND_INS = ("medgan", "corgan", "promptehr", "halo", "gpt")
FLAT = ("medgan", "corgan")


def cohorts(profile: str):
    p = profiles.get(profile)
    cohort = simulate(p.data.n_patients, seed=0)
    s = make_splits(cohort, p.data.n_holdout, p.data.n_reference, seed=0)
    train, holdout, reference = s["train"], s["holdout"], s["reference"]
    n = p.evaluation.n_synthetic
    synthetic = {"holdout": models.get("holdout", records=reference).fit(train).generate(min(n, reference.n_patients),
                                                                                          seed=0),
                 "marginals": models.get("marginals").fit(train).generate(n, seed=0),
                 "memorizer": models.get("memorizer").fit(train).generate(n, seed=0)}
    marginals = models.get("marginals").fit(train)
    for i, name in enumerate(STAND_INS, start=1):
        c = marginals.generate(n, seed=i)
        if name in FLAT:
            c = Cohort.from_events(c.events.assign(visit_id=0).drop_duplicates(["subject_id", "code"]))
        synthetic[name] = c
    return p, train, holdout, reference, synthetic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--repeats", type=int, default=None, help="NNAAR repeats (default: the profile's)")
    ap.add_argument("--families", nargs="+", default=list(names.FAMILIES), choices=names.FAMILIES,
                    help="families of part 2 (default all; the RF discriminator dominates their time)")
    ap.add_argument("--parts", nargs="+", type=int, default=[1, 2, 3], choices=[1, 2, 3], help="parts to run")
    args = ap.parse_args()
    p, train, holdout, reference, synthetic = cohorts(args.profile)
    b = p.evaluation.n_bootstrap
    print(f"profile {p.name}: train {train.n_patients}, holdout {holdout.n_patients}, reference "
          f"{reference.n_patients}, {len(synthetic)} synthetic cohorts of {p.evaluation.n_synthetic}; B={b}", flush=True)

    if 1 in args.parts:
        new_families(p, train, holdout, reference, synthetic)
    if 2 in args.parts:
        one_context_or_per_call(args, p, train, holdout, reference, synthetic)
    if 3 in args.parts:
        run_stages(p, train, holdout, reference, synthetic)


def new_families(p, train, holdout, reference, synthetic) -> None:
    """Part 1: the two new families for every generator from one context."""
    b = p.evaluation.n_bootstrap
    t = time.perf_counter()
    context = EvaluationContext.build(train, holdout, synthetic, reference)
    out = evaluate_context(context, [names.UTILITY, names.ATTRIBUTE_INFERENCE], n_bootstrap=b, progress=False)
    seconds = time.perf_counter() - t
    assert set(out.model) == set(synthetic)
    print(f"utility + attribute_inference, {len(synthetic)} generators: {seconds:.1f} s "
          f"(target <= 60 s)", flush=True)


def one_context_or_per_call(args, p, train, holdout, reference, synthetic) -> None:
    """Part 2: the families of the evaluation notebooks from one context vs one per call."""
    b = p.evaluation.n_bootstrap
    repeats = args.repeats or p.evaluation.nnaar_repeats
    families = list(args.families)
    options = dict(n_bootstrap=b, repeats=repeats, rf=RandomForestConfig(n_jobs=1), progress=False)
    made: list[EvaluationContext] = []
    original = EvaluationContext.__init__

    def counting(self, *a, **kw):
        original(self, *a, **kw)
        made.append(self)

    EvaluationContext.__init__ = counting
    try:
        def encodings():
            return sum(v for c in made for k, v in c.builds.items() if k.startswith(("encoded:", "binary:")))

        def one_context():
            shared = EvaluationContext.build(train, holdout, synthetic, reference)
            for protocol in names.PROTOCOLS:
                evaluate_context(shared, families, protocol=protocol, **options)

        def per_call():
            for family in families:
                for protocol in names.PROTOCOLS:
                    evaluate_context(EvaluationContext.build(train, holdout, synthetic, reference), [family],
                                     protocol=protocol, **options)

        timings = {}
        for path in (per_call, one_context, per_call, one_context):  # alternated; the faster of two each
            made.clear()
            t, c = time.perf_counter(), time.process_time()
            path()
            seconds, cpu = time.perf_counter() - t, time.process_time() - c
            best, best_cpu = timings.get(path.__name__, (float("inf"), float("inf")))[:2]
            timings[path.__name__] = (min(best, seconds), min(best_cpu, cpu), encodings(), len(made))
        one, one_cpu, one_enc, one_ctx = timings["one_context"]
        each, each_cpu, each_enc, each_ctx = timings["per_call"]
    finally:
        EvaluationContext.__init__ = original
    print(f"one context for {len(families)} families x {len(names.PROTOCOLS)} protocols: {one_ctx} context, "
          f"{one_enc} cohort encodings, {one:.1f} s wall, {one_cpu:.1f} s CPU", flush=True)
    print(f"one context per family and protocol (today's path): {each_ctx} contexts, {each_enc} cohort encodings, "
          f"{each:.1f} s wall, {each_cpu:.1f} s CPU; today's path / one context: {each / one:.2f}x wall, "
          f"{each_cpu / one_cpu:.2f}x CPU, {each_enc / one_enc:.1f}x encodings", flush=True)
    print("(wall times on a machine other work keeps busy vary by more than these differences; compare the CPU "
          "seconds and the encodings)", flush=True)


def stage_sets(p, synthetic) -> dict:
    """Each evaluation stage's set: ``stage -> (synthetic names, with the reference split, B)``."""
    longtail = [m.strip() for m in p.evaluation.longtail_models.split(",") if m.strip()]
    longtail = list(synthetic) if longtail == ["all"] else [m for m in longtail if m in synthetic]
    every = list(synthetic)
    b = p.evaluation.n_bootstrap
    return {"30_prevalence": (every, False, b), "31_discriminator": (every, False, b),
            "32_privacy": (every, True, b), "34_protocol_effects": (["holdout", "marginals", "memorizer"], False, 2),
            "40_longtail_percentiles": (longtail, False, b)}


def run_stages(p, train, holdout, reference, synthetic, seed: int = 0) -> None:
    """Part 3: the contexts of one run's evaluation stages, each its own vs one stored."""
    sets = stage_sets(p, synthetic)

    def encodings(contexts) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in contexts:
            for k, v in c.builds.items():
                if k.startswith("encoded:"):
                    out[k[len("encoded:"):]] = out.get(k[len("encoded:"):], 0) + v
        return out

    def each_its_own():
        made = []
        for models_, with_reference, b in sets.values():
            c = EvaluationContext.build(train, holdout, {m: synthetic[m] for m in models_},
                                        reference if with_reference else None)
            made.append(c.prepare(b, seed))
        return made

    def stored():
        made = []
        with tempfile.TemporaryDirectory() as folder:
            for models_, with_reference, b in sets.values():
                whole = shared_context(folder, train, holdout, synthetic, reference, n_bootstrap=p.evaluation.n_bootstrap,
                                       seed=seed)
                made += [whole, whole.subset(models_, reference=with_reference).prepare(b, seed)]
        return made

    timings = {}
    for path in (each_its_own, stored, each_its_own, stored):  # alternated; the faster of two each
        t = time.perf_counter()
        made = path()
        seconds = time.perf_counter() - t
        timings[path.__name__] = (min(seconds, timings.get(path.__name__, (float("inf"),))[0]), encodings(made))
    own, own_enc = timings["each_its_own"]
    one, one_enc = timings["stored"]
    print(f"{len(sets)} evaluation stages ({', '.join(sets)}):", flush=True)
    print(f"  each stage its own context (today's path): {own:.2f} s; encodings per cohort: "
          f"{', '.join(f'{k} {v}' for k, v in own_enc.items())}", flush=True)
    print(f"  one stored context, built once and loaded: {one:.2f} s; encodings per cohort: "
          f"{', '.join(f'{k} {v}' for k, v in one_enc.items())}", flush=True)
    print(f"  today's path / stored: {own / one:.2f}x seconds, {sum(own_enc.values()) / sum(one_enc.values()):.1f}x "
          "encodings", flush=True)


if __name__ == "__main__":
    main()
