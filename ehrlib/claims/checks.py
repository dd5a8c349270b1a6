"""The checks every claim rule makes before it compares: one interval logic, and degenerate
measurements refused.

Paper: section 3 (the discriminator score, NNAAR) and section 4 (the claims of ``claims.yaml``).

*One interval logic.* Two measured values are ordered only when their intervals are apart
(:func:`order`): overlapping intervals are "not ordered", an exact tie is a tie, and neither
decides an ordering claim. A value is decided on the estimate its interval covers
(:attr:`ehrlib.claims.evidence.Value.decided`), never on a plug-in estimate that lies outside it.

*Degenerate measurements.* A number can be well defined and still measure nothing: a
discriminator that answers "real" for every record scores its test set's real share whatever the
generator; a score tied across the models *and* the reference rows (which differ by construction)
separates nothing; a metric with zero spread everywhere is a constant; NNAAR under the paper's
self-match rule is zero unless a record is an exact copy. :func:`degenerate_classifier`,
:func:`tied_with_references` and :func:`zero_spread` say why a rule must refuse its input; the
rule then falls back to a valid measurement where the run has one.
"""
from __future__ import annotations

import math

ABOVE, BELOW, NOT_ORDERED, TIE = "above", "below", "not ordered", "tie"
NOISE_SE = 2.0
"""A classifier's accuracy within this many binomial standard errors of its majority-class rate is
"within noise" of answering one class for every record."""


def order(a, b) -> str:
    """How ``a`` stands to ``b`` (two :class:`ehrlib.claims.evidence.Value`): :data:`ABOVE` or
    :data:`BELOW` when the intervals are apart, :data:`TIE` when the decided estimates and intervals
    are identical, else :data:`NOT_ORDERED` (overlapping intervals)."""
    if (a.decided, a.low, a.high) == (b.decided, b.low, b.high):
        return TIE
    if a.low > b.high:
        return ABOVE
    if a.high < b.low:
        return BELOW
    return NOT_ORDERED


def groups_order(high: dict, low: dict) -> str:
    """:data:`ABOVE` when every value of ``high`` is above every value of ``low``; :data:`BELOW`
    when every one is below; :data:`TIE` when every pair ties; else :data:`NOT_ORDERED`."""
    pairs = [order(h, lo) for h in high.values() for lo in low.values()]
    for outcome in (ABOVE, BELOW, TIE):
        if all(p == outcome for p in pairs):
            return outcome
    return NOT_ORDERED


def majority_noise(n_test: float, majority_rate: float) -> float:
    """Half-width of the band around ``majority_rate`` that a constant classifier's accuracy falls
    in on ``n_test`` test records (:data:`NOISE_SE` binomial standard errors)."""
    return NOISE_SE * math.sqrt(max(majority_rate * (1 - majority_rate), 0.0) / max(n_test, 1.0))


def degenerate_classifier(accuracies: dict, majority_rate: float, n_test: float) -> str:
    """Why the accuracies (``{row: accuracy}``) measure nothing, or ``""``: every one lies within
    noise of ``majority_rate`` (the share of the larger class on ``n_test`` test records), which is
    what answering that class for every record scores."""
    if not accuracies or not 0 < majority_rate < 1:
        return ""
    band = majority_noise(n_test, majority_rate)
    if all(abs(a - majority_rate) <= band for a in accuracies.values()):
        return (f"every accuracy ({', '.join(f'{k} {v:.3f}' for k, v in accuracies.items())}) lies within "
                f"{band:.3f} ({NOISE_SE:g} standard errors on {n_test:.0f} test records) of the majority-class "
                f"rate {majority_rate:.3f}: the classifier answers one class for every record")
    return ""


def tied_with_references(values: dict, references: dict, tolerance: float = 0.0) -> str:
    """Why ``values`` (the models') and ``references`` (the reference rows', which differ by
    construction) measure nothing, or ``""``: every decided estimate of both lies within
    ``tolerance`` of one another and every interval overlaps every other."""
    rows = {**values, **references}
    if len(values) < 1 or len(references) < 2:
        return ""
    ests = [v.decided for v in rows.values()]
    if max(ests) - min(ests) > tolerance:
        return ""
    if any(order(a, b) in (ABOVE, BELOW) for a in rows.values() for b in rows.values()):
        return ""
    span = f"{min(ests):.3f}" if max(ests) == min(ests) else f"{min(ests):.3f}–{max(ests):.3f}"
    return (f"the models and the reference rows ({', '.join(references)}) all score {span} with overlapping "
            "intervals, although the reference rows differ by construction")


def zero_spread(values: dict) -> str:
    """Why ``values`` measure nothing, or ``""``: every one is the same number with a zero-width
    interval (a constant, not a measurement)."""
    if len(values) < 2:
        return ""
    vs = list(values.values())
    if all(v.low == v.high == vs[0].decided for v in vs):
        return f"every value is {vs[0].decided:g} with zero spread"
    return ""
