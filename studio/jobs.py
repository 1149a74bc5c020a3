"""One GPU, one worker: a FIFO job queue with progress and cancellation.

UI events, CLI calls and MCP tools all `submit` here and wait or poll; only the worker thread touches the
pipelines, so two clients can never run the GPU concurrently. Cancelling a running job takes effect at the
next denoising step; cancelling a queued one removes it before it starts.

The queue also measures every job it runs (`JobFigures`: wall time, denoising steps and steps/s, peak memory,
the device) and records them on the job's row, so production figures come from real use; listeners (the
Prometheus exporter) hear of each finished job.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.render import Cancelled
from studio.store import Store

log = logging.getLogger(__name__)

FINAL = {"done", "failed", "cancelled"}
MB = 2**20


# -- what a stretch of work used: the device and its memory ------------------------------------------------------

def _torch():
    """torch if this process has imported it (a process that never did has no CUDA memory to read)."""
    return sys.modules.get("torch")


def _cuda_live() -> bool:
    torch = _torch()
    return bool(torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized())


def device_label(device: object) -> str:
    """The device as people name it: `cpu`, `cuda (NVIDIA GB10)`, `mps`."""
    kind = str(device).split(":")[0]
    torch = _torch()
    if kind == "cuda" and torch is not None and torch.cuda.is_available():
        try:
            return f"cuda ({torch.cuda.get_device_name()})"
        except RuntimeError:
            return "cuda"
    return kind


def unified_memory() -> bool:
    """A CUDA GPU that shares the CPU's memory (DGX-Spark's GB10): NVML reports no memory there, so its memory
    is the system's, read from /proc/meminfo."""
    if not _cuda_live():
        return False
    try:
        return bool(_torch().cuda.get_device_properties(0).is_integrated)
    except (RuntimeError, AttributeError):
        return False


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes (MemTotal, MemAvailable ...); empty where there is none."""
    try:
        text = Path("/proc/meminfo").read_text(encoding="ascii")
    except OSError:
        return {}
    return {k: int(v) * 1024 for k, v in re.findall(r"^(\w+):\s+(\d+) kB", text, re.M)}


def process_memory() -> dict[str, int]:
    """This process's resident set now and its peak (VmRSS, VmHWM), in bytes; empty off Linux."""
    try:
        text = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return {}
    return {k: int(v) * 1024 for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.M)}


def memory_now() -> dict[str, int]:
    """Memory as Prometheus shows it, in bytes: the process's resident set; torch's CUDA allocations (when CUDA
    is in use; total and free too, except on unified memory); the system's total and available memory (on
    unified memory, the GPU's too)."""
    rss = process_memory().get("VmRSS")  # not VmHWM: the jobs reset it
    out = {} if rss is None else {"process_resident": rss}
    if _cuda_live():
        torch = _torch()
        out["cuda_allocated"] = int(torch.cuda.memory_allocated())
        out["cuda_reserved"] = int(torch.cuda.memory_reserved())
        out["cuda_peak_allocated"] = int(torch.cuda.max_memory_allocated())
        if not unified_memory():
            free, total = torch.cuda.mem_get_info()
            out["cuda_total"], out["cuda_free"] = int(total), int(free)
    info = meminfo()
    if "MemTotal" in info:
        out["system_total"] = info["MemTotal"]
        out["system_available"] = info.get("MemAvailable", info.get("MemFree", 0))
    return out


