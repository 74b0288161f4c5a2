"""An A1111-shaped sd_model around any ldm-convention U-Net (tests only)."""
import types

import torch


class FakeSDModel(torch.nn.Module):
    def __init__(self, unet, context_dim=24, tokens=(7, 7)):
        super().__init__()
        self.model = torch.nn.Module()
        self.model.diffusion_model = unet
        betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
        self.register_buffer("alphas_cumprod", torch.cumprod(1 - betas, 0).float())
        self.sd_checkpoint_info = types.SimpleNamespace(name="tiny")
        self.context_dim = context_dim
        self.tokens = tokens  # token lengths of prompt and negative prompt
        self.y_dim = None

    def get_learned_conditioning(self, prompt, negative_prompt, batch):
        def enc(text, n):
            g = torch.Generator().manual_seed(sum(map(ord, text)) + 1)
            return torch.randn(batch, n, self.context_dim, generator=g)
        return enc(prompt, self.tokens[0]), enc(negative_prompt, self.tokens[1])

    def apply_model(self, x, t, cond):
        y = None
        if self.y_dim is not None:
            y = torch.ones(x.shape[0], self.y_dim)
        if y is None:
            return self.model.diffusion_model(x, t, context=cond)
        return self.model.diffusion_model(x, timesteps=t, context=cond, y=y)
