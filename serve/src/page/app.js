// The cs-init page: submit a job, list jobs, watch one live from its event stream.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = ["#3a63c4", "#d1495b", "#edae49", "#00798c", "#66a182", "#8d5a97", "#e07a5f",
  "#2e4057", "#f2a541", "#30638e", "#a23b72", "#3b8ea5"];

let token = localStorage.getItem("cs-init-token") || "";
let current = null; // {id, abort, series: Map(position -> {name, points}), terminal}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (token) h["Authorization"] = "Bearer " + token;
  return h;
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({}, options, {
    headers: headers(options && options.headers),
  }));
  if (response.status === 401) {
    $("token-box").hidden = false;
    throw new Error("this server needs a token");
  }
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) {
    throw new Error(body && body.error ? body.error.message : response.statusText);
  }
  return body;
}

function settings() {
  const lr = Number($("lr").value);
  return {
    iters: Number($("iters").value),
    lr: lr,
    optimizer: $("optimizer").value,
    variant: $("variant").value,
    keep_norm: $("keep_norm").checked,
    skip_pointwise: $("skip_pointwise").checked,
    seed: Number($("seed").value),
  };
}

async function submit(event) {
  event.preventDefault();
  const status = $("submit-status");
  const button = $("submit-button");
  button.disabled = true;
  try {
    const source = document.querySelector("input[name=source]:checked").value;
    let input;
    if (source === "builtin") {
      input = "builtin:" + $("builtin").value;
    } else if (source === "hub") {
      input = $("hub").value.trim();
    } else {
      const file = $("file").files[0];
      if (!file) throw new Error("choose a file to upload");
      status.textContent = "uploading " + file.name + "…";
      const upload = await api("/v1/uploads?name=" + encodeURIComponent(file.name), {
        method: "POST",
        headers: {"Content-Type": "application/octet-stream"},
        body: file,
      });
      input = upload.input;
    }
    status.textContent = "submitting…";
    const job = await api("/v1/jobs", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({input: input, settings: settings()}),
    });
    status.textContent = "";
    await refreshList();
    select(job.id);
  } catch (e) {
    status.textContent = e.message;
    status.className = "error";
  } finally {
    button.disabled = false;
  }
}

function progressText(job) {
  const p = job.progress;
  if (job.state === "running" && p && p.layers) {
    return "layer " + p.layer + " of " + p.layers + ", iteration " + p.iteration + " of " + p.iterations;
  }
  return job.state === "succeeded" ? "done" : "";
}

async function refreshList() {
  let list;
  try {
    list = await api("/v1/jobs?limit=20");
  } catch (e) {
    return;
  }
  const body = $("job-list").querySelector("tbody");
  body.replaceChildren(...list.jobs.map((job) => {
    const row = document.createElement("tr");
    row.dataset.id = job.id;
    if (current && current.id === job.id) row.className = "selected";
    const cells = [new Date(job.created_at).toLocaleTimeString(), job.input, job.state, progressText(job)];
    cells.forEach((text, i) => {
      const cell = document.createElement("td");
      if (i === 2) {
        const badge = document.createElement("span");
        badge.className = "state " + text;
        badge.textContent = text;
        cell.append(badge);
      } else {
        cell.textContent = text;
      }
      row.append(cell);
    });
    row.addEventListener("click", () => select(job.id));
    return row;
  }));
}

function select(id) {
  if (current) current.abort.abort();
  current = {id: id, abort: new AbortController(), series: new Map(), terminal: false, drawn: false};
  $("job").hidden = false;
  $("job-id").textContent = id;
  $("result").hidden = true;
  $("job-error").hidden = true;
  $("layers").querySelector("tbody").replaceChildren();
  draw();
  follow(current);
}

// Server-Sent Events read with fetch, so that the token can go in a header.
async function follow(job) {
  while (!job.terminal && !job.abort.signal.aborted) {
    try {
      const response = await fetch("/v1/jobs/" + job.id + "/events", {
        headers: headers(), signal: job.abort.signal,
      });
      if (!response.ok) throw new Error(response.statusText);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          handle(job, parseEvent(block));
        }
      }
    } catch (e) {
      if (job.abort.signal.aborted) return;
    }
    // The stream ended early (a restart of the server): reconnect, the state comes first again.
    if (!job.terminal) await new Promise((r) => setTimeout(r, 1000));
  }
}

