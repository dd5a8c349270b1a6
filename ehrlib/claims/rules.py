"""The rules that turn measured values into verdicts, one function per kind of claim.

Paper: section 4 and appendix G (the claims of ``claims.yaml``). Every rule is
``rule(evidence, **params) -> Verdict``: it reads values through
:class:`ehrlib.claims.evidence.Evidence` by the library's metric names, compares them with the
intervals they carry, and returns the verdict with the numbers it used and their source. A rule
never reads a number typed into code: thresholds come from the claim's ``params``.

One interval logic (:mod:`ehrlib.claims.checks`): an ordering ``a > b`` holds when ``a``'s
interval lies wholly above ``b``'s, does not hold when it lies wholly below, and is undecidable
when the intervals overlap ("not ordered") or tie exactly. A rule on the run's data reads the
reference rows at the same sample size (holdout: the ceiling; marginals: the floor; memorizer: the
positive control) and judges a sample-size-dependent metric against them, refuses a degenerate
measurement before comparing, and names a model that misses its floors or decodes otherwise than
the paper.
"""
from __future__ import annotations

from typing import Callable

from ehrlib.claims import checks as C
from ehrlib.claims import evidence as E
from ehrlib.claims.verdict import DEGENERATE, FAILS, HOLDS, NOT_RUN, PARTLY, QUALIFIED, UNDECIDABLE, UNTESTABLE, Verdict
from ehrlib.metrics import names

RULES: dict[str, Callable[..., Verdict]] = {}
PAPER_MODELS = ("medgan", "corgan", "promptehr", "halo", "gpt")
"""The paper's five generators, as ``ehrlib`` names them."""
SEQUENTIAL = tuple(m for m in PAPER_MODELS if m not in names.FLAT_MODELS)
MAX_LISTED = 6
"""At most this many compared values are listed in a verdict that compares many."""
FLAT = tuple(m for m in PAPER_MODELS if m in names.FLAT_MODELS)
MIMIC3_FULL = ("full MIMIC-III 1.4 (PhysioNet, credentialed): its 45,520 training patients against the "
               "released samples, or a run with data=mimic3:PATH, profile=paper")
TABLE1_LOST = ("the paper's Table 1 cells are empty in its text (only the values its Results text quotes survive), "
               "so its own numbers cannot decide this")


TIE_TOLERANCE = 0.01
"""Accuracies of the models and reference rows within this of one another (and with overlapping
intervals) are tied: the discriminator separates none of them."""


def rule(fn):
    """Register ``fn`` under its name in :data:`RULES`."""
    RULES[fn.__name__] = fn
    return fn


def _fmt(x) -> str:
    if isinstance(x, E.Value):
        return x.text()
    return E.number(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)


def _numbers(values: dict) -> dict:
    return {k: _fmt(v) for k, v in values.items()}


def _on_run(ev, verdict: str, note: str, values: dict, stage: str, models=()) -> Verdict:
    """A verdict on the run's own data, with what it must say about the models it rests on (floors
    missed, another decoding); the ledger states once what data the run used."""
    if verdict == QUALIFIED:  # a run-based rule decides holds / does not hold / undecidable only
        verdict = UNDECIDABLE
    caveats = ev.caveats(models) if models else []
    note = "; ".join(x for x in (note, *caveats) if x)
    return Verdict(verdict, note, _numbers(values), ev.run_source, stage)


def _missing(what: str, stage: str) -> Verdict:
    return Verdict(NOT_RUN, f"this run has no {what}: run notebook {stage}", {}, "", stage)


def _table1(ev, metric: str, models, protocol=None, kind=None) -> dict:
    return {m: v for m in models if (v := ev.metric(m, metric, protocol, kind)) is not None}


def _refs(ev, metric: str, protocol=None, kind=None) -> dict:
    return {f"{r} {_label(metric, kind)} (reference)": v for r, v in ev.references(metric, protocol, kind).items()}


def _label(metric: str, kind=None) -> str:
    return names.header(names.disc_metric(kind, "score")) if metric == names.PAPER_DISC_SCORE and kind else \
        names.header(metric)


def _seed_order(ev, metric, high, low) -> str:
    """Whether a seed sweep's across-seed spread orders ``high`` above ``low`` too (``""`` without
    a sweep): ``"apart"``, or ``"not ordered across seeds: ..."``."""
    spreads = {m: ev.seed_spread(m, metric) for m in (*high, *low)}
    if not all(spreads.values()):
        return ""
    value = {m: E.Value(mu, mu - E.SPREADS * sd, mu + E.SPREADS * sd) for m, (mu, sd, _) in spreads.items()}
    o = C.groups_order({m: value[m] for m in high}, {m: value[m] for m in low})
    n = min(k for _, _, k in spreads.values())
    if o == C.ABOVE:
        return "apart"
    return (f"not ordered across {n} training seeds (mean ± {E.SPREADS:g} sd: "
            + ", ".join(f"{m} {value[m].estimate:.3f} ± {E.SPREADS * spreads[m][1]:.3f}" for m in value) + ")")


def _not_decidable_on_artifacts(what: str = TABLE1_LOST) -> Verdict:
    return Verdict(UNDECIDABLE, what, {}, E.PRINTED + " 1", "")


# ---------------------------------------------------------------------------- degenerate discriminators
def disc_degenerate(ev, models, kind_of=names.paper_discriminator) -> str:
    """Why the paper-protocol discriminator accuracies of ``models`` and the reference rows measure
    nothing, or ``""``: they tie (within :data:`TIE_TOLERANCE`, intervals overlapping) across the
    models *and* the holdout, marginals and memorizer rows, which differ by construction, or they
    have zero spread."""
    why = []
    for kind in sorted({kind_of(m) for m in models}):
        group = [m for m in models if kind_of(m) == kind]
        acc_metric = names.disc_metric(kind, "accuracy")
        acc = {m: v for m in group if (v := ev.metric(m, acc_metric, names.PAPER)) is not None}
        refs = {r: v for r, v in ev.references(acc_metric, names.PAPER).items()}
        w = C.tied_with_references(acc, refs, tolerance=TIE_TOLERANCE) or C.zero_spread({**acc, **refs})
        if w:
            why.append(f"the {kind.upper()} discriminator's accuracy: {w} (a classifier answering one class for "
                       "every record scores its test set's majority share whatever it is shown)")
    return "; ".join(why)


def _disc_fallback(ev, metric: str, models):
    """A valid discriminator measurement for ``models`` when the paper protocol's is degenerate: the
    AUC of the paper's discriminator for each (rank-based, immune to the threshold), read against
    the holdout's AUC, in the corrected protocol (balanced classes) where the run has it."""
    for protocol in (names.CORRECTED, names.PAPER):
        if protocol not in ev.protocols() and ev.protocols():
            continue
        vals = {}
        for m in models:
            v = ev.metric(m, names.disc_metric(names.paper_discriminator(m), "auc"), protocol)
            if v is not None:
                vals[m] = v
        if len(vals) == len(models):
            return protocol, vals
    return None, {}


