import gradio as gr


class InputAccordion(gr.Checkbox):
    """A checkbox whose value is the accordion's open state; used as a context manager."""

    def __init__(self, value, **kwargs):
        super().__init__(value=value, **kwargs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
