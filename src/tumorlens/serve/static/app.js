// tumorlens page: upload or pick a sample, then show the prediction, the heatmap and the attention.
// Plain JavaScript served by the service itself (no CDN, no build step).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { file: null, fileName: null, key: sessionStorage.getItem("tumorlens-key") || "", authRequired: false };
const REGION_NAMES = { tumor_candidates: "Bright candidate areas (in brain)", brain: "Brain", skull: "Skull and scalp", background: "Background" };

function headers() {
  return state.key ? { "X-API-Key": state.key } : {};
}

function show(id, visible) { $(id).hidden = !visible; }

function showError(message) {
  $("error").textContent = message;
  show("error", true);
}

async function apiJson(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `request failed (HTTP ${response.status})`;
    const err = new Error(message);
    err.status = response.status;
    throw err;
  }
  return body;
}

async function loadService() {
  const health = await apiJson("/health");
  state.authRequired = health.auth_required;
  show("key-row", health.auth_required);
  $("api-key").value = state.key;
  $("model-line").textContent = `Model ${health.model.name}, version ${health.model.version}.`;
  if (health.auth_required && !state.key) {
    showError("This server needs an API key: enter it above.");
    return;
  }
  await loadProtected();
}

async function loadProtected() {
  show("error", false);
  try {
    const [model, samples] = await Promise.all([apiJson("/v1/model"), apiJson("/v1/samples")]);
    const method = $("method");
    method.replaceChildren(...model.service.explain_methods.map((m) => new Option(m, m, m === model.service.default_method, m === model.service.default_method)));
    const select = $("sample");
    select.replaceChildren(new Option("(samples)", ""));
    for (const s of samples) {
      select.add(new Option(`${s.source}: ${s.label || "unlabelled"} (${s.name})`, s.name));
    }
    loadMonitoring();
  } catch (e) {
    showError(e.message);
  }
}

const pct = (x) => (x === null || x === undefined ? "n/a" : `${(100 * x).toFixed(1)}%`);

async function loadMonitoring() {
  try {
    const report = await apiJson("/v1/monitoring");
    const last = report.windows.length ? report.windows[report.windows.length - 1] : null;
    const parts = [`Status: ${report.status}; ${report.rows} monitored predictions in ${report.windows.length} window(s) of ${report.thresholds.window}.`];
    if (last) {
      parts.push(`Latest window: estimated accuracy ${pct(last.expected_accuracy)}` +
        (report.reference ? ` (reference ${pct(report.reference.expected_accuracy)})` : "") +
        `, ${pct(last.flagged_share)} flagged by the input check.`);
    }
    if (!report.reference) parts.push("No reference profile for this model: drift is not tested.");
    $("monitoring-line").textContent = parts.join(" ");
    $("monitoring-alerts").replaceChildren(...report.alerts.map((a) => {
      const li = document.createElement("li");
      li.textContent = a;
      return li;
    }));
    show("monitoring", true);
  } catch (e) {
    show("monitoring", false);
  }
}

async function explainCurrent() {
  if (!state.file) return;
  show("error", false);
  show("busy", true);
  const form = new FormData();
  form.append("file", state.file, state.fileName || "upload");
  const params = new URLSearchParams({ method: $("method").value });
  if (!$("slice-row").hidden) params.set("slice", $("slice").value);
  try {
    const body = await apiJson(`/v1/explain?${params}`, { method: "POST", body: form });
    render(body);
    loadMonitoring();
  } catch (e) {
    show("result", false);
    showError(e.message);
  } finally {
    show("busy", false);
  }
}

