import math

import torch

from deepcache_plugin.core import LdmOps
from deepcache_plugin.core.cost import block_costs, branch_cost_fractions, estimated_speedup
from deepcache_plugin.demo.unet import SD15, TINY_SD15, UNetModel

from ..unets import inputs, tiny_unet


def test_sd15_flop_fractions_match_reference_counts():
    # full-size SD1.5 on the meta device: 401.6 GMACs per evaluation at 64x64,
    # S(b0) = 7.87 % -> x2.59 at N=3 (paper setting and reference measurements)
    with torch.device("meta"):
        unet = UNetModel(**SD15)
        x, t, c = torch.empty(1, 4, 64, 64), torch.empty(1), torch.empty(1, 77, 768)
    costs = block_costs(lambda: LdmOps(unet, t, c), x, 12)
    assert math.isclose(costs.total / 2e9, 401.6, rel_tol=1e-3)
    s = branch_cost_fractions(costs)
    assert [round(v, 3) for v in s[:4]] == [0.079, 0.224, 0.380, 0.470]
    assert round(estimated_speedup(3, s[0]), 2) == 2.59


def test_fake_tensor_count_equals_real_count_and_does_no_compute():
    unet = tiny_unet()
    x, t, c, _ = inputs(batch=1)
    with torch.device("meta"):
        meta_unet = type(unet)(**TINY_SD15)
    ran = []
    hooks = [m.register_forward_pre_hook(lambda m, a: ran.append(1)) for m in unet.modules()]
    fake = block_costs(lambda: LdmOps(unet, t, c), x, 12)  # the real module, on fake tensors
    for h in hooks:
        h.remove()
    meta = block_costs(lambda: LdmOps(meta_unet, t.to("meta"), c.to("meta")), x.to("meta"), 12)
    assert fake == meta and fake.cached_fraction(0) < fake.cached_fraction(1) < 1
    assert ran  # it did run the module's code, on fake tensors
