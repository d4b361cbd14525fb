// imagerec serve's page: plain JavaScript, no framework, no build step, nothing from the internet.
// Text from the server is only ever set as textContent, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: [], model: null, view: "try", maxBytes: 0, request: 0, cards: {} };

// ---------- small helpers ----------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

const notAvailable = (what = "not available") => el("p", { class: "na", text: what });

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function formatBytes(n) {
  return n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(0)} KiB` : `${n} bytes`;
}

function formatNumber(value) { // metrics: four decimals
  if (typeof value !== "number") return String(value);
  return Number.isInteger(value) ? value.toLocaleString("en") : value.toFixed(4);
}

function plainValue(value) { // params and data: as written, integers with thousands separators
  if (typeof value !== "number") return String(value);
  return Number.isInteger(value) ? value.toLocaleString("en") : String(Number(value.toPrecision(6)));
}

const METHOD_NAMES = { hirescam: "HiResCAM", gradcam: "Grad-CAM" };

function currentModel() {
  return state.models.find((m) => m.name === state.model) || null;
}

// ---------- views and the model picker ----------

function setView(view) {
  state.view = view;
  for (const tab of document.querySelectorAll(".tabs button")) {
    tab.setAttribute("aria-selected", String(tab.dataset.view === view));
  }
  $("view-try").hidden = view !== "try";
  $("view-card").hidden = view !== "card";
  history.replaceState(null, "", `#${view}/${encodeURIComponent(state.model || "")}`);
  clearError();
  if (view === "card") showCard();
}

function setModel(name) {
  state.model = name;
  $("model").value = name;
  const model = currentModel();
  $("draw-panel").hidden = !(model && model.color_mode === "grayscale");
  $("drop-hint").textContent = model
    ? `${model.classes.length} classes; images are resized to ${model.input_size}×${model.input_size}` +
      ` ${model.color_mode === "grayscale" ? "greyscale" : "colour"} pixels. At most ${formatBytes(state.maxBytes)}.` +
      (model.dataset === "mnist" ? " MNIST digits are white on black: a dark digit on light paper is read wrongly," +
        " so invert such a photo first (or draw the digit below)." : "")
    : "";
  resetResult("Choose or drop an image" + ($("draw-panel").hidden ? "." : ", or draw a digit."));
  clearError();
  history.replaceState(null, "", `#${state.view}/${encodeURIComponent(name)}`);
  if (state.view === "card") showCard();
}

async function init() {
  for (const tab of document.querySelectorAll(".tabs button")) {
    tab.addEventListener("click", () => setView(tab.dataset.view));
  }
  $("model").addEventListener("change", (event) => setModel(event.target.value));
  setUpUpload();
  setUpDrawing();
  $("opacity").addEventListener("input", (event) => { $("heatmap").style.opacity = event.target.value / 100; });

  let listing;
  try {
    const response = await fetch("/models");
    listing = await response.json();
    if (!response.ok) throw new Error(listing.error || `HTTP ${response.status}`);
  } catch (err) {
    showError(`Could not list the models: ${err.message}`);
    return;
  }
  state.models = listing.models;
  state.maxBytes = listing.max_request_bytes;
  for (const model of state.models) {
    $("model").append(el("option", { value: model.name, text: model.dataset ? `${model.name}` : model.name }));
  }
  const [view, name] = decodeURIComponent(location.hash.slice(1)).split("/");
  const known = state.models.some((m) => m.name === name);
  setModel(known ? name : state.models[0].name);
  setView(view === "card" ? "card" : "try");
}

// ---------- predicting ----------

function resetResult(message) {
  state.request += 1; // any answer still on its way is now stale
  $("result").hidden = true;
  $("result").dataset.state = "";
  $("predictions").replaceChildren();
  setStatus(message);
}

function setStatus(message, busy = false) {
  $("status").textContent = message;
  $("status").classList.toggle("busy", busy);
}

