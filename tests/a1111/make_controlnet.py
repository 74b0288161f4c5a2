"""Write a random-weight ControlNet of the SD1.5 layout as .safetensors.

The keys are those of the original ldm/cldm ControlNet (lllyasviel's v1.1 files without the
"control_model." prefix): time_embed, input_hint_block, input_blocks, zero_convs, middle_block,
middle_block_out. sd-webui-controlnet (scripts/controlnet_model_guess.py: 'input_hint_block.0.weight'
present and no 'label_emb.0.0.bias' -> controlnet_default_config, context_dim read from
input_blocks.5.1...attn2.to_k) and Forge (modules_forge/supported_controlnet.py: 'zero_convs.0.0.weight'
-> prefix "", config guessed from the input blocks) load it as a normal SD1.5 ControlNet.
Use it with preprocessor "none" and any RGB control image.

Weights are seeded normals scaled by 1/sqrt(fan_in) (norms 1, biases 0). The zero convolutions and
the last conv of input_hint_block, which a real ControlNet starts at zero, get small nonzero weights
(`zero_scale` / sqrt(fan_in)), so the control changes images visibly without wrecking them.
Only torch and safetensors are needed.

    python tests/a1111/make_controlnet.py OUT.safetensors [--seed 0] [--zero-scale 0.2] [--dtype fp16]
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

DEFAULT_NAME = "control_random_sd15.safetensors"

# SD1.5 (ldm v1-inference.yaml / controlnet_default_config)
MODEL_CHANNELS = 320
CHANNEL_MULT = (1, 2, 4, 4)
NUM_RES_BLOCKS = 2
ATTENTION_DS = (1, 2, 4)
CONTEXT_DIM = 768
IN_CHANNELS = 4
HINT_CHANNELS = 3
HINT_CHANNELS_CHAIN = (16, 16, 32, 32, 96, 96, 256)  # then MODEL_CHANNELS (the zero-initialised conv)


def _resblock(prefix, cin, cout, emb_dim):
    s = {f"{prefix}.in_layers.0.weight": (cin,), f"{prefix}.in_layers.0.bias": (cin,),
         f"{prefix}.in_layers.2.weight": (cout, cin, 3, 3), f"{prefix}.in_layers.2.bias": (cout,),
         f"{prefix}.emb_layers.1.weight": (cout, emb_dim), f"{prefix}.emb_layers.1.bias": (cout,),
         f"{prefix}.out_layers.0.weight": (cout,), f"{prefix}.out_layers.0.bias": (cout,),
         f"{prefix}.out_layers.3.weight": (cout, cout, 3, 3), f"{prefix}.out_layers.3.bias": (cout,)}
    if cin != cout:
        s[f"{prefix}.skip_connection.weight"] = (cout, cin, 1, 1)
        s[f"{prefix}.skip_connection.bias"] = (cout,)
    return s


def _transformer(prefix, ch, context_dim):
    """ldm SpatialTransformer, depth 1, conv proj_in/proj_out (use_linear_in_transformer False)."""
    t = f"{prefix}.transformer_blocks.0"
    s = {f"{prefix}.norm.weight": (ch,), f"{prefix}.norm.bias": (ch,),
         f"{prefix}.proj_in.weight": (ch, ch, 1, 1), f"{prefix}.proj_in.bias": (ch,),
         f"{prefix}.proj_out.weight": (ch, ch, 1, 1), f"{prefix}.proj_out.bias": (ch,)}
    for attn, kv in (("attn1", ch), ("attn2", context_dim)):
        s |= {f"{t}.{attn}.to_q.weight": (ch, ch), f"{t}.{attn}.to_k.weight": (ch, kv),
              f"{t}.{attn}.to_v.weight": (ch, kv), f"{t}.{attn}.to_out.0.weight": (ch, ch),
              f"{t}.{attn}.to_out.0.bias": (ch,)}
    s |= {f"{t}.ff.net.0.proj.weight": (ch * 8, ch), f"{t}.ff.net.0.proj.bias": (ch * 8,),
          f"{t}.ff.net.2.weight": (ch, ch * 4), f"{t}.ff.net.2.bias": (ch,)}
    for n in (1, 2, 3):
        s |= {f"{t}.norm{n}.weight": (ch,), f"{t}.norm{n}.bias": (ch,)}
    return s


def _conv(prefix, cout, cin, k):
    return {f"{prefix}.weight": (cout, cin, k, k), f"{prefix}.bias": (cout,)}


def controlnet_shapes() -> dict[str, tuple[int, ...]]:
    """{key: shape} of the SD1.5 ControlNet state dict, in the order cldm.ControlNet builds it."""
    emb_dim = MODEL_CHANNELS * 4
    s: dict[str, tuple[int, ...]] = {
        "time_embed.0.weight": (emb_dim, MODEL_CHANNELS), "time_embed.0.bias": (emb_dim,),
        "time_embed.2.weight": (emb_dim, emb_dim), "time_embed.2.bias": (emb_dim,)}
    s |= _conv("input_blocks.0.0", MODEL_CHANNELS, IN_CHANNELS, 3)
    zero_chans = [MODEL_CHANNELS]
    hint = (HINT_CHANNELS,) + HINT_CHANNELS_CHAIN + (MODEL_CHANNELS,)
    for i, (cin, cout) in enumerate(zip(hint[:-1], hint[1:])):
        s |= _conv(f"input_hint_block.{2 * i}", cout, cin, 3)
    ch, ds, block = MODEL_CHANNELS, 1, 1
    for level, mult in enumerate(CHANNEL_MULT):
        for _ in range(NUM_RES_BLOCKS):
            out = mult * MODEL_CHANNELS
            s |= _resblock(f"input_blocks.{block}.0", ch, out, emb_dim)
            ch = out
            if ds in ATTENTION_DS:
                s |= _transformer(f"input_blocks.{block}.1", ch, CONTEXT_DIM)
            zero_chans.append(ch)
            block += 1
        if level != len(CHANNEL_MULT) - 1:
            s |= _conv(f"input_blocks.{block}.0.op", ch, ch, 3)
            zero_chans.append(ch)
            block += 1
            ds *= 2
    for i, c in enumerate(zero_chans):
        s |= _conv(f"zero_convs.{i}.0", c, c, 1)
    s |= _resblock("middle_block.0", ch, ch, emb_dim)
    s |= _transformer("middle_block.1", ch, CONTEXT_DIM)
    s |= _resblock("middle_block.2", ch, ch, emb_dim)
    s |= _conv("middle_block_out.0", ch, ch, 1)
    return s


def _is_zero_initialised(key: str) -> bool:
    """The convs a real ControlNet starts at zero (zero_module in cldm.py)."""
    last_hint = f"input_hint_block.{2 * (len(HINT_CHANNELS_CHAIN))}."
    return key.startswith(("zero_convs.", "middle_block_out.", last_hint))


def make_state_dict(seed: int = 0, zero_scale: float = 0.2, dtype: str = "fp16") -> dict:
    import torch
    torch_dtype = {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in controlnet_shapes().items():
        if len(shape) >= 2:
            fan_in = math.prod(shape[1:])
            scale = (zero_scale if _is_zero_initialised(key) else 1.0) / math.sqrt(fan_in)
            t = torch.randn(shape, generator=gen) * scale
        elif key.endswith("weight"):  # GroupNorm / LayerNorm
            t = torch.ones(shape)
        else:
            t = torch.zeros(shape)
        sd[key] = t.to(torch_dtype).contiguous()
    return sd


def write_controlnet(path, seed: int = 0, zero_scale: float = 0.2, dtype: str = "fp16") -> Path:
    """Write the random ControlNet to path (a .safetensors file); returns the path."""
    from safetensors.torch import save_file
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    save_file(make_state_dict(seed, zero_scale, dtype), str(tmp),
              metadata={"format": "pt", "made_by": "deepcache tests/a1111/make_controlnet.py",
                        "seed": str(seed), "zero_scale": str(zero_scale)})
    tmp.replace(path)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default=DEFAULT_NAME, help=f"output file (default {DEFAULT_NAME})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--zero-scale", type=float, default=0.2,
                    help="scale of the (normally zero) zero-conv weights, times 1/sqrt(fan_in)")
    ap.add_argument("--dtype", choices=("fp16", "fp32", "bf16"), default="fp16")
    args = ap.parse_args(argv)
    out = write_controlnet(args.out, args.seed, args.zero_scale, args.dtype)
    n = sum(math.prod(s) for s in controlnet_shapes().values())
    print(f"wrote {out} ({n / 1e6:.0f}M parameters, {out.stat().st_size / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
