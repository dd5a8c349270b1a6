"""``ehrbench reproduce``: execute the stage notebooks into a run, then build the book.

* Each notebook runs in a fresh kernel (papermill) with a thread plan chosen just before it
  starts (:mod:`ehrlib.threads`), with only the parameters it declares.
* Stages run as soon as the stages they need are done, up to ``jobs`` at a time
  (:func:`~ehrlib.runner.graph.default_jobs`); a notebook names what it needs in its metadata
  (:data:`~ehrlib.runner.graph.NEEDS_KEY`), and one that names nothing waits for every notebook
  before it.
* A stage is skipped when its notebook, the notebooks of the stages it needs, the library code,
  its parameters and the files it read (or looked for and did not find; recorded by its stage
  context, :class:`ehrlib.runs.Stage`) and wrote are unchanged since it last succeeded
  (fingerprints in the run manifest); its executed copy from that run is reused for the book.
* A failing stage is recorded (notebook, cell, error); the stages that need it are not run, the
  others still run, and the command ends with a non-zero exit code; the stages before it stay
  reusable.
* The build folder is only ever cleared when it carries the runner's marker file.
* One ``reproduce`` at a time writes a run folder (:meth:`ehrlib.runs.Run.writer`); a second one
  on the same run is refused, naming the first (process, host, start).
* The keys the runner sets itself (:data:`~ehrlib.runner.command.RUNNER_OWNS`) cannot be given
  with ``--set``.
* A selected stage whose needs (followed through the stages outside ``--only``) are out of date
  (:func:`~ehrlib.runner.graph.stale_needs`: a file they read or wrote changed or is gone, their
  last run did not succeed, or they ran with another profile or data source) is refused, never
  run on them.
* A notebook opens the stage context named after its file (``runs.stage(stages.TABLE1, ...)`` in
  ``33_table1.ipynb``; names in :mod:`ehrlib.stages`); one that opens another is refused.
* Ctrl-C stops the running kernels at once; their stages are recorded as ``interrupted`` and the
  command ends with :class:`~ehrlib.errors.RunInterrupted` (one line on the console).

One module per job:

* :mod:`ehrlib.runner.graph`: the stages each stage needs, whether their outputs can be used,
  the schedule;
* :mod:`ehrlib.runner.fingerprints`: what a stage read and wrote, and whether it is up to date;
* :mod:`ehrlib.runner.kernels`: one stage in a kernel of its own, and stopping the kernels on Ctrl-C;
* :mod:`ehrlib.runner.build`: the build folder and the book;
* :mod:`ehrlib.runner.command`: ``ehrbench reproduce`` itself;
* :mod:`ehrlib.runner.sweep`: ``ehrbench reproduce --seeds``;
* :mod:`ehrlib.runner.executors`: ``ehrbench reproduce --executor slurm`` (each stage a cluster job
  through submitit) and ``ehrbench status``.
"""
from ehrlib.book import notebooks
from ehrlib.runner.build import BOOK_SOURCES, MARKER, build_book, prepare_out, stamp_colab_cells
from ehrlib.runner.command import OWNED_CHECKED, RUNNER_OWNS, reproduce, summary_table
from ehrlib.runner.fingerprints import EXECUTED_DIR, fingerprint, library_hash, notebook_source_hash, up_to_date
from ehrlib.runner.graph import (NEEDS_KEY, default_jobs, opened_stages, run_stages, stage_name_problems, stage_needs,
                                 stale_needs, undeclared_reads)
from ehrlib.runner.kernels import StageResult, run_stage, stage_plan, stop_kernels
from ehrlib.runner.sweep import sweep

__all__ = ["BOOK_SOURCES", "EXECUTED_DIR", "MARKER", "NEEDS_KEY", "OWNED_CHECKED", "RUNNER_OWNS", "StageResult",
           "build_book", "default_jobs", "fingerprint", "library_hash", "notebook_source_hash", "notebooks",
           "opened_stages", "prepare_out", "reproduce", "run_stage", "run_stages", "stage_name_problems", "stage_needs",
           "stage_plan", "stale_needs", "stamp_colab_cells", "stop_kernels", "summary_table", "sweep",
           "undeclared_reads", "up_to_date"]