# ---------------------------------------------------------------------------- Table 1 (the run)
def _above(ev, metric: str, higher, lower, fails: str, missing: str, lower_is_better: bool = False) -> Verdict:
    """Every model of ``higher`` above every model of ``lower`` on ``metric`` with the intervals
    apart (and, with a seed sweep, the across-seed spreads apart): reproduced; wholly below:
    not reproduced (``fails``); overlapping intervals or an exact tie: undecidable. A degenerate
    paper-protocol discriminator score is refused and the AUC decides instead (lower AUC = harder
    to tell apart = higher fidelity)."""
    models = [*higher, *lower]
    hi, lo = _table1(ev, metric, higher), _table1(ev, metric, lower)
    if not hi or not lo:
        return _missing(missing, E.TABLE1_STAGE)
    values = {f"{m} {_label(metric)}": v for m, v in {**hi, **lo}.items()}
    kinds = sorted({names.paper_discriminator(m) for m in models})
    if metric == names.PAPER_DISC_SCORE:
        for k in kinds:
            values.update(_refs(ev, metric, names.PAPER if names.PAPER in ev.protocols() else None, k))
        why = disc_degenerate(ev, models) if names.PAPER in ev.protocols() or not ev.protocols() else ""
        if why:
            protocol, auc = _disc_fallback(ev, metric, models)
            note = f"{DEGENERATE}: {why}"
            if not auc:
                return _on_run(ev, UNDECIDABLE, note + "; the run has no AUC to fall back on", values,
                               E.TABLE1_STAGE, models)
            values = {f"{m} disc. AUC ({protocol})": v for m, v in auc.items()}
            for k in kinds:
                refs = ev.references(names.disc_metric(k, "auc"), protocol)
                values.update({f"{r} {k.upper()} AUC ({protocol}, reference)": v for r, v in refs.items()})
            o = C.groups_order({m: auc[m] for m in lower}, {m: auc[m] for m in higher})  # lower AUC is better
            note += f"; decided instead on the discriminators' AUC ({protocol} protocol)"
            return _decide_order(ev, o, note, fails, values, models, seed=None)
    if lower_is_better:
        hi, lo = lo, hi
    o = C.groups_order(hi, lo)
    return _decide_order(ev, o, "", fails, values, models, seed=(metric, list(hi), list(lo)))


def _decide_order(ev, o: str, note: str, fails: str, values: dict, models, seed) -> Verdict:
    if o == C.ABOVE:
        extra = _seed_order(ev, *seed) if seed else ""
        if extra and extra != "apart":
            return _on_run(ev, UNDECIDABLE, "; ".join(x for x in (note, "the bootstrap intervals are apart, but "
                                                                   + extra) if x), values, E.TABLE1_STAGE, models)
        return _on_run(ev, HOLDS, "; ".join(x for x in (note, "the intervals are apart"
                                                        + (" and so are the across-seed spreads" if extra else "")) if x),
                       values, E.TABLE1_STAGE, models)
    if o == C.BELOW:
        return _on_run(ev, FAILS, "; ".join(x for x in (note, fails + " (the intervals are apart)") if x), values,
                       E.TABLE1_STAGE, models)
    why = "an exact tie" if o == C.TIE else "not ordered: the intervals overlap"
    return _on_run(ev, UNDECIDABLE, "; ".join(x for x in (note, why) if x), values, E.TABLE1_STAGE, models)


@rule
def ordered_groups(ev, metric: str, higher=SEQUENTIAL, lower=FLAT) -> Verdict:
    """Every model of ``higher`` scores above every model of ``lower`` on ``metric`` (Table 1)."""
    return _above(ev, metric, higher, lower, f"some model of {list(lower)} scores above one of {list(higher)}",
                  f"{metric} for both {list(higher)} and {list(lower)}")


@rule
def fits_marginals_as_well(ev, flat=FLAT, sequential=SEQUENTIAL) -> Verdict:
    """The flat models fit prevalence (R²) at least as well as the sequential ones: no flat model's
    interval lies wholly below a sequential one's; judged beside the holdout (ceiling) and marginals
    (floor) rows at the same sample size."""
    f, s = _table1(ev, names.PREVALENCE_R2, flat), _table1(ev, names.PREVALENCE_R2, sequential)
    if not f or not s:
        return _missing("prevalence R² for flat and sequential models", E.TABLE1_STAGE)
    values = {f"{m} {_label(names.PREVALENCE_R2)}": v for m, v in {**f, **s}.items()} | _refs(ev, names.PREVALENCE_R2)
    below = [m for m, v in f.items() if any(C.order(v, w) == C.BELOW for w in s.values())]
    if below:
        return _on_run(ev, FAILS, f"{', '.join(below)} fits prevalence worse than a sequential model (intervals apart)",
                       values, E.TABLE1_STAGE, [*flat, *sequential])
    return _on_run(ev, HOLDS, "no flat model's interval lies wholly below a sequential model's", values,
                   E.TABLE1_STAGE, [*flat, *sequential])


@rule
def marginals_but_not_discriminator(ev, flat=FLAT, sequential=SEQUENTIAL) -> Verdict:
    """Flat models fit prevalence at least as well as the sequential ones (R²) yet score lower on
    the paper's discriminator score (kept for outside callers; the ledger decides the two parts as
    sub-claims)."""
    a = fits_marginals_as_well(ev, flat, sequential)
    b = ordered_groups(ev, names.PAPER_DISC_SCORE, sequential, flat)
    verdicts = {a.verdict, b.verdict}
    verdict = a.verdict if len(verdicts) == 1 else (FAILS if FAILS in verdicts else UNDECIDABLE)
    return Verdict(verdict, f"marginals: {a.verdict}; discriminator: {b.verdict}", {**a.numbers, **b.numbers},
                   a.source or b.source, E.TABLE1_STAGE)


@rule
def tells_apart(ev, models=FLAT, kind: str = names.RF) -> Verdict:
    """The ``kind`` discriminator tells ``models`` from real records: its AUC for each lies wholly
    above the holdout row's (real records no generator saw: chance at this sample size), and the
    accuracy is not within noise of the majority-class rate (a constant answer)."""
    auc_metric, acc_metric = names.disc_metric(kind, "auc"), names.disc_metric(kind, "accuracy")
    protocol = names.PAPER if names.PAPER in ev.protocols() else None
    acc = _table1(ev, acc_metric, models, protocol)
    values = {f"{m} {_label(acc_metric)}": v for m, v in acc.items()} | _refs(ev, acc_metric, protocol)
    why = disc_degenerate(ev, list(models), lambda m: kind) if acc else ""
    note = f"{DEGENERATE}: {why}; decided instead on the AUC" if why else ""
    for p in ((names.CORRECTED, names.PAPER) if ev.protocols() else (None,)):
        auc = _table1(ev, auc_metric, models, p)
        holdout = ev.metric("holdout", auc_metric, p)
        if len(auc) == len(models) and holdout is not None:
            break
    else:
        return _missing(f"{auc_metric} for {list(models)} and the holdout row", E.TABLE1_STAGE)
    values |= {f"{m} {_label(auc_metric)} ({p})": v for m, v in auc.items()} | \
        {f"{r} {_label(auc_metric)} ({p}, reference)": v for r, v in ev.references(auc_metric, p).items()}
    o = C.groups_order(auc, {"holdout": holdout})
    if o == C.ABOVE:
        return _on_run(ev, HOLDS, "; ".join(x for x in (note, "every AUC lies above the holdout's") if x), values,
                       E.TABLE1_STAGE, models)
    if o == C.BELOW or o == C.TIE:
        return _on_run(ev, FAILS, "; ".join(x for x in (note, "no better than on real records (the holdout row)") if x),
                       values, E.TABLE1_STAGE, models)
    return _on_run(ev, UNDECIDABLE, "; ".join(x for x in (note, "not ordered: an interval overlaps the holdout's") if x),
                   values, E.TABLE1_STAGE, models)


