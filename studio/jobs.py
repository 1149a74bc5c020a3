"""One GPU, one worker: a FIFO job queue with progress and cancellation.

UI events, CLI calls and MCP tools all `submit` here and wait or poll; only the worker thread touches the
pipelines, so two clients can never run the GPU concurrently. Cancelling a running job takes effect at the
next denoising step; cancelling a queued one removes it before it starts.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipelines.render import Cancelled
from studio.store import Store

log = logging.getLogger(__name__)

FINAL = {"done", "failed", "cancelled"}


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
    cancel_requested: threading.Event = field(default_factory=threading.Event, repr=False)
    finished: threading.Event = field(default_factory=threading.Event, repr=False)

    def check(self, step: int, total: int) -> None:
        """Step callback: record progress; stop here if a cancel was asked for."""
        self.step, self.total = step, total
        if self.cancel_requested.is_set():
            raise Cancelled()

    def summary(self) -> dict:
        return {
            "id": self.id, "kind": self.kind, "status": self.status, "step": self.step, "total": self.total,
            "error": self.error, "source": self.source, "seq": self.seq,
        }


Runner = Callable[[Job], Any]  # runs one job on the worker thread, returns its result
Hold = Callable[[], str | None]  # a reason to keep jobs queued, or None


class JobQueue:
    def __init__(self, store: Store, runners: dict[str, Runner]):
        self.store = store
        self.runners = dict(runners)
        self.holds: list[Hold] = []
        self._jobs: dict[str, Job] = {}
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="gpu-worker", daemon=True)
        self._thread.start()

    def add_runners(self, runners: dict[str, Runner]) -> None:
        """Job kinds a feature brings (Compare's battles and sweeps), registered where the app is assembled."""
        clash = set(runners) & set(self.runners)
        if clash:
            raise ValueError(f"job kind(s) already registered: {', '.join(sorted(clash))}")
        self.runners.update(runners)

    def add_hold(self, hold: Hold) -> None:
        """A reason to keep jobs queued (a training run has the GPU), asked before each job starts."""
        self.holds.append(hold)

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
            job.finished.set()

    def _finish(self, job: Job, status: str, error: str | None = None) -> None:
        job.status, job.error = status, error
        try:
            self.store.mark_job(job.id, status, error)
        finally:
            job.finished.set()
