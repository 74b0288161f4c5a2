"""DeepCache for ComfyUI, AUTOMATIC1111 and Forge.

ComfyUI imports this folder as a custom node pack: it finds the V3 entry point
comfy_entrypoint and the front end in WEB_DIRECTORY. Elsewhere (A1111 scripts,
tests, the demo) only the host-agnostic core/ is used.
"""
WEB_DIRECTORY = "./web"

try:
    import comfy_api.latest  # noqa: F401  (present only inside ComfyUI)
except ImportError:
    pass
else:
    from .nodes.extension import comfy_entrypoint  # noqa: F401