@rule
def at_least(ev, metric: str, models, threshold: float) -> Verdict:
    """Every model of ``models`` has ``metric`` >= ``threshold`` (Table 1); where the run has a
    holdout row the threshold is read relative to it: a sample-size-dependent metric (R², cosine)
    cannot exceed what real records reach at this sample size, so a model "near-perfect" on it is
    one whose interval reaches the holdout's."""
    vals = _table1(ev, metric, models)
    if not vals:
        return _missing(f"{metric} for {list(models)}", E.TABLE1_STAGE)
    refs = ev.references(metric)
    values = {f"{m} {_label(metric)}": v for m, v in vals.items()} | _refs(ev, metric) | \
        {"the paper's threshold": float(threshold)}
    if "holdout" in refs:
        ceiling = refs["holdout"]
        below = [m for m, v in vals.items() if C.order(v, ceiling) == C.BELOW]
        if below:
            return _on_run(ev, FAILS, f"{', '.join(below)}: the interval lies wholly below the holdout's (the ceiling "
                           "at this sample size)", values, E.TABLE1_STAGE, models)
        return _on_run(ev, HOLDS, "every interval reaches the holdout's (the ceiling at this sample size)", values,
                       E.TABLE1_STAGE, models)
    if all(v.low >= threshold for v in vals.values()):
        return _on_run(ev, HOLDS, "", values, E.TABLE1_STAGE, models)
    if all(v.high < threshold for v in vals.values()):
        return _on_run(ev, FAILS, f"every interval lies below {threshold}", values, E.TABLE1_STAGE, models)
    return _on_run(ev, UNDECIDABLE, f"an interval straddles {threshold}", values, E.TABLE1_STAGE, models)


@rule
def near(ev, metric: str, target: float, tolerance: float, models=PAPER_MODELS) -> Verdict:
    """Every model's ``metric`` lies within ``tolerance`` of ``target`` (e.g. MIA accuracy near 0.5),
    read against the reference rows: the memorizer (copies of training records) must land outside
    the band, or the attack has no power to show anything; a metric at zero with zero spread for
    every row (NNAAR under the paper's self-match rule) is refused as degenerate and the corrected
    protocol decides."""
    vals = _table1(ev, metric, models)
    if not vals:
        return _missing(f"{metric} for {list(models)}", E.TABLE1_STAGE)
    refs = ev.references(metric)
    protocol_note = ""
    why = C.zero_spread(vals)  # NNAAR under the self-match rule: zero for every model unless one copies exactly
    if why and names.CORRECTED in ev.protocols():
        vals = _table1(ev, metric, models, names.CORRECTED) or vals
        refs = ev.references(metric, names.CORRECTED)
        protocol_note = (f"{DEGENERATE} in the paper's protocol: {why} (the self-match rule counts only exact "
                         "copies); decided instead in the corrected protocol")
    elif why:
        values = {f"{m} {_label(metric)}": v for m, v in vals.items()}
        return _on_run(ev, UNDECIDABLE, f"{DEGENERATE}: {why}", values, E.TABLE1_STAGE, models)
    values = {f"{m} {_label(metric)}": v for m, v in vals.items()} | \
        {f"{r} {_label(metric)} (reference)": v for r, v in refs.items()} | {"allowed": f"{target} ± {tolerance}"}
    inside = lambda v: target - tolerance <= v.low and v.high <= target + tolerance  # noqa: E731
    outside = lambda v: v.low > target + tolerance or v.high < target - tolerance  # noqa: E731
    notes = [protocol_note] if protocol_note else []
    if "memorizer" in refs and not outside(refs["memorizer"]):
        return _on_run(ev, UNDECIDABLE, "; ".join(notes + ["the memorizer (the positive control) is not flagged: "
                                                           "the attack has no power at this sample size"]),
                       values, E.TABLE1_STAGE, models)
    if all(inside(v) for v in vals.values()):
        return _on_run(ev, HOLDS, "; ".join(notes + ["every interval lies inside the band"]), values, E.TABLE1_STAGE,
                       models)
    out = [m for m, v in vals.items() if outside(v)]
    if out:
        return _on_run(ev, FAILS, "; ".join(notes + ["wholly outside: " + ", ".join(out)]), values, E.TABLE1_STAGE,
                       models)
    return _on_run(ev, UNDECIDABLE, "; ".join(notes + ["an interval straddles the band's edge"]), values,
                   E.TABLE1_STAGE, models)


@rule
def highest_among(ev, metric: str, model: str, others) -> Verdict:
    """``model`` has the highest ``metric`` among ``others`` (Table 1), with the intervals apart."""
    return _above(ev, metric, [model], others, f"{model} is not the highest", f"{metric} for {model} and {list(others)}")


@rule
def trails_closely(ev, metric: str, model: str, leaders, gap: float) -> Verdict:
    """``model``'s ``metric`` is below every leader's (intervals apart), by at most ``gap`` (the
    largest gap the intervals allow), beside the reference rows."""
    me, them = _table1(ev, metric, [model]), _table1(ev, metric, leaders)
    if not me or not them:
        return _missing(f"{metric} for {model} and {list(leaders)}", E.TABLE1_STAGE)
    mine = me[model]
    values = {f"{m} {_label(metric)}": v for m, v in {**me, **them}.items()} | _refs(ev, metric) | \
        {"allowed gap": float(gap)}
    o = C.groups_order(them, me)
    widest = max(v.high - mine.low for v in them.values())
    if o == C.ABOVE:
        if widest <= gap:
            return _on_run(ev, HOLDS, f"below every leader, by at most {E.number(widest)} (the intervals' far ends)",
                           values, E.TABLE1_STAGE, [model, *leaders])
        closest = min(v.low - mine.high for v in them.values())
        if closest > gap:
            return _on_run(ev, FAILS, f"it trails by more than {gap} (at least {E.number(closest)})", values,
                           E.TABLE1_STAGE, [model, *leaders])
        return _on_run(ev, UNDECIDABLE, f"it trails; the gap's interval straddles {gap}", values, E.TABLE1_STAGE,
                       [model, *leaders])
    if o == C.BELOW:
        return _on_run(ev, FAILS, f"{model} lies above every one of {list(leaders)} (intervals apart)", values,
                       E.TABLE1_STAGE, [model, *leaders])
    return _on_run(ev, UNDECIDABLE, "an exact tie" if o == C.TIE else "not ordered: the intervals overlap", values,
                   E.TABLE1_STAGE, [model, *leaders])


