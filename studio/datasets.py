"""The studio's datasets: folders under `<data>/datasets/` (the truth), mirrored into DuckDB for queries.

Thin glue between `training.dataset` (which owns the files) and the studio's store; the Dataset tab, the CLI
and (later) MCP all go through these functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from studio.store import now
from training.dataset import Dataset, DatasetError, list_datasets

if TYPE_CHECKING:
    from studio.core import Studio

FILTERS = ("all", "problems", "untagged", "duplicates", "excluded")


def root(studio: Studio) -> Path:
    return studio.settings.data_dir / "datasets"


def names(studio: Studio) -> list[str]:
    return list_datasets(root(studio)) if root(studio).is_dir() else []


def create(studio: Studio, name: str, trigger: str = "", class_word: str = "sprite") -> Dataset:
    root(studio).mkdir(parents=True, exist_ok=True)
    ds = Dataset.create(root(studio), name, trigger=trigger, class_word=class_word)
    sync(studio, ds)
    return ds


def open_dataset(studio: Studio, name: str) -> Dataset:
    if not name:
        raise DatasetError("choose or create a dataset first")
    return Dataset.open(root(studio), name)


def sync(studio: Studio, ds: Dataset) -> None:
    """Mirror one dataset's index into DuckDB in one transaction (rows replaced, never half-updated)."""
    recs = ds.records
    with studio.store.transaction() as con:
        con.execute("DELETE FROM dataset_images WHERE dataset = ?", [ds.name])
        con.execute("DELETE FROM datasets WHERE name = ?", [ds.name])
        con.execute("INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [ds.name, str(ds.path), ds.meta.trigger, ds.meta.class_word, len(recs),
                     sum(r.include for r in recs), now()])
        for r in recs:
            con.execute("INSERT INTO dataset_images VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [ds.name, r.file, r.sha256, r.width, r.height, r.native_size[0], r.native_size[1],
                         r.native_scale, r.n_colours, r.caption, r.include, json.dumps(list(r.problems))])


def filtered(ds: Dataset, which: str = "all") -> list:
    """Records for the grid: all, with problems, without a caption, in a duplicate group, or excluded."""
    if which not in FILTERS:
        raise DatasetError(f"filter must be one of {', '.join(FILTERS)}")
    dup = {f for g in ds.duplicates() for f in g.files} if which == "duplicates" else set()
    keep = {
        "all": lambda r: True,
        "problems": lambda r: bool(r.problems),
        "untagged": lambda r: not r.caption.strip(),
        "duplicates": lambda r: r.file in dup,
        "excluded": lambda r: not r.include,
    }[which]
    return [r for r in ds.records if keep(r)]
