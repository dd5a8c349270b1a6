"""``ehrbench``: reproduce the book, fetch open data, print Table 12 statistics, evaluate files.

    ehrbench reproduce [--profile demo] [--data simulated] [--run NAME] [--seeds 0,1,2] [--threads N] [--jobs N] [--set KEY=VALUE ...]
                       [--generator NAME=module:Class ...] [--only PREFIX ...] [--force] [--no-book | --book-only]
    ehrbench fetch {mimic3-demo, mimic4-demo, paper-samples}...
    ehrbench audit --real mimic3-demo --split paper --synthetic F [F ...] --out DIR
    ehrbench stats FILE [FILE ...]
    ehrbench export --format meds (--cohort FILE | --run NAME --what real|synthetic) --out DIR
    ehrbench evaluate --train A --holdout B --synthetic C [C ...] --out DIR

Library errors are printed as one line (``ehrbench: error: ...``, exit 2); ``--debug`` shows the
traceback. Ctrl-C ends the command with one line (exit 130).
"""
from __future__ import annotations

import argparse
import ast
import logging
import sys
from pathlib import Path

from ehrlib.errors import EhrlibError, RunInterrupted
from ehrlib.runner import BOOK_SOURCES, notebooks, reproduce, sweep  # noqa: F401  (public: ehrlib.cli.reproduce)

log = logging.getLogger("ehrbench")


def _reader(args):
    """``read_long`` with the file-layout options of the command line."""
    from functools import partial

    from ehrlib.data.longformat import read_long

    opts = {}
    if getattr(args, "visit_column", None):
        opts["visit_column"] = False if args.visit_column == "none" else args.visit_column
    if getattr(args, "time_column", None):
        opts["time_column"] = False if args.time_column == "none" else args.time_column
    if getattr(args, "icd_version", None):
        opts["icd_version"] = args.icd_version
    plain = partial(read_long, **opts)

    def read(path: str):
        if str(path).startswith("meds:"):  # a MEDS dataset folder (ehrlib.data.load_meds), or one split of it
            from ehrlib.data import load_meds

            folder, _, split = str(path)[len("meds:"):].partition("#")
            cohort = load_meds(folder, icd_version=opts.get("icd_version", 9))
            return _meds_split(folder, cohort, split, path) if split else cohort
        return plain(path)

    return read


def _meds_split(folder: str, cohort, split: str, given: str):
    """The subjects of MEDS split ``split`` (``train``, ``held_out``, ``tuning``) of a dataset."""
    from ehrlib.data.medsformat import SPLIT_NAMES, meds_splits

    if split not in SPLIT_NAMES:
        raise EhrlibError(f"{given}: split {split!r}; expected meds:DIR#SPLIT with SPLIT one of {sorted(SPLIT_NAMES)}")
    parts = meds_splits(folder, cohort)
    if SPLIT_NAMES[split] not in parts:
        raise EhrlibError(f"{given}: no subject of split {split!r} has diagnoses in the dataset")
    return parts[SPLIT_NAMES[split]]


def stats(paths: list[str], reader=None):
    """Table 12 rows (a DataFrame) of long-format files."""
    from ehrlib.data.longformat import read_long
    from ehrlib.metrics.structure import summary_table

    reader = reader or read_long
    return summary_table({Path(p).name: reader(p) for p in paths})


