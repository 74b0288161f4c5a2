"""Stand-in for gradio (tests only): components remember their arguments."""
built = []


class Component:
    def __init__(self, *args, value=None, visible=True, **kwargs):
        self.args, self.value, self.visible, self.kwargs = args, value, visible, kwargs
        self.events = []
        built.append(self)

    def click(self, fn, inputs=None, outputs=None, **kw):
        self.events.append((fn, inputs, outputs))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Slider(Component):
    def __init__(self, minimum=0, maximum=100, value=None, step=None, **kwargs):
        super().__init__(value=value, **kwargs)
        self.minimum, self.maximum, self.step = minimum, maximum, step


class Radio(Component):
    def __init__(self, choices=None, value=None, **kwargs):
        super().__init__(value=value, **kwargs)
        self.choices = choices


Checkbox = Markdown = Textbox = Number = Button = Image = Component
Row = Column = Blocks = Component
