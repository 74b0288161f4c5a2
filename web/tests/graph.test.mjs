import assert from "node:assert/strict";
import { test } from "node:test";

import {
  deepCacheNodes, describeNode, findSamplers, getLink, guessArch, inputSource, latentSize, modelName, samplerSettings,
} from "../lib/graph.js";
import { FakeGraph, checkpoint, deepcache, emptyLatent, ksampler, ksamplerAdvanced } from "./fake_graph.mjs";

function txt2img(ckpt) {
  const g = new FakeGraph();
  const c = checkpoint(g, ckpt);
  const d = deepcache(g);
  const k = ksampler(g, { steps: 30, denoise: 0.75, scheduler: "karras", sampler_name: "dpmpp_2m" });
  const e = emptyLatent(g, 768, 512);
  g.connect(c, "MODEL", d, "model");
  g.connect(d, "MODEL", k, "model");
  g.connect(e, "LATENT", k, "latent_image");
  return { g, c, d, k, e };
}

test("KSampler: steps, denoise, scheduler, sampler, latent size and arch", () => {
  const { g, d, k } = txt2img("dreamshaper_8.safetensors");
  assert.deepEqual(findSamplers(g, d).map((s) => s.node.id), [k.id]);
  const desc = describeNode(g, d);
  assert.equal(desc.manual, false);
  assert.deepEqual(desc.settings, {
    steps: 30, denoise: 0.75, scheduler: "karras", sampler: "dpmpp_2m", source: "ksampler", from: `KSampler #${k.id}`,
  });
  assert.deepEqual(desc.size, { width: 768, height: 512 });
  assert.equal(desc.arch, "sd15");
});

test("KSamplerAdvanced: start/end steps, denoise 1", () => {
  const g = new FakeGraph();
  const c = checkpoint(g, "sd_xl_base_1.0.safetensors");
  const d = deepcache(g);
  const k = ksamplerAdvanced(g, { steps: 25, start_at_step: 0, end_at_step: 20 });
  g.connect(c, "MODEL", d, "model");
  g.connect(d, "MODEL", k, "model");
  const s = samplerSettings(g, k);
  assert.equal(s.steps, 25);
  assert.equal(s.start_step, 0);
  assert.equal(s.end_step, 20);
  assert.equal(s.denoise, 1);
  assert.equal(describeNode(g, d).arch, "sdxl");
});

test("passes through LoRA loaders, bypassed nodes and Reroutes; stops at muted nodes", () => {
  const g = new FakeGraph();
  const c = checkpoint(g);
  const d = deepcache(g);
  const lora = g.add("LoraLoader", { inputs: [["model", "MODEL"], ["clip", "CLIP"]], outputs: [["MODEL", "MODEL"], ["CLIP", "CLIP"]], widgets: {} });
  const bypassed = g.add("FreeU", { inputs: [["model", "MODEL"]], outputs: [["MODEL", "MODEL"]], mode: 4 });
  const reroute = g.add("Reroute", { inputs: [["", "*"]], outputs: [["", "*"]] });
  const k = ksampler(g, { steps: 12 });
  g.connect(c, "MODEL", d, "model");
  g.connect(d, "MODEL", lora, "model");
  g.connect(lora, "MODEL", bypassed, "model");
  g.connect(bypassed, "MODEL", reroute, "");
  g.connect(reroute, 0, k, "model");
  assert.deepEqual(findSamplers(g, d).map((s) => s.node.id), [k.id]);
  assert.equal(describeNode(g, d).settings.steps, 12);
  k.mode = 2; // muted: not a sampler of this run
  assert.deepEqual(findSamplers(g, d), []);
});

test("model name follows MODEL inputs upstream through a LoRA to the loader", () => {
  const g = new FakeGraph();
  const c = checkpoint(g, "juggernautXL_v9.safetensors");
  const lora = g.add("LoraLoaderModelOnly", { inputs: [["model", "MODEL"]], outputs: [["MODEL", "MODEL"]] });
  const d = deepcache(g);
  g.connect(c, "MODEL", lora, "model");
  g.connect(lora, "MODEL", d, "model");
  assert.equal(modelName(g, d), "juggernautXL_v9.safetensors");
  assert.equal(describeNode(g, d).arch, "sdxl");
  assert.equal(describeNode(g, d, { archSetting: "sd15" }).arch, "sd15");
});

test("guessArch", () => {
  assert.equal(guessArch("v1-5-pruned-emaonly-fp16.safetensors"), "sd15");
  assert.equal(guessArch("sd_xl_base_1.0.safetensors"), "sdxl");
  assert.equal(guessArch("sd_xl_refiner_1.0.safetensors"), "sdxl_refiner");
  assert.equal(guessArch("ponyDiffusionV6.safetensors"), "sdxl");
  assert.equal(guessArch(null), "sd15");
});