async function predict(blob, filename) {
  const model = currentModel();
  if (!model) return;
  clearError();
  if (blob.size > state.maxBytes) {
    resetResult("No prediction.");
    showError(`${filename} is ${formatBytes(blob.size)}; the server accepts uploads of at most ${formatBytes(state.maxBytes)}.`);
    return;
  }
  const request = ++state.request;
  $("result").dataset.state = "busy";
  setStatus(`Asking ${model.name} about ${filename}`, true);
  const form = new FormData();
  form.append("file", blob, filename);
  const topK = Math.min(5, model.classes.length);
  const query = new URLSearchParams({ model: model.name, top_k: topK, gradcam: "true" });
  let response, body;
  try {
    response = await fetch(`/predict?${query}`, { method: "POST", body: form });
    const text = await response.text();
    try { body = JSON.parse(text); } catch { body = { error: text.slice(0, 200) || response.statusText }; }
  } catch (err) {
    if (request !== state.request) return;
    resetResult("No prediction.");
    showError(`The server did not answer (${err.message}). Is imagerec serve still running?`);
    return;
  }
  if (request !== state.request) return; // a newer upload or another model took over
  if (!response.ok) {
    resetResult("No prediction.");
    showError(`${describeStatus(response.status)}: ${body.error || response.statusText}`);
    return;
  }
  await showPrediction(blob, body, request);
}

function describeStatus(status) {
  if (status === 413) return "Upload too large";
  if (status === 422) return "Cannot use this file";
  if (status === 503) return "The server is busy";
  return `The server refused it (HTTP ${status})`;
}

async function showPrediction(blob, body, request) {
  const picture = $("picture"), heatmap = $("heatmap");
  if (picture.src.startsWith("blob:")) URL.revokeObjectURL(picture.src);
  picture.src = URL.createObjectURL(blob);
  const loads = [picture.decode().catch(() => {})];
  const explained = body.gradcam || {};
  if (explained.png) {
    heatmap.src = explained.png;
    heatmap.hidden = false;
    loads.push(heatmap.decode());
    $("heatmap-caption").textContent =
      `${METHOD_NAMES[explained.method] || explained.method} heat map of “${explained.label}”: red marks the ` +
      "regions that raised its score most, blue those that did not. The image is squashed to a square, as the model sees it.";
  } else {
    heatmap.removeAttribute("src");
    heatmap.hidden = true;
    $("heatmap-caption").textContent = `Heat map not available${explained.error ? `: ${explained.error}` : "."}`;
  }
  $("predictions").replaceChildren(...body.predictions.map((p) => {
    const percent = (100 * p.probability);
    return el("li", { "data-label": p.label },
      el("span", { class: "label", text: p.label, title: p.label }),
      el("span", { class: "track" }, el("span", { class: "bar", style: `width: ${percent.toFixed(2)}%` })),
      el("span", { class: "value", text: `${percent.toFixed(percent >= 99.95 || percent < 0.05 ? 2 : 1)}%` }));
  }));
  try {
    await Promise.all(loads);
  } catch {
    $("heatmap-caption").textContent = "Heat map not available: the browser could not draw it.";
    heatmap.hidden = true;
  }
  if (request !== state.request) return;
  const top = body.predictions[0];
  setStatus(`${body.file}: ${top.label} (${(100 * top.probability).toFixed(1)}%) — model ${body.model}`);
  $("result").hidden = false;
  $("result").dataset.state = explained.png && !heatmap.hidden ? "done" : "done-without-heatmap";
}

function setUpUpload() {
  const drop = $("drop"), input = $("file");
  input.addEventListener("change", () => {
    if (input.files.length) predict(input.files[0], input.files[0].name);
    input.value = ""; // choosing the same file again predicts again
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer.files[0];
    if (file) predict(file, file.name);
    else showError("Drop a file from your computer (a link or text from another page is not a file).");
  });
  // A file dropped beside the target would otherwise make the browser navigate away to it.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
}

// ---------- drawing a digit ----------

function setUpDrawing() {
  const canvas = $("draw"), context = canvas.getContext("2d");
  let drawing = false, drawn = false, last = null;
  const clear = () => {
    context.fillStyle = "#000";
    context.fillRect(0, 0, canvas.width, canvas.height);
    drawn = false;
  };
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
  };
  const stroke = (to) => {
    context.strokeStyle = "#fff";
    context.fillStyle = "#fff";
    context.lineWidth = 22;
    context.lineCap = "round";
    context.lineJoin = "round";
    context.beginPath();
    context.moveTo(...(last || to));
    context.lineTo(...to);
    context.stroke();
    last = to;
    drawn = true;
  };
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    last = null;
    canvas.setPointerCapture(event.pointerId);
    stroke(at(event));
  });
  canvas.addEventListener("pointermove", (event) => { if (drawing) stroke(at(event)); });
  const finish = () => {
    if (!drawing) return;
    drawing = false;
    predictDrawing();
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);
  const predictDrawing = () => {
    if (!drawn) { showError("Draw a digit first."); return; }
    canvas.toBlob((blob) => predict(blob, "drawing.png"), "image/png");
  };
  $("draw-predict").addEventListener("click", predictDrawing);
  $("draw-clear").addEventListener("click", () => { clear(); resetResult("Draw a digit, or choose an image."); clearError(); });
  clear();
}

