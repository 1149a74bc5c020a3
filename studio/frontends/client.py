"""The CLI's client for a studio that is already running on this machine (it holds the DuckDB file).

Jobs and training runs are sent to its local jobs API (`studio.frontends.rest`) with the studio's token, and
followed from here: a progress bar, Ctrl-C cancels. Errors come back as one line for the user and an exit
code, never a traceback.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from studio.frontends.auth import read_token
from studio.settings import Settings

FINAL = ("done", "failed", "cancelled")


class StudioUnreachable(RuntimeError):
    pass


class StudioClient:
    def __init__(self, settings: Settings):
        host = "127.0.0.1" if settings.bind_host in {"0.0.0.0", "::"} else settings.host
        self.url = f"http://{host}:{settings.port}/"
        token = read_token(settings)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to the studio; its JSON reply. ValueError carries the studio's refusal (a 4xx), and
        StudioUnreachable says that nothing answered."""
        import httpx  # lazily: only commands that talk to a running studio pay for it

        try:
            reply = httpx.post(self.url + path, json=body, headers=self.headers, timeout=120)
        except httpx.HTTPError as exc:
            raise StudioUnreachable(f"the studio's database is in use by another process, and no studio "
                                    f"answered at {self.url} ({exc})") from None
        if reply.status_code != 202:
            try:
                detail = reply.json().get("detail", reply.text)
            except ValueError:
                detail = reply.text
            raise ValueError(detail)
        return reply.json()

    def run_job(self, body: dict[str, Any], quiet: bool) -> dict[str, Any] | int:
        """Submit a job and follow it with a progress bar; Ctrl-C cancels it. The result's files (paths on
        this machine), or an exit code."""
        import httpx
        from tqdm import tqdm

        jobs = self.url + "api/v1/jobs"
        job_id = self.post("api/v1/jobs", {**body, "source": "cli"})["job_id"]
        print(f"the studio at {self.url} is running: job {job_id} runs on its queue", file=sys.stderr)
        try:
            with tqdm(unit="step", disable=quiet, file=sys.stderr) as bar:
                while True:
                    state = httpx.get(f"{jobs}/{job_id}", headers=self.headers, timeout=30).json()
                    bar.total, bar.n = state.get("total") or bar.total, state.get("step", 0)
                    bar.refresh()
                    if state["status"] in FINAL:
                        break
                    time.sleep(0.2)
        except KeyboardInterrupt:
            httpx.post(f"{jobs}/{job_id}/cancel", headers=self.headers, timeout=30)
            print("cancelled", file=sys.stderr)
            return 130
        if state["status"] != "done":
            print(f"error: job {job_id} {state['status']}: {state.get('error')}", file=sys.stderr)
            return 1
        return state["result"]
