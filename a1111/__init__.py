"""AUTOMATIC1111 / Forge adapter: translates the web UI's generation, sampler steps, CFG
batches and U-Net calls into the host-agnostic ``core``.

params.py       the settings table (Settings, accordion, tab, parameters, paste, X/Y/Z)
script.py       the Script: one generation's passes, messages, clean-up
sampler_hook.py one sampler call as a run (steps from the sampler's own callback)
a1111_host.py   A1111: an instance forward through the host's own U-Net forward
forge_host.py   Forge: a U-Net function wrapper on a UnetPatcher clone
tab.py          the DeepCache tab (schedule preview, speed test)

Loaded by ``scripts/deepcache_a1111.py`` as a subpackage of the extension root (under a
unique package name), never as a top-level module.
"""
