"""Coverage of the basic bootstrap interval and the error of the plug-in and the bias-corrected
estimate of the prevalence metrics, over datasets drawn from known prevalences.

The measurement behind the table "What a Table 1 cell shows" on the book's methods page. Real
prevalence is Zipf-like (0.4 / rank over 100 codes); the generator is as good as real data
(shift 0) or over- and under-shoots alternate codes by 20% (shift 0.2). Run:

    python benchmarks/bias_correction.py
"""
import warnings

import numpy as np

from ehrlib.metrics.bootstrap import bias_corrected, interval_table, replicate_prevalences, resample_weights
from ehrlib.metrics.prevalence import prevalence_scores


def simulate(shift: float, n_datasets=200, n_bootstrap=200, n_codes=100, n_real=300, n_synthetic=1000, seed=0):
    rank = np.arange(1, n_codes + 1)
    p_real = 0.4 / rank
    p_syn = p_real * (1 + shift * (-1.0) ** rank)
    truth = prevalence_scores(p_real, p_syn)
    rng = np.random.default_rng(seed)
    out = {m: {"cover": 0, "outside": 0, "inside_bc": 0, "err": [], "err_bc": []} for m in truth}
    for _ in range(n_datasets):
        xr = (rng.random((n_real, n_codes)) < p_real).astype(np.float32)
        xs = (rng.random((n_synthetic, n_codes)) < p_syn).astype(np.float32)
        est = prevalence_scores(xr.mean(0, dtype=np.float64), xs.mean(0, dtype=np.float64))
        rep = prevalence_scores(replicate_prevalences(xr, resample_weights(n_real, n_bootstrap, rng)),
                                replicate_prevalences(xs, resample_weights(n_synthetic, n_bootstrap, rng)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = interval_table(est, rep).set_index("metric")
        for m, t in truth.items():
            r = table.loc[m]
            bc = bias_corrected(r["estimate"], r["bias"], m)
            o = out[m]
            o["cover"] += r["ci_low"] <= t <= r["ci_high"]
            o["outside"] += not r["ci_low"] <= r["estimate"] <= r["ci_high"]
            o["inside_bc"] += r["ci_low"] <= bc <= r["ci_high"]
            o["err"].append(r["estimate"] - t)
            o["err_bc"].append(bc - t)
    for m, o in out.items():
        e, eb = np.array(o["err"]), np.array(o["err_bc"])
        print(f"shift {shift} {m} (truth {truth[m]:.3f}): basic covers {o['cover'] / n_datasets:.2f}, plug-in outside "
              f"{o['outside'] / n_datasets:.2f}, corrected inside {o['inside_bc'] / n_datasets:.2f}; mean error "
              f"{e.mean():+.4f} / {eb.mean():+.4f}, RMS error {np.sqrt((e ** 2).mean()):.4f} / {np.sqrt((eb ** 2).mean()):.4f}")


if __name__ == "__main__":
    for shift in (0.0, 0.2):
        simulate(shift)