@rule
def printed_disc_degenerate(ev, model: str, score: float, n_real: int, n_synthetic: int, test_share: float) -> Verdict:
    """The paper's own printed discriminator score, checked for degeneracy with the class sizes the
    paper states: score ``s = 1 − 2|acc − 0.5|`` gives ``acc = 1 − s/2`` (or ``s/2``); a classifier that
    answers "real" for every record scores ``n_real / (n_real + n_synthetic)``. When the printed
    score's accuracy lies within noise of that rate, the score cannot rank the model."""
    acc = 1 - score / 2
    rate = n_real / (n_real + n_synthetic)
    n_test = test_share * (n_real + n_synthetic)
    values = {f"{model} Disc. Score (printed)": score, "its accuracy": acc,
              "always-real accuracy": rate, "its Disc. Score": 1 - 2 * abs(rate - 0.5),
              "test records": round(n_test)}
    why = C.degenerate_classifier({f"{model} (printed)": acc}, rate, n_test)
    if why:
        return Verdict(UNDECIDABLE, f"{DEGENERATE}: {why}: a discriminator that learned nothing scores "
                       f"{E.number(round(1 - 2 * abs(rate - 0.5), 4))}, and the paper's {E.number(score)} is within noise "
                       f"of it (classes {n_real:,} real vs {n_synthetic:,} synthetic, test share {test_share:g})",
                       _numbers(values), E.PRINTED + " 1 (the Results text)", "")
    return Verdict(UNDECIDABLE, TABLE1_LOST + f"; the printed {model} score is not at the constant classifier's",
                   _numbers(values), E.PRINTED + " 1 (the Results text)", "")


@rule
def printed_only(ev, what: str = TABLE1_LOST) -> Verdict:
    """A claim about the paper's Table 1 whose cells the paper's text lost: undecidable on the
    artifacts, and why."""
    return _not_decidable_on_artifacts(what)


# ---------------------------------------------------------------------------- memorisation
@rule
def no_memorisation(ev, min_codes: int = 5) -> Verdict:
    """No released sample copies the whole record of more paper-training patients (with at least
    ``min_codes`` codes) of the open MIMIC-III demo than its marginals control does; else the
    run's exact-copy rate. Qualified by the smallest copy rate the audit can detect."""
    a = ev.audit()
    if a is None:
        if not ev.on_artifacts:
            return run_copies(ev)
        return Verdict(NOT_RUN, "the audit did not run: `ehrbench fetch mimic3-demo paper-samples`, then notebook "
                       f"{E.AUDIT_STAGE}", {}, "", E.AUDIT_STAGE)
    rows = a[(a["role"] == "train-list") & (a["min_codes"] == min_codes)]
    if rows.empty:
        return _missing(f"audit rows for training-list patients with >= {min_codes} codes", E.AUDIT_STAGE)
    sample = rows[rows["comparison"] == "sample"].set_index("synthetic")
    control = rows[rows["comparison"] == "marginals"].set_index("synthetic")
    values, excess = {}, []
    for m in sample.index:
        s = sample.loc[m]
        c = int(control.loc[m, "copied"]) if m in control.index else 0
        values[f"{m} copies"] = f"{int(s['copied'])}/{int(s['eligible'])} (control {c})"
        if int(s["copied"]) > c:
            excess.append(m)
    detectable = float(sample["detectable_rate"].max())
    values["smallest detectable copy rate"] = f"{100 * detectable:.1f}%"
    if excess:
        rates = [f"{m} {int(sample.loc[m, 'copied'])} of {int(sample.loc[m, 'eligible'])} "
                 f"({100 * sample.loc[m, 'rate']:.1f}%, 95% CI {100 * sample.loc[m, 'ci_low']:.1f}-"
                 f"{100 * sample.loc[m, 'ci_high']:.1f}%)" for m in excess]
        pairs = ev.table("table_audit_pairs")
        sizes = ""
        if pairs is not None and not pairs.empty:
            p = pairs[(pairs["role"] == "train-list") & (pairs["comparison"] == "sample")
                      & pairs["synthetic"].isin(excess) & (pairs["n_codes"] >= min_codes)]
            sizes = "; the copied records hold " + ", ".join(
                f"{int(r.n_codes)} codes ({r.synthetic}{', same visits' if bool(r.same_visits) else ''})"
                for r in p.itertuples())
        return Verdict(FAILS, f"released samples reproduce whole records of paper-training patients with >= {min_codes} "
                       f"codes, which the marginals control never does: {'; '.join(rates)}{sizes}", values, E.AUDIT,
                       E.AUDIT_STAGE)
    n = int(sample["eligible"].max())
    return Verdict(UNDECIDABLE, f"no copies beyond chance among {n} audited patients with >= {min_codes} codes; this "
                   f"rules out only copy rates above ~{100 * detectable:.0f}% (the full MIMIC-III training split would "
                   "decide smaller rates)", values, E.AUDIT, E.AUDIT_STAGE)


@rule
def run_copies(ev, models=PAPER_MODELS) -> Verdict:
    """On the run: no model's exact-copy rate lies above the marginals row's (the floor: a model
    with the right frequencies and no memory), read beside the memorizer (the positive control,
    which must copy)."""
    protocol = None
    vals = _table1(ev, names.EXACT_COPY_RATE, models)
    if not vals and names.CORRECTED in ev.protocols():  # the paper's protocol has no exact-copy rate
        protocol = names.CORRECTED
        vals = _table1(ev, names.EXACT_COPY_RATE, models, protocol)
    refs = ev.references(names.EXACT_COPY_RATE, protocol)
    if not vals:
        return _missing(f"{names.EXACT_COPY_RATE} for the paper's models", E.TABLE1_STAGE)
    values = {f"{m} exact copies": v for m, v in vals.items()} | \
        {f"{r} exact copies (reference)": v for r, v in refs.items()}
    if "memorizer" in refs and refs["memorizer"].high <= 0:
        return _on_run(ev, UNDECIDABLE, "the memorizer (the positive control) copies nothing: the measure has no power",
                       values, E.TABLE1_STAGE, models)
    floor = refs.get("marginals", E.Value(0.0, 0.0, 0.0))
    copying = [m for m, v in vals.items() if C.order(v, floor) == C.ABOVE]
    if copying:
        return _on_run(ev, FAILS, f"{', '.join(copying)} copies training records more often than the marginals row",
                       values, E.TABLE1_STAGE, models)
    return _on_run(ev, HOLDS, "no model copies more than the marginals row", values, E.TABLE1_STAGE, models)