class PeakMemory:
    """The peak memory of a stretch of work (a job, a benchmark phase), in MB: torch's peak allocation on CUDA,
    the process's peak resident set (VmHWM) elsewhere.

    Both are process-wide high-water marks, and stretches nest (a benchmark phase around the jobs it runs). So
    each reset first hands the peak so far to every stretch still open, and none loses the other's peak."""

    _open: set[PeakMemory] = set()  # shared on purpose: the marks are the process's
    _lock = threading.Lock()

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.kind = "cuda peak allocated" if cuda else "process peak resident"
        self._partial = 0.0

    def _read(self) -> float | None:
        if self.cuda:
            return _torch().cuda.max_memory_allocated() / MB if _cuda_live() else None
        hwm = process_memory().get("VmHWM")
        return None if hwm is None else hwm / MB

    def _reset(self) -> None:
        if self.cuda:
            if _cuda_live():
                _torch().cuda.reset_peak_memory_stats()
            return
        # Linux >= 4.0: "5" resets the peak resident set of this process; elsewhere VmHWM stays the process's
        # lifetime peak (an upper bound)
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5", encoding="ascii")

    def start(self) -> PeakMemory:
        with self._lock:
            for other in self._open:
                self._fold(other)
            self._reset()
            self._open.add(self)
        return self

    @staticmethod
    def _fold(meter: PeakMemory) -> None:
        now = meter._read()
        if now is not None:
            meter._partial = max(meter._partial, now)

    def stop(self) -> float | None:
        with self._lock:
            self._fold(self)
            self._open.discard(self)
        return round(self._partial, 1) if self._partial else None


@dataclass
class JobFigures:
    """What one run of a job measured (recorded on its row: the Metrics tab's production figures)."""

    seconds: float  # the run, not the wait in the queue
    steps: int  # denoising steps that ran
    steps_per_s: float | None  # over the steps after the first (the first holds model switch and prompt encoding)
    step_seconds: list[float]
    peak_mem_mb: float | None
    device: str


@dataclass
class Job:
    id: str
    kind: str
    params: Any  # a params dataclass with to_dict()
    source: str
    owner: str | None = None
    status: str = "queued"
    step: int = 0
    total: int = 0
    error: str | None = None
    result: Any = None
    seq: int = 0
    created: float = field(default_factory=time.time)
    stage: str = ""  # what a long job is doing now, in words (a benchmark run's current benchmark)
    figures: JobFigures | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event, repr=False)
    finished: threading.Event = field(default_factory=threading.Event, repr=False)
    _steps_run: int = field(default=0, repr=False)
    _last_step: float | None = field(default=None, repr=False)
    _step_seconds: list[float] = field(default_factory=list, repr=False)
    _meter: PeakMemory | None = field(default=None, repr=False)
    _started: float = field(default=0.0, repr=False)

    def check(self, step: int, total: int) -> None:
        """Step callback, once per denoising step: record progress and the step's time; stop here if a cancel
        was asked for."""
        t = time.perf_counter()
        if self._last_step is not None:
            self._step_seconds.append(t - self._last_step)
        self._last_step = t
        self._steps_run += 1
        self.progress(step, total)

    def progress(self, step: int, total: int, stage: str | None = None) -> None:
        """Progress that is not a denoising step (a benchmark run's stages); stop here if a cancel was asked
        for."""
        self.step, self.total = step, total
        if stage is not None:
            self.stage = stage
        if self.cancel_requested.is_set():
            raise Cancelled()

    def summary(self) -> dict:
        return {
            "id": self.id, "kind": self.kind, "status": self.status, "step": self.step, "total": self.total,
            "error": self.error, "source": self.source, "seq": self.seq,
        }


Runner = Callable[[Job], Any]  # runs one job on the worker thread, returns its result
Hold = Callable[[], str | None]  # a reason to keep jobs queued, or None
Listener = Callable[[Job], None]  # told of every job that ended (any outcome), its figures set


