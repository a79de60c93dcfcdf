// facemend restore page: upload -> POST /api/restore -> before/after sliders + downloads.
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, children = []) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.appendChild(c);
  return e;
}

// A before/after comparison: the "after" image is clipped to the slider's position.
function compare(beforeUrl, afterUrl, alt) {
  const before = el("img", { src: beforeUrl, alt: alt + " (before)" });
  const after = el("img", { src: afterUrl, alt: alt + " (after)", class: "after" });
  const box = el("div", { class: "compare" }, [
    before, after, el("span", { class: "label l", text: "after" }),
    el("span", { class: "label r", text: "before" })]);
  const slider = el("input", { type: "range", min: "0", max: "100", value: "50",
                               class: "slider", "aria-label": "before/after" });
  const update = () => { after.style.clipPath = `inset(0 ${100 - slider.value}% 0 0)`; };
  slider.addEventListener("input", update);
  update();
  return el("div", {}, [box, slider]);
}

function fmtSim(v) { return v === null || v === undefined ? "n/a" : v.toFixed(3); }

function show(res) {
  const out = $("results");
  out.textContent = "";
  if (res.message) {
    out.appendChild(el("section", { class: "card" }, [el("p", { text: res.message,
                                                                 id: "message" })]));
    return;
  }
  const faces = el("div", { class: "faces" });
  for (const f of res.faces) {
    f.restored.forEach((url, k) => {
      const cap = `face ${f.index}` + (f.restored.length > 1 ? `, sample ${k}` : "") +
        ` — identity similarity ${fmtSim(f.identity[k])}`;
      faces.appendChild(el("div", { class: "face" }, [
        compare(f.input, url, `face ${f.index}`), el("p", { text: cap }),
        el("a", { href: url + "?download=1", download: "", text: "download face" })]));
    });
  }
  out.appendChild(el("section", { class: "card" }, [
    el("h2", { text: `${res.faces.length} face(s) restored` }), faces]));
  res.images.forEach((url, k) => {
    const img = compare(res.input, url, `photo sample ${k}`);
    img.querySelector(".after").id = `result-${k}`;
    out.appendChild(el("section", { class: "card photo" }, [
      el("h2", { text: `Whole photo` + (res.images.length > 1 ? `, sample ${k}` : "") }),
      img, el("p", {}, [el("a", { href: url + "?download=1", download: "",
                                  text: "download restored photo", id: `download-${k}` })])]));
  });
}

async function submit(ev) {
  ev.preventDefault();
  const file = $("file").files[0];
  if (!file) { $("status").textContent = "choose a photo first"; return; }
  const body = new FormData();
  body.append("file", file);
  for (const k of ["noise_scale", "seed", "samples", "upscale"]) body.append(k, $(k).value);
  $("submit").disabled = true;
  $("status").className = "";
  const t0 = performance.now();
  const what = await megapixels(file);
  const tick = () => {
    const s = ((performance.now() - t0) / 1000).toFixed(0);
    $("status").textContent = `restoring ${what}… ${s} s (large photos take several seconds)`;
  };
  tick();
  const timer = setInterval(tick, 1000);
  try {
    const r = await fetch("/api/restore", { method: "POST", body });
    const res = await r.json();
    if (!r.ok) throw new Error(res.detail || r.statusText);
    show(res);
    $("status").textContent = `done in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
  } catch (e) {
    $("status").className = "error";
    $("status").textContent = "error: " + e.message;
  } finally {
    clearInterval(timer);
    $("submit").disabled = false;
  }
}

// "12.0 MP photo" from the chosen file's pixel size ("photo" if the browser cannot decode it)
function megapixels(file) {
  return new Promise((resolve) => {
    const url = URL.createObjectURL(file);
    const im = new Image();
    im.onload = () => {
      URL.revokeObjectURL(url);
      resolve(`${(im.naturalWidth * im.naturalHeight / 1e6).toFixed(1)} MP photo`);
    };
    im.onerror = () => { URL.revokeObjectURL(url); resolve("photo"); };
    im.src = url;
  });
}

$("form").addEventListener("submit", submit);
$("noise_scale").addEventListener("input", () => {
  $("noise-value").textContent = Number($("noise_scale").value).toFixed(2);
});
fetch("/healthz").then((r) => r.json()).then((h) => {
  $("study-link").hidden = !h.study;
  $("samples").max = h.limits.max_samples;
}).catch(() => {});