@rule
def privacy_power(ev, models=PAPER_MODELS, metric: str = names.MIA_ACCURACY, target: float = 0.5,
                  tolerance: float = 0.05) -> Verdict:
    """On the run: "conservative on privacy" read as the attacks finding nothing *and* being able to
    find something. With the calibrated attacks' detection table (``table_privacy_detection``: the
    smallest copy rate each attack detects), the verdict says which copy rate would have been
    detected; without it the attack's power is unknown and the claim undecidable."""
    detection = ev.table("table_privacy_detection")
    vals = _table1(ev, metric, models)
    if not vals:
        return _missing(f"{metric} for {list(models)}", E.TABLE1_STAGE)
    values = {f"{m} {_label(metric)}": v for m, v in vals.items()} | _refs(ev, metric)
    if detection is None or detection.empty or not {"attack", "min_detected_copy_rate"} <= set(detection.columns):
        return _on_run(ev, UNDECIDABLE, "the attack's power is unknown: this run has no calibrated attacks "
                       "(table_privacy_detection, notebook 32), so finding nothing does not show there is nothing",
                       values, stages_privacy(), models)
    rates = {str(r["attack"]): float(r["min_detected_copy_rate"]) for _, r in detection.iterrows()
             if r["min_detected_copy_rate"] == r["min_detected_copy_rate"]}
    values |= {f"{a}: smallest copy rate detected": f"{100 * x:.1f}%" for a, x in rates.items()}
    if not rates:
        return _on_run(ev, UNDECIDABLE, "no calibrated attack detected even the largest planted copy rate: the "
                       "attacks have no power at this sample size", values, stages_privacy(), models)
    best = min(rates, key=rates.get)
    flagged = [m for m, v in vals.items() if v.low > target + tolerance]
    if flagged:
        return _on_run(ev, FAILS, f"the attack flags {', '.join(flagged)}", values, stages_privacy(), models)
    return _on_run(ev, HOLDS, f"no model is flagged, and {best} would have detected a copy rate of "
                   f"{100 * rates[best]:.1f}% or more (smaller rates stay unseen)", values, stages_privacy(), models)


def stages_privacy() -> str:
    from ehrlib import stages

    return stages.PRIVACY


# ---------------------------------------------------------------------------- Figure 3
class _Fig3:
    """The Figure 3 values one claim is decided on: the authors' own results file where it holds
    every series the claim needs (at the percentiles it names), else this run's Figure 3."""

    def __init__(self, ev, needs, percentiles=()):
        self.ev, self.gap = ev, ""
        want = set(percentiles)
        has = all(s and want <= set(s) for s in (ev.authors(m, k) for m, k in needs))
        self.authors = ev.authors_fig3 is not None and has
        if ev.authors_fig3 is not None and not has:
            lacking = [f"{m} {k}" for m, k in needs if not (want <= set(ev.authors(m, k)) and ev.authors(m, k))]
            at = f" at {', '.join(f'{p:g}' for p in sorted(want))}" if want else ""
            self.gap = f"the authors' results file has no rows for {', '.join(lacking)}{at}"

    def get(self, model, metric) -> dict:
        return self.ev.authors(model, metric) if self.authors else self.ev.fig3(model, metric)

    def verdict(self, verdict: str, note: str, values: dict) -> Verdict:
        note = "; ".join(x for x in (note, self.gap) if x)
        if self.authors:
            return Verdict(verdict, note, _numbers(values), E.AUTHORS, E.FIG3_STAGE)
        models = sorted({k.split()[0] for k in values if k.split()[0] in PAPER_MODELS})
        return _on_run(self.ev, verdict, note, values, E.FIG3_STAGE, models)

    def missing(self, what: str) -> Verdict:
        if self.ev.on_artifacts:
            return Verdict(UNDECIDABLE, self.gap or "the authors' results file does not hold these values", {},
                           E.AUTHORS, E.FIG3_STAGE)
        v = _missing(what, E.FIG3_STAGE)
        return Verdict(v.verdict, v.note, {}, "", E.FIG3_STAGE)

    def reference(self, metric) -> dict:
        """The holdout row's Figure 3 ``metric`` by percentile on the run (empty on the authors' file)."""
        return {} if self.authors else self.ev.fig3("holdout", metric)


@rule
def tail_increase(ev, models, metric: str, target: float, tolerance: float) -> Verdict:
    """``metric`` rises with the percentile for each model and ends within ``tolerance`` of ``target``."""
    f = _Fig3(ev, [(m, metric) for m in models])
    series = {m: f.get(m, metric) for m in models}
    if not all(series.values()):
        return f.missing(f"Figure 3 {metric} for {list(models)}")
    values, rising, near_end = {}, True, True
    ref = f.reference(metric)
    goal, relative = target, False
    if ref and max(ref) >= max(p for s in series.values() for p in s):
        end_ref = ref[max(ref)]
        values[f"holdout {metric} at {max(ref):g} (reference)"] = end_ref
        if end_ref.high < target - tolerance:  # real records do not reach the paper's value at this sample size
            goal, relative = end_ref.decided, True
    for m, s in series.items():
        p = list(s)
        values[f"{m} {metric} at " + ", ".join(f"{q:g}" for q in p)] = " → ".join(E.number(s[q].decided) for q in p)
        rising &= all(s[b].decided >= s[a].decided for a, b in zip(p, p[1:]))
        near_end &= abs(s[p[-1]].decided - goal) <= tolerance
    rel = (f"judged against the holdout's {E.number(goal)} at the last percentile, not the paper's {target}: real "
           "records reach no more at this sample size") if relative else ""
    if rising and near_end:
        return f.verdict(HOLDS, rel, values)
    if rising:
        return f.verdict(PARTLY if f.authors else FAILS, "; ".join(x for x in (
            f"it rises at every step, but does not end within {tolerance} of {E.number(goal)}", rel) if x), values)
    return f.verdict(FAILS, "it does not rise at every step", values)


@rule
def tail_flat(ev, model: str, metric: str, value: float, tolerance: float) -> Verdict:
    """``metric`` stays within ``tolerance`` of ``value`` at every percentile."""
    f = _Fig3(ev, [(model, metric)])
    s = f.get(model, metric)
    if not s:
        return f.missing(f"Figure 3 {metric} for {model}")
    values = {f"{model} {metric} at {p:g}": v for p, v in s.items()}
    off = [p for p, v in s.items() if abs(v.estimate - value) > tolerance]
    if not off:
        return f.verdict(HOLDS, "", values)
    return f.verdict(FAILS, f"not within {tolerance} of {value} at percentile(s) {', '.join(f'{p:g}' for p in off)}",
                     values)


@rule
def tail_spike(ev, model: str, metric: str, factor: float, before: float = 97.5, at: float = 99.0) -> Verdict:
    """``metric`` at percentile ``at`` is at least ``factor`` times its value at ``before``."""
    f = _Fig3(ev, [(model, metric)], (before, at))
    s = f.get(model, metric)
    if before not in s or at not in s:
        return f.missing(f"Figure 3 {metric} for {model} at {before:g} and {at:g}")
    a, b = s[before].estimate, s[at].estimate
    ratio = b / a if a else float("inf")
    values = {f"{model} {metric} at {before:g}": s[before], f"at {at:g}": s[at], "ratio": ratio}
    if ratio >= factor:
        return f.verdict(HOLDS, "", values)
    return f.verdict(FAILS, f"it grows by a factor {ratio:.2f}, not the {factor} a spike needs", values)