def _synthetic_names(paths: list[str]) -> dict[str, str]:
    """A distinct result name per synthetic file: the file stem, or more of the path where stems repeat."""
    stems = [Path(p).name.split(".")[0] for p in paths]
    if len(set(stems)) == len(stems):
        return dict(zip(stems, paths))
    resolved = [Path(p).resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        dup = next(p for p in resolved if resolved.count(p) > 1)
        raise EhrlibError(f"--synthetic lists {dup} twice")
    names = {}
    for p in resolved:
        parts = p.with_suffix("").parts
        k = 1
        while any(q != p and q.with_suffix("").parts[-k:] == parts[-k:] for q in resolved):
            k += 1
        names["/".join(parts[-k:])] = str(p)
    return names


#: The files ``ehrbench evaluate`` writes into ``--out``; it never replaces one that exists.
EVALUATE_OUTPUTS = ("metrics.csv", "table1.csv", "table1.md")


def evaluate_files(args) -> Path:
    """``ehrbench evaluate``: every metric family (utility and attribute inference included) for each
    synthetic file, written atomically into ``--out``; both protocols share one evaluation context.

    ``--out`` must not hold the outputs of an earlier evaluation (:data:`EVALUATE_OUTPUTS`): they
    are never overwritten. A synthetic file that cannot be read or evaluated is reported (the
    file, the metric family and why) while the others' results are still written; the command
    then ends with an error naming it.
    """
    from ehrlib.io import atomic_write, blocking_file
    from ehrlib.metrics.evaluate import table1

    read_long = _reader(args)
    out = args.out
    if out.is_symlink():
        raise EhrlibError(f"--out {out}: is a symbolic link; evaluate never writes through a link it did not make: "
                          "give the folder it points to, or a new folder")
    if out.exists() and not out.is_dir():
        raise EhrlibError(f"--out {out}: exists and is not a folder")
    if blocking_file(out) is not None:
        raise EhrlibError(f"--out {out}: cannot be made: {blocking_file(out)} is a file, not a folder")
    there = [n for n in EVALUATE_OUTPUTS if (out / n).exists()]
    if there:
        raise EhrlibError(f"--out {out}: already holds {', '.join(there)}; refusing to overwrite them: choose a new "
                          "or empty folder (or move them away)")
    names = _synthetic_names(args.synthetic)
    train, holdout = read_long(args.train), read_long(args.holdout)
    synthetic, bad = {}, {}
    for name, p in names.items():
        try:
            synthetic[name] = read_long(p)
        except EhrlibError as exc:
            bad[name] = f"not read: {exc}"
    reference = read_long(args.reference) if args.reference else None
    if reference is not None:
        _check_reference(args, train, holdout, reference)
    results, more_bad = _evaluate_each(args, train, holdout, synthetic, reference)
    bad.update(more_bad)
    problems = "; ".join(f"--synthetic {names[n]}: {why}" for n, why in bad.items())
    if results is None:
        raise EhrlibError(f"no synthetic file could be evaluated: {problems}")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "metrics.csv", lambda tmp: results.to_csv(tmp, index=False))
    wide = table1(results)
    atomic_write(out / "table1.csv", lambda tmp: wide.to_csv(tmp, index=False))
    atomic_write(out / "table1.md", lambda tmp: Path(tmp).write_text(wide.to_markdown(index=False)))
    print(wide.to_string(index=False))
    if bad:
        raise EhrlibError(f"{len(bad)} of {len(names)} synthetic file(s) not in {out}: {problems}")
    return out


def _check_reference(args, train, holdout, reference) -> None:
    """``--reference`` must hold real patients in neither train nor holdout (the attribute-inference
    baseline is the attack on patients nobody released): shared subject ids or record copies beyond
    chance are refused as an overlapping holdout is, unless ``--allow-overlap``."""
    from ehrlib.metrics.context import holdout_overlap

    for flag, real in (("--train", train), ("--holdout", holdout)):
        o = holdout_overlap(real, reference)
        if o["refuse"] and not args.allow_overlap:
            what = (f"{o['shared_ids']} subject id(s) in both (e.g. {', '.join(o['example_ids'][:3])})"
                    if o["shared_ids"] else f"{o['copies']} of {reference.n_patients} records are exact copies "
                    f"({o['copy_rate']:.1%}, {o['chance_rate']:.1%} by chance)")
            raise EhrlibError(f"--reference {args.reference} overlaps {flag} {getattr(args, flag[2:])}: {what}; the "
                              "attribute-inference baseline needs real patients in neither train nor holdout: give "
                              "a disjoint file (or --allow-overlap if intended)")