// ---------- the model card ----------

const METRIC_NAMES = {
  accuracy: "Accuracy",
  loss: "Loss (cross-entropy)",
  roc_auc_macro: "ROC AUC (macro)",
  roc_auc_micro: "ROC AUC (micro)",
  average_precision_macro: "Average precision (macro)",
  average_precision_micro: "Average precision (micro)",
  expected_calibration_error: "Expected calibration error",
  test_images: "Test images",
};

async function showCard() {
  const name = state.model;
  const target = $("card");
  if (!name) return;
  let card = state.cards[name];
  if (!card) {
    target.replaceChildren(el("p", { class: "status busy", text: `Loading the card of ${name}` }));
    try {
      const response = await fetch(`/models/${encodeURIComponent(name)}/card`);
      card = await response.json();
      if (!response.ok) throw new Error(card.error || `HTTP ${response.status}`);
    } catch (err) {
      target.replaceChildren(notAvailable(`The model card is not available: ${err.message}`));
      return;
    }
    state.cards[name] = card;
  }
  if (state.model !== name || state.view !== "card") return;
  const sections = [
    ["Test metrics", () => metricsSection(card.metrics), "metrics", "third"],
    ["Confusion matrix", () => confusionSection(card.files["confusion.csv"], card.classes), "confusion", "third"],
    ["ROC curve", () => classCurves(card.files["roc.json"], ROC, card.metrics), "roc", "third"],
    ["Training curves", () => curvesSection(card.files), "curves", "wide"],
    ["Params it was trained with", () => nestedSection(card.params), "params", "half"],
    ["Data it was trained on", () => dataSection(card), "data", "half"],
    ["More figures", () => moreFigures(card), "more", "wide"],
  ];
  const grid = el("div", { class: "card-sections" });
  for (const [title, render, id, width] of sections) {
    const panel = el("section", { class: `panel ${width}`, id: `card-${id}` }, el("h2", { text: title }));
    try {
      panel.append(render());
    } catch (err) {
      panel.append(notAvailable(`not available (${err.message})`));
    }
    grid.append(panel);
  }
  const shape = Array.isArray(card.input_shape) ? card.input_shape.join("×") : "?";
  target.replaceChildren(
    el("div", { class: "card-head" },
      el("h2", { text: `Model card: ${card.name}` }),
      el("p", { text: `dataset ${card.dataset || "not named"} · ${card.classes.length} classes · input ${shape} ${card.color_mode || ""}` })),
    grid);
  target.dataset.model = name;
}

function metricsSection(metrics) {
  if (!metrics) return notAvailable();
  const box = el("div");
  const table = el("table", { class: "metrics" });
  for (const [key, value] of Object.entries(metrics)) {
    if (typeof value !== "number") continue;
    table.append(el("tr", {}, el("th", { text: METRIC_NAMES[key] || key }), el("td", { class: "num", text: formatNumber(value) })));
  }
  box.append(table);
  const perClass = metrics.per_class;
  if (perClass && typeof perClass === "object") {
    const names = Object.keys(perClass);
    const columns = [...new Set(names.flatMap((n) => Object.keys(perClass[n] || {})))];
    const header = el("tr", {}, el("th", { text: "class" }), ...columns.map((c) => el("th", { text: c })));
    const rows = names.map((n) => el("tr", {}, el("td", { text: n }),
      ...columns.map((c) => el("td", { class: "num", text: c in perClass[n] ? formatNumber(perClass[n][c]) : "–" }))));
    box.append(el("details", {}, el("summary", { text: `Per class (${names.length})` }), el("table", {}, header, ...rows)));
  }
  return box;
}

function figure(url, caption, size = "") {
  if (!url) return notAvailable();
  return el("figure", { class: `figure ${size}` }, el("img", { src: url, alt: caption }));
}

