"""Workflow templates: declarative TOML recipes (single sprite, item batch, walk cycle, tileset ...).

A template names its job kind, a prompt with `{placeholders}`, default values, and the params of each part
(generate / pixel / sheet / tiles). Users drop their own TOML files in `<data>/workflows/` and they appear in
the UI, CLI and MCP without code. Every error names the file and the field.
"""

from __future__ import annotations

import logging
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.pixel import PixelParams
from pipelines.sheet import SheetSpec
from pipelines.tiles import TileSpec
from studio.core import Studio
from studio.jobs import Job
from studio.params import GenerateParams

log = logging.getLogger(__name__)
BUILTIN_DIR = Path(__file__).resolve().parents[2] / "workflows"
KINDS = ("sprite", "batch", "sheet", "tileset")
_TOP = {"name", "description", "kind", "prompt", "negative", "values", "items", "generate", "pixel", "sheet", "tiles"}


class WorkflowError(ValueError):
    pass


@dataclass(frozen=True)
class Workflow:
    name: str
    path: Path
    kind: str
    prompt: str
    description: str = ""
    negative: str = ""
    values: dict[str, str] = field(default_factory=dict)
    items: tuple[str, ...] = ()  # batch: one sprite per item, `{item}` in the prompt
    generate: dict[str, Any] = field(default_factory=dict)
    pixel: dict[str, Any] = field(default_factory=dict)
    sheet: dict[str, Any] = field(default_factory=dict)
    tiles: dict[str, Any] = field(default_factory=dict)

    @property
    def placeholders(self) -> list[str]:
        names = {f for _, f, _, _ in string.Formatter().parse(self.prompt + " " + self.negative) if f}
        return sorted(names - {"item"})

    def _fill(self, text: str, values: dict[str, str], where: str) -> str:
        try:
            return text.format_map(values)
        except KeyError as exc:
            raise WorkflowError(f"{self.path.name}: {where} needs a value for {exc.args[0]!r} "
                                f"(set it with --set {exc.args[0]}=...)") from None

    def build(self, overrides: dict[str, str] | None = None, generate: dict[str, Any] | None = None):
        """(kind, GenerateParams, extra) with placeholders filled; `extra` is the SheetSpec, TileSpec or the
        item prompts. Every validation error is re-raised naming this file and the failing section."""
        values = {**self.values, **(overrides or {})}
        unknown = set(overrides or {}) - set(self.placeholders) - {"items"}
        if unknown:
            raise WorkflowError(f"{self.path.name}: no placeholder {', '.join(sorted(unknown))} "
                                f"(this workflow takes: {', '.join(self.placeholders) or 'none'})")
        prompt = self._fill(self.prompt, {**values, "item": "{item}"}, "prompt")
        negative = self._fill(self.negative, values, "negative")
        pixel = self._section("pixel", lambda: PixelParams.from_dict(self.pixel) if self.pixel else PixelParams())
        params = self._section("generate", lambda: GenerateParams.from_dict(
            {"prompt": prompt, "negative": negative, **self.generate, **(generate or {}), "pixel": pixel.to_dict()}))
        if self.kind == "sheet":
            return self.kind, params, self._section("sheet", lambda: SheetSpec.from_dict(self.sheet))
        if self.kind == "tileset":
            return self.kind, params, self._section("tiles", lambda: TileSpec.from_dict(self.tiles))
        if self.kind == "batch":
            raw = (overrides or {}).get("items")
            items = [i.strip() for i in raw.split(",")] if raw else list(self.items)
            if not items or not all(items):
                raise WorkflowError(f"{self.path.name}: items must be a non-empty list of names")
            return self.kind, params, [prompt.replace("{item}", i) for i in items]
        return self.kind, params, None

    def _section(self, name: str, make):
        try:
            return make()
        except (ValueError, TypeError) as exc:
            raise WorkflowError(f"{self.path.name}: [{name}] {exc}") from None


def _parse(path: Path) -> Workflow:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise WorkflowError(f"{path.name}: not valid TOML ({exc})") from None
    unknown = set(data) - _TOP
    if unknown:
        raise WorkflowError(f"{path.name}: unknown field(s) {', '.join(sorted(unknown))}")
    kind = data.get("kind", "sprite")
    if kind not in KINDS:
        raise WorkflowError(f"{path.name}: field 'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    if not isinstance(data.get("prompt"), str) or not data["prompt"].strip():
        raise WorkflowError(f"{path.name}: field 'prompt' must be a non-empty string")
    for key in ("values", "generate", "pixel", "sheet", "tiles"):
        if not isinstance(data.get(key, {}), dict):
            raise WorkflowError(f"{path.name}: [{key}] must be a table")
    items = data.get("items", [])
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise WorkflowError(f"{path.name}: field 'items' must be a list of strings")
    wf = Workflow(
        name=str(data.get("name") or path.stem), path=path, kind=kind, prompt=data["prompt"],
        description=str(data.get("description", "")), negative=str(data.get("negative", "")),
        values={k: str(v) for k, v in data.get("values", {}).items()}, items=tuple(items),
        generate=data.get("generate", {}), pixel=data.get("pixel", {}), sheet=data.get("sheet", {}),
        tiles=data.get("tiles", {}),
    )
    wf.build()  # a template that cannot build with its own defaults is reported now, by file and field
    return wf


def load_workflows(*folders: Path, problems: list[str] | None = None) -> dict[str, Workflow]:
    """Every `*.toml` in the folders (later folders override earlier ones by name).

    A bad file raises WorkflowError naming file and field; with a `problems` list it is skipped instead and
    its message appended, so one broken template of a user's never takes the others (or the studio) down."""
    out: dict[str, Workflow] = {}
    for folder in folders:
        if Path(folder).is_dir():
            for path in sorted(Path(folder).glob("*.toml")):
                try:
                    wf = _parse(path)
                except WorkflowError as exc:
                    if problems is None:
                        raise
                    log.warning("workflow skipped: %s", exc)
                    problems.append(str(exc))
                    continue
                out[wf.name] = wf
    return out


def workflows_for(studio: Studio, problems: list[str] | None = None) -> dict[str, Workflow]:
    """The studio's templates, built in and the user's; broken files are skipped (and put in `problems`)."""
    return load_workflows(BUILTIN_DIR, studio.settings.data_dir / "workflows",
                          problems=[] if problems is None else problems)


def run_workflow(studio: Studio, name: str, values: dict[str, str] | None = None, source: str = "python",
                 owner: str | None = None, generate: dict[str, Any] | None = None) -> Job:
    """Build the named workflow with `values` (and `generate` overrides such as seed or steps) and queue it."""
    problems: list[str] = []
    flows = workflows_for(studio, problems)
    if name not in flows:
        broken = [p for p in problems if p.startswith(f"{name}.toml:")]
        raise WorkflowError(broken[0] if broken else
                            f"unknown workflow {name!r} (available: {', '.join(sorted(flows)) or 'none'})")
    kind, params, extra = flows[name].build(values, generate)
    if kind == "sheet":
        return studio.submit_sheet(params, extra, source, owner)
    if kind == "tileset":
        return studio.submit_tileset(params, extra, source, owner)
    if kind == "batch":
        return studio.submit_batch(params, extra, source, owner)
    return studio.submit_generate(params, source, owner)