function parseEvent(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    if (field === "data") data.push(value);
  }
  return {name: name, data: data.length ? JSON.parse(data.join("\n")) : null};
}

function handle(job, event) {
  if (job !== current || !event.data) return;
  const d = event.data;
  switch (event.name) {
    case "job":
      showJob(job, d);
      break;
    case "layer_started":
      job.series.set(d.position, {name: d.name, points: []});
      break;
    case "iteration": {
      const s = job.series.get(d.position);
      if (s && d.loss !== null) s.points.push([d.iteration, d.loss]);
      break;
    }
    case "iterations":
      job.series.set(d.position, {name: d.name, points: d.points.filter((p) => p[1] !== null)});
      break;
    case "layer_finished":
      if (d.position && d.layer.curve) {
        const c = d.layer.curve;
        job.series.set(d.position, {
          name: d.layer.name,
          points: c.iteration.map((it, i) => [it, c.loss[i]]),
        });
      }
      break;
  }
  scheduleDraw();
}

function showJob(job, view) {
  const state = $("job-state");
  state.textContent = view.state;
  state.className = "state " + view.state;
  $("job-input").textContent = view.input;
  const p = view.progress;
  const fraction = view.state === "succeeded" ? 1 : p && p.layers
    ? ((p.layer - 1) + (p.iterations ? p.iteration / p.iterations : 1)) / p.layers : 0;
  $("progress-fill").style.width = Math.max(0, Math.min(1, fraction)) * 100 + "%";
  $("progress-text").textContent = progressText(view);
  $("cancel-button").hidden = !(view.state === "queued" || view.state === "running");
  if (view.error) {
    $("job-error").hidden = false;
    $("job-error").textContent = view.error.code + ": " + view.error.message;
  }
  if (["succeeded", "failed", "canceled"].includes(view.state)) {
    job.terminal = true;
    refreshList();
    if (view.state === "succeeded" && view.result) showResult(job, view);
  }
}

async function showResult(job, view) {
  const result = view.result;
  const totals = result.totals;
  $("totals").textContent = totals.optimized + " of " + totals.conv_tensors +
    " conv tensors optimized (" + totals.skipped + " skipped, " + totals.diverged +
    " diverged) in " + totals.total_seconds.toFixed(2) + " s; total L_CS " +
    sci(totals.loss_before) + " -> " + sci(totals.loss_after) +
    (totals.feature_cosine_before != null
      ? "; mean feature-map |cos| " + totals.feature_cosine_before.toFixed(3) + " -> " +
        totals.feature_cosine_after.toFixed(3)
      : "") +
    (totals.norm_ratio_mean != null
      ? "; mean filter norm ratio " + totals.norm_ratio_mean.toFixed(3)
      : "") +
    (result.cached_from ? " (reused from job " + result.cached_from + ")" : "");
  $("warnings").replaceChildren(...(totals.warnings || []).map((w) => {
    const item = document.createElement("li");
    item.textContent = w;
    return item;
  }));
  const downloads = $("downloads");
  downloads.replaceChildren(...result.files.concat([result.report, result.plot]).map((f) => {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.textContent = f.name;
    link.href = f.url;
    link.download = f.name;
    if (token) link.addEventListener("click", (e) => { e.preventDefault(); download(f); });
    item.append(link, " (" + size(f.size) + ", sha256 " + f.sha256.slice(0, 12) + "…)");
    return item;
  }));
  if (result.expired) {
    downloads.replaceChildren(document.createTextNode("The files were deleted by retention."));
    $("result").hidden = false;
    return;
  }
  const report = await api(result.report.url);
  if (job !== current) return;
  const body = $("layers").querySelector("tbody");
  body.replaceChildren(...report.layers.map((l) => {
    const row = document.createElement("tr");
    const change = l.status === "optimized" ? sci(l.loss_before) + " -> " + sci(l.loss_after)
      : l.status + ": " + (l.reason || "");
    const reduction = l.loss_before > 0 && l.loss_after !== null
      ? (100 * (l.loss_before - l.loss_after) / l.loss_before).toFixed(1) + "%" : "-";
    const cosine = l.feature_cosine_before !== null && l.feature_cosine_after !== null
      ? l.feature_cosine_before.toFixed(3) + " -> " + l.feature_cosine_after.toFixed(3) : "-";
    const cells = [l.name, l.shape.join("x"), change, reduction,
      l.norm_ratio ? l.norm_ratio.mean.toFixed(3) : "-", cosine];
    cells.forEach((text, i) => {
      const cell = document.createElement("td");
      cell.textContent = text;
      if (i === 1 || i >= 3) cell.className = "num";
      row.append(cell);
    });
    return row;
  }));
  $("result").hidden = false;
}

