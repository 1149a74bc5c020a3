"""The studio's DuckDB file: jobs and images, votes, datasets, benchmarks, with versioned migrations.

One process owns the file (DuckDB allows one writer). All access goes through one connection under one lock,
and every multi-row change is a transaction, so a crash never leaves a job half-recorded.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

MIGRATIONS: list[str] = [
    # 1: jobs and their images
    """
    CREATE TABLE jobs (
        id VARCHAR PRIMARY KEY,
        seq BIGINT NOT NULL,
        kind VARCHAR NOT NULL,
        source VARCHAR NOT NULL,
        owner VARCHAR,
        prompt VARCHAR,
        params JSON NOT NULL,
        status VARCHAR NOT NULL,
        error VARCHAR,
        created TIMESTAMP NOT NULL,
        started TIMESTAMP,
        finished TIMESTAMP,
        seconds DOUBLE
    );
    CREATE TABLE images (
        id VARCHAR PRIMARY KEY,
        job_id VARCHAR NOT NULL,
        idx INTEGER NOT NULL,
        seed BIGINT NOT NULL,
        path VARCHAR NOT NULL,
        raw_path VARCHAR,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        created TIMESTAMP NOT NULL
    );
    """,
    # 2: Compare tab: contenders, battles (slot order = shown order), their images, one vote per battle
    """
    CREATE TABLE contenders (name VARCHAR PRIMARY KEY, spec JSON NOT NULL, created TIMESTAMP NOT NULL);
    CREATE TABLE battles (
        id VARCHAR PRIMARY KEY,
        job_id VARCHAR,
        prompt VARCHAR NOT NULL,
        prompt_set VARCHAR,
        seed BIGINT NOT NULL,
        settings JSON NOT NULL,
        contenders JSON NOT NULL,
        blind BOOLEAN NOT NULL,
        created TIMESTAMP NOT NULL
    );
    CREATE TABLE battle_images (
        battle_id VARCHAR NOT NULL,
        slot INTEGER NOT NULL,
        contender VARCHAR NOT NULL,
        path VARCHAR NOT NULL,
        raw_path VARCHAR,
        PRIMARY KEY (battle_id, slot)
    );
    CREATE TABLE votes (
        battle_id VARCHAR PRIMARY KEY,
        choice VARCHAR NOT NULL,
        voter VARCHAR,
        created TIMESTAMP NOT NULL
    );
    """,
    # 3: datasets mirrored from their folders (the folder is the truth; these rows are for queries and plots)
    """
    CREATE TABLE datasets (
        name VARCHAR PRIMARY KEY, path VARCHAR NOT NULL, trigger VARCHAR, class_word VARCHAR,
        images INTEGER NOT NULL, included INTEGER NOT NULL, updated TIMESTAMP NOT NULL
    );
    CREATE TABLE dataset_images (
        dataset VARCHAR NOT NULL, file VARCHAR NOT NULL, sha256 VARCHAR NOT NULL, width INTEGER, height INTEGER,
        native_w INTEGER, native_h INTEGER, native_scale DOUBLE, n_colours INTEGER, caption VARCHAR,
        include BOOLEAN, problems JSON, PRIMARY KEY (dataset, file)
    );
    """,
    # 4: what each job measured (the production figures), and benchmark runs: one row per measured figure, with
    #    the context that makes figures comparable (version, model and LoRAs, device, libraries, machine)
    """
    ALTER TABLE jobs ADD COLUMN steps INTEGER;
    ALTER TABLE jobs ADD COLUMN steps_per_s DOUBLE;
    ALTER TABLE jobs ADD COLUMN peak_mem_mb DOUBLE;
    ALTER TABLE jobs ADD COLUMN device VARCHAR;
    CREATE TABLE benchmarks (
        run_id VARCHAR NOT NULL, created TIMESTAMP NOT NULL, suite VARCHAR NOT NULL, benchmark VARCHAR NOT NULL,
        metric VARCHAR NOT NULL, value DOUBLE, unit VARCHAR, goal DOUBLE, better VARCHAR, note VARCHAR,
        settings JSON, studio_version VARCHAR, git_commit VARCHAR, model VARCHAR, model_hash VARCHAR,
        loras VARCHAR, device VARCHAR, dtype VARCHAR, torch VARCHAR, cuda VARCHAR, diffusers VARCHAR,
        cpu VARCHAR, gpu VARCHAR, threads INTEGER, host VARCHAR
    );
    """,
]


class StoreLockedError(RuntimeError):
    pass


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Store:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(self.path))
        except duckdb.IOException as exc:
            raise StoreLockedError(
                f"{self.path} is in use by another process (is the studio already running?): {exc}"
            ) from exc
        self._lock = threading.RLock()
        self._migrate()

    def close(self) -> None:
        with self._lock:
            self._con.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            self._con.execute("BEGIN TRANSACTION")
            try:
                yield self._con
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    def query(self, sql: str, args: list | tuple = ()) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._con.execute(sql, args)
            cols = [d[0] for d in cur.description] if cur.description else []
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    @property
    def version(self) -> int:
        return self.query("SELECT max(version) AS v FROM schema_version")[0]["v"] or 0

    def _migrate(self) -> None:
        with self._lock:
            self._con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER, applied TIMESTAMP)")
        current = self.version
        for number, sql in enumerate(MIGRATIONS, start=1):
            if number <= current:
                continue
            with self.transaction() as con:
                con.execute(sql)
                con.execute("INSERT INTO schema_version VALUES (?, ?)", [number, now()])

    # -- jobs ---------------------------------------------------------------------------------------------

    def add_job(self, job_id: str, kind: str, source: str, owner: str | None, params: dict, prompt: str) -> int:
        with self.transaction() as con:
            seq = con.execute("SELECT coalesce(max(seq), 0) + 1 FROM jobs").fetchone()[0]
            con.execute(
                "INSERT INTO jobs (id, seq, kind, source, owner, prompt, params, status, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
                [job_id, seq, kind, source, owner, prompt, json.dumps(params), now()],
            )
        return seq

    def mark_job(self, job_id: str, status: str, error: str | None = None, params: dict | None = None) -> None:
        with self.transaction() as con:
            if status == "running":
                con.execute("UPDATE jobs SET status=?, started=? WHERE id=?", [status, now(), job_id])
            else:
                con.execute(
                    "UPDATE jobs SET status=?, error=?, finished=?, "
                    "seconds=date_diff('millisecond', started, ?::TIMESTAMP) / 1000.0 WHERE id=?",
                    [status, error, now(), now(), job_id],
                )
            if params is not None:
                con.execute("UPDATE jobs SET params=? WHERE id=?", [json.dumps(params), job_id])

    def record_figures(self, job_id: str, steps: int, steps_per_s: float | None, peak_mem_mb: float | None,
                       device: str) -> None:
        """What the queue measured while the job ran (its seconds are the status change's)."""
        with self.transaction() as con:
            con.execute("UPDATE jobs SET steps=?, steps_per_s=?, peak_mem_mb=?, device=? WHERE id=?",
                        [steps, steps_per_s, peak_mem_mb, device, job_id])

    def finish_job(self, job_id: str, params: dict, images: list[dict]) -> None:
        """Images and the 'done' status land together or not at all."""
        with self.transaction() as con:
            for im in images:
                con.execute(
                    "INSERT INTO images (id, job_id, idx, seed, path, raw_path, width, height, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [im["id"], job_id, im["idx"], im["seed"], im["path"], im.get("raw_path"),
                     im["width"], im["height"], now()],
                )
            t = now()
            con.execute(
                "UPDATE jobs SET status='done', params=?, finished=?, "
                "seconds=date_diff('millisecond', started, ?::TIMESTAMP) / 1000.0 WHERE id=?",
                [json.dumps(params), t, t, job_id],
            )

    def interrupt_stale_jobs(self) -> int:
        """Jobs left queued or running by a studio that died are marked, not silently re-run."""
        with self.transaction() as con:
            n = con.execute("SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')").fetchone()[0]
            con.execute(
                "UPDATE jobs SET status='interrupted', error='the studio stopped before this job finished' "
                "WHERE status IN ('queued', 'running')"
            )
        return n

    def job(self, job_id: str) -> dict | None:
        rows = self.query("SELECT * FROM jobs WHERE id=?", [job_id])
        if not rows:
            return None
        row = rows[0]
        row["params"] = json.loads(row["params"])
        row["images"] = self.query("SELECT * FROM images WHERE job_id=? ORDER BY idx", [job_id])
        return row

    def jobs(self, limit: int = 50) -> list[dict]:
        return self.query("SELECT * FROM jobs ORDER BY seq DESC LIMIT ?", [limit])

    def history(self, text: str = "", limit: int = 48) -> list[dict]:
        """Newest images first, optionally filtered by words of the prompt."""
        return self.query(
            "SELECT i.*, j.prompt, j.params FROM images i JOIN jobs j ON j.id = i.job_id "
            "WHERE j.status = 'done' AND (? = '' OR j.prompt ILIKE '%' || ? || '%') "
            "ORDER BY j.seq DESC, i.idx LIMIT ?",
            [text, text, limit],
        )
