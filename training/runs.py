"""Training runs from the studio's side: run folders, starting and resuming the child, reading its state.

Training runs in its own process (`python -m training.runner RUN_DIR`, see `training.runner`) so the
studio survives a crash or an out-of-memory kill, and so a run can be stopped, killed and resumed. This
module is everything the studio does around that process; it never imports the child. Everything the
studio needs to know is a small file in the run folder, each written atomically (temp + rename), so a
reader never sees half a file:

    <runs_root>/<run_id>/
        config.json              TrainConfig.to_dict() (with the base model's hash pinned at start)
        status.json              state running|stopped|failed|done, step, total, eta_s, error, pid, phase
                                 (what a running run does between steps: sampling, saving a checkpoint...)
        metrics.jsonl            one line per step: step, loss, lr, sec_per_step, mem_mb
        log.txt                  the runner's notes (each end-of-run phase with its time) plus the child's
                                 stdout/stderr (library progress bars are turned off in the child)
        samples/step_<N>_<i>.png fixed prompts and seeds, rendered with the in-training UNet
        checkpoints/step_<N>/    lora.safetensors, trainer.pt (optimizer, lr schedule, RNG, step), meta.json
        final/<name>.safetensors and <name>_kohya.safetensors (copied atomically into export_dir)
        STOP                     written by RunHandle.stop(); the child checkpoints and exits

Inputs are checked here (the dataset's captions, the base model's hash) so a bad run fails in the front
end at once, not minutes later in the child.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from studio.files import atomic_write_bytes, atomic_write_text
from training.config import TrainConfig
from training.hashing import base_model_hash

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
STATES = ("running", "stopped", "failed", "done")


# ------------------------------------------------------------------------------------------------ files
def write_json(path: Path, obj: Any) -> None:
    """status.json and config.json, atomically (the child writes its status with this too)."""
    atomic_write_text(path, json.dumps(obj, indent=2))


def read_json(path: Path) -> dict[str, Any]:
    """A run-folder JSON file, or {} when it is missing or half-written."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# ------------------------------------------------------------------------------------------------ dataset
def scan_dataset(dataset_dir: str | Path) -> list[tuple[Path, str]]:
    """(image, caption) pairs, kohya style: `x.png` beside `x.txt`, searched recursively; sorted by path."""
    root = Path(dataset_dir)
    if not root.is_dir():
        raise ValueError(f"dataset folder {root} does not exist")
    images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                    and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not images:
        raise ValueError(f"dataset folder {root} has no images ({', '.join(IMAGE_SUFFIXES)})")
    missing = [p for p in images if not p.with_suffix(".txt").is_file()]
    if missing:
        names = ", ".join(str(p.relative_to(root)) for p in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ValueError(f"{len(missing)} image(s) have no caption file (.txt beside the image): "
                         f"{names}{more}")
    return [(p, p.with_suffix(".txt").read_text(encoding="utf-8").strip()) for p in images]


# ------------------------------------------------------------------------------------------------ run folder
def read_status(run_dir: str | Path) -> dict[str, Any]:
    """status.json, with a 'running' run whose process is gone reported as failed (killed or crashed)."""
    run_dir = Path(run_dir)
    status = read_json(run_dir / "status.json")
    if status.get("state") == "running" and status.get("pid") and not _pid_alive(int(status["pid"])):
        status = {**status, "state": "failed",
                  "error": f"the training process ended without finishing (killed or crashed) at step "
                           f"{status.get('step', 0)}; resume to continue from the last checkpoint"}
    return status


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not alive
        return " Z " not in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:3]
    except OSError:
        return True


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """metrics.jsonl as dicts; a half-written last line (the child is mid-write) is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return rows
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows


def list_runs(runs_root: str | Path) -> list[dict[str, Any]]:
    """Every run folder under runs_root (newest first) with its status and config summary."""
    root = Path(runs_root)
    runs: list[dict[str, Any]] = []
    if not root.is_dir():
        return runs
    for d in sorted((p for p in root.iterdir() if (p / "config.json").is_file()), reverse=True):
        cfg = read_json(d / "config.json")
        runs.append({"run_id": d.name, "run_dir": str(d), "output_name": cfg.get("output_name"),
                     "preset": cfg.get("preset"), **read_status(d)})
    return runs


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (the renamed folders; temp folders are ignored), oldest first."""
    ckdir = Path(run_dir) / "checkpoints"
    found = []
    for p in ckdir.glob("step_*") if ckdir.is_dir() else []:
        m = re.fullmatch(r"step_(\d+)", p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found)


