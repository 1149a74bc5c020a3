"""Samplers and schedules by the names A1111, Forge and ComfyUI users know, mapped onto diffusers schedulers.

Why a table: the names people type ("DPM++ 2M Karras", ComfyUI's "dpmpp_2m" + "karras") are the contract;
which diffusers class and config they mean is data, checked here without importing diffusers, and applied to
the resident pipeline by `scheduler_for` (a fresh scheduler from the checkpoint's own config, never a reload).
"default" is the checkpoint's own scheduler, exactly as it came.
"""

from __future__ import annotations

from typing import Any

from studio.values import ParamsError

# name -> (diffusers class, config overrides)
SAMPLERS: dict[str, tuple[str | None, dict[str, Any]]] = {
    "default": (None, {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler",
                        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "DPM++ SDE Karras": ("DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
    "Lightning": ("EulerDiscreteScheduler", {"timestep_spacing": "trailing"}),  # SDXL-Lightning, Turbo, Hyper
}
# schedule type -> config overrides, and the classes that take it
SCHEDULES: dict[str, dict[str, Any]] = {
    "automatic": {},
    "karras": {"use_karras_sigmas": True},
    "exponential": {"use_exponential_sigmas": True},
    "sgm_uniform": {"timestep_spacing": "trailing"},
    "trailing": {"timestep_spacing": "trailing"},
}
_SIGMA_SCHEDULES = {"karras", "exponential", "sgm_uniform", "trailing"}
_SPACING_ONLY = {"sgm_uniform", "trailing"}
SUPPORTED_SCHEDULES: dict[str, set[str]] = {
    "EulerDiscreteScheduler": _SIGMA_SCHEDULES,
    "DPMSolverMultistepScheduler": _SIGMA_SCHEDULES,
    "DPMSolverSDEScheduler": _SIGMA_SCHEDULES,
    "UniPCMultistepScheduler": _SIGMA_SCHEDULES,
    "EulerAncestralDiscreteScheduler": _SPACING_ONLY,
    "DDIMScheduler": _SPACING_ONLY,
    "LCMScheduler": _SPACING_ONLY,
}
# other spellings people paste (ComfyUI's sampler and scheduler names, A1111's older combined names)
ALIASES: dict[str, tuple[str, str | None]] = {
    "euler": ("Euler", None), "euler_ancestral": ("Euler a", None), "euler a": ("Euler a", None),
    "dpmpp_2m": ("DPM++ 2M", None), "dpm++ 2m": ("DPM++ 2M", None), "dpmpp_2m_sde": ("DPM++ 2M SDE", None),
    "dpmpp_sde": ("DPM++ SDE Karras", None), "dpm++ sde": ("DPM++ SDE Karras", None),
    "dpm++ 2m sde karras": ("DPM++ 2M SDE", "karras"), "ddim": ("DDIM", None), "uni_pc": ("UniPC", None),
    "unipc": ("UniPC", None), "lcm": ("LCM", None), "lightning": ("Lightning", None), "turbo": ("Lightning", None),
    "normal": ("default", None), "automatic": ("default", None),
}
SCHEDULE_ALIASES = {"normal": "automatic", "simple": "automatic", "sgm uniform": "sgm_uniform",
                    "align your steps": "automatic"}


def parse_sampler(name: Any, schedule: Any = "automatic") -> tuple[str, str]:
    """(sampler, schedule) in their canonical spelling, from any spelling people paste; ParamsError names what
    is known. A combined name ("DPM++ 2M Karras") may carry its schedule."""
    if not isinstance(name, str) or not isinstance(schedule, str):
        raise ParamsError(f"sampler and schedule must be names, got {name!r} and {schedule!r}")
    sched = SCHEDULE_ALIASES.get(schedule.strip().lower(), schedule.strip().lower())
    if sched not in SCHEDULES:
        raise ParamsError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    canonical = {k.lower(): k for k in SAMPLERS}.get(name.strip().lower())
    if canonical is None and name.strip().lower() in ALIASES:
        canonical, implied = ALIASES[name.strip().lower()]
        sched = implied if implied and sched == "automatic" else sched
    if canonical is None:
        raise ParamsError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    cls = SAMPLERS[canonical][0]
    if sched != "automatic" and (cls is None or sched not in SUPPORTED_SCHEDULES[cls]):
        raise ParamsError(f"sampler {canonical!r} has no {sched!r} schedule")
    return canonical, sched


def scheduler_for(base, sampler: str, schedule: str, seed: int | None = None):
    """A new scheduler for one job, made from `base` (the checkpoint's own scheduler) by config: the same
    settings give the same steps every time, and nothing of an earlier job's sampler is left over."""
    import diffusers  # lazily: the table above is checked in every front end without it

    cls_name, overrides = SAMPLERS[sampler]
    cls = type(base) if cls_name is None else getattr(diffusers, cls_name)
    config = {**overrides, **SCHEDULES[schedule]}
    if cls_name == "DPMSolverSDEScheduler":
        config["noise_sampler_seed"] = seed  # its Brownian noise follows the job's seed, not a global RNG
    return cls.from_config(base.config, **config)


def a1111_name(sampler: str, schedule: str) -> tuple[str, str]:
    """(Sampler, Schedule type) as A1111 writes them in a PNG."""
    return ("Euler" if sampler == "default" else sampler), {"automatic": "Automatic", "karras": "Karras",
                                                             "exponential": "Exponential",
                                                             "sgm_uniform": "SGM Uniform",
                                                             "trailing": "Trailing"}[schedule]


def name_of(scheduler) -> str:
    """The table's name for a scheduler object (a checkpoint's own one, say), or "default" if none fits."""
    config = dict(scheduler.config)
    for name, (cls_name, overrides) in SAMPLERS.items():
        if cls_name == type(scheduler).__name__ and all(config.get(k) == v for k, v in overrides.items()):
            plain = {"use_karras_sigmas": False, "timestep_spacing": config.get("timestep_spacing")}
            if all(config.get(k, v) == v for k, v in plain.items() if k not in overrides):
                return name
    return "default"