async function download(file) {
  const response = await fetch(file.url, {headers: headers()});
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = file.name;
  link.click();
  URL.revokeObjectURL(link.href);
}

// Tensor names come from uploaded files: never markup.
function escapeXml(text) {
  return String(text).replace(/[&<>"']/g, (c) =>
    ({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;"})[c]);
}

function sci(x) {
  return x === null || x === undefined ? "-" : Number(x).toExponential(3);
}

function size(bytes) {
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (bytes >= 1000 && i < units.length - 1) { bytes /= 1000; i++; }
  return bytes.toFixed(i ? 1 : 0) + " " + units[i];
}

let pending = false;
function scheduleDraw() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; draw(); });
}

// Every layer's loss against the iteration, on a log scale.
function draw() {
  const svg = $("chart");
  const W = 720, H = 320, left = 60, right = 12, top = 12, bottom = 36;
  const series = current ? [...current.series.entries()] : [];
  const points = series.flatMap(([, s]) => s.points).filter((p) => p[1] > 0);
  const parts = [];
  if (points.length) {
    const xMax = Math.max(1, ...points.map((p) => p[0]));
    const logs = points.map((p) => Math.log10(p[1]));
    let yMin = Math.floor(Math.min(...logs)), yMax = Math.ceil(Math.max(...logs));
    if (yMax === yMin) yMax = yMin + 1;
    const x = (v) => left + (v / xMax) * (W - left - right);
    const y = (v) => top + (1 - (Math.log10(v) - yMin) / (yMax - yMin)) * (H - top - bottom);
    for (let e = yMin; e <= yMax; e++) {
      const py = y(Math.pow(10, e));
      parts.push(`<line x1="${left}" x2="${W - right}" y1="${py}" y2="${py}" stroke="#eef0f4"/>`);
      parts.push(`<text x="${left - 6}" y="${py + 4}" text-anchor="end" font-size="11">1e${e}</text>`);
    }
    for (let k = 0; k <= 4; k++) {
      const v = Math.round((xMax * k) / 4);
      parts.push(`<text x="${x(v)}" y="${H - bottom + 16}" text-anchor="middle" font-size="11">${v}</text>`);
    }
    parts.push(`<text x="${(W + left) / 2}" y="${H - 4}" text-anchor="middle" font-size="11">iteration</text>`);
    series.forEach(([position, s]) => {
      const path = s.points.filter((p) => p[1] > 0).map((p, i) =>
        (i ? "L" : "M") + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1)).join(" ");
      if (path) {
        const color = COLORS[(position - 1) % COLORS.length];
        parts.push(`<path d="${path}" fill="none" stroke="${color}" stroke-width="1.5"><title>${escapeXml(s.name)}</title></path>`);
      }
    });
  } else {
    parts.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle" fill="#888">waiting for the first layer…</text>`);
  }
  svg.innerHTML = parts.join("");
}

$("job-form").addEventListener("submit", submit);
$("cancel-button").addEventListener("click", async () => {
  if (!current) return;
  try {
    await api("/v1/jobs/" + current.id + "/cancel", {method: "POST"});
  } catch (e) {
    $("job-error").hidden = false;
    $("job-error").textContent = e.message;
  }
});
$("token-save").addEventListener("click", () => {
  token = $("token").value.trim();
  localStorage.setItem("cs-init-token", token);
  $("token-box").hidden = true;
  refreshList();
});
refreshList();
setInterval(refreshList, 2000);
