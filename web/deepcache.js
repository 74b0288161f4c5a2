// DeepCache panel for ComfyUI's front end (1.27+): a schedule strip and branch/speed-up
// line on every DeepCache node, the last run's stats, a sidebar tab listing the
// workflow's DeepCache nodes, and settings for the defaults of new nodes.
// The plan comes from Python (GET /deepcache/plan); this file only walks the graph,
// asks, and draws.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { DEEPCACHE_TYPE, deepCacheNodes, describeNode, nodeType, widgetValue } from "./lib/graph.js";
import {
  NODE_WIDGETS, PlanCache, branchText, countPlan, debounce, paramsKey, planMatches, planParams, planText,
  speedupText, statsText, stripCells,
} from "./lib/plan.js";

const STATS_EVENT = "deepcache.stats";
const EXT = "DeepCache.Panel";
const SETTING = {
  interval: "DeepCache.NewNode.cache_interval",
  branch: "DeepCache.NewNode.cache_branch",
  schedule: "DeepCache.NewNode.schedule",
  start: "DeepCache.NewNode.start_percent",
  end: "DeepCache.NewNode.end_percent",
  steps: "DeepCache.Panel.fallback_steps",
  arch: "DeepCache.Panel.architecture",
  strip: "DeepCache.Panel.show_strip",
};
const PANEL_HEIGHT = 126;

const lastRun = new Map(); // node id (string) -> deepcache.stats payload
const cache = new PlanCache(async (url) => {
  const res = await api.fetchApi(url);
  let body = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  if (!res.ok) throw new Error(body?.error ?? `${res.status} ${res.statusText}`);
  return body;
});
let version = 0; // bumped on every visible change; the sidebar re-renders when it moves
const sidebarRoots = new Set();

// Two copies of the pack (a git clone and a Manager install) must not register twice.
const FIRST_COPY = !window.DeepCachePanel;
if (!FIRST_COPY) console.warn("DeepCache: another copy of the panel is already loaded; this one stays idle");

// Registered when this module loads, before any prompt can run: the front end drops
// custom message types that have no listener yet.
if (FIRST_COPY) api.addEventListener(STATS_EVENT, (ev) => {
  const d = ev.detail;
  if (!d || d.node == null) return;
  lastRun.set(String(d.node), { ...d, at: Date.now() });
  const node = app.graph?.getNodeById?.(d.node);
  if (node?.__deepcache) renderNode(node);
  version++;
});