class JobQueue:
    def __init__(self, store: Store, runners: dict[str, Runner], device: object = "cpu"):
        self.store = store
        self.runners = dict(runners)
        self.holds: list[Hold] = []
        self.listeners: list[Listener] = []
        self.device = device  # where the runners compute: a torch.device or its name
        self._device_label: str | None = None
        self._jobs: dict[str, Job] = {}
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="gpu-worker", daemon=True)
        self._thread.start()

    @property
    def device_name(self) -> str:
        if self._device_label is None:
            self._device_label = device_label(self.device)
        return self._device_label

    def add_runners(self, runners: dict[str, Runner]) -> None:
        """Job kinds a feature brings (Compare's battles and sweeps), registered where the app is assembled."""
        clash = set(runners) & set(self.runners)
        if clash:
            raise ValueError(f"job kind(s) already registered: {', '.join(sorted(clash))}")
        self.runners.update(runners)

    def add_hold(self, hold: Hold) -> None:
        """A reason to keep jobs queued (a training run has the GPU), asked before each job starts."""
        self.holds.append(hold)

    def add_listener(self, listener: Listener) -> None:
        """Called on the worker thread after each job ends, before its waiters wake (the Prometheus counters)."""
        self.listeners.append(listener)

    def _hold_reason(self) -> str | None:
        return next((reason for hold in self.holds if (reason := hold())), None)

    def submit(self, kind: str, params, source: str = "python", owner: str | None = None) -> Job:
        if kind not in self.runners:
            raise ValueError(f"unknown job kind {kind!r}")
        job = Job(uuid.uuid4().hex[:12], kind, params, source, owner)
        job.seq = self.store.add_job(job.id, kind, source, owner, params.to_dict(), getattr(params, "prompt", ""))
        with self._lock:
            self._jobs[job.id] = job
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def active(self) -> list[Job]:
        with self._lock:
            return [j for j in self._jobs.values() if j.status not in FINAL]

    def cancel(self, job_id: str) -> bool:
        job = self.get(job_id)
        if job is None or job.status in FINAL:
            return False
        job.cancel_requested.set()
        return True

    def cancel_owner(self, owner: str) -> int:
        """Cancel everything one browser session (or client) queued."""
        return sum(self.cancel(j.id) for j in self.active() if j.owner == owner)

    def wait(self, job: Job, timeout: float | None = None) -> Job:
        if not job.finished.wait(timeout):
            raise TimeoutError(f"job {job.id} still {job.status} after {timeout} s")
        return job

    def shutdown(self, timeout: float = 10.0) -> None:
        for job in self.active():
            job.cancel_requested.set()
        self._queue.put(None)
        self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            self._run(job)

    def _run(self, job: Job) -> None:
        while not job.cancel_requested.is_set() and (reason := self._hold_reason()):
            job.error = f"waiting: {reason}"
            time.sleep(1.0)
        job.error = None
        if job.cancel_requested.is_set():
            self._finish(job, "cancelled")
            return
        job.status = "running"
        self.store.mark_job(job.id, "running")
        job._meter, job._started = PeakMemory(str(self.device).startswith("cuda")).start(), time.perf_counter()
        try:
            job.result = self.runners[job.kind](job)
        except Cancelled:
            self._finish(job, "cancelled")
        except ValueError as exc:  # a person's mistake (a bad LoRA, an unusable image): one line, no traceback
            log.warning("job %s failed: %s", job.id, exc)
            self._finish(job, "failed", str(exc))
        except Exception as exc:  # noqa: BLE001 - any failure is the job's, never the worker's
            log.exception("job %s failed", job.id)
            self._finish(job, "failed", f"{type(exc).__name__}: {exc}")
        else:
            job.status = "done"  # the runner stored its images and the 'done' row in one transaction
            self._close(job)

    def _figures(self, job: Job) -> JobFigures | None:
        """What the run measured; None for a job that never started."""
        if job._meter is None:
            return None
        seconds, peak_mb = time.perf_counter() - job._started, job._meter.stop()
        gaps = list(job._step_seconds)
        rate = round(len(gaps) / sum(gaps), 4) if gaps and sum(gaps) > 0 else None
        return JobFigures(round(seconds, 4), job._steps_run, rate, gaps, peak_mb, self.device_name)

    def _finish(self, job: Job, status: str, error: str | None = None) -> None:
        job.status, job.error = status, error
        try:
            self.store.mark_job(job.id, status, error)
        finally:
            self._close(job)

    def _close(self, job: Job) -> None:
        """Record the job's figures and tell the listeners, then wake its waiters (who may read either)."""
        try:
            f = job.figures = self._figures(job)
            if f is not None:
                try:
                    self.store.record_figures(job.id, f.steps, f.steps_per_s, f.peak_mem_mb, f.device)
                except Exception:  # noqa: BLE001 - a figure not recorded never fails the job
                    log.exception("job %s: figures not recorded", job.id)
            for listener in self.listeners:
                try:
                    listener(job)
                except Exception:  # noqa: BLE001 - nor does a listener
                    log.exception("job %s: listener %r failed", job.id, listener)
        finally:
            job.finished.set()
