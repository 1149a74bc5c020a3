"""Studio settings: defaults, overridden by `studio.toml`, overridden by `DGXP_*` environment variables.

One frozen object is built at start-up and handed to everything else, so no module reads the environment
on its own and a test can run a whole studio from a `Settings(...)` it made itself.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

ENV_PREFIX = "DGXP_"
DEMO_MODEL = "demo-tiny"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data")
    models_dir: Path = Path("models")
    host: str = "127.0.0.1"
    port: int = 7860
    password: str | None = None
    username: str = "studio"
    model: str | None = None  # default checkpoint name; None = first found, else the demo model
    device: str = "auto"  # auto | cuda | cpu | mps
    lan: bool = False
    max_side: int = 2048  # largest width/height a job may ask for
    max_count: int = 16  # most images in one job
    model_cache_gb: float = 40.0  # resident base pipelines, LRU by bytes
    project_roots: tuple[Path, ...] = ()  # where exports (Bevy assets) may be written
    mcp_token: str | None = None
    pause_generation_while_training: bool = False  # on a GPU without room for both, let training have it

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        if self.device not in {"auto", "cuda", "cpu", "mps"}:
            raise ValueError(f"device must be auto, cuda, cpu or mps, got {self.device!r}")
        if self.max_side < 64 or self.max_side % 8:
            raise ValueError(f"max_side must be a multiple of 8 and >= 64, got {self.max_side}")

    @property
    def bind_host(self) -> str:
        return "0.0.0.0" if self.lan else self.host

    @property
    def db_path(self) -> Path:
        return self.data_dir / "studio.duckdb"

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"

    @property
    def checkpoints_dir(self) -> Path:
        return self.models_dir / "checkpoints"

    @property
    def loras_dir(self) -> Path:
        return self.models_dir / "loras"

    def describe(self) -> dict[str, object]:
        """JSON-safe view for `dgx-pixels config`; secrets are masked, never printed."""
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in {"password", "mcp_token"}:
                value = "(set)" if value else None
            elif isinstance(value, Path):
                value = str(value.resolve())
            elif isinstance(value, tuple):
                value = [str(v) for v in value]
            out[f.name] = value
        return out


_FIELD_TYPES = {f.name: f for f in dataclasses.fields(Settings)}


def _coerce(name: str, raw: object) -> object:
    """Turn a TOML or environment value into the field's type, with an error that names the field."""
    default = _FIELD_TYPES[name].default
    try:
        if name in {"data_dir", "models_dir"}:
            return Path(str(raw)).expanduser()
        if name == "project_roots":
            items = raw.split(os.pathsep) if isinstance(raw, str) else list(raw)  # type: ignore[arg-type]
            return tuple(Path(str(p)).expanduser() for p in items if str(p))
        if name in {"lan", "pause_generation_while_training"}:
            if isinstance(raw, bool):
                return raw
            return str(raw).strip().lower() in {"1", "true", "yes", "on"}
        if isinstance(default, int) and not isinstance(default, bool):
            return int(raw)  # type: ignore[arg-type]
        if isinstance(default, float):
            return float(raw)  # type: ignore[arg-type]
        return None if raw in ("", None) else str(raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"setting {name!r}: cannot use {raw!r} ({exc})") from exc


def load_settings(config_file: Path | None = None, env: dict[str, str] | None = None, **overrides) -> Settings:
    """Defaults < `studio.toml` (or `config_file`) < `DGXP_*` environment < explicit overrides (CLI flags)."""
    env = dict(os.environ) if env is None else env
    values: dict[str, object] = {}
    path = Path(env.get(ENV_PREFIX + "CONFIG", config_file or "studio.toml"))
    if path.is_file():
        with path.open("rb") as fh:
            try:
                table = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"{path}: not valid TOML ({exc})") from exc
        table = table.get("studio", table)
        for key, raw in table.items():
            if key not in _FIELD_TYPES:
                raise ValueError(f"{path}: unknown setting {key!r}")
            values[key] = _coerce(key, raw)
    for key in _FIELD_TYPES:
        raw = env.get(ENV_PREFIX + key.upper())
        if raw is not None:
            values[key] = _coerce(key, raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)


__all__ = ["DEMO_MODEL", "Settings", "load_settings"]
