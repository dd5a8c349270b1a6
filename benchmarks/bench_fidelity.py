"""Cost of the fidelity-beyond-marginals families (stages 45 and 46) on a demo-sized input.

simulate(5000) split into train / holdout / reference as the utility tests do; the reference
generators (holdout, marginals, memorizer) with 1,000 records each, B = 1000. Times each family
of ``ehrlib.metrics.names.FIDELITY_FAMILIES`` over every generator, and, as the baseline in the
same run on the same context, the families of Table 1 (prevalence, privacy, Random Forest
discriminator, utility, attribute inference); prints the ratio and the seconds per generator.

    OMP_NUM_THREADS=1 python benchmarks/bench_fidelity.py
"""
import time

from ehrlib import models
from ehrlib.data import simulate, split
from ehrlib.metrics import names
from ehrlib.metrics.context import EvaluationContext
from ehrlib.metrics.evaluate import evaluate_context

B = 1000


def main():
    train, holdout = split(simulate(5000, seed=11), n_holdout=1000, seed=0)
    train, reference = split(train, n_holdout=1000, seed=1)
    synthetic = {"holdout": models.get("holdout", records=reference).fit(train).generate(1000, seed=0),
                 "marginals": models.get("marginals").fit(train).generate(1000, seed=0),
                 "memorizer": models.get("memorizer").fit(train).generate(1000, seed=0)}
    context = EvaluationContext.build(train, holdout, synthetic, reference)
    context.prepare(B, 0)
    n = len(synthetic)

    def timed(families, **kw):
        t0 = time.perf_counter()
        evaluate_context(context, families, n_bootstrap=B, progress=False, **kw)
        return time.perf_counter() - t0

    ours = {}
    for family in names.FIDELITY_FAMILIES:
        ours[family] = timed([family])
        print(f"{family:>16}: {ours[family]:6.1f} s ({ours[family] / n:5.1f} s per generator)")
    base = {}
    for family in names.FAMILIES:
        base[family] = timed([family], discriminators=("rf",))
        print(f"{family:>16}: {base[family]:6.1f} s (Table 1 family, baseline)")
    total, baseline = sum(ours.values()), sum(base.values())
    print(f"fidelity families {total:.1f} s, Table 1 families {baseline:.1f} s on the same context: "
          f"ratio {total / baseline:.2f}; {total / n:.1f} s per generator")


if __name__ == "__main__":
    main()
