"""Compare: the same prompt and seed through several contenders, blind votes, a leaderboard.

A contender is a named (checkpoint, LoRAs with weights, key settings) combination. A battle renders one
prompt + seed through 2-4 contenders on the resident pipeline (adapters switched, base not reloaded), in a
random shown order. Until the battle is voted on, nothing a client receives names a contender: slots are
"A", "B", ..., image files are named by battle and slot and carry no metadata. Votes are committed one by one,
so killing the studio mid-session loses none.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from pipelines.pixel import PixelParams
from pipelines.render import SpriteOutput, default_sampler, offset_steps
from pipelines.sprite import generate_sprites
from studio import limits
from studio.core import Studio
from studio.features import ratings
from studio.features.ratings import Leaderboard, Vote, most_uncertain_pair, votes_from_ranking
from studio.files import save_png
from studio.jobs import Job, Runner
from studio.params import GenerateParams, LoraRef, new_seed, parse_loras
from studio.registry import ModelError
from studio.samplers import parse_sampler
from studio.store import now

SLOTS = "ABCDEFGH"[: limits.MAX_CONTENDERS]  # a battle's shown order
CHOICES_2 = {"A": "a", "B": "b", "tie": "tie", "both_bad": "both_bad"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.+@:-]{0,63}$")
PROMPT_SETS_DIR = Path(__file__).with_name("prompt_sets")


class CompareError(ValueError):
    pass


@dataclass(frozen=True)
class Contender:
    name: str
    model: str | None = None  # None: the studio's default checkpoint
    loras: tuple[LoraRef, ...] = ()
    steps: int | None = None  # None: the battle's setting
    guidance: float | None = None
    sampler: str | None = None  # None: the checkpoint's own

    def __post_init__(self) -> None:
        if not _NAME.match(self.name or ""):
            raise CompareError(f"contender name {self.name!r}: use 1-64 letters, digits, space and _.+@:-")
        if self.sampler is not None:
            object.__setattr__(self, "sampler", parse_sampler(self.sampler)[0])

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["loras"] = [{"name": lr.name, "weight": lr.weight} for lr in self.loras]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Contender:
        return cls(**{**d, "loras": parse_loras(d.get("loras"))})

    @classmethod
    def parse(cls, text: str) -> Contender:
        """`name=model+lora:0.8+lora2` as typed on the command line; `name=+lora:1.0` uses the default model."""
        name, _, spec = text.partition("=")
        model, *loras = spec.split("+") if spec else ("",)
        return cls(name.strip(), model.strip() or None, parse_loras(list(loras)))


@dataclass(frozen=True)
class BattleSettings:
    steps: int = 30
    guidance: float = 6.0
    sprite_size: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_prompt_sets(*folders: Path, problems: list[str] | None = None) -> dict[str, list[str]]:
    """Named prompt lists from TOML files (`prompts = [...]`); later folders override earlier ones. A bad file
    raises CompareError, or with a `problems` list is skipped and reported there."""
    sets: dict[str, list[str]] = {}
    for folder in folders:
        for path in sorted(Path(folder).glob("*.toml")) if Path(folder).is_dir() else []:
            try:
                name, prompts = _prompt_set(path)
            except CompareError as exc:
                if problems is None:
                    raise
                problems.append(str(exc))
                continue
            sets[name] = prompts
    return sets


def _prompt_set(path: Path) -> tuple[str, list[str]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CompareError(f"{path}: not valid TOML ({exc})") from exc
    prompts = data.get("prompts")
    if not isinstance(prompts, list) or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise CompareError(f"{path}: field 'prompts' must be a list of non-empty strings")
    return str(data.get("name") or path.stem), [p.strip() for p in prompts]


class Arena:
    """Contenders, battles and votes over one studio's queue, manager and DuckDB store."""

    def __init__(self, studio: Studio):
        self.studio = studio
        self.store = studio.store

    def runners(self) -> dict[str, Runner]:
        """Compare's job kinds, for the queue (registered where the app is assembled)."""
        return {"battle": self._run_battle, "sweep": self._run_sweep}

    def _render_each(self, job: Job, variants: list[GenerateParams]) -> list[SpriteOutput]:
        """One sprite per params on the resident pipeline (adapters switched, the base kept), with progress
        counted over all of them."""
        total, done, outputs = sum(p.steps for p in variants), 0, []
        for p in variants:
            pipe = self.studio.manager.activate(p.model, p.loras)
            native = pipe.default_sample_size * pipe.vae_scale_factor
            p = p.resolved(width=native, height=native, model=p.model, sampler=default_sampler(pipe))
            outputs.append(generate_sprites(pipe, p, offset_steps(job.check, done, p.steps, total))[0])
            done += p.steps
        return outputs

    # -- contenders ---------------------------------------------------------------------------------------

    def save_contender(self, c: Contender) -> Contender:
        self._check_contender(c)
        with self.store.transaction() as con:
            con.execute("DELETE FROM contenders WHERE name = ?", [c.name])
            con.execute("INSERT INTO contenders VALUES (?, ?, ?)", [c.name, json.dumps(c.to_dict()), now()])
        return c

    def contenders(self) -> list[Contender]:
        rows = self.store.query("SELECT spec FROM contenders ORDER BY name")
        return [Contender.from_dict(json.loads(r["spec"])) for r in rows]

    def contender(self, name: str) -> Contender:
        for c in self.contenders():
            if c.name == name:
                return c
        raise CompareError(f"unknown contender {name!r}; save it first")

    def _check_contender(self, c: Contender) -> None:
        """Missing checkpoints or LoRA files are reported by contender name, before any GPU work."""
        try:
            if c.model:
                self.studio.registry.checkpoint(c.model)
            for ref in c.loras:
                self.studio.registry.lora(ref.name)
        except ModelError as exc:
            raise CompareError(f"contender {c.name!r}: {exc}") from exc

    # -- prompt sets --------------------------------------------------------------------------------------

    def prompt_sets(self, problems: list[str] | None = None) -> dict[str, list[str]]:
        """Built-in and user prompt sets; a broken user file raises, or with `problems` is skipped."""
        return load_prompt_sets(PROMPT_SETS_DIR, self.studio.settings.data_dir / "prompt_sets", problems=problems)

    def pick_prompt(self, prompt_set: str, rng: random.Random | None = None) -> str:
        problems: list[str] = []
        sets = self.prompt_sets(problems)
        if prompt_set not in sets:
            broken = [p for p in problems if f"{prompt_set}.toml" in p]
            raise CompareError(broken[0] if broken else
                               f"unknown prompt set {prompt_set!r} (available: {', '.join(sets) or 'none'})")
        if not sets[prompt_set]:
            raise CompareError(f"prompt set {prompt_set!r} is empty")
        return (rng or random).choice(sets[prompt_set])

    def surprise_pair(self) -> tuple[str, str]:
        names = [c.name for c in self.contenders()]
        if len(names) < 2:
            raise CompareError("save at least two contenders first")
        return most_uncertain_pair(self.votes(), names)

    # -- battles ------------------------------------------------------------------------------------------

    def submit_battle(self, names: list[str], prompt: str, *, seed: int | None = None, prompt_set: str | None = None,
                      settings: BattleSettings = BattleSettings(), blind: bool = True, owner: str | None = None,
                      shuffle: random.Random | None = None) -> Job:
        if not 2 <= len(names) <= len(SLOTS):
            raise CompareError(f"a battle needs 2 to {len(SLOTS)} contenders, got {len(names)}")
        if len(set(names)) != len(names):
            raise CompareError("each contender may appear only once in a battle")
        contenders = [self.contender(n) for n in names]
        for c in contenders:
            self._check_contender(c)
        (shuffle or random.SystemRandom()).shuffle(contenders)  # shown order: A, B, ... randomised
        seed = new_seed() if seed is None else seed
        params = [self._params(c, prompt, seed, settings) for c in contenders]  # validates before queueing
        payload = _BattleJob(uuid.uuid4().hex[:12], prompt, prompt_set, seed, settings, contenders, blind, params)
        return self.studio.queue.submit("battle", payload, source="compare", owner=owner)

    def _params(self, c: Contender, prompt: str, seed: int, s: BattleSettings) -> GenerateParams:
        pixel = PixelParams(size=s.sprite_size, size_mode="exact") if s.sprite_size else PixelParams()
        return self.studio.check_generate(GenerateParams(
            prompt=prompt, model=c.model, loras=c.loras, seed=seed, steps=c.steps or s.steps,
            guidance=c.guidance if c.guidance is not None else s.guidance, pixel=pixel, sampler=c.sampler or "default",
        ))

    def _run_battle(self, job: Job) -> str:
        b: _BattleJob = job.params
        outputs = self._render_each(job, b.params)
        folder = self.studio.settings.outputs_dir / "battles"
        written = []
        try:
            for slot, out in enumerate(outputs):
                # no PNG metadata: it would name the model and LoRAs before the vote
                written.append(save_png(out.sprite, folder / f"{b.id}-{SLOTS[slot]}.png"))
                written.append(save_png(out.raw, folder / f"{b.id}-{SLOTS[slot]}-raw.png"))
            with self.store.transaction() as con:
                con.execute(
                    "INSERT INTO battles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [b.id, job.id, b.prompt, b.prompt_set, b.seed, json.dumps(b.settings.to_dict()),
                     json.dumps([c.to_dict() for c in b.contenders]), b.blind, now()],
                )
                for slot, c in enumerate(b.contenders):
                    con.execute("INSERT INTO battle_images VALUES (?, ?, ?, ?, ?)",
                                [b.id, slot, c.name, str(written[2 * slot]), str(written[2 * slot + 1])])
                t = now()  # the 'done' row as Store.finish_job writes it: finished and the job's seconds
                con.execute("UPDATE jobs SET status='done', finished=?, "
                            "seconds=date_diff('millisecond', started, ?::TIMESTAMP) / 1000.0 WHERE id=?",
                            [t, t, job.id])
        except BaseException:
            for p in written:
                p.unlink(missing_ok=True)
            raise
        return b.id

    def battle(self, battle_id: str) -> dict[str, Any]:
        """What a client may see: slots and images; contender names only once voted (or if not blind)."""
        rows = self.store.query("SELECT * FROM battles WHERE id = ?", [battle_id])
        if not rows:
            raise CompareError(f"unknown battle {battle_id!r}")
        row = rows[0]
        images = self.store.query("SELECT * FROM battle_images WHERE battle_id = ? ORDER BY slot", [battle_id])
        vote = self.store.query("SELECT choice, voter FROM votes WHERE battle_id = ?", [battle_id])
        reveal = bool(vote) or not row["blind"]
        view = {
            "id": battle_id, "prompt": row["prompt"], "prompt_set": row["prompt_set"], "seed": row["seed"],
            "blind": row["blind"], "voted": vote[0]["choice"] if vote else None,
            "slots": [{"slot": SLOTS[im["slot"]], "path": im["path"], "raw_path": im["raw_path"]} for im in images],
        }
        if reveal:
            for slot, im in zip(view["slots"], images, strict=True):
                slot["contender"] = im["contender"]
        return view

    # -- votes --------------------------------------------------------------------------------------------

    def vote(self, battle_id: str, choice: str, voter: str | None = None) -> dict[str, Any]:
        """`choice`: A/B/tie/both_bad for two contenders; for more, the best slot (A-D) or tie/both_bad."""
        view = self.battle(battle_id)  # unknown battle -> CompareError
        n = len(view["slots"])
        valid = set(SLOTS[:n]) | {"tie", "both_bad"}
        if choice not in valid:
            raise CompareError(f"vote must be one of {', '.join(sorted(valid))}, got {choice!r}")
        with self.store.transaction() as con:
            if con.execute("SELECT count(*) FROM votes WHERE battle_id = ?", [battle_id]).fetchone()[0]:
                raise CompareError(f"battle {battle_id} already has a vote")
            con.execute("INSERT INTO votes VALUES (?, ?, ?, ?)", [battle_id, choice, voter or None, now()])
        return self.battle(battle_id)

    def votes(self, prompt_set: str | None = None) -> list:
        """Every vote as pairwise `ratings.Vote`s (a 'best of N' becomes best-beats-each-other)."""
        rows = self.store.query(
            "SELECT v.battle_id, v.choice, b.prompt, b.prompt_set FROM votes v JOIN battles b ON b.id = v.battle_id "
            "WHERE (? IS NULL OR b.prompt_set = ?) ORDER BY v.created", [prompt_set, prompt_set])
        names: dict[str, list[str]] = {}
        for im in self.store.query("SELECT battle_id, slot, contender FROM battle_images ORDER BY battle_id, slot"):
            names.setdefault(im["battle_id"], []).append(im["contender"])
        out = []
        for r in rows:
            who, kw = names[r["battle_id"]], {"prompt_set": r["prompt_set"], "prompt": r["prompt"]}
            if r["choice"] in {"tie", "both_bad"}:
                out += [Vote(r["battle_id"], a, b, r["choice"], **kw) for i, a in enumerate(who) for b in who[i + 1:]]
            elif len(who) == 2:
                out.append(Vote(r["battle_id"], who[0], who[1], CHOICES_2[r["choice"]], **kw))
            else:
                out += votes_from_ranking(r["battle_id"], who, who[SLOTS.index(r["choice"])], **kw)
        return out

    def leaderboard(self, prompt_set: str | None = None, rounds: int = 200, min_votes: int = 20) -> Leaderboard:
        return ratings.leaderboard(self.votes(prompt_set), rounds=rounds, min_votes=min_votes,
                           names=[c.name for c in self.contenders()])

    def export_votes(self, path: Path) -> Path:
        """Battles joined with their votes, as CSV or Parquet (by the file's suffix), via DuckDB's COPY."""
        path = Path(path)
        fmt = {".csv": "CSV, HEADER", ".parquet": "PARQUET"}.get(path.suffix.lower())
        if fmt is None:
            raise CompareError("export to a .csv or .parquet file")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        sql = ("SELECT b.id AS battle_id, b.created, b.prompt, b.prompt_set, b.seed, b.settings, b.contenders, "
               "v.choice, v.voter, v.created AS voted FROM battles b LEFT JOIN votes v ON v.battle_id = b.id "
               "ORDER BY b.created")
        with self.store.transaction() as con:
            con.execute(f"COPY ({sql}) TO '{tmp.as_posix()}' (FORMAT {fmt})")
        tmp.replace(path)
        return path


    # -- sweeps (an X/Y plot over one axis) ----------------------------------------------------------------

    def submit_sweep(self, params: GenerateParams, axis: str, values: list[float | str], lora: str | None = None,
                     owner: str | None = None) -> Job:
        """One prompt and seed, one setting varied: `lora_weight` (of `lora`), `steps`, `guidance` or `sampler`
        (sampler names; a sampler sweep with its own steps is two sweeps, e.g. LCM at 6 steps vs DPM++ at 30)."""
        if axis not in SWEEP_AXES:
            raise CompareError(f"sweep axis must be one of {', '.join(SWEEP_AXES)}, got {axis!r}")
        lo, hi = limits.MIN_SWEEP_VALUES, limits.MAX_SWEEP_VALUES
        if not lo <= len(values) <= hi:
            raise CompareError(f"a sweep needs {lo} to {hi} values")
        if axis == "lora_weight":
            if not lora:
                raise CompareError("a LoRA weight sweep needs a LoRA")
            others = tuple(r for r in params.loras if r.name != lora)
            variants = [dataclasses.replace(params, loras=(*others, LoraRef(lora, float(v)))) for v in values]
        elif axis == "steps":
            variants = [dataclasses.replace(params, steps=int(v)) for v in values]
        elif axis == "sampler":
            variants = [dataclasses.replace(params, sampler=str(v)) for v in values]
        else:
            variants = [dataclasses.replace(params, guidance=float(v)) for v in values]
        seed = new_seed() if params.seed is None else params.seed
        checked = [self.studio.check_generate(dataclasses.replace(v, seed=seed, count=1)) for v in variants]
        return self.studio.queue.submit("sweep", _SweepJob(axis, list(values), checked), source="compare",
                                        owner=owner)

    def _run_sweep(self, job: Job) -> dict[str, Any]:
        sweep: _SweepJob = job.params
        cells = [out.sprite for out in self._render_each(job, sweep.params)]
        labels = [f"{v}" if isinstance(v, str) else f"{sweep.axis} {v:g}" for v in sweep.values]
        grid = labelled_grid(cells, labels)
        path = save_png(grid, self.studio.settings.outputs_dir / "sweeps" / f"{job.id}.png")
        self.store.mark_job(job.id, "done")
        return {"grid": path, "cells": cells, "labels": labels}


