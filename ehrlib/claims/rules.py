"""The rules that turn measured values into verdicts, one function per kind of claim.

Paper: section 4 and appendix G (the claims of ``claims.yaml``). Every rule is
``rule(evidence, **params) -> Verdict``: it reads values through
:class:`ehrlib.claims.evidence.Evidence` by the library's metric names, compares them with the
intervals they carry, and returns the verdict with the numbers it used and their source. A rule
never reads a number typed into code: thresholds come from the claim's ``params``.

Comparisons with intervals: an ordering ``a > b`` *holds* when ``a``'s interval lies wholly above
``b``'s, *holds with a qualification* when only the point estimates are ordered (the intervals
overlap), and *does not hold* when the point estimates are in the other order.
"""
from __future__ import annotations

from typing import Callable

from ehrlib.claims import evidence as E
from ehrlib.claims.verdict import FAILS, HOLDS, NOT_RUN, QUALIFIED, UNTESTABLE, Verdict
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


def _on_run(ev, verdict: str, note: str, values: dict, stage: str) -> Verdict:
    """A verdict on the run's own data, its scope stated when that data is not MIMIC-III."""
    scope = ev.run_scope
    note = "; ".join(x for x in (note, scope) if x)
    return Verdict(verdict, note, _numbers(values), ev.run_source, stage)


def _missing(what: str, stage: str) -> Verdict:
    return Verdict(NOT_RUN, f"this run has no {what}: run notebook {stage}", {}, "", stage)


def _ordered(high: dict, low: dict) -> tuple[bool, bool]:
    """(point estimates ordered, intervals separated) for ``every high > every low``."""
    points = min(v.estimate for v in high.values()) > max(v.estimate for v in low.values())
    apart = min(v.low for v in high.values()) > max(v.high for v in low.values())
    return points, apart


def _table1(ev, metric: str, models) -> dict:
    return {m: v for m in models if (v := ev.metric(m, metric)) is not None}


# ---------------------------------------------------------------------------- Table 1 (the run)
def _above(ev, metric: str, higher, lower, overlap: str, fails: str, missing: str) -> Verdict:
    """Every model of ``higher`` above every model of ``lower`` on ``metric``: holds when the
    intervals are apart, qualified (``overlap``) when only the estimates are ordered, else ``fails``
    (``missing``: what is lacking when either side has no value)."""
    hi, lo = _table1(ev, metric, higher), _table1(ev, metric, lower)
    if not hi or not lo:
        return _missing(missing, E.TABLE1_STAGE)
    points, apart = _ordered(hi, lo)
    values = {f"{m} {metric}": v for m, v in {**hi, **lo}.items()}
    if apart:
        return _on_run(ev, HOLDS, "", values, E.TABLE1_STAGE)
    if points:
        return _on_run(ev, QUALIFIED, overlap, values, E.TABLE1_STAGE)
    return _on_run(ev, FAILS, fails, values, E.TABLE1_STAGE)


@rule
def ordered_groups(ev, metric: str, higher=SEQUENTIAL, lower=FLAT) -> Verdict:
    """Every model of ``higher`` scores above every model of ``lower`` on ``metric`` (Table 1)."""
    return _above(ev, metric, higher, lower, "ordered by the estimates, but the intervals overlap",
                  f"some model of {list(lower)} scores at least as high as one of {list(higher)}",
                  f"{metric} for both {list(higher)} and {list(lower)}")


@rule
def marginals_but_not_discriminator(ev, flat=FLAT, sequential=SEQUENTIAL) -> Verdict:
    """Flat models fit prevalence at least as well as the sequential ones (R²) yet score lower on
    the paper's discriminator score."""
    r2f, r2s = _table1(ev, names.PREVALENCE_R2, flat), _table1(ev, names.PREVALENCE_R2, sequential)
    df, ds = _table1(ev, names.PAPER_DISC_SCORE, flat), _table1(ev, names.PAPER_DISC_SCORE, sequential)
    if not (r2f and r2s and df and ds):
        return _missing("prevalence R² and discriminator scores for flat and sequential models", E.TABLE1_STAGE)
    values = {**{f"{m} R²": v for m, v in {**r2f, **r2s}.items()},
              **{f"{m} disc. score": v for m, v in {**df, **ds}.items()}}
    marg = min(v.estimate for v in r2f.values()) >= min(v.estimate for v in r2s.values())
    disc_points, disc_apart = _ordered(ds, df)
    if marg and disc_apart:
        return _on_run(ev, HOLDS, "", values, E.TABLE1_STAGE)
    if marg and disc_points:
        return _on_run(ev, QUALIFIED, "the discriminator scores are ordered but their intervals overlap", values,
                       E.TABLE1_STAGE)
    why = [] if marg else ["a flat model fits prevalence worse than every sequential one"]
    why += [] if disc_points else ["a flat model's discriminator score is not below the sequential ones'"]
    return _on_run(ev, FAILS, "; ".join(why), values, E.TABLE1_STAGE)


