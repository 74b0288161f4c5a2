"""The random ControlNet asset (make_controlnet.py): its keys and shapes are those of an SD1.5
ldm/cldm ControlNet, so sd-webui-controlnet and Forge load it with the SD1.5 config."""
import importlib.util
import math
import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("make_controlnet", HERE / "make_controlnet.py")
mc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mc)


def test_layout_detected_as_sd15_controlnet():
    s = mc.controlnet_shapes()
    assert len(s) == 340  # as cldm.ControlNet(**controlnet_default_config, hint_channels=3).state_dict()
    # what sd-webui-controlnet's controlnet_model_guess.py and Forge's supported_controlnet.py look at
    assert s["input_hint_block.0.weight"] == (16, 3, 3, 3)
    assert "label_emb.0.0.bias" not in s  # no SDXL
    assert "zero_convs.0.0.weight" in s and not any(k.startswith("control_model.") for k in s)
    assert s["input_blocks.5.1.transformer_blocks.0.attn2.to_k.weight"] == (640, 768)  # context_dim 768
    assert s["input_blocks.1.1.proj_in.weight"] == (320, 320, 1, 1)  # conv proj_in (SD1.x)
    assert [s[f"zero_convs.{i}.0.weight"][0] for i in range(12)] == [320] * 4 + [640] * 3 + [1280] * 5
    assert "zero_convs.12.0.weight" not in s
    assert s["middle_block_out.0.weight"] == (1280, 1280, 1, 1)
    assert s["input_hint_block.14.weight"] == (320, 256, 3, 3)
    assert not any(k.startswith(("output_blocks.", "out.")) for k in s)
    assert round(sum(math.prod(v) for v in s.values()) / 1e6) == 361


def test_zero_initialised_convs_are_small_but_nonzero():
    zero = [k for k in mc.controlnet_shapes() if mc._is_zero_initialised(k)]
    assert len(zero) == 2 * 12 + 2 + 2  # zero_convs (weight, bias), middle_block_out, last hint conv
    assert "input_hint_block.14.weight" in zero and "input_hint_block.12.weight" not in zero


def _checkpoint():
    for c in (os.environ.get("A1111_CKPT"),
              os.environ.get("A1111_PATH") and Path(os.environ["A1111_PATH"]) / "models" / "Stable-diffusion" /
              "random_sd15.safetensors"):
        if c and Path(c).exists():
            return Path(c)
    return None


@pytest.mark.skipif(_checkpoint() is None, reason="no SD1.5 checkpoint (A1111_CKPT or A1111_PATH's random_sd15)")
def test_encoder_matches_the_sd15_unet():
    """A ControlNet is a copy of the U-Net's encoder: same keys and shapes as the checkpoint's
    time_embed, input_blocks and middle_block (read from the safetensors header only)."""
    from safetensors import safe_open
    prefix = "model.diffusion_model."
    with safe_open(str(_checkpoint()), "pt") as f:
        unet = {k[len(prefix):]: tuple(f.get_slice(k).get_shape()) for k in f.keys() if k.startswith(prefix)}
    encoder = {k: v for k, v in unet.items() if k.startswith(("time_embed.", "input_blocks.", "middle_block."))}
    mine = {k: v for k, v in mc.controlnet_shapes().items()
            if k.startswith(("time_embed.", "input_blocks.", "middle_block."))}
    assert mine == encoder


def test_write_small(tmp_path, monkeypatch):
    """The writer (on a shrunken layout, to stay fast): fp16 tensors, metadata, no temp file left."""
    from safetensors import safe_open
    monkeypatch.setattr(mc, "controlnet_shapes", lambda: {"zero_convs.0.0.weight": (64, 64, 1, 1),
                                                          "zero_convs.0.0.bias": (64,),
                                                          "input_blocks.0.0.weight": (64, 64, 3, 3),
                                                          "middle_block.0.in_layers.0.weight": (64,)})
    out = mc.write_controlnet(tmp_path / "cn.safetensors", seed=1, zero_scale=0.2)
    assert [p.name for p in tmp_path.iterdir()] == ["cn.safetensors"]
    with safe_open(str(out), "pt") as f:
        t = {k: f.get_tensor(k) for k in f.keys()}
        assert f.metadata()["seed"] == "1"
    import torch
    assert all(v.dtype == torch.float16 for v in t.values())
    zc, conv = t["zero_convs.0.0.weight"].float(), t["input_blocks.0.0.weight"].float()
    assert abs(float(zc.std()) - 0.2 / 8) < 0.003  # zero_scale / sqrt(fan_in)
    assert abs(float(conv.std()) - 1 / 24) < 0.003  # 1 / sqrt(fan_in)
    assert bool((t["zero_convs.0.0.bias"] == 0).all()) and bool((t["middle_block.0.in_layers.0.weight"] == 1).all())