test("SamplerCustom with BasicScheduler; other sigma sources fall back to the typed step count", () => {
  const g = new FakeGraph();
  const c = checkpoint(g);
  const d = deepcache(g);
  const sc = g.add("SamplerCustom", {
    inputs: [["model", "MODEL"], ["positive", "CONDITIONING"], ["negative", "CONDITIONING"], ["sampler", "SAMPLER"],
      ["sigmas", "SIGMAS"], ["latent_image", "LATENT"]],
    outputs: [["output", "LATENT"], ["denoised_output", "LATENT"]],
  });
  const bs = g.add("BasicScheduler", { inputs: [["model", "MODEL"]], outputs: [["SIGMAS", "SIGMAS"]], widgets: { scheduler: "simple", steps: 16, denoise: 0.5 } });
  g.connect(c, "MODEL", d, "model");
  g.connect(d, "MODEL", sc, "model");
  g.connect(d, "MODEL", bs, "model");
  g.connect(bs, "SIGMAS", sc, "sigmas");
  const desc = describeNode(g, d);
  assert.equal(desc.manual, false);
  assert.equal(desc.settings.source, "basic");
  assert.equal(desc.settings.steps, 16);
  assert.equal(desc.settings.denoise, 0.5);
  assert.equal(desc.settings.scheduler, "simple");
  // another sigma source
  const ks = g.add("KarrasScheduler", { outputs: [["SIGMAS", "SIGMAS"]], widgets: { steps: 9 } });
  const link = getLink(g, sc.inputs[4].link);
  bs.outputs[0].links = [];
  g.links.delete(link.id);
  g.connect(ks, "SIGMAS", sc, "sigmas");
  const fb = describeNode(g, d, { fallbackSteps: 33 });
  assert.equal(fb.manual, true);
  assert.equal(fb.settings.steps, 33);
  assert.match(fb.settings.why, /KarrasScheduler/);
});

test("guider -> SamplerCustomAdvanced", () => {
  const g = new FakeGraph();
  const c = checkpoint(g);
  const d = deepcache(g);
  const guider = g.add("CFGGuider", { inputs: [["model", "MODEL"], ["positive", "CONDITIONING"], ["negative", "CONDITIONING"]], outputs: [["GUIDER", "GUIDER"]] });
  const sca = g.add("SamplerCustomAdvanced", {
    inputs: [["noise", "NOISE"], ["guider", "GUIDER"], ["sampler", "SAMPLER"], ["sigmas", "SIGMAS"], ["latent_image", "LATENT"]],
    outputs: [["output", "LATENT"], ["denoised_output", "LATENT"]],
  });
  const bs = g.add("BasicScheduler", { inputs: [["model", "MODEL"]], outputs: [["SIGMAS", "SIGMAS"]], widgets: { scheduler: "normal", steps: 8, denoise: 1 } });
  g.connect(c, "MODEL", d, "model");
  g.connect(d, "MODEL", guider, "model");
  g.connect(guider, "GUIDER", sca, "guider");
  g.connect(bs, "SIGMAS", sca, "sigmas");
  assert.deepEqual(findSamplers(g, d).map((s) => s.node.id), [sca.id]);
  assert.equal(describeNode(g, d).settings.steps, 8);
});

test("no sampler, unconnected node, graph without DeepCache nodes", () => {
  const g = new FakeGraph();
  const d = deepcache(g);
  const desc = describeNode(g, d, { fallbackSteps: 25 });
  assert.equal(desc.manual, true);
  assert.equal(desc.settings.steps, 25);
  assert.equal(desc.sampler, null);
  assert.equal(desc.arch, "sd15");
  const empty = new FakeGraph();
  ksampler(empty);
  assert.deepEqual(deepCacheNodes(empty), []);
  assert.deepEqual(deepCacheNodes(undefined), []);
});

test("a model feeding two samplers: the nearest is used, the others are counted", () => {
  const { g, d, k } = txt2img();
  const k2 = ksampler(g, { steps: 10 });
  g.connect(d, "MODEL", k2, "model");
  const desc = describeNode(g, d);
  assert.equal(desc.sampler.id, k.id);
  assert.equal(desc.otherSamplers, 1);
});

test("links stored as a plain object (older graphs) and latent sources without a size", () => {
  const { g, d, k } = txt2img();
  const obj = Object.fromEntries(g.links);
  g.links = obj;
  assert.equal(findSamplers(g, d).length, 1);
  assert.equal(inputSource(g, k, "latent_image").node.type, "EmptyLatentImage");
  const g2 = new FakeGraph();
  const enc = g2.add("VAEEncode", { outputs: [["LATENT", "LATENT"]] });
  const k2 = ksampler(g2);
  g2.connect(enc, "LATENT", k2, "latent_image");
  assert.equal(latentSize(g2, k2), null);
});