@rule
def at_least(ev, metric: str, models, threshold: float) -> Verdict:
    """Every model of ``models`` has ``metric`` >= ``threshold`` (Table 1)."""
    vals = _table1(ev, metric, models)
    if not vals:
        return _missing(f"{metric} for {list(models)}", E.TABLE1_STAGE)
    values = {f"{m} {metric}": v for m, v in vals.items()} | {"threshold": float(threshold)}
    if all(v.low >= threshold for v in vals.values()):
        return _on_run(ev, HOLDS, "", values, E.TABLE1_STAGE)
    if all(v.estimate >= threshold for v in vals.values()):
        return _on_run(ev, QUALIFIED, f"an interval reaches below {threshold}", values, E.TABLE1_STAGE)
    return _on_run(ev, FAILS, f"below {threshold}: " + ", ".join(m for m, v in vals.items() if v.estimate < threshold),
                   values, E.TABLE1_STAGE)


@rule
def near(ev, metric: str, target: float, tolerance: float, models=PAPER_MODELS) -> Verdict:
    """Every model's ``metric`` lies within ``tolerance`` of ``target`` (e.g. MIA accuracy near 0.5)."""
    vals = _table1(ev, metric, models)
    if not vals:
        return _missing(f"{metric} for {list(models)}", E.TABLE1_STAGE)
    values = {f"{m} {metric}": v for m, v in vals.items()} | {"allowed": f"{target} ± {tolerance}"}
    inside = {m: abs(v.estimate - target) <= tolerance for m, v in vals.items()}
    wholly = all(v.low >= target - tolerance and v.high <= target + tolerance for v in vals.values())
    if all(inside.values()) and wholly:
        return _on_run(ev, HOLDS, "", values, E.TABLE1_STAGE)
    if all(inside.values()):
        return _on_run(ev, QUALIFIED, f"an interval leaves {target} ± {tolerance}", values, E.TABLE1_STAGE)
    return _on_run(ev, FAILS, "outside: " + ", ".join(m for m, ok in inside.items() if not ok), values,
                   E.TABLE1_STAGE)


@rule
def highest_among(ev, metric: str, model: str, others) -> Verdict:
    """``model`` has the highest ``metric`` among ``others`` (Table 1)."""
    return _above(ev, metric, [model], others, "highest by the estimate, but the intervals overlap",
                  f"{model} is not the highest", f"{metric} for {model} and {list(others)}")


@rule
def trails_closely(ev, metric: str, model: str, leaders, gap: float) -> Verdict:
    """``model``'s ``metric`` is below every leader's, by at most ``gap`` (Table 1)."""
    me, them = _table1(ev, metric, [model]), _table1(ev, metric, leaders)
    if not me or not them:
        return _missing(f"{metric} for {model} and {list(leaders)}", E.TABLE1_STAGE)
    mine = me[model].estimate
    values = {f"{m} {metric}": v for m, v in {**me, **them}.items()} | {"allowed gap": float(gap)}
    below = all(v.estimate > mine for v in them.values())
    close = all(v.estimate - mine <= gap for v in them.values())
    if below and close:
        return _on_run(ev, HOLDS, "", values, E.TABLE1_STAGE)
    if below:
        return _on_run(ev, QUALIFIED, f"it trails, but by more than {gap}", values, E.TABLE1_STAGE)
    return _on_run(ev, FAILS, f"{model} does not trail every one of {list(leaders)}", values, E.TABLE1_STAGE)


