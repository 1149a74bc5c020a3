"""The studio's metrics in the Prometheus text format, for the Prometheus/Grafana (and DCGM) a DGX owner runs.

One `Exporter` per App, on a registry of its own (never prometheus_client's global one), so two studios in one
process never share a counter. Counters and histograms are fed by the job queue (a listener, told of every
job that ends); gauges (queue depth, resident models, memory, training runs) are read when Prometheus scrapes.
The web server serves `render()` at /metrics, behind the studio's bearer token in LAN mode.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, make_asgi_app
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

from studio.core import Studio
from studio.features import training_runs
from studio.features.benchmarks.context import studio_version
from studio.jobs import Job, memory_now

JOB_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, float("inf"))
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, float("inf"))
TRAINING_STATES = ("running", "done", "failed", "stopped")


class Exporter:
    def __init__(self, studio: Studio):
        self.studio = studio
        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs = Counter("dgxp_jobs", "Jobs that ended, by kind and outcome (done, failed, cancelled).",
                            ["kind", "outcome"], registry=self.registry)
        self.job_seconds = Histogram("dgxp_job_seconds", "Wall time of finished jobs (the run, not the wait).",
                                     ["kind"], buckets=JOB_BUCKETS, registry=self.registry)
        self.step_seconds = Histogram("dgxp_step_seconds", "Time of one denoising step (the first of each job, "
                                      "which holds the model switch and prompt encoding, left out).", ["device"],
                                      buckets=STEP_BUCKETS, registry=self.registry)
        self.steps = Counter("dgxp_denoising_steps", "Denoising steps run.", ["device"], registry=self.registry)
        self.registry.register(_StateCollector(studio))
        studio.queue.add_listener(self.observe)

    def observe(self, job: Job) -> None:
        """The queue's listener: on the worker thread, after each job ends."""
        self.jobs.labels(job.kind, job.status).inc()
        f = job.figures
        if f is None:
            return
        if job.status == "done":
            self.job_seconds.labels(job.kind).observe(f.seconds)
        steps = self.step_seconds.labels(f.device)
        for seconds in f.step_seconds:
            steps.observe(seconds)
        if f.steps:
            self.steps.labels(f.device).inc(f.steps)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def asgi(self) -> MetricsApp:
        """The ASGI app serving the metrics (prometheus_client's: content negotiation, gzip)."""
        return MetricsApp(make_asgi_app(self.registry))


class MetricsApp:
    """An ASGI app as an object, so a router mounts it as an app (a bare function would be taken for a
    request handler)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)


class _StateCollector:
    """Gauges read at scrape time."""

    def __init__(self, studio: Studio):
        self.studio = studio

    def describe(self):
        return []  # collected live only: nothing to describe at registration

    def collect(self):
        studio = self.studio
        info = InfoMetricFamily("dgxp_studio", "The studio: version and device.")
        info.add_metric([], {"version": studio_version() or "unknown", "device": studio.queue.device_name})
        yield info
        active = studio.queue.active()
        depth = GaugeMetricFamily("dgxp_queue_jobs", "Jobs in the GPU queue, waiting or running.",
                                  labels=["status"])
        for status in ("queued", "running"):
            depth.add_metric([status], sum(1 for j in active if j.status == status))
        yield depth
        resident = GaugeMetricFamily("dgxp_resident_model_bytes", "Base models kept resident (bytes of their "
                                     "weights in memory).", labels=["model"])
        for name, nbytes in _resident_bytes(studio).items():
            resident.add_metric([name], nbytes)
        yield resident
        memory = GaugeMetricFamily("dgxp_memory_bytes", "Memory: the process's resident set, torch's CUDA "
                                   "allocations, the system's total and available (on unified memory, such as "
                                   "DGX-Spark's, the GPU's too).", labels=["kind"])
        for kind, value in memory_now().items():
            memory.add_metric([kind], value)
        yield memory
        runs = training_runs.runs(studio)
        states = GaugeMetricFamily("dgxp_training_runs", "LoRA training runs by state.", labels=["state"])
        for state in sorted({*TRAINING_STATES, *(str(r.get("state") or "unknown") for r in runs)}):
            states.add_metric([state], sum(1 for r in runs if str(r.get("state") or "unknown") == state))
        yield states
        step = GaugeMetricFamily("dgxp_training_step", "Step of each running training run (and its total).",
                                 labels=["run", "of"])
        for r in runs:
            if r.get("state") == "running":
                step.add_metric([str(r.get("run_id", "")), "step"], float(r.get("step") or 0))
                step.add_metric([str(r.get("run_id", "")), "total"], float(r.get("total") or 0))
        yield step


def _resident_bytes(studio: Studio) -> dict[str, float]:
    """Resident bases and their bytes: the manager's own count of each pipeline's weights where it keeps one,
    else the checkpoint's size on disk."""
    names = studio.manager.resident()
    counted = {}
    try:  # the manager keeps no public byte count (yet): read its table without holding its lock
        counted = {name: float(r.nbytes) for name, r in list(getattr(studio.manager, "_resident", {}).items())}
    except (AttributeError, RuntimeError, TypeError):
        counted = {}
    out = {}
    for name in names:
        if name in counted:
            out[name] = counted[name]
        else:
            try:
                out[name] = float(studio.registry.checkpoint(name).size_bytes)
            except ValueError:
                continue
    return out