def _evaluate_each(args, train, holdout, synthetic: dict, reference=None):
    """``(results or None, {name: why})``: every cohort evaluated together; when that fails, each
    alone, and for a failing one each metric family alone, to name the file and the family. Each
    evaluated set is one evaluation context, shared by both protocols; ``reference`` (optional) is
    the attribute-inference baseline."""
    import pandas as pd

    from ehrlib.metrics import names as metric_names
    from ehrlib.metrics.context import EvaluationContext
    from ehrlib.metrics.evaluate import FAMILIES, check_holdout, evaluate_all

    kinds = tuple(k for k in args.discriminators if k != "none")
    families = None if kinds else [f for f in metric_names.FAMILIES if f != metric_names.DISCRIMINATOR]
    if getattr(args, "families", None):  # the default set, or exactly the named families
        families = [f for f in args.families if kinds or f != metric_names.DISCRIMINATOR]
    # about train and holdout, so no synthetic file is to blame; run once for every context below
    overlap = check_holdout(train, holdout, args.allow_overlap)

    def run(cohorts, fams=None):
        context = EvaluationContext(train, holdout, cohorts, reference, overlap=overlap)
        return pd.concat([evaluate_all(train, holdout, cohorts, seed=args.seed, n_bootstrap=args.n_bootstrap,
                                       families=fams or families, discriminators=kinds or None,
                                       protocol=p, real=args.real_class, context=context).assign(protocol=p)
                          for p in args.protocol], ignore_index=True)

    if not synthetic:
        return None, {}
    try:
        return run(synthetic), {}
    except EhrlibError:
        pass
    frames, bad = [], {}
    for name, cohort in synthetic.items():
        try:
            frames.append(run({name: cohort}))
        except EhrlibError as exc:
            why = f"not evaluated: {exc}"
            for family in families or FAMILIES:
                try:
                    run({name: cohort}, [family])
                except EhrlibError as exc_f:
                    why = f"not evaluated: {family} metrics: {exc_f}"
                    break
            bad[name] = why
    return (pd.concat(frames, ignore_index=True) if frames else None), bad


def _all_families() -> tuple[str, ...]:
    from ehrlib.metrics.names import ALL_FAMILIES

    return ALL_FAMILIES


