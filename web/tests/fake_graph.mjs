// A tiny stand-in for a LiteGraph graph: enough for the panel's graph walking.
export class FakeGraph {
  constructor() {
    this._nodes = [];
    this.links = new Map();
    this.nextLink = 1;
  }
  getNodeById(id) {
    return this._nodes.find((n) => String(n.id) === String(id)) ?? null;
  }
  add(type, { id, inputs = [], outputs = [], widgets = {}, mode = 0, title } = {}) {
    const node = {
      id: id ?? this._nodes.length + 1, type, comfyClass: type, mode, title,
      inputs: inputs.map(([name, t]) => ({ name, type: t, link: null })),
      outputs: outputs.map(([name, t]) => ({ name, type: t, links: [] })),
      widgets: Object.entries(widgets).map(([name, value]) => ({ name, value })),
    };
    this._nodes.push(node);
    return node;
  }
  connect(a, aSlot, b, bName) {
    const slot = typeof aSlot === "number" ? aSlot : a.outputs.findIndex((o) => o.name === aSlot);
    const ti = b.inputs.findIndex((i) => i.name === bName);
    if (slot < 0 || ti < 0) throw new Error(`bad connect ${aSlot} -> ${bName}`);
    const id = this.nextLink++;
    this.links.set(id, { id, origin_id: a.id, origin_slot: slot, target_id: b.id, target_slot: ti, type: a.outputs[slot].type });
    a.outputs[slot].links.push(id);
    b.inputs[ti].link = id;
    return id;
  }
}

export function checkpoint(g, name = "v1-5-pruned-emaonly.safetensors") {
  return g.add("CheckpointLoaderSimple", { outputs: [["MODEL", "MODEL"], ["CLIP", "CLIP"], ["VAE", "VAE"]], widgets: { ckpt_name: name } });
}

export function deepcache(g, widgets = {}) {
  return g.add("DeepCache", {
    inputs: [["model", "MODEL"]], outputs: [["MODEL", "MODEL"]],
    widgets: { cache_interval: 3, cache_branch: 0, start_percent: 0, end_percent: 1, schedule: "uniform", center: 0.3, power: 1.4, ...widgets },
  });
}

export function ksampler(g, widgets = {}) {
  return g.add("KSampler", {
    inputs: [["model", "MODEL"], ["positive", "CONDITIONING"], ["negative", "CONDITIONING"], ["latent_image", "LATENT"]],
    outputs: [["LATENT", "LATENT"]],
    widgets: { seed: 1, steps: 20, cfg: 7, sampler_name: "euler", scheduler: "normal", denoise: 1, ...widgets },
  });
}

export function ksamplerAdvanced(g, widgets = {}) {
  return g.add("KSamplerAdvanced", {
    inputs: [["model", "MODEL"], ["positive", "CONDITIONING"], ["negative", "CONDITIONING"], ["latent_image", "LATENT"]],
    outputs: [["LATENT", "LATENT"]],
    widgets: { add_noise: "enable", noise_seed: 1, steps: 25, cfg: 7, sampler_name: "euler", scheduler: "normal",
      start_at_step: 0, end_at_step: 20, return_with_leftover_noise: "enable", ...widgets },
  });
}

export function emptyLatent(g, width = 512, height = 512) {
  return g.add("EmptyLatentImage", { outputs: [["LATENT", "LATENT"]], widgets: { width, height, batch_size: 1 } });
}
