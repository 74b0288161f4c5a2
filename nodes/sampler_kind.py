"""Which ComfyUI samplers call their step callback after the first of several
evaluations of a step (k-diffusion's loops: model, callback, model): the next
evaluation still belongs to the same step. Read off comfy/k_diffusion/sampling.py
(v0.3.64); a sampler not listed is taken to call back after each step's last call.
"""
from __future__ import annotations

MID_STEP_CALLBACK = frozenset({
    "sample_heun", "sample_heunpp2", "sample_dpm_2", "sample_dpm_2_ancestral", "sample_dpm_2_ancestral_RF",
    "sample_dpmpp_2s_ancestral", "sample_dpmpp_2s_ancestral_RF", "sample_dpmpp_2s_ancestral_cfg_pp",
    "sample_dpmpp_sde", "sample_dpmpp_sde_gpu", "sample_seeds_2", "sample_seeds_3", "sample_sa_solver",
    "sample_sa_solver_pece",
})


def calls_back_mid_step(sampler) -> bool:
    """sampler: the KSAMPLER object of a run (OUTER_SAMPLE's third argument)."""
    fn = getattr(sampler, "sampler_function", None)
    while hasattr(fn, "func"):  # functools.partial
        fn = fn.func
    return getattr(fn, "__name__", "") in MID_STEP_CALLBACK
