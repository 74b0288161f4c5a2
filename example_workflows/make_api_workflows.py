"""Writes the API-format example workflows (example_workflows/api/*.json).

The UI-format workflows next to them (example_workflows/*.json, which ComfyUI lists as
templates of this node pack) are made from these by tests/e2e/make_ui_workflows.py in a
real ComfyUI front end, so both formats always describe the same graph.
"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
POS = "a photo of a lighthouse on a cliff at sunset, detailed, sharp focus"
NEG = "blurry, low quality, watermark"


def deepcache(model, interval=3, branch=0, start=0.0, end=1.0, schedule="uniform"):
    return {"class_type": "DeepCache", "_meta": {"title": "DeepCache"},
            "inputs": {"model": model, "cache_interval": interval, "cache_branch": branch, "start_percent": start,
                       "end_percent": end, "schedule": schedule, "center": 0.3, "power": 1.4}}


def node(cls, title=None, **inputs):
    return {"class_type": cls, "_meta": {"title": title or cls}, "inputs": inputs}


def ksampler(model, pos, neg, latent, steps=20, denoise=1.0):
    return node("KSampler", model=model, positive=pos, negative=neg, latent_image=latent, seed=42,
                steps=steps, cfg=7.0, sampler_name="euler", scheduler="normal", denoise=denoise)


def sd15_txt2img():
    return {
        "1": node("CheckpointLoaderSimple", "Load Checkpoint", ckpt_name="v1-5-pruned-emaonly-fp16.safetensors"),
        "2": deepcache(["1", 0]),
        "3": node("CLIPTextEncode", "Positive", text=POS, clip=["1", 1]),
        "4": node("CLIPTextEncode", "Negative", text=NEG, clip=["1", 1]),
        "5": node("EmptyLatentImage", width=512, height=512, batch_size=1),
        "6": ksampler(["2", 0], ["3", 0], ["4", 0], ["5", 0]),
        "7": node("VAEDecode", samples=["6", 0], vae=["1", 2]),
        "8": node("SaveImage", images=["7", 0], filename_prefix="DeepCache_sd15"),
    }


def sd15_img2img():
    return {
        "1": node("CheckpointLoaderSimple", "Load Checkpoint", ckpt_name="v1-5-pruned-emaonly-fp16.safetensors"),
        "2": deepcache(["1", 0]),
        "3": node("CLIPTextEncode", "Positive", text=POS, clip=["1", 1]),
        "4": node("CLIPTextEncode", "Negative", text=NEG, clip=["1", 1]),
        "9": node("LoadImage", image="example.png"),
        "10": node("ImageScale", image=["9", 0], upscale_method="bilinear", width=512, height=512, crop="center"),
        "5": node("VAEEncode", pixels=["10", 0], vae=["1", 2]),
        "6": ksampler(["2", 0], ["3", 0], ["4", 0], ["5", 0], steps=30, denoise=0.6),
        "7": node("VAEDecode", samples=["6", 0], vae=["1", 2]),
        "8": node("SaveImage", images=["7", 0], filename_prefix="DeepCache_img2img"),
    }


def sd15_controlnet():
    return {
        "1": node("CheckpointLoaderSimple", "Load Checkpoint", ckpt_name="v1-5-pruned-emaonly-fp16.safetensors"),
        "2": deepcache(["1", 0]),
        "3": node("CLIPTextEncode", "Positive", text=POS, clip=["1", 1]),
        "4": node("CLIPTextEncode", "Negative", text=NEG, clip=["1", 1]),
        "11": node("ControlNetLoader", control_net_name="control_v11p_sd15_canny_fp16.safetensors"),
        "12": node("LoadImage", "Control image (e.g. a canny edge map)", image="example.png"),
        "13": node("ControlNetApplyAdvanced", positive=["3", 0], negative=["4", 0], control_net=["11", 0],
                   image=["12", 0], strength=1.0, start_percent=0.0, end_percent=1.0, vae=["1", 2]),
        "5": node("EmptyLatentImage", width=512, height=512, batch_size=1),
        "6": ksampler(["2", 0], ["13", 0], ["13", 1], ["5", 0]),
        "7": node("VAEDecode", samples=["6", 0], vae=["1", 2]),
        "8": node("SaveImage", images=["7", 0], filename_prefix="DeepCache_controlnet"),
    }


def sdxl_base_refiner():
    adv = dict(cfg=7.0, sampler_name="euler", scheduler="normal", steps=25)
    return {
        "1": node("CheckpointLoaderSimple", "Load SDXL base", ckpt_name="sd_xl_base_1.0.safetensors"),
        "2": deepcache(["1", 0]),
        "3": node("CLIPTextEncode", "Positive (base)", text=POS, clip=["1", 1]),
        "4": node("CLIPTextEncode", "Negative (base)", text=NEG, clip=["1", 1]),
        "5": node("EmptyLatentImage", width=1024, height=1024, batch_size=1),
        "6": node("KSamplerAdvanced", "KSampler (base, steps 0-20)", model=["2", 0], positive=["3", 0],
                  negative=["4", 0], latent_image=["5", 0], add_noise="enable", noise_seed=42, start_at_step=0,
                  end_at_step=20, return_with_leftover_noise="enable", **adv),
        "11": node("CheckpointLoaderSimple", "Load SDXL refiner", ckpt_name="sd_xl_refiner_1.0.safetensors"),
        "12": {**deepcache(["11", 0]), "_meta": {"title": "DeepCache (refiner)"}},
        "13": node("CLIPTextEncode", "Positive (refiner)", text=POS, clip=["11", 1]),
        "14": node("CLIPTextEncode", "Negative (refiner)", text=NEG, clip=["11", 1]),
        "15": node("KSamplerAdvanced", "KSampler (refiner, steps 20-25)", model=["12", 0], positive=["13", 0],
                   negative=["14", 0], latent_image=["6", 0], add_noise="disable", noise_seed=42, start_at_step=20,
                   end_at_step=10000, return_with_leftover_noise="disable", **adv),
        "7": node("VAEDecode", samples=["15", 0], vae=["11", 2]),
        "8": node("SaveImage", images=["7", 0], filename_prefix="DeepCache_sdxl"),
    }


WORKFLOWS = {
    "DeepCache_SD15_txt2img": sd15_txt2img,
    "DeepCache_SDXL_base_refiner": sdxl_base_refiner,
    "DeepCache_SD15_ControlNet": sd15_controlnet,
    "DeepCache_SD15_img2img": sd15_img2img,
}

def main():
    out = HERE / "api"
    out.mkdir(exist_ok=True)
    for name, make in WORKFLOWS.items():
        (out / f"{name}.json").write_text(json.dumps(make(), indent=2) + "\n")
        print(out / f"{name}.json")


if __name__ == "__main__":
    main()
