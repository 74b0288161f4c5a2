// Graph walking for the DeepCache panel: from a DeepCache node to the sampler its
// MODEL feeds, the sampler's step settings, the latent size and the model family.
// Works on LiteGraph graphs (ComfyUI front end 1.27+) and on the plain objects the
// tests build: a graph with getNodeById(id) and links (Map, object or getLink(id));
// nodes with id, type, mode, inputs [{name, type, link}], outputs [{name, type, links}],
// widgets [{name, value}].

export const DEEPCACHE_TYPE = "DeepCache";
export const MODE_MUTED = 2;
export const MODE_BYPASS = 4;
const MAX_HOPS = 64;

export function nodeType(node) {
  return node?.comfyClass ?? node?.type;
}

export function getLink(graph, id) {
  if (id == null || !graph) return null;
  if (typeof graph.getLink === "function") {
    const l = graph.getLink(id);
    if (l) return l;
  }
  const links = graph.links ?? graph._links;
  if (!links) return null;
  if (typeof links.get === "function") return links.get(id) ?? links.get(Number(id)) ?? null;
  return links[id] ?? null;
}

export function getNode(graph, id) {
  if (id == null || !graph) return null;
  return graph.getNodeById?.(id) ?? null;
}

export function widgetValue(node, name) {
  const w = node?.widgets?.find((w) => w.name === name);
  return w ? w.value : undefined;
}

export function allNodes(graph) {
  return graph?._nodes ?? graph?.nodes ?? [];
}

export function deepCacheNodes(graph) {
  return allNodes(graph).filter((n) => nodeType(n) === DEEPCACHE_TYPE);
}

// The samplers this panel knows how to read, and what their MODEL/GUIDER input is called.
export const SAMPLERS = {
  KSampler: "model",
  KSamplerAdvanced: "model",
  SamplerCustom: "model",
  SamplerCustomAdvanced: "guider",
};

function isActive(node) {
  return node && node.mode !== MODE_MUTED;
}

function outputLinks(graph, node, types) {
  const out = [];
  for (const output of node.outputs ?? []) {
    if (types && !types.includes(output.type) && output.type !== "*") continue;
    for (const id of output.links ?? []) {
      const link = getLink(graph, id);
      if (link) out.push(link);
    }
  }
  return out;
}

/**
 * The samplers fed by this node's MODEL output, nearest first. Passes through nodes that
 * take and give a MODEL (LoRA, ModelSampling*, FreeU, ...), bypassed nodes, Reroutes and
 * guiders (GUIDER -> SamplerCustomAdvanced).
 * Returns [{node, via: [node ids between]}].
 */
export function findSamplers(graph, start) {
  const found = [];
  const seen = new Set([start.id]);
  let frontier = [{ node: start, via: [] }];
  let hops = 0;
  while (frontier.length && hops++ < MAX_HOPS) {
    const next = [];
    for (const { node, via } of frontier) {
      const types = nodeType(node) === DEEPCACHE_TYPE || node.mode === MODE_BYPASS ? ["MODEL"] : ["MODEL", "GUIDER"];
      for (const link of outputLinks(graph, node, types)) {
        const target = getNode(graph, link.target_id);
        if (!isActive(target) || seen.has(target.id)) continue;
        seen.add(target.id);
        const type = nodeType(target);
        const inputName = target.inputs?.[link.target_slot]?.name;
        if (type in SAMPLERS && target.mode !== MODE_BYPASS) {
          if (inputName === SAMPLERS[type]) found.push({ node: target, via });
          continue;
        }
        const passes =
          target.mode === MODE_BYPASS || type === "Reroute" ||
          (target.outputs ?? []).some((o) => o.type === "MODEL" || o.type === "GUIDER");
        if (passes) next.push({ node: target, via: [...via, target.id] });
      }
    }
    frontier = next;
  }
  return found;
}

/** The node that feeds input `name` of `node` (through Reroutes and bypassed nodes of the same type). */
export function inputSource(graph, node, name) {
  let input = node?.inputs?.find((i) => i.name === name);
  let hops = 0;
  while (input && input.link != null && hops++ < MAX_HOPS) {
    const link = getLink(graph, input.link);
    const origin = getNode(graph, link?.origin_id);
    if (!origin) return null;
    const type = nodeType(origin);
    if (type === "Reroute") {
      input = origin.inputs?.[0];
      continue;
    }
    if (origin.mode === MODE_BYPASS) {
      const t = origin.outputs?.[link.origin_slot]?.type;
      input = origin.inputs?.find((i) => i.type === t);
      continue;
    }
    return { node: origin, slot: link.origin_slot };
  }
  return null;
}

function num(v, fallback) {
  const n = typeof v === "string" ? Number(v) : v;
  return typeof n === "number" && Number.isFinite(n) ? n : fallback;
}

