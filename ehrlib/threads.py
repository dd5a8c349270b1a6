"""CPU threads that cannot stall: measure how busy the machine is, then choose.

On a small machine, OpenMP threads that spin while they wait collapse as soon as another
process competes for the cores (on a 2-core machine a small training loop fell from 14 to 2.5
steps/s with two spinning threads). No fixed setting wins both cases, so the choice is made from
a measurement taken just before the work starts:

* the cores left free by other processes (``/proc/stat`` sampled over a short window, or the
  1-minute load average where ``/proc`` is missing);
* at least two free cores: that many threads with ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads
  sleep, so a competitor that starts later slows the work instead of collapsing it);
* fewer: one thread (nothing to spin).

An explicit ``OMP_NUM_THREADS`` in the environment, or an explicit ``threads=N``, always wins.
Thread pools that sleep while they wait (scikit-learn's forests) cannot collapse, so they take
every core (:func:`pool_threads`).
``benchmarks/bench_threads.py`` measures every setting, idle and busy.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass

#: Environment variables that size the math libraries' thread pools.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
WAIT_VAR = "OMP_WAIT_POLICY"


@dataclass(frozen=True)
class ThreadPlan:
    """A thread count and OpenMP wait policy, with the measurement that led to it."""

    threads: int
    wait_policy: str  # "PASSIVE" or "ACTIVE"
    reason: str
    cpus: int
    busy_cores: float | None = None

    def env(self) -> dict[str, str]:
        """Environment for a new process (a notebook kernel, a benchmark worker)."""
        out = {var: str(self.threads) for var in THREAD_VARS}
        out[WAIT_VAR] = self.wait_policy
        return out

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.threads} thread(s), OMP_WAIT_POLICY={self.wait_policy} ({self.reason})"


def available_cpus() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_times() -> tuple[float, float] | None:
    try:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields), idle


def busy_cores(window: float = 0.3) -> float:
    """How many cores other work keeps busy, measured over ``window`` seconds.

    Reads ``/proc/stat`` twice (this process sleeps in between, so it adds nothing); where that
    file is missing, the 1-minute load average.
    """
    first = _cpu_times()
    if first is None:
        try:
            return float(os.getloadavg()[0])
        except OSError:
            return 0.0
    time.sleep(window)
    second = _cpu_times()
    total, idle = second[0] - first[0], second[1] - first[1]
    if total <= 0:
        return 0.0
    return (1.0 - idle / total) * (os.cpu_count() or 1)


def choose(threads: int | None = None, *, cpus: int | None = None, busy: float | None = None,
           environ: dict | None = None) -> ThreadPlan:
    """The thread plan for work that starts now.

    Args:
        threads: an explicit thread count (``--threads N``); wins over everything.
        cpus: cores available (default: this process's affinity).
        busy: cores kept busy by other work (default: measured with :func:`busy_cores`).
        environ: the environment to read ``OMP_NUM_THREADS`` from (default ``os.environ``).
    """
    env = os.environ if environ is None else environ
    cpus = cpus or available_cpus()
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            from ehrlib.errors import ConfigError

            raise ConfigError(f"threads={threads!r}: expected a positive integer")
        return ThreadPlan(threads, "PASSIVE" if threads > 1 else "ACTIVE", "asked for", cpus)
    preset = env.get("OMP_NUM_THREADS", "").strip()
    if preset.isdigit() and int(preset) > 0:
        n = int(preset)
        return ThreadPlan(n, env.get(WAIT_VAR, "PASSIVE" if n > 1 else "ACTIVE").upper(),
                          "OMP_NUM_THREADS set in the environment", cpus)
    if busy is None:
        busy = busy_cores()
    free = max(cpus - busy, 0.0)
    if cpus >= 2 and free >= 1.5:
        n = max(2, min(cpus, int(free + 0.5)))
        return ThreadPlan(n, "PASSIVE", f"{free:.1f} of {cpus} cores free", cpus, round(busy, 2))
    return ThreadPlan(1, "ACTIVE", f"{free:.1f} of {cpus} cores free: one thread cannot spin", cpus, round(busy, 2))


def pool_threads(*, cpus: int | None = None, environ: dict | None = None) -> int:
    """Threads for a pool whose idle threads sleep (joblib's thread pools, e.g. scikit-learn's
    forests): ``OMP_NUM_THREADS`` when set, else every available core.

    Such threads do not spin, so other busy processes slow them down without collapsing them and
    no measurement is needed (the Random Forest discriminator at paper scale was never slower with
    two threads than with one beyond noise; the measurements are on the book's methods page).
    """
    env = os.environ if environ is None else environ
    preset = env.get("OMP_NUM_THREADS", "").strip()
    if preset.isdigit() and int(preset) > 0:
        return int(preset)
    return cpus or available_cpus()


def apply(plan: ThreadPlan) -> ThreadPlan:
    """Use ``plan`` in this process: environment for child processes and OpenMP (if torch is not
    loaded yet), and ``torch.set_num_threads`` when torch is already loaded."""
    for var, value in plan.env().items():
        os.environ[var] = value
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(plan.threads)
    return plan


_configured: ThreadPlan | None = None


def configure_torch() -> ThreadPlan:
    """Called by the library before CPU training: choose once per process and apply the plan
    (an ``OMP_NUM_THREADS`` set by the user is kept).

    In a process where torch is already loaded only the thread count can still change: OpenMP
    reads ``OMP_WAIT_POLICY`` when it starts, which is why ``ehrbench reproduce`` sets it in the
    environment of every stage's kernel before torch loads.
    """
    global _configured
    if _configured is None:
        _configured = apply(choose())
    return _configured
