"""Reference plans for the end-to-end test, computed without the panel's route: ComfyUI's own
KSampler sigmas (samplers.KSampler.set_steps + sample()'s start/last step slicing) and
core.schedule.plan_run. Run with ComfyUI's Python: reads a JSON list of cases on stdin,
writes a JSON list of plans on stdout.

    COMFYUI_PATH=... python reference_plans.py < cases.json
"""
import json
import os
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def load_core():
    pkg = types.ModuleType("deepcache_ref")
    pkg.__path__ = [str(ROOT)]  # the package without running its __init__ (no node registration)
    sys.modules["deepcache_ref"] = pkg
    import deepcache_ref.core.config as config
    import deepcache_ref.core.schedule as schedule
    return config, schedule


def main():
    sys.path.insert(0, os.environ["COMFYUI_PATH"])
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    import comfy.model_sampling
    import comfy.samplers
    config, schedule = load_core()
    ms = comfy.model_sampling.ModelSamplingDiscrete()

    class Model:
        def get_model_object(self, name):
            return ms

    out = []
    for c in json.load(sys.stdin):
        ks = comfy.samplers.KSampler(Model(), c["steps"], "cpu", c.get("sampler"), c.get("scheduler", "normal"),
                                     c.get("denoise", 1.0))
        sigmas = ks.sigmas
        last, first = c.get("end_step"), c.get("start_step")
        if last is not None and last < len(sigmas) - 1:
            sigmas = sigmas[:last + 1]
        if first is not None:
            sigmas = sigmas[first:] if first < len(sigmas) - 1 else sigmas[:0]
        cfg = config.DeepCacheConfig(
            interval=c["interval"], branch=c.get("branch", 0), start_percent=c["start_percent"],
            end_percent=c["end_percent"], schedule=c["schedule"], center=c.get("center", 0.3),
            power=c.get("power", 1.4))
        plan = schedule.plan_run(cfg, sigmas.tolist(), ms.percent_to_sigma(cfg.start_percent),
                                 ms.percent_to_sigma(cfg.end_percent))
        out.append([k.value for k in plan])
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