# ---------------------------------------------------------------------------- memorisation
@rule
def no_memorisation(ev, min_codes: int = 5) -> Verdict:
    """No released sample copies the whole record of more paper-training patients (with at least
    ``min_codes`` codes) of the open MIMIC-III demo than its marginals control does; else the
    run's exact-copy rate. Qualified by the smallest copy rate the audit can detect."""
    a = ev.audit()
    if a is None:
        v = _table1(ev, names.EXACT_COPY_RATE, PAPER_MODELS)
        if not v:
            return Verdict(NOT_RUN, "the audit did not run: `ehrbench fetch mimic3-demo paper-samples`, then notebook "
                           f"{E.AUDIT_STAGE}", {}, "", E.AUDIT_STAGE)
        ok = all(x.estimate == 0 for x in v.values())
        return _on_run(ev, HOLDS if ok else FAILS, "" if ok else "some model copies training records",
                       {f"{m} exact copies": x for m, x in v.items()}, E.TABLE1_STAGE)
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
    return Verdict(QUALIFIED, f"no copies beyond chance among {n} audited patients with >= {min_codes} codes; this "
                   f"rules out only copy rates above ~{100 * detectable:.0f}% (the full MIMIC-III training split would "
                   "decide smaller rates)", values, E.AUDIT, E.AUDIT_STAGE)


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
            self.gap = f"the authors' results file has no rows for {', '.join(lacking)}{at}, so this run decides it"

    def get(self, model, metric) -> dict:
        return self.ev.authors(model, metric) if self.authors else self.ev.fig3(model, metric)

    def verdict(self, verdict: str, note: str, values: dict) -> Verdict:
        note = "; ".join(x for x in (note, self.gap) if x)
        if self.authors:
            return Verdict(verdict, note, _numbers(values), E.AUTHORS, E.FIG3_STAGE)
        return _on_run(self.ev, verdict, note, values, E.FIG3_STAGE)

    def missing(self, what: str) -> Verdict:
        v = _missing(what, E.FIG3_STAGE)
        return Verdict(v.verdict, "; ".join(x for x in (v.note, self.gap) if x), {}, "", E.FIG3_STAGE)