def _setting(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected KEY=VALUE with KEY a notebook parameter name")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _generator(text: str) -> str:
    from ehrlib.models import user

    try:
        user.parse(text)
    except EhrlibError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _layout_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--visit-column", help="the column that identifies visits ('none': one visit per patient)")
    p.add_argument("--time-column", help="the column that orders visits in time ('none': ignore a time column)")
    p.add_argument("--icd-version", type=int, choices=(9, 10), help="the ICD version of the codes (default 9)")


def parser() -> argparse.ArgumentParser:
    from ehrlib.profiles import NAMES

    p = argparse.ArgumentParser(prog="ehrbench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show tracebacks of library errors")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reproduce", help="run every stage notebook (papermill) and build the book")
    r.add_argument("--profile", default="demo", choices=NAMES)
    r.add_argument("--data", default="simulated",
                   help="simulated | mimic3-demo | mimic4-demo | mimic3:PATH | long:PATH | meds:PATH")
    r.add_argument("--run", default=None, help="run folder name (default: the profile name)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--seeds", type=lambda t: [int(x) for x in t.split(",")], default=None, metavar="S1,S2,...",
                   help="a sweep: one run per seed (<run>-seed<N>) and Table 1 across them")
    r.add_argument("--threads", type=int, default=None,
                   help="CPU threads per stage (default: measured before each stage; see ehrlib.threads)")
    r.add_argument("--jobs", type=int, default=None,
                   help="stages run at once, each when the stages it needs are done (default: 1 with a GPU, "
                        "else the cores up to 4; 1 runs them one after another)")
    r.add_argument("--set", dest="settings", action="append", type=_setting, default=[], metavar="KEY=VALUE",
                   help="a notebook parameter for every notebook that declares it (repeatable)")
    r.add_argument("--generator", dest="generators", action="append", default=[], type=_generator,
                   metavar="NAME=module:Class", help="your own generator (a class with the ehrlib Generator interface), "
                   "put through every stage beside the paper's (repeatable; see ehrlib.models.user)")
    r.add_argument("--root", type=Path, default=Path("."), help="repository root (holds notebooks/ and _config.yml)")
    r.add_argument("--out", type=Path, default=None, help="build folder (default: <root>/_build)")
    r.add_argument("--force", action="store_true", help="run every stage, even those that are up to date")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--no-book", action="store_true", help="execute the notebooks only")
    g.add_argument("--book-only", action="store_true", help="rebuild the book from the run without executing anything")
    r.add_argument("--only", nargs="*", help="notebook name prefixes to run (e.g. 00 30)")
    r.add_argument("--executor", default="local", choices=("local", "slurm"),
                   help="local: the stages on this machine; slurm: each stage a cluster job (submitit; "
                        "see ehrlib.runner.executors)")
    r.add_argument("--slurm", dest="slurm", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="with --executor slurm: submitit parameters for every stage, over the profile's "
                        "(partition=, account=, gpus_per_node=, timeout_min=, mem_gb=; cluster=local: no Slurm)")
    r.add_argument("--detach", action="store_true",
                   help="with --executor slurm: leave the coordinator running in the background "
                        "(follow it with ehrbench status --run R)")
    pf = sub.add_parser("preflight", help="what each model of a profile needs (sizes, parameters, a real step, "
                                          "GPU memory and hours estimated) before a run is submitted")
    pf.add_argument("--profile", default="paper", choices=NAMES)
    pf.add_argument("--data", default="simulated", help="simulated (the profile's size) | mimic3:PATH | long:PATH | ...")
    pf.add_argument("--gpu-memory", type=float, default=None, metavar="GB",
                    help="fail when a model's estimated GPU memory exceeds this many GiB")
    pf.add_argument("--models", nargs="+", default=None, help="a subset of medgan corgan promptehr halo gpt")
    pf.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    pf.add_argument("--csv", type=Path, default=None, help="also write the table here")
    st = sub.add_parser("status", help="the jobs of a run made with --executor slurm (queued, running, done, failed)")
    st.add_argument("--run", required=True, help="the run folder name under runs/ (or $EHRLIB_RUNS_DIR)")
    f = sub.add_parser("fetch", help="download open datasets (sha256-checked) into $EHRLIB_DATA_DIR or ./data")
    f.add_argument("names", nargs="+", metavar="name", choices=("mimic3-demo", "mimic4-demo", "paper-samples"))
    s = sub.add_parser("stats", help="Table 12 statistics of long-format files")
    s.add_argument("paths", nargs="+")
    _layout_options(s)
    e = sub.add_parser("evaluate", help="evaluate long-format synthetic files against train/holdout files")
    e.add_argument("--train", required=True, help="long-format file the generator was trained on (or meds:DIR, or "
                                                   "meds:DIR#train for one split of a MEDS dataset)")
    e.add_argument("--holdout", required=True, help="long-format file of real patients it never saw (or meds:DIR, "
                                                     "meds:DIR#held_out)")
    e.add_argument("--synthetic", required=True, nargs="+", help="long-format synthetic file(s)")
    e.add_argument("--out", required=True, type=Path, help="folder for metrics.csv and table1.csv/.md")
    e.add_argument("--reference", help="long-format file of real patients in neither train nor holdout: the "
                                       "attribute-inference baseline (optional)")
    e.add_argument("--discriminators", nargs="+", default=["rf"], choices=("rf", "lstm", "none"),
                   help="discriminator kinds (metrics named rf_disc_*, lstm_disc_*); none skips the family")
    e.add_argument("--discriminator", dest="discriminators", type=lambda k: [k], choices=(["rf"], ["lstm"], ["none"]),
                   help=argparse.SUPPRESS)
    e.add_argument("--protocol", nargs="+", default=["corrected"], choices=("corrected", "paper"),
                   help="evaluation protocol(s): ours (corrected) and/or the paper's notebook (paper)")
    e.add_argument("--real-class", default="train", choices=("train", "holdout"),
                   help="the discriminator's real class (holdout for generators that may copy train)")
    e.add_argument("--allow-overlap", action="store_true",
                   help="evaluate even when the holdout shares patients or records with train")
    e.add_argument("--n-bootstrap", type=int, default=1000)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--families", nargs="+", metavar="FAMILY", choices=_all_families(),
                   help="metric families to compute (default: those of Table 1; also temporal, sample_fidelity, "
                        "prevalence_rank, plausibility, subgroups)")
    _layout_options(e)
    x = sub.add_parser("export", help="write a cohort file, a run's real splits or its synthetic cohorts as MEDS")
    x.add_argument("--format", required=True, choices=("meds",), help="the output format (MEDS 0.4)")
    src = x.add_mutually_exclusive_group(required=True)
    src.add_argument("--cohort", help="a cohort file (Cohort.save parquet or long-format CSV/parquet), or meds:DIR")
    src.add_argument("--run", help="a run folder name under runs/ (or $EHRLIB_RUNS_DIR)")
    x.add_argument("--what", default="synthetic", choices=("real", "synthetic"),
                   help="with --run: the real splits (one dataset) or every synthetic cohort (one dataset each)")
    x.add_argument("--icd-version", type=int, choices=(9, 10), default=9, help="with --cohort: the codes' ICD version")
    x.add_argument("--include-real-records", action="store_true",
                   help="with --what synthetic: also the holdout and memorizer cohorts (real patients' records)")
    x.add_argument("--out", required=True, type=Path, help="the dataset folder (with --what synthetic: their parent)")
    a = sub.add_parser("audit", help="memorisation audit: copies of real patients in synthetic files, beside controls")
    a.add_argument("--real", required=True, help="real source: mimic3-demo | mimic3:PATH | long:PATH | ...")
    a.add_argument("--split", default="paper", choices=("paper", "none"), help="roles from the paper's released split")
    a.add_argument("--synthetic", required=True, nargs="+", help="synthetic file(s): released samples or long format")
    a.add_argument("--out", required=True, type=Path, help="folder for audit_*.csv and audit.png")
    a.add_argument("--seed", type=int, default=0, help="seed of the marginals controls")
    a.add_argument("--no-control", action="store_true", help="skip the marginals controls")
    a.add_argument("--download", action="store_true", help="allow downloading an open real source")
    return p


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.cmd == "reproduce":
            if not (args.root / "notebooks").is_dir():
                ap.error(f"{args.root.resolve()} has no notebooks/ folder: run from the repository root or pass --root")
            settings = dict(args.settings)
            if args.generators:
                if "generators" in settings:
                    raise EhrlibError(f"--set generators={settings['generators']!r} and --generator "
                                      f"{' '.join(args.generators)}: give the generators one way (repeat --generator)")
                settings["generators"] = ",".join(args.generators)
            common = dict(only=args.only, threads=args.threads, jobs=args.jobs, force=args.force, settings=settings)
            if args.executor == "slurm" or args.slurm or args.detach:
                from ehrlib.runner import executors

                if args.executor != "slurm":
                    ap.error("--slurm and --detach go with --executor slurm")
                if args.seeds:
                    ap.error("--seeds with --executor slurm: not supported yet; run one reproduce per --seed")
                common.update(executor="slurm", cluster=executors.parse_options(args.slurm))
                if args.detach:
                    from ehrlib.runs import open_run, runs_root

                    run_dir = open_run(args.run or args.profile, root=runs_root().resolve())
                    pid = executors.detach(list(argv if argv is not None else sys.argv[1:]), run_dir)
                    print(f"coordinator: process {pid}, log {run_dir.path / executors.COORDINATOR_LOG}")
                    print(f"follow it with: ehrbench status --run {run_dir.name}")
                    return 0
            if args.seeds:
                sweep(args.root, args.seeds, profile=args.profile, run=args.run, out=args.out, book=not args.no_book,
                      data=args.data, **common)
            else:
                reproduce(args.root, args.profile, args.data, args.run, args.seed, args.out, book=not args.no_book,
                          book_only=args.book_only, **common)
        elif args.cmd == "preflight":
            import time

            from ehrlib import preflight

            t0 = time.time()
            table = preflight.preflight(args.profile, args.data, gpu_memory=args.gpu_memory, device=args.device,
                                        models=tuple(args.models or preflight.MODELS))
            print(preflight.format_table(table))
            import resource

            use = resource.getrusage(resource.RUSAGE_SELF)
            print(f"preflight of profile {args.profile} ({args.data}): {time.time() - t0:.0f} s wall, "
                  f"{use.ru_utime + use.ru_stime:.0f} s CPU")
            if args.csv:
                from ehrlib.io import atomic_write

                atomic_write(args.csv, lambda tmp: table.to_csv(tmp, index=False))
        elif args.cmd == "status":
            from ehrlib.runner.executors import status_table
            from ehrlib.runs import open_run, runs_root

            if not (runs_root() / args.run).is_dir():
                raise EhrlibError(f"--run {args.run!r}: no run folder {runs_root() / args.run}")
            print(status_table(open_run(args.run)))
        elif args.cmd == "fetch":
            from ehrlib.data.registry import fetch

            for name in args.names:
                print(fetch(name, download=True))
        elif args.cmd == "evaluate":
            evaluate_files(args)
        elif args.cmd == "audit":
            from ehrlib.audit_cli import main as audit_main

            return audit_main(args)
        elif args.cmd == "export":
            from ehrlib import export

            if args.cohort:
                written = [export.export_cohort(args.cohort, args.out, icd_version=args.icd_version)]
            else:
                from ehrlib.runs import runs_root

                if not (runs_root() / args.run).is_dir():
                    raise EhrlibError(f"--run {args.run!r}: no run folder {runs_root() / args.run}")
                from ehrlib.runs import open_run

                written = export.export_run(open_run(args.run), args.out, args.what,
                                            include_real_records=args.include_real_records)
            for path in written:
                print(path)
        elif args.cmd == "stats":
            print(stats(args.paths, _reader(args)).to_string(index=False))
    except RunInterrupted as exc:
        print(f"ehrbench: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("ehrbench: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    except (EhrlibError, OSError) as exc:
        if args.debug:
            raise
        print(f"ehrbench: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
