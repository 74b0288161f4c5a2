"""A compact openaimodel-family U-Net (the block structure of SD1.x/SD2.x/SDXL).

Written for this project from the published architecture: input_blocks,
middle_block and output_blocks of TimestepEmbedSequential, ResBlocks,
SpatialTransformers (self- and cross-attention), Downsample/Upsample, time and
label embeddings, blocks called as module(h, emb, context) like ldm/sgm.
It serves as the demo model and as the random-weight U-Net of tests and benches.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(timesteps, dim, max_period=10000, repeat_only=False):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def norm(ch):
    return nn.GroupNorm(min(32, ch), ch, eps=1e-6 if ch >= 32 else 1e-5)


class TimestepBlock(nn.Module):
    pass


class TimestepEmbedSequential(nn.Sequential, TimestepBlock):
    def forward(self, x, emb, context=None):
        for layer in self:
            if isinstance(layer, TimestepBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class ResBlock(TimestepBlock):
    def __init__(self, ch, emb_ch, out_ch=None):
        super().__init__()
        out_ch = out_ch or ch
        self.in_layers = nn.Sequential(norm(ch), nn.SiLU(), nn.Conv2d(ch, out_ch, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_ch, out_ch))
        self.out_layers = nn.Sequential(norm(out_ch), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip_connection = nn.Identity() if out_ch == ch else nn.Conv2d(ch, out_ch, 1)

    def forward(self, x, emb):
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


class CrossAttention(nn.Module):
    def __init__(self, query_dim, context_dim=None, heads=8, dim_head=64):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(0.0))

    def forward(self, x, context=None):
        context = x if context is None else context
        b, n, _ = x.shape
        q, k, v = (t.view(b, -1, self.heads, t.shape[-1] // self.heads).transpose(1, 2)
                   for t in (self.to_q(x), self.to_k(context), self.to_v(context)))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class FeedForward(nn.Module):
    def __init__(self, dim, mult=4):
        super().__init__()
        inner = dim * mult
        self.proj = nn.Linear(dim, inner * 2)  # GEGLU
        self.out = nn.Linear(inner, dim)

    def forward(self, x):
        a, gate = self.proj(x).chunk(2, dim=-1)
        return self.out(a * F.gelu(gate))


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, dim_head, context_dim):
        super().__init__()
        self.attn1 = CrossAttention(dim, None, heads, dim_head)
        self.attn2 = CrossAttention(dim, context_dim, heads, dim_head)
        self.ff = FeedForward(dim)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x, context=None):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    def __init__(self, ch, heads, dim_head, depth=1, context_dim=None, use_linear=False):
        super().__init__()
        inner = heads * dim_head
        self.use_linear = use_linear
        self.norm = norm(ch)
        self.proj_in = nn.Linear(ch, inner) if use_linear else nn.Conv2d(ch, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, heads, dim_head, context_dim) for _ in range(depth)])
        self.proj_out = nn.Linear(inner, ch) if use_linear else nn.Conv2d(inner, ch, 1)

    def forward(self, x, context=None):
        b, c, hh, ww = x.shape
        h = self.norm(x)
        if not self.use_linear:
            h = self.proj_in(h)
        h = h.flatten(2).transpose(1, 2)
        if self.use_linear:
            h = self.proj_in(h)
        for block in self.transformer_blocks:
            h = block(h, context)
        if self.use_linear:
            h = self.proj_out(h)
        h = h.transpose(1, 2).reshape(b, -1, hh, ww)
        if not self.use_linear:
            h = self.proj_out(h)
        return h + x


class Downsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.op = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class UNetModel(nn.Module):
    """openaimodel UNetModel: 1 + levels*num_res_blocks + (levels-1) input blocks, as many output blocks.

    transformer_depth[level] = 0 means no attention at that level. num_classes:
    an int (class labels, nn.Embedding) or "sequential" with adm_in_channels (SDXL's y).
    """

    def __init__(self, in_channels=4, model_channels=320, out_channels=4, num_res_blocks=2,
                 channel_mult: Sequence[int] = (1, 2, 4, 4), transformer_depth: Sequence[int] = (1, 1, 1, 0),
                 transformer_depth_middle: int = 1, num_head_channels: int = 40, context_dim: Optional[int] = 768,
                 use_linear_in_transformer=False, num_classes=None, adm_in_channels=None):
        super().__init__()
        self.model_channels = model_channels
        self.num_classes = num_classes
        emb_ch = model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))
        if num_classes == "sequential":
            self.label_emb = nn.Sequential(nn.Sequential(
                nn.Linear(adm_in_channels, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch)))
        elif num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, emb_ch)

        def attn(ch, depth):
            heads = max(ch // num_head_channels, 1)
            return SpatialTransformer(ch, heads, ch // heads, depth, context_dim, use_linear_in_transformer)

        self.input_blocks = nn.ModuleList(
            [TimestepEmbedSequential(nn.Conv2d(in_channels, model_channels, 3, padding=1))])
        chans = [model_channels]
        ch = model_channels
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(ch, emb_ch, mult * model_channels)]
                ch = mult * model_channels
                if transformer_depth[level]:
                    layers.append(attn(ch, transformer_depth[level]))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                chans.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                chans.append(ch)
        middle = [ResBlock(ch, emb_ch)]
        if transformer_depth_middle:
            middle.append(attn(ch, transformer_depth_middle))
        middle.append(ResBlock(ch, emb_ch))
        self.middle_block = TimestepEmbedSequential(*middle)
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(ch + chans.pop(), emb_ch, mult * model_channels)]
                ch = mult * model_channels
                if transformer_depth[level]:
                    layers.append(attn(ch, transformer_depth[level]))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch))
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(norm(ch), nn.SiLU(), nn.Conv2d(model_channels, out_channels, 3, padding=1))

    def forward(self, x, timesteps, context=None, y=None):
        # the float32 sinusoids in the weights' dtype (fp16 and bf16 models)
        t_emb = timestep_embedding(timesteps, self.model_channels, repeat_only=False)
        emb = self.time_embed(t_emb.to(self.time_embed[0].weight.dtype))
        if self.num_classes is not None:
            emb = emb + self.label_emb(y)
        hs = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb, context)
            hs.append(h)
        h = self.middle_block(h, emb, context)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], 1), emb, context)
        return self.out(h.type(x.dtype))


# Architectures of the real models (full size) and shrunk ones for fast tests.
SD15 = dict(model_channels=320, channel_mult=(1, 2, 4, 4), transformer_depth=(1, 1, 1, 0),
            transformer_depth_middle=1, num_head_channels=40, context_dim=768)
SDXL = dict(model_channels=320, channel_mult=(1, 2, 4), transformer_depth=(0, 2, 10),
            transformer_depth_middle=10, num_head_channels=64, context_dim=2048,
            use_linear_in_transformer=True, num_classes="sequential", adm_in_channels=2816)
TINY_SD15 = dict(SD15, model_channels=32, num_head_channels=16, context_dim=24)
TINY_SDXL = dict(SDXL, model_channels=32, transformer_depth=(0, 1, 2), transformer_depth_middle=1,
                 num_head_channels=16, context_dim=24, adm_in_channels=20)
