"""The ComfyUI adapter: the DeepCache node and its wrappers in the host's wrapper API."""