function moreFigures(card) {
  const files = card.files;
  if (!files["pr.json"] && !files["calibration.json"] && !files["gradcam.png"]) return notAvailable();
  const grid = el("div", { class: "card-grid" });
  if (files["pr.json"]) grid.append(el("div", {}, el("h3", { text: "Precision-recall curves" }), classCurves(files["pr.json"], PR, card.metrics)));
  if (files["calibration.json"]) grid.append(el("div", {}, el("h3", { text: "Reliability (calibration)" }), reliabilityChart(files["calibration.json"], card.metrics)));
  if (files["gradcam.png"]) grid.append(el("div", {}, el("h3", { text: "Grad-CAM of test images" }), figure(files["gradcam.png"], "Grad-CAM of test images")));
  return grid;
}

function nestedSection(part) {
  if (!part || part.values == null) return notAvailable();
  return el("div", {}, el("p", { class: "source", text: `from ${part.from}` }), nested(part.values));
}

function dataSection(card) {
  const box = el("div", {}, nestedSection(card.data));
  for (const [key, caption] of [["class_balance.png", "Images per class and split"], ["samples.png", "Training samples"]]) {
    if (card.files[key]) box.append(el("h3", { text: caption }), figure(card.files[key], caption, "small"));
  }
  return box;
}

const isScalar = (v) => v === null || typeof v !== "object";
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

function nested(value) {
  if (value === null || value === undefined) return el("span", { class: "na", text: "–" });
  if (Array.isArray(value) && value.every(isScalar)) return document.createTextNode(value.map(plainValue).join(", "));
  const rows = isObject(value) ? Object.values(value) : [];
  if (rows.length && rows.every((row) => isObject(row) && Object.keys(row).length > 2 && Object.values(row).every(isScalar))) {
    return matrix(value); // e.g. images per split (rows) and class (columns)
  }
  if (typeof value === "object") {
    const list = el("dl", { class: "nested" });
    for (const [key, inner] of Object.entries(value)) {
      const leaf = isScalar(inner) || (Array.isArray(inner) && inner.every(isScalar));
      list.append(el("dt", { class: leaf ? "" : "group", text: key }), el("dd", { class: leaf ? "" : "group" }, nested(inner)));
    }
    return list;
  }
  return document.createTextNode(plainValue(value));
}

function matrix(value) {
  const columns = [...new Set(Object.values(value).flatMap(Object.keys))];
  const header = el("tr", {}, el("th"), ...columns.map((c) => el("th", { class: "num", text: c })));
  const rows = Object.entries(value).map(([name, row]) => el("tr", {}, el("th", { text: name }),
    ...columns.map((c) => el("td", { class: "num", text: c in row ? plainValue(row[c]) : "–" }))));
  return el("div", { class: "scroll" }, el("table", { class: "matrix" }, header, ...rows));
}

// Training curves: the dvclive TSVs (step, value per epoch), drawn as inline SVG.

async function readCurve(url) {
  if (!url) return null;
  const response = await fetch(url);
  if (!response.ok) return null;
  const [header, ...lines] = (await response.text()).trim().split(/\r?\n/);
  const columns = header.split("\t");
  const step = columns.indexOf("step");
  const value = columns.findLastIndex((c) => c !== "step" && c !== "timestamp");
  if (step < 0 || value < 0) return null;
  const points = lines.map((line) => line.split("\t")).map((f) => [Number(f[step]), Number(f[value])])
    .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  return points.length ? points : null;
}

function curvesSection(files) {
  const box = el("div", { class: "card-grid" });
  for (const metric of ["loss", "accuracy"]) {
    const slot = el("div", { class: "chart", id: `chart-${metric}` }, el("h3", { text: metric }), el("p", { class: "status busy", text: "loading" }));
    box.append(slot);
    Promise.all([readCurve(files[`train_${metric}.tsv`]), readCurve(files[`eval_${metric}.tsv`])])
      .then(([train, evaluation]) => {
        const series = [["train", "training set", train], ["eval", "validation set", evaluation]].filter(([, , p]) => p);
        slot.replaceChildren(el("h3", { text: metric }), series.length ? lineChart(series, metric) : notAvailable());
      })
      .catch(() => slot.replaceChildren(el("h3", { text: metric }), notAvailable()));
  }
  return box;
}

