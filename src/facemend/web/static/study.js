// facemend study page: personal link (#token=...) -> signed-in cookie -> next trial -> vote.
"use strict";

const $ = (id) => document.getElementById(id);
let current = null;

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

async function api(url, opts) {
  const r = await fetch(url, opts);
  const body = await r.json();
  if (!r.ok) { const e = new Error(body.detail || r.statusText); e.status = r.status; throw e; }
  return body;
}

function render(t) {
  current = t;
  $("login").hidden = true;
  if (t.trial === null) { $("trial-card").hidden = true; $("done").hidden = false; return; }
  $("trial-card").hidden = false;
  $("progress").textContent = `rater ${t.rater}: trial ${t.done + 1} of ${t.total}`;
  const box = $("trial");
  box.textContent = "";
  if (t.reference_url) {
    const ref = document.createElement("div");
    ref.className = "reference";
    const img = document.createElement("img");
    img.src = t.reference_url; img.alt = "degraded input";
    const cap = document.createElement("div"); cap.textContent = "degraded input";
    ref.append(img, cap); box.appendChild(ref);
  }
  t.images.forEach((url, i) => {
    const opt = document.createElement("button");
    opt.className = "option"; opt.type = "button"; opt.id = `option-${i}`;
    const img = document.createElement("img");
    img.src = url; img.alt = `option ${i + 1}`;
    const cap = document.createElement("span"); cap.textContent = `${i + 1}`;
    opt.append(img, cap);
    opt.addEventListener("click", () => vote(i));
    box.appendChild(opt);
  });
}

async function next() {
  render(await api("/api/study/next"));
}

async function vote(position) {
  if (!current || current.trial === null) return;
  try {
    await api("/api/study/votes", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ trial: current.trial, position }) });
    setStatus("");
  } catch (e) {
    if (e.status !== 409) { setStatus("error: " + e.message, true); return; }
  }
  await next();
}

async function start() {
  const m = location.hash.match(/^#token=([A-Za-z0-9_-]+)$/);
  try {
    if (m) {  // sign in once; the token then lives in an HttpOnly cookie, not in the address
      history.replaceState(null, "", location.pathname);
      render(await api("/api/study/signin", { method: "POST",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token: m[1] }) }));
    } else {
      await next();
    }
  } catch (e) {
    $("login").hidden = false;
    if (e.status !== 401) setStatus("error: " + e.message, true);
  }
}

document.addEventListener("keydown", (ev) => {
  const n = Number(ev.key);
  if (current && current.trial !== null && n >= 1 && n <= current.images.length) vote(n - 1);
});
start();
