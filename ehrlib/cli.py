"""``ehrbench``: reproduce the book, fetch open data, print Table 12 statistics.

    ehrbench reproduce [--profile demo] [--data simulated] [--run NAME] [--no-book]
    ehrbench fetch mimic3-demo
    ehrbench audit --real mimic3-demo --split paper --synthetic F [F ...] --out DIR
    ehrbench stats FILE [FILE ...]
    ehrbench evaluate --train A --holdout B --synthetic C [C ...] --out DIR
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("ehrbench")

BOOK_SOURCES = ("_config.yml", "_toc.yml", "book")


def notebooks(root: Path) -> list[Path]:
    """The stage notebooks in run order (their numeric prefix)."""
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def reproduce(root: Path, profile: str = "demo", data: str = "simulated", run: str | None = None,
              seed: int = 0, out: Path | None = None, book: bool = True, only: list[str] | None = None) -> Path:
    """Execute every notebook with papermill, then build the book from the executed copies.

    Source notebooks stay output-free: executed copies go to ``<out>/src/notebooks`` next to
    copies of the book pages, and Jupyter Book (1.x, warnings as errors) builds ``<out>/src``
    without executing anything again. A failing cell stops the run with papermill's error.

    Returns:
        the folder of the built HTML book (or of the executed notebooks with ``book=False``).
    """
    import papermill as pm

    root = root.resolve()
    out = (out or root / "_build").resolve()
    run = run or profile
    src = out / "src"
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    for name in BOOK_SOURCES:
        p = root / name
        if p.is_dir():
            shutil.copytree(p, src / name)
        elif p.is_file():
            shutil.copy2(p, src / name)
    params = {"data": data, "profile": profile, "run": run, "seed": seed}
    env_runs = os.environ.get("EHRLIB_RUNS_DIR")
    for nb in notebooks(root):
        if only and not any(nb.stem.startswith(o) for o in only):
            continue
        t0 = time.time()
        log.info("executing %s (profile=%s, data=%s, run=%s)", nb.name, profile, data, run)
        pm.execute_notebook(str(nb), str(src / "notebooks" / nb.name), parameters=params, cwd=str(root),
                            kernel_name="python3", progress_bar=False, log_output=False)
        log.info("  done in %.1f s", time.time() - t0)
    if env_runs:
        log.info("run folder: %s/%s", env_runs, run)
    if not book:
        return src / "notebooks"
    html = out / "html"
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(src), "--path-output", str(out / "book"), "-W", "-n",
           "--keep-going"]
    log.info("building the book: %s", " ".join(cmd))
    subprocess.run(cmd, check=True)
    if html.exists():
        shutil.rmtree(html)
    shutil.copytree(out / "book" / "_build" / "html", html)
    log.info("book: %s", html / "index.html")
    return html


def stats(paths: list[str]):
    """Table 12 rows (a DataFrame) of long-format files."""
    from ehrlib.data.longformat import read_long
    from ehrlib.metrics.structure import summary_table

    return summary_table({Path(p).name: read_long(p) for p in paths})


def evaluate_files(args) -> Path:
    """``ehrbench evaluate``: every metric for each synthetic file, written atomically into ``--out``."""
    from ehrlib.io import atomic_write
    from ehrlib.data.longformat import read_long
    from ehrlib.metrics.evaluate import evaluate_all, table1

    train, holdout = read_long(args.train), read_long(args.holdout)
    synthetic = {Path(p).stem: read_long(p) for p in args.synthetic}
    disc = None if args.discriminator == "none" else args.discriminator
    results = evaluate_all(train, holdout, synthetic, seed=args.seed, n_bootstrap=args.n_bootstrap, discriminator=disc)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "metrics.csv", lambda tmp: results.to_csv(tmp, index=False))
    wide = table1(results)
    atomic_write(args.out / "table1.csv", lambda tmp: wide.to_csv(tmp, index=False))
    atomic_write(args.out / "table1.md", lambda tmp: Path(tmp).write_text(wide.to_markdown(index=False)))
    print(wide.to_string(index=False))
    return args.out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ehrbench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reproduce", help="run every notebook (papermill) and build the book")
    r.add_argument("--profile", default="demo", choices=("smoke", "demo", "paper"))
    r.add_argument("--data", default="simulated", help="simulated | mimic3-demo | mimic4-demo | mimic3:PATH | long:PATH")
    r.add_argument("--run", default=None, help="run folder name (default: the profile name)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--root", type=Path, default=Path("."), help="repository root (holds notebooks/ and _config.yml)")
    r.add_argument("--out", type=Path, default=None, help="build folder (default: <root>/_build)")
    r.add_argument("--no-book", action="store_true", help="execute the notebooks only")
    r.add_argument("--only", nargs="*", help="notebook name prefixes to run (e.g. 00 30)")
    f = sub.add_parser("fetch", help="download an open demo dataset (sha256-checked) into $EHRLIB_DATA_DIR or ./data")
    f.add_argument("name", choices=("mimic3-demo", "mimic4-demo", "paper-samples"))
    s = sub.add_parser("stats", help="Table 12 statistics of long-format files")
    s.add_argument("paths", nargs="+")
    e = sub.add_parser("evaluate", help="evaluate long-format synthetic files against train/holdout files")
    e.add_argument("--train", required=True, help="long-format file the generator was trained on")
    e.add_argument("--holdout", required=True, help="long-format file of real patients it never saw")
    e.add_argument("--synthetic", required=True, nargs="+", help="long-format synthetic file(s)")
    e.add_argument("--out", required=True, type=Path, help="folder for metrics.csv and table1.csv/.md")
    e.add_argument("--discriminator", default="rf", choices=("rf", "lstm", "none"))
    e.add_argument("--n-bootstrap", type=int, default=1000)
    e.add_argument("--seed", type=int, default=0)
    a = sub.add_parser("audit", help="memorisation audit: copies of real patients in synthetic files, beside controls")
    a.add_argument("--real", required=True, help="real source: mimic3-demo | mimic3:PATH | long:PATH | ...")
    a.add_argument("--split", default="paper", choices=("paper", "none"), help="roles from the paper's released split")
    a.add_argument("--synthetic", required=True, nargs="+", help="synthetic file(s): released samples or long format")
    a.add_argument("--out", required=True, type=Path, help="folder for audit_*.csv and audit.png")
    a.add_argument("--seed", type=int, default=0, help="seed of the marginals controls")
    a.add_argument("--no-control", action="store_true", help="skip the marginals controls")
    a.add_argument("--download", action="store_true", help="allow downloading an open real source")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.cmd == "reproduce":
        if not (args.root / "notebooks").is_dir():
            parser.error(f"{args.root.resolve()} has no notebooks/ folder: run from the repository root or pass --root")
        reproduce(args.root, args.profile, args.data, args.run, args.seed, args.out, not args.no_book, args.only)
    elif args.cmd == "fetch":
        from ehrlib.data.registry import fetch

        print(fetch(args.name, download=True))
    elif args.cmd == "evaluate":
        evaluate_files(args)
    elif args.cmd == "audit":
        from ehrlib.audit_cli import main as audit_main

        return audit_main(args)
    elif args.cmd == "stats":
        print(stats(args.paths).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
