"""What scripts/deepcache_a1111.py needs: the Script class and the callbacks,
registered again each time A1111 (re)loads its scripts."""
from __future__ import annotations

from .hosts import remove_live_patches
from .job import ACTIVE, on_cfg_denoiser
from .options import register_settings
from .script import DeepCacheScript
from .tab import make_tab
from .xyz import register_axes


def _unloaded():
    ACTIVE.clear()
    remove_live_patches()


def register_callbacks() -> None:
    from modules import script_callbacks
    name = "deepcache"
    script_callbacks.on_ui_settings(register_settings, name=name)
    script_callbacks.on_ui_tabs(lambda: make_tab(DeepCacheScript), name=name)
    script_callbacks.on_before_ui(register_axes, name=name)
    script_callbacks.on_cfg_denoiser(on_cfg_denoiser, name=name)
    script_callbacks.on_script_unloaded(_unloaded, name=name)


__all__ = ["DeepCacheScript", "register_callbacks"]
