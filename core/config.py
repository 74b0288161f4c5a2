"""The user's DeepCache settings, validated once when a node or script is applied."""
from __future__ import annotations

from dataclasses import dataclass, replace

SCHEDULES = ("uniform", "non-uniform")


class ConfigError(ValueError):
    """A setting outside what DeepCache allows; the message says what is allowed."""


@dataclass(frozen=True)
class DeepCacheConfig:
    """interval N: one refresh step, then N-1 cached steps.
    branch b: input blocks 0..b and output blocks L-1-b..L-1 run on cached steps.
    start/end_percent: the part of the denoising process where caching is on
    (same meaning as ComfyUI's ControlNet Apply Advanced / EasyCache).
    center/power: the non-uniform schedule's c (as a fraction of the steps) and p."""

    interval: int = 3
    branch: int = 0
    start_percent: float = 0.0
    end_percent: float = 1.0
    schedule: str = "uniform"
    center: float = 0.3  # the paper's c=15 of T=50 steps
    power: float = 1.4

    def __post_init__(self):
        if isinstance(self.interval, bool) or not isinstance(self.interval, int) or not 1 <= self.interval <= 1000:
            raise ConfigError(f"cache_interval must be a whole number from 1 to 1000, got {self.interval!r}")
        if isinstance(self.branch, bool) or not isinstance(self.branch, int) or self.branch < 0:
            raise ConfigError(f"cache_branch must be a whole number >= 0, got {self.branch!r}")
        for name in ("start_percent", "end_percent"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name} must be between 0.0 and 1.0, got {v!r}")
        if self.start_percent > self.end_percent:
            raise ConfigError(
                f"start_percent ({self.start_percent}) must not be after end_percent ({self.end_percent})")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if not 0.0 <= self.center <= 1.0:
            raise ConfigError(f"center must be between 0.0 and 1.0 (a fraction of the steps), got {self.center!r}")
        if not 0.5 <= self.power <= 4.0:
            raise ConfigError(f"power must be between 0.5 and 4.0, got {self.power!r}")

    @property
    def enabled(self) -> bool:
        return self.interval > 1 and self.start_percent < self.end_percent

    def check_branch(self, depth: int) -> None:
        """Reject a branch this U-Net does not have (SD1/SD2: 12 blocks, SDXL: 9)."""
        if self.branch >= depth:
            raise ConfigError(
                f"cache_branch {self.branch} does not exist in this U-Net: it has {depth} skip branches, "
                f"so cache_branch must be 0..{depth - 1}")

    def with_(self, **changes) -> "DeepCacheConfig":
        return replace(self, **changes)
