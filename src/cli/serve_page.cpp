// The page `varps serve` answers GET / with: one self-contained HTML file
// (no external scripts, fonts or styles). It sends one POST /v1/generate per
// stream, all at once, so the server runs them as streams of one batch, and
// shows each image as it arrives with its parameters and latency. The query
// string fills the form (?class=3&seed=1&streams=4), and &autorun=1 submits
// it on load (for scripted checks).
#include "cli/serve_page.hpp"

namespace varps::cli {

const char* serve_page_html() {
  return R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>varps serve</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
  form { display: flex; flex-wrap: wrap; gap: .8em; align-items: end; margin-bottom: 1em; }
  label { display: flex; flex-direction: column; font-size: 12px; color: #555; }
  input { width: 7em; padding: .2em; font: inherit; }
  button { padding: .35em 1.2em; font: inherit; }
  #images { display: flex; flex-wrap: wrap; gap: 1em; }
  figure { margin: 0; border: 1px solid #ddd; padding: .4em; background: #fafafa; }
  figure img { width: 256px; height: 256px; image-rendering: pixelated; display: block; }
  figcaption { font-size: 12px; color: #444; max-width: 256px; }
  .error { color: #b00; }
</style>
</head>
<body>
<h1>varps serve</h1>
<p id="model"></p>
<form id="form">
  <label>class <input name="class" value="207"></label>
  <label>seed <input name="seed" type="number" min="0" value="0"></label>
  <label>cfg <input name="cfg" type="number" step="0.1" min="0" value="4"></label>
  <label>top-k <input name="top_k" type="number" min="0" value="900"></label>
  <label>top-p <input name="top_p" type="number" step="0.01" min="0" max="1" value="0.95"></label>
  <label>streams <input name="streams" type="number" min="1" max="64" value="4"></label>
  <label>access token <input name="token" type="password" autocomplete="off"></label>
  <button type="submit">Generate</button>
</form>
<p id="status">ready</p>
<div id="images"></div>
<script>
"use strict";
const form = document.getElementById("form");
const statusLine = document.getElementById("status");
const images = document.getElementById("images");
const params = new URLSearchParams(location.search);
// The token is typed, never taken from the address (which logs and history keep).
for (const [k, v] of params) if (form.elements[k] && k !== "token") form.elements[k].value = v;

async function one(body, index, total, done) {
  const t0 = performance.now();
  const fig = document.createElement("figure");
  const cap = document.createElement("figcaption");
  fig.appendChild(cap);
  images.appendChild(fig);
  cap.textContent = "seed " + body.seed + ": waiting";
  try {
    const headers = {"Content-Type": "application/json"};
    if (form.elements.token.value) headers.Authorization = "Bearer " + form.elements.token.value;
    const r = await fetch("/v1/generate", {method: "POST", headers, body: JSON.stringify(body)});
    const ms = (performance.now() - t0).toFixed(0);
    if (!r.ok) {
      const e = await r.json().catch(() => ({error: r.statusText}));
      cap.textContent = "seed " + body.seed + ": " + r.status + " " + e.error;
      cap.className = "error";
    } else {
      const img = document.createElement("img");
      img.alt = "class " + body.class + " seed " + body.seed;
      img.src = URL.createObjectURL(await r.blob());
      fig.insertBefore(img, cap);
      cap.textContent = "class " + body.class + ", seed " + body.seed + ", cfg " + body.cfg + ", top-k " +
                        body.top_k + ", top-p " + body.top_p + ": " + ms + " ms (batch of " +
                        (r.headers.get("X-Varps-Batch") || "?") + ")";
    }
  } catch (e) {
    cap.textContent = "seed " + body.seed + ": " + e;
    cap.className = "error";
  }
  done.count++;
  statusLine.textContent = (done.count === total ? "done " : "running ") + done.count + "/" + total;
}

form.addEventListener("submit", ev => {
  ev.preventDefault();
  const f = form.elements;
  const cls = f["class"].value.trim();
  const base = {class: cls === "uncond" ? "uncond" : Number(cls), cfg: Number(f.cfg.value),
                top_k: Number(f.top_k.value), top_p: Number(f.top_p.value)};
  const n = Math.max(1, Math.min(64, Number(f.streams.value) || 1));
  const seed = Number(f.seed.value) || 0;
  const done = {count: 0};
  statusLine.textContent = "running 0/" + n;
  for (let i = 0; i < n; i++) one({...base, seed: seed + i}, i, n, done);
});
fetch("/healthz").then(r => r.text()).then(t => document.getElementById("model").textContent = "server: " + t);
if (params.get("autorun") === "1") form.requestSubmit();
</script>
</body>
</html>
)html";
}

}  // namespace varps::cli
