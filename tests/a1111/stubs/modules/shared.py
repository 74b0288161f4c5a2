import types


class OptionInfo:
    def __init__(self, default=None, label="", component=None, component_args=None, section=None, **kw):
        self.default, self.label, self.component, self.component_args, self.section = (
            default, label, component, component_args, section)

    def info(self, text):
        return self


class Options:
    def __init__(self):
        self.__dict__["data"] = {}
        self.__dict__["data_labels"] = {}

    def add_option(self, key, info):
        self.data_labels[key] = info
        self.data.setdefault(key, info.default)

    def __getattr__(self, key):
        if key in self.data:
            return self.data[key]
        if key in self.data_labels:
            return self.data_labels[key].default
        return {"batch_cond_uncond": True, "skip_early_cond": 0.0}.get(key)

    def __setattr__(self, key, value):
        self.data[key] = value


opts = Options()
cmd_opts = types.SimpleNamespace(lowvram=False, medvram=False, medvram_sdxl=False)
state = types.SimpleNamespace(interrupted=False, skipped=False, sampling_step=0, sampling_steps=0,
                              interrupt_at=None)
sd_model = None