function lineChart(series, metric) {
  const all = series.flatMap(([, , points]) => points);
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs, Math.min(...xs) + 1)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const pad = (y1 - y0) * 0.08 || Math.abs(y1) * 0.05 || 0.05;
  [y0, y1] = [y0 - pad, y1 + pad];
  if (metric === "accuracy") y1 = Math.min(y1, 1);
  if (metric === "accuracy" || metric === "loss") y0 = Math.max(y0, 0);
  const xTicks = [...new Set(xs)].sort((a, b) => a - b);
  const every = Math.ceil(xTicks.length / 10);
  const chart = plot({
    x: [x0, x1], y: [y0, y1], xTicks: xTicks.filter((_, i) => i % every === 0), xTitle: "step (epoch)",
    yDigits: y1 - y0 < 0.1 ? 3 : 2, label: `${metric} per step`,
    // A dot per epoch: a one-epoch run has no line to draw, only its point.
    lines: series.map(([cls, , points]) => ({ cls, points, dots: true })),
  });
  const legend = el("div", { class: "legend" }, ...series.map(([cls, name]) =>
    el("span", {}, el("span", { class: "key", style: `background: ${cls === "train" ? "var(--accent)" : "#e0762b"}` }), name)));
  return el("div", {}, chart, legend);
}

// One SVG chart: lines of [x, y] points in a box, with grid, tick labels and axis titles.
function plot({ x: [x0, x1], y: [y0, y1], xTicks, yTicks, xTitle, yTitle, yDigits = 2, label, lines }) {
  const width = 460, height = 230, left = 52, right = 12, top = 10, bottom = 34;
  const px = (x) => left + (x - x0) / (x1 - x0) * (width - left - right);
  const py = (y) => top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
  for (const y of yTicks || [0, 1, 2, 3, 4].map((i) => y0 + (y1 - y0) * i / 4)) {
    chart.append(svg("line", { class: "grid", x1: left, x2: width - right, y1: py(y), y2: py(y) }));
    const text = svg("text", { x: left - 6, y: py(y) + 4, "text-anchor": "end" });
    text.textContent = y.toFixed(yDigits);
    chart.append(text);
  }
  for (const x of xTicks) {
    const text = svg("text", { x: px(x), y: height - bottom + 15, "text-anchor": "middle" });
    text.textContent = String(x);
    chart.append(text);
  }
  const xLabel = svg("text", { x: (left + width - right) / 2, y: height - 4, "text-anchor": "middle" });
  xLabel.textContent = xTitle;
  chart.append(xLabel,
    svg("line", { class: "axis", x1: left, x2: left, y1: top, y2: height - bottom }),
    svg("line", { class: "axis", x1: left, x2: width - right, y1: height - bottom, y2: height - bottom }));
  if (yTitle) {
    const middle = (top + height - bottom) / 2;
    const yLabel = svg("text", { x: 10, y: middle, "text-anchor": "middle", transform: `rotate(-90 10 ${middle})` });
    yLabel.textContent = yTitle;
    chart.append(yLabel);
  }
  for (const { cls, color, points, dots, dashed } of lines) {
    const style = color ? { stroke: color, fill: "none", "stroke-width": 1.5, ...(dashed ? { "stroke-dasharray": "5 3" } : {}) } : {};
    chart.append(svg("polyline", { class: cls || "", ...style, points: points.map(([x, y]) => `${px(x)},${py(y)}`).join(" ") }));
    if (dots) for (const [x, y] of points) chart.append(svg("circle", { class: `${cls} point`, cx: px(x), cy: py(y), r: 2.5 }));
  }
  return chart;
}

// The evaluate stage's plot data, the same files `dvc plots` draws: the page draws them itself
// (inline SVG, nothing from a CDN), so each is drawn from one set of numbers.

const CLASS_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const ROC = { x: "fpr", y: "tpr", xTitle: "false positive rate", yTitle: "true positive rate", score: "roc_auc", name: "AUC", diagonal: [[0, 0], [1, 1]] };
const PR = { x: "recall", y: "precision", xTitle: "recall", yTitle: "precision", score: "average_precision", name: "AP" };
const UNIT_TICKS = [0, 0.25, 0.5, 0.75, 1];

function loadingSlot(load, render) {
  const slot = el("div", { class: "chart" }, el("p", { class: "status busy", text: "loading" }));
  load().then((data) => slot.replaceChildren(data ? render(data) : notAvailable()))
    .catch(() => slot.replaceChildren(notAvailable()));
  return slot;
}