SWEEP_AXES = ("lora_weight", "steps", "guidance", "sampler")


def labelled_grid(cells: list, labels: list[str], scale: int | None = None) -> Image.Image:
    """Cells side by side, each enlarged with nearest-neighbour to ~128 px, with its label underneath."""
    w, h = cells[0].size
    k = scale or max(1, 128 // max(w, h))
    pad = 16
    grid = Image.new("RGBA", (len(cells) * (w * k + 4), h * k + pad), (255, 255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for i, (cell, label) in enumerate(zip(cells, labels, strict=True)):
        x = i * (w * k + 4)
        grid.alpha_composite(cell.convert("RGBA").resize((w * k, h * k), Image.NEAREST), (x, 0))
        draw.text((x + 2, h * k + 2), label, fill=(0, 0, 0, 255))
    return grid


@dataclass
class _SweepJob:
    axis: str
    values: list[float | str]
    params: list[GenerateParams]

    @property
    def prompt(self) -> str:
        return self.params[0].prompt

    def to_dict(self) -> dict[str, Any]:
        return {"axis": self.axis, "values": self.values, "params": [p.to_dict() for p in self.params]}


@dataclass
class _BattleJob:
    """The queue payload for a battle; `to_dict` is what the jobs table records (names included: the
    jobs table is the studio's own history, never sent to a voter before the vote)."""

    id: str
    prompt: str
    prompt_set: str | None
    seed: int
    settings: BattleSettings
    contenders: list[Contender]
    blind: bool
    params: list[GenerateParams]

    def to_dict(self) -> dict[str, Any]:
        return {"battle_id": self.id, "prompt": self.prompt, "prompt_set": self.prompt_set, "seed": self.seed,
                "settings": self.settings.to_dict(), "contenders": [c.to_dict() for c in self.contenders]}