# ------------------------------------------------------------------------------------------------ handle
class RunHandle:
    """A run folder plus, when this process started it, the child process."""

    def __init__(self, run_dir: Path, process: subprocess.Popen | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.process = process

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else read_status(self.run_dir).get("pid")

    def stop(self) -> None:
        """Ask the child to checkpoint and exit at the end of the current step."""
        atomic_write_bytes(self.run_dir / "STOP", b"stop\n")

    def kill(self) -> None:
        """SIGKILL the child's whole process group (a stuck run); the last checkpoint stays usable.

        The child is started as a session leader, so its process group id is its pid; a recorded pid whose
        group differs is some other process that reused the number and is left alone."""
        pid = self.process.pid if self.process else read_status(self.run_dir).get("pid")
        if pid and (self.process is not None or _pid_alive(int(pid))):
            try:
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.process:
            self.process.wait()

    def is_alive(self) -> bool:
        if self.process:
            return self.process.poll() is None
        pid = read_status(self.run_dir).get("pid")
        return bool(pid) and _pid_alive(int(pid))

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Until the run leaves the running state (or timeout seconds); returns its status."""
        if self.process:
            self.process.wait(timeout)
            return self.status()
        deadline = None if timeout is None else time.time() + timeout
        while (status := self.status()).get("state") == "running" and self.is_alive():
            if deadline is not None and time.time() > deadline:
                raise TimeoutError(f"run {self.run_dir.name} still running after {timeout}s")
            time.sleep(0.2)
        return status

    def status(self) -> dict[str, Any]:
        if self.process:
            self.process.poll()  # reap, so a dead child is not mistaken for a live zombie
        return read_status(self.run_dir)


def _new_run_dir(runs_root: Path, name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        run_dir = runs_root / f"{stamp}-{name}" if n == 0 else runs_root / f"{stamp}-{name}-{n}"
        try:
            run_dir.mkdir(parents=True)
            return run_dir
        except FileExistsError:
            continue
    raise RuntimeError("could not create a run folder")


def _spawn(run_dir: Path) -> RunHandle:
    repo_root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(repo_root), os.environ.get("PYTHONPATH")]))}
    with open(run_dir / "log.txt", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "training.runner", str(run_dir)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=repo_root, env=env,
                                start_new_session=True)
    # reap the child when it ends, so a finished run never lingers as <defunct> until the next one starts
    threading.Thread(target=proc.wait, name=f"reap-{run_dir.name}", daemon=True).start()
    st = read_json(run_dir / "status.json")
    write_json(run_dir / "status.json", {**st, "state": "running", "pid": proc.pid, "error": None,
                                          "updated": time.time()})
    return RunHandle(run_dir, proc)


def prepare_run(config: TrainConfig, runs_root: str | Path) -> Path:
    """Check the inputs (fast failures here, not minutes later in the child), create the run folder, pin the
    base model's hash, write config.json and an initial status.json."""
    pairs = scan_dataset(config.dataset_dir)
    pinned = base_model_hash(config.base_model)
    if config.base_model_hash and config.base_model_hash != pinned:
        raise ValueError(f"base model {config.base_model} has hash {pinned}, not the "
                         f"{config.base_model_hash} this config was made for")
    config = dataclasses.replace(config, base_model_hash=pinned)
    run_dir = _new_run_dir(Path(runs_root), config.output_name)
    write_json(run_dir / "config.json", config.to_dict())
    write_json(run_dir / "status.json", {"state": "running", "step": 0, "total": config.steps, "eta_s": None,
                                          "error": None, "pid": None, "images": len(pairs),
                                          "started": time.time(), "updated": time.time()})
    return run_dir


def start_run(config: TrainConfig, runs_root: str | Path) -> RunHandle:
    """Create a run folder and start training in a child process (its own process group)."""
    return _spawn(prepare_run(config, runs_root))


def resume_run(run_dir: str | Path) -> RunHandle:
    """Restart a stopped, killed or failed run; the child continues from the newest checkpoint."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ValueError(f"{run_dir} is not a training run folder (no config.json)")
    status = read_status(run_dir)
    if status.get("state") == "done":
        raise ValueError(f"run {run_dir.name} has already finished")
    if status.get("state") == "running":
        raise ValueError(f"run {run_dir.name} is still running (pid {status.get('pid')})")
    cfg = TrainConfig.from_dict(read_json(run_dir / "config.json"))
    check_base(cfg)
    (run_dir / "STOP").unlink(missing_ok=True)
    return _spawn(run_dir)


def check_base(cfg: TrainConfig) -> str:
    """The base model's hash now; a ValueError when it is not the one the run was started on."""
    current = base_model_hash(cfg.base_model)
    if cfg.base_model_hash and current != cfg.base_model_hash:
        raise ValueError(f"the base model at {cfg.base_model} changed since this run started (hash "
                         f"{cfg.base_model_hash} then, {current} now); a LoRA cannot continue on a "
                         "different base")
    return current