async function readData(url, parse) {
  const response = await fetch(url);
  return response.ok ? parse(await response.text()) : null;
}

function classCurves(url, kind, metrics) {
  if (!url) return notAvailable();
  return loadingSlot(() => readData(url, JSON.parse), (points) => {
    const byClass = new Map();
    for (const p of points) {
      if (!byClass.has(p.curve)) byClass.set(p.curve, []);
      byClass.get(p.curve).push([p[kind.x], p[kind.y]]);
    }
    const names = [...byClass.keys()];
    const color = (i) => CLASS_COLORS[i % CLASS_COLORS.length];
    const lines = names.map((name, i) => ({ color: color(i), points: byClass.get(name), dashed: name.endsWith("-average") }));
    if (kind.diagonal) lines.unshift({ cls: "reference", points: kind.diagonal });
    const perClass = (metrics && metrics.per_class) || {};
    const scoreOf = (name) => { // a class's own, or "micro-average" -> metrics.roc_auc_micro
      const average = /^(micro|macro)-average$/.exec(name);
      return average ? metrics && metrics[`${kind.score}_${average[1]}`] : perClass[name] && perClass[name][kind.score];
    };
    const legend = el("div", { class: "legend wrap" }, ...names.map((name, i) => {
      const score = scoreOf(name);
      return el("span", {}, el("span", { class: "key", style: `background: ${color(i)}` }),
        typeof score === "number" ? `${name} (${kind.name} ${formatNumber(score)})` : name);
    }));
    return el("div", {}, plot({ x: [0, 1], y: [0, 1], xTicks: UNIT_TICKS, yTicks: UNIT_TICKS, xTitle: kind.xTitle,
      yTitle: kind.yTitle, label: `${kind.yTitle} against ${kind.xTitle}, one line per class`, lines }), legend);
  });
}

function reliabilityChart(url, metrics) {
  return loadingSlot(() => readData(url, JSON.parse), (rows) => {
    const points = rows.map((r) => [r.confidence, r.accuracy]);
    const ece = metrics && metrics.expected_calibration_error;
    return el("div", {},
      plot({ x: [0, 1], y: [0, 1], xTicks: UNIT_TICKS, yTicks: UNIT_TICKS, xTitle: "confidence", yTitle: "accuracy",
        label: "accuracy against confidence, per bin", lines: [{ cls: "reference", points: [[0, 0], [1, 1]] },
          { cls: "train", points, dots: true }] }),
      el("p", { class: "source", text: typeof ece === "number" ? `expected calibration error ${ece.toFixed(3)}; the diagonal is perfect calibration` : "the diagonal is perfect calibration" }));
  });
}

function csvFields(line) { // a class name with a comma comes quoted, as pandas writes it
  const fields = [];
  let field = "", quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted && c === '"' && line[i + 1] === '"') { field += '"'; i++; }
    else if (c === '"') quoted = !quoted;
    else if (c === "," && !quoted) { fields.push(field); field = ""; }
    else field += c;
  }
  fields.push(field);
  return fields;
}

// confusion.csv: one row per test image (actual,predicted), as DVC's confusion template reads it.
function confusionSection(url, classes) {
  if (!url) return notAvailable();
  return loadingSlot(() => readData(url, (text) => text.trim().split(/\r?\n/).slice(1).map(csvFields)), (rows) => {
    const index = new Map(classes.map((c, i) => [c, i]));
    const counts = classes.map(() => classes.map(() => 0));
    for (const [actual, predicted] of rows) {
      if (index.has(actual) && index.has(predicted)) counts[index.get(actual)][index.get(predicted)] += 1;
    }
    const header = el("tr", {}, el("th", { text: "actual \\ predicted" }), ...classes.map((c) => el("th", { class: "num", text: c })));
    const body = counts.map((row, i) => {
      const total = row.reduce((a, b) => a + b, 0) || 1;
      return el("tr", {}, el("th", { text: classes[i] }), ...row.map((n, j) => el("td", {
        class: `num ${i === j ? "diagonal" : ""}`, text: String(n),
        style: n ? `background: rgba(${i === j ? "47, 111, 235" : "224, 118, 43"}, ${(0.12 + 0.75 * n / total).toFixed(2)})` : "",
      })));
    });
    return el("div", { class: "scroll" }, el("table", { class: "matrix confusion" }, header, ...body));
  });
}

init();