@rule
def tail_drop_at_end(ev, model: str, metric: str, drop: float, before: float = 97.5, at: float = 99.0) -> Verdict:
    """``metric`` falls by at least ``drop`` from percentile ``before`` to ``at``."""
    f = _Fig3(ev, [(model, metric)], (before, at))
    s = f.get(model, metric)
    if before not in s or at not in s:
        return f.missing(f"Figure 3 {metric} for {model} at {before:g} and {at:g}")
    fall = s[before].estimate - s[at].estimate
    values = {f"{model} {metric} at {q:g}": v for q, v in s.items()}
    if fall >= drop:
        return f.verdict(HOLDS, "", values)
    return f.verdict(FAILS, f"it changes by {-fall:+.3g} from {before:g} to {at:g} (a drop of {drop} was claimed)",
                     values)


@rule
def tail_rise_for_most(ev, metrics, start: float, end: float, allowed_exceptions: int = 1, models=PAPER_MODELS,
                       chance: float | None = None, margin: float = 0.05) -> Verdict:
    """Each of ``metrics`` is higher at percentile ``end`` than at ``start`` for all models but at
    most ``allowed_exceptions`` ("nearly all"); models without both percentiles are left out and named.
    With ``chance`` (e.g. 0.5 for an attack's accuracy), a rise that ends within ``margin`` of it
    for every model is qualified: it reaches random guessing, which is not a risk by itself."""
    have = [m for m in models if any({start, end} <= set(ev.authors(m, k)) for k in metrics)]
    f = _Fig3(ev, [(m, k) for m in have for k in metrics], (start, end)) if ev.authors_fig3 is not None and have \
        else _Fig3(ev, [])
    values, exceptions, left_out, ends = {}, [], [], []
    for m in models:
        series = {k: f.get(m, k) for k in metrics}
        if not all({start, end} <= set(s) for s in series.values()):
            left_out.append(m)
            continue
        for k, s in series.items():
            ends.append(s[end].estimate)
            values[f"{m} {k} {start:g} → {end:g}"] = f"{E.number(s[start].estimate)} → {E.number(s[end].estimate)}"
            if s[end].estimate <= s[start].estimate:
                exceptions.append(f"{m} {k}")
    seen = [m for m in models if m not in left_out]
    if not seen:
        return f.missing(f"Figure 3 {list(metrics)} at percentiles {start:g} and {end:g}")
    gap = f"no values at {start:g} and {end:g} for {', '.join(left_out)}" if left_out else ""
    failed = {e.split()[0] for e in exceptions}
    at_chance = chance is not None and all(abs(e - chance) <= margin for e in ends)
    if len(failed) <= allowed_exceptions and len(seen) > allowed_exceptions:
        level = (f"every value at {end:g} is within {margin} of chance ({chance}): the rise reaches random guessing "
                 "and shows no attack success by itself") if at_chance else ""
        note = "; ".join(x for x in ((f"not for {', '.join(exceptions)}" if exceptions else ""), level, gap) if x)
        return f.verdict(PARTLY if left_out else HOLDS, note, values)
    return f.verdict(FAILS, "; ".join(x for x in (f"no rise for {', '.join(exceptions)}", gap) if x), values)


# ---------------------------------------------------------------------------- the released samples
def _released(ev, metric, models) -> dict:
    return {m: v for m in models if (v := ev.released(m, metric)) is not None}


def _no_samples() -> Verdict:
    return Verdict(NOT_RUN, f"the released samples were not read: `ehrbench fetch paper-samples`, then notebook "
                   f"{E.RELEASED_STAGE}",
                   {}, E.RELEASED, E.RELEASED_STAGE)


@rule
def released_matches_printed(ev, metric, models, table: str = "12") -> Verdict:
    """The released samples give the values the paper prints for ``metric`` (one name or a list),
    to its printed rounding; where they do not, the authors' files and their text disagree."""
    metrics = [metric] if isinstance(metric, str) else list(metric)
    values, off, seen = {}, [], 0
    for met in metrics:
        for m, v in _released(ev, met, models).items():
            seen += 1
            p = ev.printed(table, m, met)
            values[f"{m} {met}"] = f"{E.number(v)} (printed {E.number(p)})" if p is not None else E.number(v)
            if p is not None and abs(v - p) > ev.printed_half_unit(table, m, met) + 1e-9:
                off.append(f"{m} {met}")
    if not seen:
        return _no_samples()
    if len(values) > MAX_LISTED:  # the mismatches, then a few; every value is on the evidence's page
        shown = [k for k in values if any(k == o for o in off)] + [k for k in values if k not in off]
        values = {k: values[k] for k in shown[:MAX_LISTED]} | {"values compared": f"{seen} (all on the page linked)"}
    if off:
        return Verdict(FAILS, f"the authors' released files disagree with their printed Table {table}: {', '.join(off)}",
                       values, E.RELEASED, E.RELEASED_STAGE)
    agree = "the value rounds to the printed one" if seen == 1 else f"all {seen} values round to the printed ones"
    return Verdict(HOLDS, agree, values, E.RELEASED, E.RELEASED_STAGE)


@rule
def released_extreme(ev, metric: str, model: str, lowest: bool = True, models=PAPER_MODELS) -> Verdict:
    """``model``'s released sample has the lowest (or highest) ``metric`` of the five."""
    got = _released(ev, metric, models)
    if model not in got:
        return _no_samples()
    pick = min(got, key=got.get) if lowest else max(got, key=got.get)
    values = {f"{m} {metric}": v for m, v in got.items()}
    ties = [m for m, v in got.items() if v == got[model] and m != model]
    if pick == model or got[pick] == got[model]:
        return Verdict(QUALIFIED if ties else HOLDS, f"tied with {', '.join(ties)}" if ties else "", _numbers(values),
                       E.RELEASED, E.RELEASED_STAGE)
    return Verdict(FAILS, f"{pick}, not {model}, has the {'lowest' if lowest else 'highest'} {metric}",
                   _numbers(values), E.RELEASED, E.RELEASED_STAGE)


@rule
def released_fewer_than(ev, metric: str, model: str, others) -> Verdict:
    """``model``'s released sample has a lower ``metric`` than each of ``others``'."""
    got = _released(ev, metric, [model, *others])
    if len(got) < 1 + len(others):
        return _no_samples()
    values = {f"{m} {metric}": v for m, v in got.items()}
    more = [m for m in others if got[m] <= got[model]]
    if not more:
        return Verdict(HOLDS, "", _numbers(values), E.RELEASED, E.RELEASED_STAGE)
    return Verdict(FAILS, f"{model} has more than {', '.join(more)}", _numbers(values), E.RELEASED, E.RELEASED_STAGE)


