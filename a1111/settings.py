"""The user's choices for one generation: UI values, Settings defaults and X/Y/Z
overrides, turned into one DeepCacheConfig per pass (base and hires)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from ..core import ConfigError, DeepCacheConfig

SECTION = ("deepcache", "DeepCache")

# key: (default, label); the Settings section and the UI defaults come from here
OPTIONS = {
    "deepcache_enable": (False, "Enable DeepCache by default"),
    "deepcache_interval": (3, "Cache interval (one full step, then interval-1 cached steps)"),
    "deepcache_branch": (0, "Cache branch (skip connection where the U-Net is cut; 0 = fastest)"),
    "deepcache_schedule": ("uniform", "Refresh schedule"),
    "deepcache_start": (0.0, "Start percent (caching begins this far into denoising)"),
    "deepcache_end": (1.0, "End percent (caching stops this far into denoising)"),
    "deepcache_hr_enable": (False, "Also cache on the hires-fix pass"),
    "deepcache_hr_interval": (3, "Hires pass cache interval"),
    "deepcache_hr_start": (0.0, "Hires pass start percent"),
}

# the order of the values ui() returns, which A1111 hands back to every hook
ARG_NAMES = ("enabled", "interval", "branch", "schedule", "start", "end",
             "hr_enabled", "hr_interval", "hr_start")

# X/Y/Z axes set these on the copy of p that one grid cell processes
OVERRIDE_ATTRS = {"enabled": "deepcache_enabled", "interval": "deepcache_interval",
                  "branch": "deepcache_branch"}


def default(key):
    """The Settings value of key, or its built-in default outside the web UI."""
    try:
        from modules import shared
        value = getattr(shared.opts, key)
    except Exception:
        value = None
    return OPTIONS[key][0] if value is None else value


@dataclass(frozen=True)
class Choices:
    """What the user chose for one generation, both passes."""
    enabled: bool
    base: DeepCacheConfig
    hr_enabled: bool
    hr: DeepCacheConfig

    def for_pass(self, hires: bool) -> Optional[DeepCacheConfig]:
        """The config of this pass, or None where DeepCache is off for it."""
        if not self.enabled or (hires and not self.hr_enabled):
            return None
        return self.hr if hires else self.base


def _int(name, value):
    # gradio sliders hand back floats (3.0); a fraction is a user error, not a rounding case
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ConfigError(f"{name} must be a whole number, got {value!r}")


def choices_from_args(args: Sequence, p=None) -> Choices:
    """UI values (in ARG_NAMES order), with X/Y/Z overrides found on p applied.

    Raises ConfigError with a clear message on bad values."""
    if len(args) < len(ARG_NAMES):
        raise ConfigError(f"DeepCache expected {len(ARG_NAMES)} script arguments, got {len(args)}")
    v = dict(zip(ARG_NAMES, args))
    for name, attr in OVERRIDE_ATTRS.items():
        if p is not None and getattr(p, attr, None) is not None:
            v[name] = getattr(p, attr)
    base = DeepCacheConfig(interval=_int("cache interval", v["interval"]), branch=_int("cache branch", v["branch"]),
                           start_percent=float(v["start"]), end_percent=float(v["end"]),
                           schedule=str(v["schedule"]))
    try:  # the hires pass keeps branch, schedule and end percent of the base pass
        hr = base.with_(interval=_int("hires cache interval", v["hr_interval"]), start_percent=float(v["hr_start"]))
    except ConfigError as e:
        raise ConfigError(f"hires pass: {e}") from None
    return Choices(enabled=bool(v["enabled"]), base=base, hr_enabled=bool(v["hr_enabled"]), hr=hr)
