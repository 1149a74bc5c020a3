"""The studio's datasets: folders under `<data>/datasets/` (the truth), mirrored into DuckDB for queries.

Thin glue between `training.dataset` (which owns the files) and the studio's store; the Dataset tab, the CLI
and (later) MCP all go through these functions.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from studio.core import Studio
from studio.store import now
from training.dataset import Dataset, DatasetError, list_datasets, tag_frequencies

if TYPE_CHECKING:  # plotly is imported when a figure is drawn: the CLI's dataset commands never draw one
    from plotly.graph_objects import Figure

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


def _bar(counts: dict, title: str, x_title: str, y_title: str = "images") -> Figure:
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(x=[str(k) for k in counts], y=list(counts.values()), text=list(counts.values())))
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, height=300,
                      xaxis={"type": "category"}, margin={"t": 40, "b": 40, "l": 40, "r": 10})
    return fig


def statistics_figures(ds: Dataset, top_tags: int = 30) -> dict[str, Figure]:
    """Plotly figures for the Dataset tab, every bar an explicit count (so the numbers are in the figure):
    native_size (images per native sprite size, most common first), palette (images per colour count),
    caption_length (images per caption length in words) and tags (the `top_tags` most used caption tags)."""
    import plotly.graph_objects as go

    recs = ds.records
    sizes = Counter(f"{r.native_size[0]}x{r.native_size[1]}" for r in recs)
    palette = Counter(r.n_colours for r in recs)
    words = Counter(len(r.caption.replace(",", " ").split()) for r in recs)
    tags = list(tag_frequencies(ds).items())[:top_tags]
    tag_fig = go.Figure(go.Bar(x=[c for _, c in tags], y=[t for t, _ in tags], orientation="h",
                               text=[c for _, c in tags]))
    tag_fig.update_layout(title="Most used caption tags", xaxis_title="captions", height=max(240, 22 * len(tags)),
                          yaxis={"autorange": "reversed", "type": "category"},
                          margin={"t": 40, "b": 40, "l": 10, "r": 10})
    return {
        "native_size": _bar(dict(sizes.most_common()), "Native sprite sizes", "native size (px)"),
        "palette": _bar(dict(sorted(palette.items())), "Palette sizes", "colours"),
        "caption_length": _bar(dict(sorted(words.items())), "Caption lengths", "words"),
        "tags": tag_fig,
    }