@rule
def released_closest(ev, metric: str, model: str, among, everyone=PAPER_MODELS) -> Verdict:
    """``model``'s released sample is the closest to the paper's real value of ``metric`` (Table 12's
    real row) among ``among``; qualified when another model of ``everyone`` is closer still."""
    real = ev.printed("12", "train", metric)
    got = _released(ev, metric, everyone)
    if model not in got or real is None:
        return _no_samples()
    gap = {m: abs(v - real) for m, v in got.items()}
    values = {f"{m} {metric}": v for m, v in got.items()} | {"real (printed Table 12)": real}
    best_among = min((m for m in among if m in gap), key=gap.get)
    closer = [m for m in gap if gap[m] < gap[model] and m not in among]
    note_real = "the real value is the paper's printed one (recomputing it needs MIMIC-III)"
    if best_among != model:
        return Verdict(FAILS, f"{best_among} is closer; {note_real}", _numbers(values), E.RELEASED, E.RELEASED_STAGE)
    if closer:
        return Verdict(PARTLY, f"holds among {', '.join(among)}; not among all five: {', '.join(closer)} closer still; "
                       f"{note_real}",
                       _numbers(values), E.RELEASED, E.RELEASED_STAGE)
    return Verdict(HOLDS, note_real, _numbers(values), E.RELEASED, E.RELEASED_STAGE)


@rule
def released_below_real(ev, metric: str, models) -> Verdict:
    """Every one of ``models``' released samples has ``metric`` below the paper's real value."""
    real = ev.printed("12", "train", metric)
    got = _released(ev, metric, models)
    if len(got) < len(models) or real is None:
        return _no_samples()
    values = {f"{m} {metric}": v for m, v in got.items()} | {"real (printed Table 12)": real}
    above = [m for m, v in got.items() if v >= real]
    if above:
        return Verdict(FAILS, f"not below for {', '.join(above)}", _numbers(values), E.RELEASED, E.RELEASED_STAGE)
    return Verdict(HOLDS, "the real value is the paper's printed one (recomputing it needs MIMIC-III)",
                   _numbers(values), E.RELEASED, E.RELEASED_STAGE)


@rule
def released_coverage(ev, highest: str, lowest: str, high_pct: float, low_pct: float, models=PAPER_MODELS) -> Verdict:
    """Coverage of the real vocabulary (released unique codes over the paper's real unique codes,
    Table 12, with Table 13's Novel = 0) runs from ``high_pct`` (``highest``) to ``low_pct`` (``lowest``)."""
    real = ev.printed("12", "train", "unique_codes")
    got = _released(ev, "unique_codes", models)
    if len(got) < len(models) or real is None:
        return _no_samples()
    cov = {m: 100 * v / real for m, v in got.items()}
    values = {f"{m} coverage %": cov[m] for m in got} | {"real unique codes (printed)": real}
    top, bottom = max(cov, key=cov.get), min(cov, key=cov.get)
    ok = (top == highest and bottom == lowest and round(cov[highest]) == round(high_pct)
          and round(cov[lowest]) == round(low_pct))
    note = ("the denominator is the paper's printed real vocabulary and Novel = 0 is taken from Table 13 "
            "(the real codes themselves need MIMIC-III)")
    if ok:
        return Verdict(HOLDS, note, _numbers(values), E.RELEASED, E.RELEASED_STAGE)
    return Verdict(FAILS, f"highest {top}, lowest {bottom}; {note}", _numbers(values), E.RELEASED, E.RELEASED_STAGE)


# ---------------------------------------------------------------------------- the paper's tables, then the run's
def _best(vals: dict, higher: bool):
    best = max(vals.values()) if higher else min(vals.values())
    return [m for m, v in vals.items() if v == best]


@rule
def best_in_table(ev, table: str, model: str = "", higher=(), lower=(), worst: str = "", run_table: str = "",
                  models=PAPER_MODELS) -> Verdict:
    """``model`` is best on every column of ``higher`` (largest) and ``lower`` (smallest), and
    ``worst`` worst on all of them: on the artifacts, in the paper's printed ``table`` (where the
    text contradicts its own table, that is the verdict); on the run, in ``run_table`` with
    intervals (best = the interval apart from every other model's)."""
    cols = [(c, True) for c in higher] + [(c, False) for c in lower]
    if ev.on_artifacts:
        fails, ties, values = [], [], {}
        for col, hi in cols:
            vals = {m: v for m in models if (v := ev.printed(table, m, col)) is not None}
            if len(vals) < 2:
                return Verdict(UNTESTABLE, f"Table {table} is not in the paper's printed numbers", {},
                               _printed_source(ev, table))
            values.update({f"{m} {col} (printed)": v for m, v in vals.items()})
            for who, best in ((model, hi), (worst, not hi)):
                if not who:
                    continue
                top = _best(vals, best)
                if who not in top:
                    fails.append(f"{'/'.join(top)}, not {who}, is {'best' if who == model else 'worst'} on {col}")
                elif len(top) > 1:
                    ties.append(f"{who} ties with {'/'.join(t for t in top if t != who)} on {col}")
        if fails:
            return Verdict(FAILS, "the paper's text and its own table disagree: " + "; ".join(fails), _numbers(values),
                           _printed_source(ev, table), "")
        if ties:  # a printed tie: the model shares the place; the claim holds only in part
            return Verdict(PARTLY, "it shares the place in the paper's own table: " + "; ".join(ties), _numbers(values),
                           _printed_source(ev, table), "")
        return Verdict(HOLDS, f"the paper's own Table {table} agrees with its text", _numbers(values),
                       _printed_source(ev, table), "")
    stage = E.TABLE13_STAGE if run_table == "table13" else E.TABLE14_STAGE
    outcomes, values = [], {}
    for col, hi in cols:
        vals = {m: v for m in models if (v := ev.wide(run_table, m, col)) is not None}
        if len(vals) < len(models):
            return _missing(f"{run_table} {col} for the paper's models", stage)
        values.update({f"{m} {col}": v for m, v in vals.items()})
        refs = {r: v for r in E.REFERENCES if (v := ev.wide(run_table, r, col)) is not None}
        values.update({f"{r} {col} (reference)": v for r, v in refs.items()})
        for who, best in ((model, hi), (worst, not hi)):
            if not who:
                continue
            rest = {m: v for m, v in vals.items() if m != who}
            o = C.groups_order({who: vals[who]}, rest)
            want = C.ABOVE if best else C.BELOW
            label = f"{who} {'highest' if best else 'lowest'} on {col}"
            outcomes.append((label, HOLDS if o == want else (UNDECIDABLE if o in (C.NOT_ORDERED, C.TIE) else FAILS)))
    verdicts = {v for _, v in outcomes}
    if verdicts == {HOLDS}:
        return _on_run(ev, HOLDS, "the intervals are apart", values, stage, models)
    note = "; ".join(f"{label}: {'apart' if v == HOLDS else ('not ordered' if v == UNDECIDABLE else 'the other way')}"
                     for label, v in outcomes)
    return _on_run(ev, FAILS if verdicts == {FAILS} else UNDECIDABLE, note, values, stage, models)


