"""``ehrbench audit``: the memorisation audit of synthetic files against a real source.

All the work is in :func:`run_audit`; the CLI only parses arguments.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

from ehrlib.errors import RunError

#: Files ``ehrbench audit`` writes into ``--out``; the manifest marks a folder as the audit's own.
AUDIT_FILES = ("audit_copies.csv", "audit_distances.csv", "audit_nearest.csv", "audit_pairs.csv", "audit.png")
AUDIT_MANIFEST = "audit_manifest.json"


def check_out(out: Path) -> None:
    """Refuse an ``--out`` folder where writing would replace files another command wrote.

    A folder is fine when it does not exist, holds none of :data:`AUDIT_FILES`, or holds the
    audit's own manifest (a rerun of the audit replaces its own files).

    Raises:
        RunError: ``out`` is a file, or holds audit file names without the audit's manifest.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out}: is a file, expected a folder")
    if not out.is_dir() or (out / AUDIT_MANIFEST).is_file():
        return
    clash = [name for name in AUDIT_FILES if (out / name).exists()]
    if clash:
        raise RunError(
            f"--out {out}: holds {clash} that another command wrote (no {AUDIT_MANIFEST}); choose an empty folder "
            "or delete those files"
        )


def read_synthetic(path) -> "Cohort":  # noqa: F821
    """A synthetic file: a released paper sample (layout checked, dropped rows reported) or any long-format file."""
    from ehrlib.data.longformat import read_long
    from ehrlib.data.registry import PAPER_SAMPLE_LAYOUTS, read_sample
    from ehrlib.data.tables import read_header

    path = Path(path)
    if path.suffix == ".csv" and path.is_file():
        header = tuple(str(c).strip().upper() for c in read_header(path))
        if header in PAPER_SAMPLE_LAYOUTS:
            return read_sample(path)
    return read_long(path)


def run_audit(real: str, synthetic: list, out, *, split: str = "paper", seed: int = 0, download: bool = False,
              control: bool = True, figure: bool = True) -> dict:
    """Audit each synthetic file against the real source and write the tables (and figure) to ``out``.

    Args:
        real: a source for :func:`ehrlib.data.load` (``mimic3-demo``, ``mimic3:PATH``, ``long:PATH``).
        synthetic: the synthetic files.
        out: the output folder (checked before anything is computed).
        split: ``paper`` (roles from the paper's released lists) or ``none`` (one role, ``all``).
        seed: seed of the marginals controls.
        download: allow downloading an open real source.
        control: also audit a marginals control of each file.
        figure: also save ``audit.png``.

    Returns:
        ``{"audit": Audit, "files": [written paths], "limits": [sentences]}``.

    Raises:
        RunError: a bad ``--out`` or ``split``; the errors of loading, splitting and auditing.
    """
    from ehrlib.data.registry import load
    from ehrlib.data.splits import paper_split
    from ehrlib.io import atomic_write
    from ehrlib.metrics.audit import audit

    out = Path(out)
    check_out(out)
    if split not in ("paper", "none"):
        raise RunError(f"--split {split!r}: expected 'paper' or 'none'")
    cohort = load(real, download=download)
    roles = None
    if split == "paper":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            roles = paper_split(cohort)
        for w in caught:
            print(f"note: {w.message}")
    from ehrlib.data.registry import PAPER_SAMPLE_FILES

    released = {file: generator for generator, file in PAPER_SAMPLE_FILES.items()}
    files = {}
    for p in synthetic:
        name = released.get(Path(p).name, Path(p).stem)  # released samples go by their generator's name
        if name in files:
            raise RunError(f"--synthetic: two files are named {name!r}; give each file a distinct name")
        files[name] = read_synthetic(p)
    result = audit(cohort, files, roles, control=control, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in (("audit_copies.csv", result.copies), ("audit_distances.csv", result.distances),
                        ("audit_nearest.csv", result.nearest), ("audit_pairs.csv", result.pairs)):
        written.append(atomic_write(out / name, lambda tmp, f=frame: f.to_csv(tmp, index=False)))
    if figure:
        from ehrlib.plots import fig_audit

        fig = fig_audit(result.nearest, result.copies)
        written.append(atomic_write(out / "audit.png", lambda tmp: fig.savefig(tmp, format="png", dpi=150)))
    manifest = {"command": "ehrbench audit", "real": real, "split": split, "seed": seed, "control": control,
                "synthetic": [str(p) for p in synthetic], "files": [Path(w).name for w in written]}
    atomic_write(out / AUDIT_MANIFEST, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=2)))
    return {"audit": result, "files": written, "limits": result.limits()}


def main(args) -> int:
    """The ``ehrbench audit`` command body: run, then print the copy table and its limits."""
    got = run_audit(args.real, args.synthetic, args.out, split=args.split, seed=args.seed, download=args.download,
                    control=not args.no_control)
    copies = got["audit"].copies
    print(copies.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print()
    print("\n".join(got["limits"]))
    print(f"\nwritten: {', '.join(str(p) for p in got['files'])}")
    return 0