/**
 * What the sampler does with its steps: {steps, denoise, start_step, end_step, scheduler,
 * sampler, source: "ksampler"|"basic", from: "KSampler #3"} or {unknown: "why"}.
 */
export function samplerSettings(graph, sampler) {
  const type = nodeType(sampler);
  const from = `${sampler.title || type} #${sampler.id}`;
  if (type === "KSampler") {
    return {
      steps: num(widgetValue(sampler, "steps")), denoise: num(widgetValue(sampler, "denoise"), 1),
      scheduler: widgetValue(sampler, "scheduler"), sampler: widgetValue(sampler, "sampler_name"),
      source: "ksampler", from,
    };
  }
  if (type === "KSamplerAdvanced") {
    return {
      steps: num(widgetValue(sampler, "steps")), denoise: 1,
      start_step: num(widgetValue(sampler, "start_at_step"), 0),
      end_step: num(widgetValue(sampler, "end_at_step"), 10000),
      scheduler: widgetValue(sampler, "scheduler"), sampler: widgetValue(sampler, "sampler_name"),
      source: "ksampler", from,
    };
  }
  if (type === "SamplerCustom" || type === "SamplerCustomAdvanced") {
    const src = inputSource(graph, sampler, "sigmas");
    const sched = src?.node;
    if (sched && nodeType(sched) === "BasicScheduler") {
      return {
        steps: num(widgetValue(sched, "steps")), denoise: num(widgetValue(sched, "denoise"), 1),
        scheduler: widgetValue(sched, "scheduler"), source: "basic",
        from: `${from} (${sched.title || "BasicScheduler"} #${sched.id})`,
      };
    }
    return { unknown: `${from} takes its sigmas from ${sched ? nodeType(sched) : "nothing"}`, from };
  }
  return { unknown: `${from} is not a sampler the panel can read`, from };
}

const LATENT_SIZE_NODES = new Set(["EmptyLatentImage", "EmptySD3LatentImage", "LatentUpscale", "EmptyHunyuanLatentVideo"]);

/** The pixel size of the latent the sampler denoises, where the graph says it. */
export function latentSize(graph, sampler) {
  const src = inputSource(graph, sampler, "latent_image");
  const n = src?.node;
  if (!n || !LATENT_SIZE_NODES.has(nodeType(n))) return null;
  const width = num(widgetValue(n, "width")), height = num(widgetValue(n, "height"));
  return width > 0 && height > 0 ? { width, height } : null;
}

const LOADER_WIDGETS = {
  CheckpointLoaderSimple: "ckpt_name", CheckpointLoader: "ckpt_name", UNETLoader: "unet_name",
  ImageOnlyCheckpointLoader: "ckpt_name", unCLIPCheckpointLoader: "ckpt_name",
};

/** The file name of the model the node patches (following MODEL inputs up to a loader). */
export function modelName(graph, node) {
  let cur = node;
  for (let hops = 0; cur && hops < MAX_HOPS; hops++) {
    const modelInput = cur.inputs?.find((i) => i.type === "MODEL");
    const src = modelInput ? inputSource(graph, cur, modelInput.name) : null;
    if (!src) return null;
    const name = LOADER_WIDGETS[nodeType(src.node)];
    if (name) return String(widgetValue(src.node, name) ?? "");
    cur = src.node;
  }
  return null;
}

/** The U-Net family whose FLOP table applies: a guess from the model's file name. */
export function guessArch(fileName) {
  const s = String(fileName ?? "").toLowerCase();
  if (/refiner/.test(s)) return "sdxl_refiner";
  if (/xl|pony|illustrious|noobai|animagine/.test(s)) return "sdxl";
  return "sd15";
}

/** Everything the plan request needs from the graph, for one DeepCache node. */
export function describeNode(graph, node, { fallbackSteps = 20, archSetting = "auto" } = {}) {
  const samplers = findSamplers(graph, node);
  const sampler = samplers[0]?.node ?? null;
  let settings = sampler ? samplerSettings(graph, sampler) : { unknown: "its MODEL output feeds no sampler" };
  let manual = false;
  if (settings.unknown || !(settings.steps >= 1)) {
    manual = true;
    settings = { steps: fallbackSteps, denoise: 1, source: "ksampler", why: settings.unknown ?? "no step count", from: settings.from };
  }
  const arch = archSetting && archSetting !== "auto" ? archSetting : guessArch(modelName(graph, node));
  return {
    sampler: sampler ? { id: sampler.id, type: nodeType(sampler) } : null,
    otherSamplers: samplers.length - 1 > 0 ? samplers.length - 1 : 0,
    settings, manual, arch, size: sampler ? latentSize(graph, sampler) : null,
  };
}