@rule
def ranks_in_table(ev, table: str, metric: str, top, bottom, run_table: str = "", models=PAPER_MODELS) -> Verdict:
    """The models of ``top`` have the highest ``metric`` and those of ``bottom`` the lowest: on the
    artifacts, in the paper's own table (a contradiction is the verdict); on the run, with
    intervals: every ``top`` interval above every other model's, every ``bottom`` one below."""
    if ev.on_artifacts:
        printed = {m: v for m in models if (v := ev.printed(table, m, metric)) is not None}
        if len(printed) < len(top) + len(bottom):
            return Verdict(UNTESTABLE, f"Table {table} {metric} is not in the paper's printed numbers", {}, "", "")
        order = sorted(printed, key=printed.get, reverse=True)
        values = {f"{m} {metric} (printed)": printed[m] for m in order}
        ok = set(order[:len(top)]) == set(top) and set(order[-len(bottom):]) == set(bottom)
        if not ok:
            return Verdict(FAILS, f"the paper's text and its own Table {table} disagree (order {' > '.join(order)})",
                           _numbers(values), _printed_source(ev, table), "")
        return Verdict(HOLDS, f"the paper's own Table {table} agrees with its text", _numbers(values),
                       _printed_source(ev, table), "")
    stage = E.TABLE13_STAGE if run_table == "table13" else E.TABLE14_STAGE
    ran = {m: v for m in models if (v := ev.wide(run_table, m, metric)) is not None} if run_table else {}
    if len(ran) < len(models):
        return _missing(f"{run_table} {metric} for the paper's models", stage)
    values = {f"{m} {metric}": ran[m] for m in sorted(ran, key=lambda m: ran[m].decided, reverse=True)}
    values |= {f"{r} {metric} (reference)": v for r in E.REFERENCES if (v := ev.wide(run_table, r, metric)) is not None}
    middle = {m: v for m, v in ran.items() if m not in top and m not in bottom}
    o_top = C.groups_order({m: ran[m] for m in top}, {**middle, **{m: ran[m] for m in bottom}})
    o_bottom = C.groups_order({m: ran[m] for m in bottom}, {**middle, **{m: ran[m] for m in top}})
    if o_top == C.ABOVE and o_bottom == C.BELOW:
        return _on_run(ev, HOLDS, "the intervals are apart", values, stage, models)
    if o_top == C.BELOW or o_bottom == C.ABOVE:
        return _on_run(ev, FAILS, "the intervals are apart the other way", values, stage, models)
    return _on_run(ev, UNDECIDABLE, f"not ordered: top {o_top}, bottom {o_bottom} the rest", values, stage, models)


@rule
def within_of_one(ev, table: str, metric: str, models, tolerance: float, run_table: str = "") -> Verdict:
    """Every one of ``models`` has ``metric`` (a similarity, 1 = identical) within ``tolerance`` of
    the real data's. On the artifacts: the paper's own table, then the released samples' cosines
    against each other: two samples each within ``tolerance`` of the real matrix are within the
    angle ``2·arccos(1 − tolerance)`` of each other, so a smaller between-sample cosine refutes
    the claim. On the run: within ``tolerance`` of the holdout row's (real records at the same
    sample size, the ceiling), with intervals."""
    import math

    if ev.on_artifacts:
        printed = {m: v for m in models if (v := ev.printed(table, m, metric)) is not None}
        values = {f"{m} {metric} (printed)": v for m, v in printed.items()}
        off = [m for m, v in printed.items() if 1 - v > tolerance]
        if off:
            return Verdict(FAILS, f"the paper's text and its own Table {table} disagree for {', '.join(off)}",
                           _numbers(values), _printed_source(ev, table), "")
        between = ev.table("table_between_samples")
        if between is not None and metric in between.columns and len(models) == 2:
            a, b = models
            rows = between[((between["reference"] == a) & (between["model"] == b))
                           | ((between["reference"] == b) & (between["model"] == a))]
            if not rows.empty:
                got = float(rows.iloc[0][metric])
                bound = math.cos(min(math.pi, 2 * math.acos(1 - tolerance)))
                values |= {f"{a} vs {b} {metric} (released samples)": got, "the least it can be if the claim holds": bound}
                if got < bound:
                    return Verdict(FAILS, f"the released {a} and {b} samples are {E.number(got)} apart in cosine; both "
                                   f"within {tolerance} of one real matrix would put them at ≥ {E.number(round(bound, 4))}",
                                   _numbers(values), E.RELEASED, E.RELEASED_STAGE)
                return Verdict(UNDECIDABLE, f"the paper's own Table {table} agrees, and the released samples meet the "
                               f"necessary condition (between-sample cosine {E.number(got)} ≥ {E.number(round(bound, 4))}); "
                               f"the real matrix needs {MIMIC3_FULL}", _numbers(values), E.RELEASED, E.RELEASED_STAGE)
        return Verdict(UNDECIDABLE if printed else UNTESTABLE, f"the paper's own Table {table} agrees; "
                       f"the real matrix needs {MIMIC3_FULL}" if printed else f"needs {MIMIC3_FULL}",
                       _numbers(values), _printed_source(ev, table), "")
    ran = {m: v for m in models if (v := ev.wide(run_table, m, metric)) is not None} if run_table else {}
    if len(ran) < len(models):
        return _missing(f"{run_table} {metric} for {list(models)}", E.TABLE14_STAGE)
    values = {f"{m} {metric}": v for m, v in ran.items()}
    holdout = ev.wide(run_table, "holdout", metric)
    refs = {r: v for r in E.REFERENCES if (v := ev.wide(run_table, r, metric)) is not None}
    values |= {f"{r} {metric} (reference)": v for r, v in refs.items()}
    ceiling = holdout.decided if holdout is not None else 1.0
    what = "the holdout's (the ceiling at this sample size)" if holdout is not None else "1"
    if all(ceiling - v.low <= tolerance for v in ran.values()):
        return _on_run(ev, HOLDS, f"every interval lies within {tolerance} of {what}", values, E.TABLE14_STAGE, models)
    far = [m for m, v in ran.items() if ceiling - v.high > tolerance]
    if far:
        return _on_run(ev, FAILS, f"more than {tolerance} below {what}: {', '.join(far)}", values, E.TABLE14_STAGE,
                       models)
    return _on_run(ev, UNDECIDABLE, f"an interval straddles {what} − {tolerance}", values, E.TABLE14_STAGE, models)


@rule
def not_testable(ev, needs: str) -> Verdict:
    """A claim no open data can decide; ``needs`` says what would."""
    return Verdict(UNTESTABLE, needs, {}, "", "")


def _printed_source(ev, table: str) -> str:
    lines = ev.printed_lines(table)
    return f"{E.PRINTED} {table} ({lines} of the paper's text)" if lines else f"{E.PRINTED} {table}"