@rule
def tail_increase(ev, models, metric: str, target: float, tolerance: float) -> Verdict:
    """``metric`` rises with the percentile for each model and ends within ``tolerance`` of ``target``."""
    f = _Fig3(ev, [(m, metric) for m in models])
    series = {m: f.get(m, metric) for m in models}
    if not all(series.values()):
        return f.missing(f"Figure 3 {metric} for {list(models)}")
    values, rising, near_end = {}, True, True
    for m, s in series.items():
        p = list(s)
        values[f"{m} {metric} at " + ", ".join(f"{q:g}" for q in p)] = " → ".join(E.number(s[q].estimate) for q in p)
        rising &= all(s[b].estimate >= s[a].estimate for a, b in zip(p, p[1:]))
        near_end &= abs(s[p[-1]].estimate - target) <= tolerance
    if rising and near_end:
        return f.verdict(HOLDS, "", values)
    if rising:
        return f.verdict(QUALIFIED, f"it rises, but does not end within {tolerance} of {target}", values)
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
        return f.verdict(HOLDS if not (exceptions or left_out or at_chance) else QUALIFIED, note, values)
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
        return Verdict(QUALIFIED, f"closest among {', '.join(among)} only: {', '.join(closer)} closer still; {note_real}",
                       _numbers(values), E.RELEASED, E.RELEASED_STAGE)
    return Verdict(QUALIFIED, note_real, _numbers(values), E.RELEASED, E.RELEASED_STAGE)


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
    return Verdict(QUALIFIED, "the real value is the paper's printed one (recomputing it needs MIMIC-III)",
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
        return Verdict(QUALIFIED, note, _numbers(values), E.RELEASED, E.RELEASED_STAGE)
    return Verdict(FAILS, f"highest {top}, lowest {bottom}; {note}", _numbers(values), E.RELEASED, E.RELEASED_STAGE)


# ---------------------------------------------------------------------------- the paper's tables, then the run's
def _best(vals: dict, higher: bool):
    best = max(vals.values()) if higher else min(vals.values())
    return [m for m, v in vals.items() if v == best]


@rule
def best_in_table(ev, table: str, model: str, higher=(), lower=(), worst: str = "", run_table: str = "",
                  models=PAPER_MODELS) -> Verdict:
    """``model`` is best on every column of ``higher`` (largest) and ``lower`` (smallest) of the
    paper's printed ``table``, and ``worst`` is worst on all of them. Checked first against the
    paper's own table (where the text contradicts it, that is the verdict), then on the run's
    ``run_table``."""
    def check(read):
        fails, ties, values = [], [], {}
        for col, hi in [(c, True) for c in higher] + [(c, False) for c in lower]:
            vals = {m: v for m in models if (v := read(m, col)) is not None}
            if len(vals) < 2:
                return None
            values.update({f"{m} {col}": v for m, v in vals.items()})
            for who, best in ((model, hi), (worst, not hi)):
                if not who:
                    continue
                top = _best(vals, best)
                if who not in top:
                    fails.append(f"{'/'.join(top)}, not {who}, is {'best' if who == model else 'worst'} on {col}")
                elif len(top) > 1:
                    ties.append(f"{who} ties with {'/'.join(t for t in top if t != who)} on {col}")
        return fails, ties, values

    printed = check(lambda m, c: ev.printed(table, m, c))
    if printed is None:
        return Verdict(UNTESTABLE, f"Table {table} is not in the paper's printed numbers", {}, _printed_source(ev, table))
    fails, ties, values = printed
    if fails:
        return Verdict(FAILS, "the paper's text and its own table disagree: " + "; ".join(fails), _numbers(values),
                       _printed_source(ev, table), "")
    if run_table:
        ran = check(lambda m, c: (v.estimate if (v := ev.wide(run_table, m, c)) is not None else None))
        if ran is not None:
            rf, rt, rv = ran
            stage = E.TABLE13_STAGE if run_table == "table13" else E.TABLE14_STAGE
            verdict = FAILS if rf else (QUALIFIED if rt else HOLDS)
            note = "; ".join(rf or rt) + ("; the paper's own table agrees with its text" if not fails else "")
            return _on_run(ev, verdict, note.strip("; "), rv, stage)
    return Verdict(QUALIFIED if ties else HOLDS, "; ".join(ties) + " (the paper's own table only; MIMIC-III decides it)",
                   _numbers(values), _printed_source(ev, table), "")


@rule
def ranks_in_table(ev, table: str, metric: str, top, bottom, run_table: str = "", models=PAPER_MODELS) -> Verdict:
    """The models of ``top`` have the highest ``metric`` and those of ``bottom`` the lowest: in the
    paper's own table first (a contradiction is the verdict), then on the run's ``run_table``."""
    def ranks(vals):
        order = sorted(vals, key=vals.get, reverse=True)
        return set(order[:len(top)]) == set(top) and set(order[-len(bottom):]) == set(bottom), order

    printed = {m: v for m in models if (v := ev.printed(table, m, metric)) is not None}
    if len(printed) < len(top) + len(bottom):
        return Verdict(UNTESTABLE, f"Table {table} {metric} is not in the paper's printed numbers", {}, "", "")
    ok, order = ranks(printed)
    values = {f"{m} {metric} (printed)": printed[m] for m in order}
    if not ok:
        return Verdict(FAILS, f"the paper's text and its own Table {table} disagree (order {' > '.join(order)})",
                       _numbers(values), _printed_source(ev, table), "")
    ran = {m: v.estimate for m in models if (v := ev.wide(run_table, m, metric)) is not None} if run_table else {}
    if len(ran) < len(models):
        return Verdict(QUALIFIED, f"the paper's own Table {table} agrees; not tested on data ({MIMIC3_FULL} decides it)",
                       _numbers(values), _printed_source(ev, table), "")
    ok, order = ranks(ran)
    values = {f"{m} {metric}": ran[m] for m in order}
    agrees = f"the paper's own Table {table} agrees with its text"
    return _on_run(ev, HOLDS if ok else FAILS, agrees if ok else f"order {' > '.join(order)}; {agrees}", values,
                   E.TABLE13_STAGE if run_table == "table13" else E.TABLE14_STAGE)


@rule
def within_of_one(ev, table: str, metric: str, models, tolerance: float, run_table: str = "") -> Verdict:
    """Every one of ``models`` has ``metric`` (a similarity, 1 = identical) within ``tolerance`` of 1:
    in the paper's own table first, then on the run's ``run_table`` with intervals."""
    printed = {m: v for m in models if (v := ev.printed(table, m, metric)) is not None}
    values = {f"{m} {metric} (printed)": v for m, v in printed.items()}
    off = [m for m, v in printed.items() if 1 - v > tolerance]
    if off:
        return Verdict(FAILS, f"the paper's text and its own Table {table} disagree for {', '.join(off)}",
                       _numbers(values), _printed_source(ev, table), "")
    ran = {m: v for m in models if (v := ev.wide(run_table, m, metric)) is not None} if run_table else {}
    if len(ran) < len(models):
        return Verdict(QUALIFIED, f"the paper's own Table {table} agrees; not tested on data ({MIMIC3_FULL} decides it)",
                       _numbers(values), _printed_source(ev, table), "")
    values.update({f"{m} {metric}": v for m, v in ran.items()})
    agrees = f"the paper's own Table {table} agrees with its text"
    if all(1 - v.low <= tolerance for v in ran.values()):
        return _on_run(ev, HOLDS, agrees, values, E.TABLE14_STAGE)
    if all(1 - v.estimate <= tolerance for v in ran.values()):
        return _on_run(ev, QUALIFIED, f"an interval reaches below 1 - {tolerance}; {agrees}", values, E.TABLE14_STAGE)
    far = ", ".join(m for m, v in ran.items() if 1 - v.estimate > tolerance)
    return _on_run(ev, FAILS, f"not within {tolerance}: {far}; {agrees}", values, E.TABLE14_STAGE)


@rule
def not_testable(ev, needs: str) -> Verdict:
    """A claim no open data can decide; ``needs`` says what would."""
    return Verdict(UNTESTABLE, needs, {}, "", "")


def _printed_source(ev, table: str) -> str:
    lines = ev.printed_lines(table)
    return f"{E.PRINTED} {table} ({lines} of the paper's text)" if lines else f"{E.PRINTED} {table}"
