"""AUTOMATIC1111 / Forge adapter: translates the web UI's generation, sampler
steps, CFG batches and U-Net calls into the host-agnostic ``core``.

Loaded by ``scripts/deepcache_a1111.py`` as a subpackage of the extension root
(under a unique package name), never as a top-level module.
"""
