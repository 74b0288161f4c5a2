from collections import namedtuple

AlwaysVisible = object()
ScriptClassData = namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])
scripts_data = []


class Script:
    filename = None
    args_from = None
    args_to = None
    is_txt2img = False
    is_img2img = False
    infotext_fields = None
    paste_field_names = None

    def title(self):
        raise NotImplementedError

    def elem_id(self, item_id):
        tab = "img2img" if self.is_img2img else "txt2img"
        return f"script_{tab}_{self.title().lower()}_{item_id}"


HOOKS = ("before_process", "process", "process_before_every_sampling", "before_hr", "postprocess_batch",
         "postprocess")


class ScriptRunner:
    """Calls each always-on script's hook with its slice of p.script_args; like A1111
    it logs (here: records) exceptions instead of failing the generation."""

    def __init__(self):
        self.scripts = []
        self.alwayson_scripts = []
        self.errors = []

    def _run(self, hook, p, *args, **kwargs):
        for script in self.alwayson_scripts:
            fn = getattr(script, hook, None)
            if fn is None:
                continue
            try:
                fn(p, *args, *p.script_args[script.args_from:script.args_to], **kwargs)
            except Exception as e:
                self.errors.append((hook, e))

    def __getattr__(self, hook):
        if hook in HOOKS:
            return lambda p, *args, **kwargs: self._run(hook, p, *args, **kwargs)
        raise AttributeError(hook)

    def postprocess(self, p, processed):
        for script in self.alwayson_scripts:
            try:
                script.postprocess(p, processed, *p.script_args[script.args_from:script.args_to])
            except Exception as e:
                self.errors.append(("postprocess", e))