function render(body) {
  const ex = body.explanation;
  const slices = body.input.slices;
  show("slice-row", slices > 1);
  if (slices > 1) {
    $("slice").max = slices - 1;
    $("slice").value = ex.slice;
    $("slice-count").textContent = `of ${slices} (0-${slices - 1})`;
  }
  $("predicted").textContent = body.predicted_class || "withheld";
  $("confidence").textContent = body.confidence == null ? "" : `${(100 * body.confidence).toFixed(0)}%`;
  const status = $("status");
  status.textContent = body.status.replaceAll("_", " ");
  status.className = `status ${body.status}`;
  $("warnings").replaceChildren(...body.warnings.map((w) => {
    const li = document.createElement("li");
    li.textContent = w.message;
    return li;
  }));

  const probs = body.probabilities || {};
  const top = Object.keys(probs).reduce((a, b) => (a === null || probs[b] > probs[a] ? b : a), null);
  $("bars").replaceChildren(...Object.entries(probs).map(([cls, p]) => {
    const row = document.createElement("div");
    row.className = cls === top ? "bar top" : "bar";
    row.dataset.class = cls;
    const name = document.createElement("span");
    name.textContent = cls;
    const track = document.createElement("div");
    track.className = "track";
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(100 * p).toFixed(1)}%`;
    row.append(name, track, value);
    return row;
  }));

  $("base-image").src = `data:image/png;base64,${ex.image_png}`;
  $("heatmap").src = `data:image/png;base64,${ex.heatmap_png}`;
  applyOpacity();
  drawOutline(body.tumor, ex.image_box);

  const rows = Object.entries(ex.attention.shares).map(([region, share]) => {
    const tr = document.createElement("tr");
    tr.dataset.region = region;
    const area = ex.attention.areas[region];
    for (const [text, cls] of [[REGION_NAMES[region] || region, ""], [`${(100 * share).toFixed(0)}%`, "num"], [`${(100 * area).toFixed(0)}%`, "num"]]) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      tr.append(td);
    }
    return tr;
  });
  $("attention").tBodies[0].replaceChildren(...rows);
  $("summary").textContent = ex.summary;
  show("result", true);
}

const OUTLINE_LABEL = "segmenter outline (research use; misses small tumors)";

// The polygons are in the uploaded image's pixels; the SVG's viewBox is the part of the upload the
// picture shows (image_box), stretched like the picture, so no coordinate is converted here.
function drawOutline(tumor, box) {
  const svg = $("outline");
  svg.replaceChildren();
  show("outline-label", Boolean(tumor));
  if (!tumor) return;  // segmenter off or unavailable
  svg.setAttribute("viewBox", `${box.x} ${box.y} ${box.width} ${box.height}`);
  for (const points of tumor.polygons) {
    const polygon = document.createElementNS(svg.namespaceURI, "polygon");  // the SVG namespace, from the page
    polygon.setAttribute("points", points.map(([x, y]) => `${x + 0.5},${y + 0.5}`).join(" "));  // pixel centres
    svg.append(polygon);
  }
  let text = OUTLINE_LABEL;
  if (!tumor.found) {
    text += ": no tumor outlined on this slice";
  } else if (tumor.heatmap_energy_inside != null) {
    text += `: ${(100 * tumor.heatmap_energy_inside).toFixed(0)}% of the heatmap lies inside it`;
  }
  $("outline-text").textContent = text;
}

function applyOpacity() {
  const v = Number($("opacity").value);
  $("heatmap").style.opacity = String(v / 100);
  $("opacity-value").textContent = `${v}%`;
}

$("file").addEventListener("change", () => {
  const f = $("file").files[0];
  if (!f) return;
  state.file = f;
  state.fileName = f.name;
  $("sample").value = "";
  show("slice-row", false);
  explainCurrent();
});

$("sample").addEventListener("change", async () => {
  const name = $("sample").value;
  if (!name) return;
  show("error", false);
  try {
    const response = await fetch(`/v1/samples/${encodeURIComponent(name)}`, { headers: headers() });
    if (!response.ok) throw new Error(`cannot load sample ${name} (HTTP ${response.status})`);
    state.file = await response.blob();
    state.fileName = name;
    $("file").value = "";
    show("slice-row", false);
    await explainCurrent();
  } catch (e) {
    showError(e.message);
  }
});

$("monitoring-refresh").addEventListener("click", loadMonitoring);
$("method").addEventListener("change", explainCurrent);
$("slice").addEventListener("change", explainCurrent);
$("opacity").addEventListener("input", applyOpacity);
$("key-save").addEventListener("click", () => {
  state.key = $("api-key").value.trim();
  sessionStorage.setItem("tumorlens-key", state.key);
  loadProtected();
});

loadService().catch((e) => showError(e.message));