function setting(id, fallback) {
  try {
    const v = app.extensionManager?.setting?.get?.(id) ?? app.ui?.settings?.getSettingValue?.(id);
    return v ?? fallback;
  } catch {
    return fallback;
  }
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

function injectStyle() {
  if (document.getElementById("deepcache-style")) return;
  const s = el("style");
  s.id = "deepcache-style";
  s.textContent = `
.deepcache-panel{font:11px/1.35 sans-serif;color:var(--input-text,#ddd);display:flex;flex-direction:column;gap:3px;
  padding:2px 4px;box-sizing:border-box;overflow:hidden;pointer-events:auto}
.deepcache-panel .dc-line{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.deepcache-panel .dc-info{white-space:normal;max-height:2.8em}
.deepcache-panel .dc-speedup{font-weight:bold;color:#f0a04b}
.deepcache-strip{display:flex;gap:1px;height:16px;min-height:16px;align-items:stretch}
.deepcache-strip .dc-cell{flex:1 1 0;min-width:1px;border-radius:2px}
.dc-cell[data-kind=refresh]{background:#e8833a}
.dc-cell[data-kind=cached]{background:#2fa6a0}
.dc-cell[data-kind=off]{background:#6b6b6b}
.deepcache-panel .dc-legend span{display:inline-block;width:8px;height:8px;border-radius:2px;margin:0 3px 0 6px}
.deepcache-panel .dc-muted{opacity:.75}
.deepcache-panel .dc-error{color:#ff7b7b}
.deepcache-panel .dc-run{color:#9fe39f}
.deepcache-panel input.dc-steps{width:56px;background:var(--comfy-input-bg,#222);color:inherit;border:1px solid #555;
  border-radius:3px;font-size:11px;padding:0 3px}
.deepcache-sidebar{padding:8px;font:12px/1.4 sans-serif;display:flex;flex-direction:column;gap:8px}
.deepcache-sidebar .dc-item{border:1px solid var(--border-color,#444);border-radius:6px;padding:6px;cursor:pointer}
.deepcache-sidebar .dc-item:hover{background:var(--comfy-menu-secondary-bg,#333)}
.deepcache-sidebar .dc-title{font-weight:bold}
`;
  document.head.append(s);
}

function renderStrip(container, plan) {
  const cells = stripCells(plan);
  container.replaceChildren(...cells.map((c) => {
    const d = el("div", "dc-cell");
    d.dataset.kind = c.kind;
    d.dataset.step = String(c.step);
    d.title = c.title;
    return d;
  }));
  container.dataset.steps = String(cells.length);
}

function nodeValues(node) {
  const v = {};
  for (const w of NODE_WIDGETS) v[w] = widgetValue(node, w);
  return v;
}

// -- per-node panel ----------------------------------------------------------------------------
function attachPanel(node) {
  if (node.__deepcache) return;
  injectStyle();
  const root = el("div", "deepcache-panel");
  const info = el("div", "dc-line dc-info");
  const branch = el("span", "dc-branch");
  const speed = el("span", "dc-speedup");
  info.append(speed, " ", branch);
  const strip = el("div", "deepcache-strip");
  const planLine = el("div", "dc-line dc-plan");
  const manual = el("div", "dc-line dc-manual");
  const stepsInput = el("input", "dc-steps");
  stepsInput.type = "number";
  stepsInput.min = "1";
  stepsInput.max = "10000";
  stepsInput.addEventListener("change", () => {
    const n = Math.round(Number(stepsInput.value));
    if (n >= 1) {
      node.properties = node.properties ?? {};
      node.properties.deepcache_steps = n;
      update(node);
    }
  });
  const why = el("span", "dc-muted");
  manual.append("steps ", stepsInput, " ", why);
  const legend = el("div", "dc-line dc-legend dc-muted");
  legend.innerHTML = '<span style="background:#e8833a"></span>full<span style="background:#2fa6a0"></span>cached' +
    '<span style="background:#6b6b6b"></span>off';
  const run = el("div", "dc-line dc-run");
  root.append(info, strip, planLine, manual, legend, run);
  for (const e of ["pointerdown", "wheel"]) root.addEventListener(e, (ev) => {
    if (ev.target !== stepsInput) ev.stopPropagation?.();
  }, { passive: true });

  const widget = node.addDOMWidget("deepcache_panel", "deepcache_panel", root, {
    serialize: false, hideOnZoom: false, getMinHeight: () => PANEL_HEIGHT, getMaxHeight: () => PANEL_HEIGHT + 40,
  });
  widget.serialize = false;
  node.__deepcache = { root, info, branch, speed, strip, planLine, manual, stepsInput, why, run, key: null, resp: null,
    error: null, desc: null, widget };
  for (const w of node.widgets ?? []) {
    if (!NODE_WIDGETS.includes(w.name)) continue;
    const cb = w.callback;
    w.callback = function (...args) {
      const r = cb?.apply(this, args);
      update(node);
      return r;
    };
  }
  const onRemoved = node.onRemoved;
  node.onRemoved = function (...args) {
    version++;
    return onRemoved?.apply(this, args);
  };
  renderNode(node);
}

const fetchPlan = debounce((_nodeId, node, params, key) => {
  cache.get(params).then((resp) => {
    const st = node.__deepcache;
    if (!st || st.key !== key) return;
    st.resp = resp;
    st.error = null;
    st.loadedKey = key;
    renderNode(node);
    version++;
  }, (e) => {
    const st = node.__deepcache;
    if (!st || st.key !== key) return;
    st.resp = null;
    st.error = e?.message ?? String(e);
    st.loadedKey = key;
    renderNode(node);
    version++;
  });
}, 120);

function update(node) {
  const st = node.__deepcache;
  const graph = node.graph ?? app.graph;
  if (!st || !graph) return;
  const fallback = Number(node.properties?.deepcache_steps) || Number(setting(SETTING.steps, 20)) || 20;
  let desc;
  try {
    desc = describeNode(graph, node, { fallbackSteps: fallback, archSetting: setting(SETTING.arch, "auto") });
  } catch (e) {
    desc = null;
    st.error = `graph: ${e?.message ?? e}`;
  }
  if (!desc) return;
  const params = planParams(nodeValues(node), desc);
  const key = paramsKey(params);
  st.desc = desc;
  if (key === st.key) return;
  st.key = key;
  st.params = params;
  const cached = cache.peek(key);
  if (cached) {
    st.resp = cached;
    st.error = null;
    st.loadedKey = key;
    renderNode(node);
    version++;
  } else {
    renderNode(node);
    fetchPlan(String(node.id), node, params, key);
  }
}

function renderNode(node) {
  const st = node.__deepcache;
  if (!st) return;
  const show = setting(SETTING.strip, true) !== false;
  st.strip.style.display = show ? "" : "none";
  const resp = st.resp;
  if (st.error) {
    st.branch.textContent = "";
    st.speed.textContent = "";
    st.info.className = "dc-line dc-info dc-error";
    st.info.title = st.error;
    st.branch.textContent = st.error;
  } else {
    st.info.className = "dc-line dc-info";
    st.speed.textContent = speedupText(resp);
    st.branch.textContent = branchText(resp);
    st.info.title = st.branch.textContent;
  }
  renderStrip(st.strip, resp && !st.error ? resp.plan : []);
  const desc = st.desc;
  let src = "";
  if (desc?.manual) src = "typed step count";
  else if (desc?.settings?.from) {
    const s = desc.settings;
    src = `from ${s.from}`;
    if (s.denoise != null && s.denoise < 1) src += `, denoise ${s.denoise}`;
    if (s.start_step != null && (s.start_step > 0 || s.end_step < s.steps)) src += `, steps ${s.start_step}..${s.end_step}`;
  }
  if (desc?.otherSamplers) src += ` (+${desc.otherSamplers} more sampler${desc.otherSamplers > 1 ? "s" : ""})`;
  const pt = resp && !st.error ? planText(resp) : st.error ? "" : "computing...";
  st.planLine.textContent = [pt, src].filter(Boolean).join(" · ");
  st.planLine.title = st.planLine.textContent;
  st.manual.style.display = desc?.manual ? "" : "none";
  if (desc?.manual) {
    if (document.activeElement !== st.stepsInput) st.stepsInput.value = String(desc.settings.steps);
    st.why.textContent = desc.settings.why ?? "";
    st.why.title = st.why.textContent;
  }
  const stats = lastRun.get(String(node.id));
  st.run.textContent = statsText(stats);
  if (stats && resp) {
    const same = planMatches(stats.plan, resp.plan);
    st.run.title = same === false ? "the last run used other settings than the strip shows" : "";
  }
}

// -- sidebar -------------------------------------------------------------------------------------
function renderSidebar(root) {
  const graph = app.graph;
  const nodes = graph ? deepCacheNodes(graph) : [];
  const box = el("div", "deepcache-sidebar");
  box.append(el("div", "dc-title", "DeepCache nodes in this workflow"));
  if (!nodes.length) {
    box.append(el("div", "dc-muted", "No DeepCache node in this workflow. Add one from model_patches/unet " +
      "between the model loader and the sampler."));
  }
  for (const node of nodes) {
    const st = node.__deepcache;
    const item = el("div", "dc-item");
    item.dataset.nodeId = String(node.id);
    const v = nodeValues(node);
    item.append(el("div", "dc-title", `${node.title || DEEPCACHE_TYPE} #${node.id}`));
    item.append(el("div", "dc-muted", `interval ${v.cache_interval}, branch ${v.cache_branch}, ${v.schedule}, ` +
      `${Number(v.start_percent).toFixed(2)}-${Number(v.end_percent).toFixed(2)}`));
    const strip = el("div", "deepcache-strip");
    renderStrip(strip, st?.resp?.plan ?? []);
    item.append(strip);
    const line = [planText(st?.resp), speedupText(st?.resp)].filter(Boolean).join(", ");
    item.append(el("div", "", st?.error ? st.error : line));
    const stats = statsText(lastRun.get(String(node.id)));
    item.append(el("div", "dc-run", stats || "not run yet"));
    item.addEventListener("click", () => selectNode(node));
    box.append(item);
  }
  root.replaceChildren(box);
  root.__deepcacheVersion = version;
}

function selectNode(node) {
  const canvas = app.canvas;
  if (!canvas) return;
  canvas.selectNode?.(node);
  canvas.centerOnNode?.(node);
  canvas.setDirty?.(true, true);
}

// -- the loop: keeps strips in step with widget, sampler and link changes --------------------------
function tick() {
  const graph = app.graph;
  if (!graph) return;
  let count = 0;
  for (const node of deepCacheNodes(graph)) {
    count++;
    if (!node.__deepcache) attachPanel(node);
    update(node);
  }
  if (count !== tick.lastCount) {
    tick.lastCount = count;
    version++;
  }
  for (const root of sidebarRoots) if (root.__deepcacheVersion !== version) renderSidebar(root);
}

function applyDefaults(node) {
  const set = (name, id) => {
    const w = node.widgets?.find((w) => w.name === name);
    const v = setting(id, undefined);
    if (w && v !== undefined && v !== null && v !== "") w.value = v;
  };
  set("cache_interval", SETTING.interval);
  set("cache_branch", SETTING.branch);
  set("schedule", SETTING.schedule);
  set("start_percent", SETTING.start);
  set("end_percent", SETTING.end);
}

if (FIRST_COPY) app.registerExtension({
  name: EXT,
  settings: [
    { id: SETTING.interval, category: ["DeepCache", "New node defaults", "cache_interval"], name: "cache_interval of a new DeepCache node",
      tooltip: "1 = off, 3 = about x2-2.5 faster", type: "number", defaultValue: 3, attrs: { min: 1, max: 1000, step: 1 } },
    { id: SETTING.branch, category: ["DeepCache", "New node defaults", "cache_branch"], name: "cache_branch of a new DeepCache node",
      tooltip: "0 = fastest; SD1.x 0..11, SDXL 0..8", type: "number", defaultValue: 0, attrs: { min: 0, max: 11, step: 1 } },
    { id: SETTING.schedule, category: ["DeepCache", "New node defaults", "schedule"], name: "schedule of a new DeepCache node",
      type: "combo", options: ["uniform", "non-uniform"], defaultValue: "uniform" },
    { id: SETTING.start, category: ["DeepCache", "New node defaults", "start_percent"], name: "start_percent of a new DeepCache node",
      type: "number", defaultValue: 0, attrs: { min: 0, max: 1, step: 0.01 } },
    { id: SETTING.end, category: ["DeepCache", "New node defaults", "end_percent"], name: "end_percent of a new DeepCache node",
      type: "number", defaultValue: 1, attrs: { min: 0, max: 1, step: 0.01 } },
    { id: SETTING.steps, category: ["DeepCache", "Panel", "fallback_steps"], name: "Step count for the strip when no sampler is found",
      type: "number", defaultValue: 20, attrs: { min: 1, max: 10000, step: 1 } },
    { id: SETTING.arch, category: ["DeepCache", "Panel", "architecture"], name: "U-Net family for the speed-up estimate",
      tooltip: "auto guesses from the checkpoint name (xl -> SDXL, refiner -> SDXL refiner, else SD1.5)",
      type: "combo", options: ["auto", "sd15", "sdxl", "sdxl_refiner"], defaultValue: "auto" },
    { id: SETTING.strip, category: ["DeepCache", "Panel", "show_strip"], name: "Show the schedule strip on DeepCache nodes",
      type: "boolean", defaultValue: true },
  ],
  async setup() {
    try {
      app.extensionManager?.registerSidebarTab?.({
        id: "deepcache",
        icon: "pi pi-bolt",
        title: "DeepCache",
        tooltip: "DeepCache nodes: schedules and last runs",
        type: "custom",
        render: (root) => {
          sidebarRoots.add(root);
          renderSidebar(root);
        },
        destroy: () => sidebarRoots.clear(),
      });
    } catch (e) {
      console.warn("DeepCache: no sidebar tab:", e);
    }
    setInterval(() => {
      try {
        tick();
      } catch (e) {
        console.warn("DeepCache panel:", e);
      }
    }, 300);
  },
  async nodeCreated(node) {
    if (nodeType(node) !== DEEPCACHE_TYPE) return;
    applyDefaults(node); // a loaded or pasted node gets its saved values back right after this
    attachPanel(node);
  },
});

// For tests and curious users: window.DeepCachePanel.state(id)
if (FIRST_COPY) window.DeepCachePanel = {
  state(id) {
    const node = app.graph?.getNodeById?.(id);
    const st = node?.__deepcache;
    if (!st) return null;
    return { key: st.key, loadedKey: st.loadedKey, plan: st.resp?.plan ?? null, resp: st.resp, error: st.error,
      desc: st.desc, params: st.params, stats: lastRun.get(String(id)) ?? null,
      cells: [...st.strip.querySelectorAll(".dc-cell")].map((c) => c.dataset.kind), counts: countPlan(st.resp?.plan) };
  },
  refresh: () => tick(),
  lastRun,
};
