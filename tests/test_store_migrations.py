"""DuckDB migrations: a database written by the oldest schema, with rows in it, opens in today's studio.

The old file is made here with raw SQL, as schema version 1 wrote it (jobs and images only), not with the
studio's own migration list, so a migration that is skipped, reordered or rewritten in place shows up as a
missing table, a wrong version or lost rows.
"""

from __future__ import annotations

import json
from datetime import datetime

import duckdb

# schema version 1, written out as it shipped
SCHEMA_1 = """
CREATE TABLE schema_version (version INTEGER, applied TIMESTAMP);
CREATE TABLE jobs (
    id VARCHAR PRIMARY KEY, seq BIGINT NOT NULL, kind VARCHAR NOT NULL, source VARCHAR NOT NULL, owner VARCHAR,
    prompt VARCHAR, params JSON NOT NULL, status VARCHAR NOT NULL, error VARCHAR, created TIMESTAMP NOT NULL,
    started TIMESTAMP, finished TIMESTAMP, seconds DOUBLE
);
CREATE TABLE images (
    id VARCHAR PRIMARY KEY, job_id VARCHAR NOT NULL, idx INTEGER NOT NULL, seed BIGINT NOT NULL,
    path VARCHAR NOT NULL, raw_path VARCHAR, width INTEGER NOT NULL, height INTEGER NOT NULL,
    created TIMESTAMP NOT NULL
);
INSERT INTO schema_version VALUES (1, TIMESTAMP '2024-05-01 10:00:00');
"""
# the tables the later migrations add (Compare: 2; datasets: 3)
LATER_TABLES = {"contenders", "battles", "battle_images", "votes", "datasets", "dataset_images"}


def old_database(path) -> None:
    t = datetime(2024, 5, 1, 10, 0, 0)
    con = duckdb.connect(str(path))
    con.execute(SCHEMA_1)
    con.execute("INSERT INTO jobs VALUES ('job000000001', 1, 'generate', 'ui', NULL, 'a red slime', ?, 'done', NULL, "
                "?, ?, ?, 2.5)", [json.dumps({"prompt": "a red slime", "seed": 7}), t, t, t])
    con.execute("INSERT INTO jobs VALUES ('job000000002', 2, 'generate', 'cli', NULL, 'a blue slime', ?, 'failed', "
                "'out of memory', ?, ?, ?, 1.0)", [json.dumps({"prompt": "a blue slime"}), t, t, t])
    for i in range(2):
        con.execute("INSERT INTO images VALUES (?, 'job000000001', ?, ?, ?, ?, 32, 32, ?)",
                    [f"img{i}", i, 7 + i, f"/old/job000000001-{i}.png", f"/old/job000000001-{i}-raw.png", t])
    con.close()


def test_a_version_1_database_with_rows_is_migrated_to_the_current_schema(tmp_path):
    from studio.store import MIGRATIONS, Store

    path = tmp_path / "studio.duckdb"
    old_database(path)
    store = Store(path)
    try:
        assert store.version == len(MIGRATIONS)
        versions = [r["version"] for r in store.query("SELECT version FROM schema_version ORDER BY version")]
        assert versions == list(range(1, len(MIGRATIONS) + 1))  # each later migration ran exactly once
        tables = {r["table_name"] for r in store.query("SELECT table_name FROM information_schema.tables")}
        assert LATER_TABLES | {"jobs", "images"} <= tables
        # the old rows survived, unchanged
        job = store.job("job000000001")
        assert job["status"] == "done" and job["prompt"] == "a red slime" and job["params"]["seed"] == 7
        assert [(im["seed"], im["path"]) for im in job["images"]] == [(7, "/old/job000000001-0.png"),
                                                                      (8, "/old/job000000001-1.png")]
        failed = store.job("job000000002")
        assert failed["status"] == "failed" and failed["error"] == "out of memory"
        # new jobs continue the old numbering, and the new tables take rows
        assert store.add_job("job000000003", "generate", "ui", None, {"prompt": "x"}, "x") == 3
        store.query("INSERT INTO contenders VALUES ('base', '{}', now())")
        store.query("INSERT INTO datasets VALUES ('slimes', '/d', 'slm', NULL, 3, 3, now())")
    finally:
        store.close()
    again = Store(path)  # opening a current file again changes nothing
    try:
        assert again.version == len(MIGRATIONS)
        assert len(again.query("SELECT * FROM schema_version")) == len(MIGRATIONS)
        assert len(again.query("SELECT * FROM jobs")) == 3 and len(again.query("SELECT * FROM contenders")) == 1
    finally:
        again.close()
