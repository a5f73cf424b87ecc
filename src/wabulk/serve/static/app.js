// The wabulk dashboard: polls the JSON API (the same data as `wabulk status --json`) and posts the
// controls. No build step, no framework. Every mutating request carries the page's CSRF token.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const POLL_MS = 1500;
let selectedJob = null;
let previewed = null; // the form values a successful preview was made with

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("data-")) e.setAttribute(k, v);
    else if (k === "class") e.className = v;
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}

function fmtTime(ts) {
  if (!ts) return "-";
  const d = new Date(ts * 1000);
  return d.toLocaleString();
}

function fmtDuration(s) {
  if (s == null) return "-";
  s = Math.round(s);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
}

async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET") opts.headers["X-CSRF-Token"] = CSRF;
  if (body instanceof FormData) opts.body = body;
  else if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (!r.ok) {
    const err = new Error((data && data.error) || r.status + " " + r.statusText);
    err.data = data;
    throw err;
  }
  return data;
}

function setRows(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function actionButton(job, action, label, enabled) {
  const b = el("button", { type: "button", "data-action": action, "data-job": job.id }, label);
  b.disabled = !enabled;
  b.addEventListener("click", async (ev) => {
    ev.stopPropagation();
    if (action === "stop" && !confirm("Stop job " + job.id + " for good? Its pending messages are cancelled.")) return;
    b.disabled = true;
    try { await api("POST", "/api/jobs/" + job.id + "/" + action); }
    catch (e) { alert(e.message); }
    poll();
  });
  return b;
}

function jobRow(job) {
  const active = ["queued", "running", "waiting_for_login"].includes(job.status);
  const bar = el("div", { class: "bar" }, el("div"));
  bar.firstChild.style.width = job.progress + "%";
  const status = el("td", { class: "status status-" + job.status }, job.status + (job.reason ? " (" + job.reason + ")" : ""));
  const actions = el("td", {},
    actionButton(job, "pause", "Pause", active),
    actionButton(job, "resume", "Resume", job.status === "paused"),
    actionButton(job, "stop", "Stop", active || job.status === "paused"),
    actionButton(job, "retry-failed", "Retry failed", job.failed > 0 && job.status !== "stopped"),
    el("a", { href: "/api/jobs/" + job.id + "/export.csv", "data-action": "export", download: "job-" + job.id + ".csv" }, "Export"),
    " ",
    el("a", { href: "/api/jobs/" + job.id + "/export.csv?undelivered=1", download: "job-" + job.id + "-undelivered.csv" }, "Undelivered"),
  );
  const tr = el("tr", { "data-job-id": job.id, "data-status": job.status },
    el("td", { class: "id" }, job.id), el("td", { class: "name" }, job.name), status,
    el("td", { class: "progress" }, bar, el("span", { class: "pct" }, job.progress + "%")),
    el("td", { class: "sent" }, job.sent), el("td", { class: "failed" }, job.failed),
    el("td", { class: "pending" }, job.pending + job.sending), el("td", { class: "delivered" }, job.delivered),
    el("td", { class: "read" }, job.read), el("td", { class: "eta" }, fmtDuration(job.eta_seconds)), actions);
  labelCells(tr, "#jobs");
  if (job.id === selectedJob) tr.classList.add("selected");
  tr.addEventListener("click", () => { selectedJob = job.id; loadMessages(); poll(); });
  return tr;
}

// On a phone the tables become cards: each cell shows its column's name (CSS reads data-label).
function labelCells(tr, table) {
  const heads = [...document.querySelectorAll(table + " thead th")].map((th) => th.textContent);
  [...tr.children].forEach((td, i) => td.setAttribute("data-label", heads[i] || ""));
  return tr;
}

function renderStatus(st) {
  setRows($("#attention"), st.attention.map((a) => el("li", {}, a)));
  $("#no-jobs").hidden = st.jobs.length > 0;
  setRows($("#jobs tbody"), st.jobs.map(jobRow));
  setRows($("#sessions tbody"), st.sessions.map((s) => el("tr", { "data-session": s.session },
    el("td", {}, s.session), el("td", { class: "state status-" + s.state }, s.state),
    el("td", {}, s.sent_today), el("td", {}, s.cap_today == null ? "-" : s.cap_today))));
  const now = Date.now() / 1000;
  $("#no-workers").hidden = st.workers.length > 0;
  setRows($("#workers tbody"), st.workers.map((w) => el("tr", { "data-worker": w.id },
    el("td", {}, w.session), el("td", {}, w.pid), el("td", {}, w.host), el("td", { class: "state" }, w.state || "-"),
    el("td", {}, fmtDuration(now - w.heartbeat_at) + " ago"), el("td", {}, w.alive ? "yes" : "no"))));
  renderQrs(st);
}

function renderQrs(st) {
  const waiting = new Set();
  for (const w of st.workers) if (w.alive && w.state === "waiting_for_login") waiting.add(w.session);
  const box = $("#qrs");
  for (const fig of [...box.children]) if (!waiting.has(fig.dataset.session)) fig.remove();
  for (const name of waiting) {
    let fig = [...box.children].find((f) => f.dataset.session === name);
    if (!fig) {
      fig = el("figure", { class: "qr", "data-session": name },
        el("img", { alt: "WhatsApp login QR of " + name }),
        el("figcaption", {}, "Session " + name + " is logged out: scan with WhatsApp > Linked devices > Link a device"));
      box.append(fig);
    }
    // The worker rotates the QR about every 20 s; reload it with each poll (the browser keeps the old one on error).
    fig.querySelector("img").src = "/api/sessions/" + encodeURIComponent(name) + "/qr.svg?t=" + Date.now();
  }
}

async function loadMessages() {
  if (selectedJob == null) return;
  const filter = $("#detail-filter").value;
  const q = filter ? "?status=" + encodeURIComponent(filter) : "";
  try {
    const data = await api("GET", "/api/jobs/" + selectedJob + "/messages" + q);
    $("#job-detail").hidden = false;
    $("#detail-id").textContent = selectedJob;
    setRows($("#messages tbody"), data.messages.map((m) => el("tr", { "data-message-id": m.id, "data-status": m.status },
      el("td", {}, m.id), el("td", {}, m.phone), el("td", {}, m.name || ""),
      el("td", { class: "status status-" + m.status }, m.status), el("td", {}, m.attempts),
      el("td", { class: "error" }, m.error || ""), el("td", {}, fmtTime(m.sent_at)),
      el("td", {}, m.receipt || ""), el("td", {}, m.session || "")))
      .map((tr) => labelCells(tr, "#messages")));
  } catch (e) {
    $("#job-detail").hidden = true;
  }
}

async function loadNotifications() {
  try {
    const rows = await api("GET", "/api/notifications?limit=20");
    setRows($("#notifications tbody"), rows.map((n) => el("tr", { "data-kind": n.kind },
      el("td", {}, fmtTime(n.created_at)), el("td", {}, n.kind), el("td", {}, n.target.split(":")[0]),
      el("td", {}, n.status), el("td", {}, n.attempts), el("td", {}, n.last_error || ""))));
  } catch (e) { /* shown by the live marker */ }
}

let polling = false;
async function poll() {
  if (polling) return;
  polling = true;
  try {
    renderStatus(await api("GET", "/api/status"));
    $("#live").textContent = "live · " + new Date().toLocaleTimeString();
    $("#live").className = "ok";
    await loadMessages();
    await loadNotifications();
  } catch (e) {
    $("#live").textContent = "not connected: " + e.message;
    $("#live").className = "down";
  } finally {
    polling = false;
  }
}

// --- upload: preview (dry run), then queue ------------------------------------------------------------
function formData(dryRun) {
  const fd = new FormData();
  const file = $("#file").files[0];
  if (file) fd.append("file", file, file.name);
  fd.append("message", $("#message").value);
  for (const id of ["name", "country", "session", "at", "max_attempts"]) {
    const v = $("#" + id).value.trim();
    if (v) fd.append(id, v);
  }
  fd.append("dry_run", dryRun ? "true" : "false");
  return fd;
}

function formKey() {
  const f = $("#file").files[0];
  return JSON.stringify([f && f.name, f && f.size, f && f.lastModified,
    ...["message", "name", "country", "session", "at", "max_attempts"].map((id) => $("#" + id).value)]);
}

function showError(msg) {
  $("#form-error").textContent = msg || "";
  $("#form-error").hidden = !msg;
}

function showRejects(rejects) {
  $("#rejects-title").hidden = $("#rejects").hidden = !rejects.length;
  setRows($("#rejects tbody"), rejects.map((r) => el("tr", {},
    el("td", {}, r.row), el("td", {}, r.column), el("td", {}, r.value), el("td", {}, r.reason))));
}

async function preview() {
  showError("");
  $("#enqueue-btn").disabled = true;
  previewed = null;
  if (!$("#file").files[0]) { showError("Choose a contacts file first."); return; }
  try {
    const r = await api("POST", "/api/jobs", formData(true));
    $("#preview").hidden = false;
    $("#preview-summary").textContent = r.enqueued + " message(s) would be queued · " + r.invalid +
      " rejected · " + r.duplicates + " duplicate(s) · " + r.opted_out + " opted out · " + r.not_mobile + " not mobile (kept)";
    setRows($("#preview-notices"), (r.notices || []).map((n) => el("li", {}, n)));
    setRows($("#preview-bodies"), (r.previews || []).map((b) => el("pre", { class: "preview" }, b)));
    showRejects(r.rejects || []);
    previewed = formKey();
    $("#enqueue-btn").disabled = r.enqueued === 0;
  } catch (e) {
    $("#preview").hidden = false;
    $("#preview-summary").textContent = "";
    setRows($("#preview-bodies"), []);
    showRejects((e.data && e.data.rejects) || []);
    showError(e.message);
  }
}

async function enqueue() {
  if (previewed !== formKey()) { showError("The form changed: preview it again."); $("#enqueue-btn").disabled = true; return; }
  $("#enqueue-btn").disabled = true;
  try {
    const r = await api("POST", "/api/jobs", formData(false));
    showError("");
    $("#preview-summary").textContent = "Job " + r.job_id + ": " + r.enqueued + " message(s) queued.";
    setRows($("#preview-bodies"), []);
    previewed = null;
    selectedJob = r.job_id;
    poll();
  } catch (e) {
    showError(e.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  // The token came in the URL once; the cookie carries it from now on.
  if (location.search.includes("token=")) history.replaceState(null, "", location.pathname);
  $("#preview-btn").addEventListener("click", preview);
  $("#enqueue-btn").addEventListener("click", enqueue);
  $("#detail-filter").addEventListener("change", loadMessages);
  for (const id of ["file", "message", "name", "country", "session", "at", "max_attempts"]) {
    $("#" + id).addEventListener("input", () => { if (previewed !== formKey()) $("#enqueue-btn").disabled = true; });
  }
  poll();
  setInterval(poll, POLL_MS);
});
