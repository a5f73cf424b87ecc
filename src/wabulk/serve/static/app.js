// The wabulk dashboard: polls the JSON API (the same data as `wabulk status --json`) and posts the
// controls. No build step, no framework. Every mutating request carries the page's CSRF token; every
// string from the database or a file goes into the page as text (el() never parses HTML).
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const POLL_MS = 1500;
const PAGE = 25;
const FORM_FIELDS = ["message", "name", "country", "session", "at", "max_attempts", "phone-column", "name-column"];
let selectedJob = null;
let page = 0; // of the selected job's messages
let jobsById = {};
let previewed = null; // the form values a successful preview was made with

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("data-") || k.startsWith("aria-") || k === "role") e.setAttribute(k, v);
    else if (k === "class") e.className = v;
    else e[k] = v;
  }
  for (const c of children) {
    if (c === false || c == null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// --- plain language ----------------------------------------------------------------------------------
const JOB_STATES = {
  queued: "Queued", running: "Sending", paused: "Paused", waiting_for_login: "Waiting for a scan",
  completed: "Done", stopped: "Stopped",
};
const MESSAGE_STATES = {
  pending: "Waiting", sending: "Sending now", sent: "Sent", failed: "Failed", skipped: "Skipped",
  cancelled: "Cancelled",
};
const WORKER_STATES = {
  starting: "Starting", waiting_for_login: "Waiting for a scan", ready: "Ready", idle: "Idle: nothing to send",
  sending: "Sending", pacing: "Waiting between messages", daily_cap: "Daily limit reached",
  quiet_hours: "Quiet hours", session_paused: "Session paused", restricted: "Restricted by WhatsApp",
  blocked: "Blocked by WhatsApp", offline: "No connection", error: "Stopped by an error", stopped: "Stopped",
  stale: "Not responding", "no worker": "No worker running",
};
const NOTIFICATION_KINDS = {
  job_completed: "Job finished", messages_failed: "Messages failed", unknown_outcomes: "Outcome unknown",
  job_auto_paused: "Job paused by wabulk", session_auto_paused: "Session paused by wabulk",
  waiting_for_login: "Waiting for a scan", undelivered_found: "Not delivered yet", worker_died: "Worker stopped",
};
const TONE = {
  running: "info", sending: "info", queued: "neutral", pending: "neutral", paused: "warn",
  waiting_for_login: "warn", completed: "ok", sent: "ok", stopped: "neutral", cancelled: "neutral",
  skipped: "neutral", failed: "bad", ready: "ok", idle: "ok", pacing: "info", daily_cap: "warn",
  quiet_hours: "warn", session_paused: "warn", restricted: "bad", blocked: "bad", offline: "warn",
  error: "bad", stale: "bad", "no worker": "neutral", starting: "info", delivered: "ok",
};
const say = (map, key) => map[key] || String(key || "").replace(/_/g, " ");

// "3 message(s)" -> "3 messages", "1 message(s)" -> "1 message": the CLI's lines read naturally here.
function plural(text) {
  return String(text || "").replace(/\b(\d+) ([A-Za-z]+)\(s\)/g, (_m, n, w) => n + " " + w + (n === "1" ? "" : "s"));
}

const sentence = (text) => text.charAt(0).toUpperCase() + text.slice(1);

function pill(map, key, extra) {
  return el("span", { class: "pill tone-" + (TONE[key] || "neutral"), "data-status": key }, say(map, key), extra);
}

function count(n, one, many) {
  return n + " " + (n === 1 ? one : many || one + "s");
}

function fmtTime(ts) {
  if (!ts) return "–";
  const d = new Date(ts * 1000);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return sameDay ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

// A time today, or a day otherwise: enough to tell when a job ended.
function fmtDay(ts) {
  const d = new Date(ts * 1000);
  return d.toDateString() === new Date().toDateString() ? fmtTime(ts) : d.toLocaleDateString([], { month: "short", day: "numeric" });
}

function fmtDuration(s) {
  if (s == null) return "–";
  s = Math.max(0, Math.round(s));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min";
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h + " h" + (m ? " " + m + " min" : "");
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

function setRows(parent, rows) {
  parent.replaceChildren(...rows);
}

// --- screens -----------------------------------------------------------------------------------------
function showScreen() {
  const name = (location.hash || "#jobs").slice(1).split("/")[0];
  const known = [...document.querySelectorAll("[data-screen]")].map((s) => s.dataset.screen);
  const screen = known.includes(name) ? name : "jobs";
  for (const s of document.querySelectorAll("[data-screen]")) s.hidden = s.dataset.screen !== screen;
  for (const a of document.querySelectorAll("nav a[data-tab]")) {
    if (a.dataset.tab === screen) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.body.dataset.current = screen;
  if (screen === "notifications") loadNotifications();
}

// --- jobs --------------------------------------------------------------------------------------------
function actionButton(job, action, label, cls) {
  const b = el("button", { type: "button", class: "btn small " + (cls || ""), "data-action": action, "data-job": job.id }, label);
  b.addEventListener("click", async (ev) => {
    ev.stopPropagation();
    if (action === "stop" && !confirm("Stop job " + job.id + " for good? Its waiting messages are cancelled.")) return;
    b.disabled = true;
    try { await api("POST", "/api/jobs/" + job.id + "/" + action); }
    catch (e) { alert(e.message); }
    poll();
  });
  return b;
}

// One bar per job: a segment per outcome, so a stopped job shows what went out and what was cancelled
// instead of a full bar.
const SEGMENTS = ["sent", "failed", "skipped", "cancelled", "sending"];
function progressBar(job) {
  const total = job.total || 0;
  const bar = el("div", { class: "bar", role: "img" });
  for (const k of SEGMENTS) {
    const n = job[k] || 0;
    if (!n || !total) continue;
    const seg = el("span", { class: "seg seg-" + k, "data-segment": k, title: n + " " + say(MESSAGE_STATES, k).toLowerCase() });
    seg.style.width = (100 * n / total) + "%";
    bar.append(seg);
  }
  const parts = [job.sent + " of " + total + " sent"];
  if (job.failed) parts.push(job.failed + " failed");
  if (job.cancelled) parts.push(job.cancelled + " cancelled");
  if (job.skipped) parts.push(job.skipped + " skipped");
  const caption = parts.join(" · ");
  bar.setAttribute("aria-label", caption);
  return [bar, el("span", { class: "caption" }, caption)];
}

// "at 09:00" today, "tomorrow at 00:00", else "on" the date: when something starts again, in words.
function fmtWhen(ts) {
  const d = new Date(ts * 1000);
  const tomorrow = new Date();
  tomorrow.setDate(tomorrow.getDate() + 1);
  if (d.toDateString() === tomorrow.toDateString()) {
    return "tomorrow at " + d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  return (d.toDateString() === new Date().toDateString() ? "at " : "on ") + fmtTime(ts);
}

function timeLeft(job) {
  // What the status report computed (cap, ETA, "waiting until"): shown as given, never re-derived here.
  // It waits either for its scheduled start (--at) or for its sessions' daily limit to open again.
  if (job.waiting_until) {
    if (job.not_before && job.not_before >= job.waiting_until) return "starts " + fmtWhen(job.waiting_until);
    return "daily cap reached — sends again " + fmtWhen(job.waiting_until);
  }
  if (job.status === "queued" && job.not_before && job.not_before * 1000 > Date.now()) return "starts " + fmtTime(job.not_before);
  if (job.eta_seconds != null) return "about " + fmtDuration(job.eta_seconds) + " left";
  if (job.status === "completed" || job.status === "stopped") return job.finished_at ? "ended " + fmtDay(job.finished_at) : "–";
  return "–";
}

function jobRow(job) {
  const active = ["queued", "running", "waiting_for_login"].includes(job.status);
  const actions = el("td", { class: "controls" });
  if (active) actions.append(actionButton(job, "pause", "Pause"));
  if (job.status === "paused") actions.append(actionButton(job, "resume", "Resume", "accent"));
  if (job.failed > 0 && job.status !== "stopped") actions.append(actionButton(job, "retry-failed", "Retry failed"));
  if (active || job.status === "paused") actions.append(actionButton(job, "stop", "Stop", "danger"));
  const reason = job.reason ? el("span", { class: "reason" }, plural(job.reason)) : null;
  const tr = el("tr", { "data-job-id": job.id, "data-status": job.status, tabIndex: 0, "aria-label": "Job " + job.id + ": " + job.name },
    el("td", { class: "name" }, el("strong", {}, job.name), el("span", { class: "sub" }, "#" + job.id + " · " + fmtTime(job.created_at))),
    el("td", { class: "status" }, pill(JOB_STATES, job.status), reason),
    el("td", { class: "progress" }, ...progressBar(job)),
    el("td", { class: "sent num" }, job.sent), el("td", { class: "failed num" + (job.failed ? " bad" : "") }, job.failed),
    el("td", { class: "skipped num" }, job.skipped), el("td", { class: "cancelled num" }, job.cancelled),
    el("td", { class: "pending num" }, job.pending + job.sending),
    el("td", { class: "receipts" }, el("span", { class: "delivered" }, job.delivered + " delivered"),
      el("span", { class: "read sub" }, job.read + " read")),
    el("td", { class: "eta" }, timeLeft(job)), actions);
  labelCells(tr, "#jobs");
  if (job.id === selectedJob) tr.classList.add("selected");
  const open = async () => {
    if (selectedJob !== job.id) { selectedJob = job.id; page = 0; }
    await loadMessages();
    $("#job-detail").scrollIntoView({ block: "start", behavior: "smooth" });
    poll();
  };
  tr.addEventListener("click", open);
  tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter" && ev.target === tr) open(); });
  return tr;
}

// On a phone the tables become cards: each cell shows its column's name (CSS reads data-label).
function labelCells(tr, table) {
  const heads = [...document.querySelectorAll(table + " thead th")].map((th) => th.textContent);
  [...tr.children].forEach((td, i) => td.setAttribute("data-label", heads[i] || ""));
  return tr;
}

// --- sessions and workers ----------------------------------------------------------------------------
function sessionCard(s, waitingScan) {
  const provider = s.provider || "web";
  const state = waitingScan ? "waiting_for_login" : s.state;
  const card = el("article", { class: "card item", "data-session": s.session },
    el("div", { class: "item-head" }, el("h3", {}, s.session),
      el("span", { class: "badge", title: provider === "cloud" ? "WhatsApp Cloud API" : "WhatsApp Web" }, provider)),
    pill(WORKER_STATES, state));
  // The daily cap as the status report gives it (status and the live view say the same).
  const cap = s.cap_today;
  const sent = s.sent_today || 0;
  const meter = el("div", { class: "meter" });
  if (cap != null) {
    const bar = el("div", { class: "bar thin", role: "img", "aria-label": sent + " of " + cap + " today" },
      el("span", { class: "seg seg-sent" }));
    bar.firstChild.style.width = Math.min(100, cap ? 100 * sent / cap : 100) + "%";
    const left = s.left_today != null ? " · " + s.left_today + " left" : "";
    meter.append(el("span", {}, "Sent today ", el("strong", {}, sent), " of " + cap + left), bar);
  } else {
    meter.append(el("span", {}, "Sent today ", el("strong", {}, sent), " (no daily limit)"));
  }
  card.append(meter);
  if (s.cap_reached) {
    const until = s.waiting_until ? " — sends again " + fmtWhen(s.waiting_until) : "";
    card.append(el("p", { class: "reason cap-reached" }, "Daily cap reached" + until));
  }
  if (s.warmup_day) {
    // A new number starts slowly (20/40/80/150/250 a day) so that WhatsApp does not flag it.
    const after = s.daily_cap ? ", then up to " + s.daily_cap : "";
    card.append(el("p", { class: "hint warmup" },
      "Warm-up day " + s.warmup_day + ": " + cap + " a day" + after + " (a new number starts slowly)"));
  }
  if (provider === "cloud" && s.phone_number_id) card.append(el("p", { class: "sub" }, "Cloud API number ID " + s.phone_number_id));
  if (provider === "cloud" && s.quality !== undefined) {
    // Meta's messaging limit (unique people per rolling 24 h) is a Cloud API number's daily cap.
    const limit = s.limit_24h == null ? "unlimited" : s.limit_24h.toLocaleString("en");
    card.append(el("p", { class: "sub", "data-limit": s.messaging_limit },
      "Quality " + s.quality + " · messaging limit " + (s.used_24h || 0).toLocaleString("en") + " of " + limit +
      " people in 24 h"));
    // The limit is the business portfolio's, shared by its numbers: say whose it is and who else counts.
    const shared = (s.limit_shared_with || []).length ? ", shared with " + s.limit_shared_with.join(", ") : "";
    card.append(el("p", { class: "sub", "data-portfolio": s.portfolio_id || "" },
      s.portfolio_id ? "Business portfolio " + s.portfolio_id + shared
        : "Business portfolio unknown: the limit is counted for this number alone (wabulk login --cloud --waba-id …)"));
  }
  if (s.paused) card.append(el("p", { class: "reason" }, "Paused: " + plural(s.paused)));
  if (waitingScan) {
    const fig = el("figure", { class: "qr", "data-session": s.session },
      el("img", { alt: "WhatsApp login QR code of session " + s.session }),
      el("figcaption", {}, "Scan it on the phone: WhatsApp › Linked devices › Link a device"));
    // The worker rotates the QR about every 20 s; reload it with each poll.
    fig.querySelector("img").src = "/api/sessions/" + encodeURIComponent(s.session) + "/qr.svg?t=" + Date.now();
    card.append(fig);
  }
  return card;
}

function workerCard(w, now) {
  return el("article", { class: "card item", "data-worker": w.id },
    el("div", { class: "item-head" }, el("h3", {}, w.session), w.alive ? null : el("span", { class: "badge bad" }, "gone")),
    pill(WORKER_STATES, w.alive ? (w.state || "starting") : "stale"),
    el("dl", {},
      el("dt", {}, "Process"), el("dd", {}, "PID " + w.pid + " on " + w.host),
      el("dt", {}, "Last sign of life"), el("dd", {}, fmtDuration(now - w.heartbeat_at) + " ago")));
}

function renderStatus(st) {
  const attention = st.attention || [];
  $("#attention-box").hidden = attention.length === 0;
  setRows($("#attention"), attention.map((a) => el("li", {}, sentence(plural(a)))));
  // Newest first: the job you just queued is the one you look for.
  const jobs = [...st.jobs].sort((a, b) => b.id - a.id);
  jobsById = Object.fromEntries(jobs.map((j) => [j.id, j]));
  $("#no-jobs").hidden = jobs.length > 0;
  $("#jobs").closest(".card").hidden = jobs.length === 0;
  setRows($("#jobs tbody"), jobs.map(jobRow));
  const scanning = new Set(st.workers.filter((w) => w.alive && w.state === "waiting_for_login").map((w) => w.session));
  $("#no-sessions").hidden = st.sessions.length > 0;
  setRows($("#sessions"), st.sessions.map((s) => sessionCard(s, scanning.has(s.session))));
  const now = Date.now() / 1000;
  $("#no-workers").hidden = st.workers.length > 0;
  setRows($("#workers"), st.workers.map((w) => workerCard(w, now)));
}

// --- messages of the selected job --------------------------------------------------------------------
function receipt(m) {
  if (m.read_at || m.receipt === "read") return "Read";
  if (m.delivered_at || m.receipt === "delivered") return "Delivered";
  if (m.status === "sent") return "Not delivered yet";
  return "–";
}

function messageRow(m) {
  const status = el("td", { class: "status" }, pill(MESSAGE_STATES, m.status));
  if (m.error) status.append(el("span", { class: "reason" }, m.error));
  return labelCells(el("tr", { "data-message-id": m.id, "data-status": m.status },
    el("td", { class: "id" }, m.id),
    el("td", { class: "who" }, el("strong", {}, m.name || "–"), el("span", { class: "sub" }, m.phone)),
    el("td", { class: "body" }, el("span", { class: "text", title: m.body || "" }, m.body || "")),
    status, el("td", { class: "num tries" }, m.attempts), el("td", { class: "when" }, fmtTime(m.sent_at)),
    el("td", { class: "receipt" }, receipt(m)), el("td", { class: "session" }, m.session || "–")), "#messages");
}

// Answers can arrive out of order (Next clicked quickly, the periodic refresh): only the latest request's
// answer is shown, so the page never flips back to an older page with the wrong buttons enabled.
let messagesRequest = 0;

async function loadMessages() {
  if (selectedJob == null) return;
  const filter = $("#detail-filter").value;
  const q = "?offset=" + page * PAGE + "&limit=" + PAGE + (filter ? "&status=" + encodeURIComponent(filter) : "");
  const mine = ++messagesRequest;
  try {
    const data = await api("GET", "/api/jobs/" + selectedJob + "/messages" + q);
    if (mine !== messagesRequest) return;
    if (data.total > 0 && data.offset >= data.total) { page = Math.floor((data.total - 1) / PAGE); return loadMessages(); }
    const job = jobsById[selectedJob];
    $("#job-detail").hidden = false;
    $("#detail-id").textContent = "#" + selectedJob;
    $("#detail-name").textContent = job ? job.name : "";
    $("#export-link").href = "/api/jobs/" + selectedJob + "/export.csv";
    $("#export-link").download = "job-" + selectedJob + ".csv";
    $("#undelivered-link").href = "/api/jobs/" + selectedJob + "/export.csv?undelivered=1";
    $("#undelivered-link").download = "job-" + selectedJob + "-undelivered.csv";
    setRows($("#messages tbody"), data.messages.map(messageRow));
    $("#messages").hidden = data.total === 0;
    $("#no-messages").hidden = data.total > 0;
    const first = data.total ? data.offset + 1 : 0;
    const last = data.offset + data.messages.length;
    $("#page-info").textContent = data.total ? first + "–" + last + " of " + count(data.total, "message") : "";
    $("#page-prev").disabled = data.offset === 0;
    $("#page-next").disabled = last >= data.total;
    $(".pager").hidden = data.total <= PAGE;
  } catch (e) {
    if (mine === messagesRequest) $("#job-detail").hidden = true;
  }
}

// --- notifications -----------------------------------------------------------------------------------
async function loadNotifications() {
  if (document.body.dataset.current !== "notifications") return;
  try {
    const rows = await api("GET", "/api/notifications?limit=50");
    $("#no-notifications").hidden = rows.length > 0;
    setRows($("#notifications"), rows.map((n) => el("article", { class: "card item", "data-kind": n.kind },
      el("div", { class: "item-head" }, el("h3", {}, say(NOTIFICATION_KINDS, n.kind)), el("span", { class: "sub" }, fmtTime(n.created_at))),
      n.text ? el("p", {}, sentence(plural(n.text))) : null,
      el("p", { class: "sub" }, "To " + n.target + " · ",
        n.status === "delivered" ? el("span", { class: "tone-text-ok" }, "delivered")
          : el("span", { class: "tone-text-warn" }, n.attempts ? "not delivered yet (" + count(n.attempts, "try", "tries") + ")" : "not sent yet")),
      n.last_error && n.status !== "delivered" ? el("p", { class: "reason" }, n.last_error) : null)));
  } catch (e) { /* shown by the live marker */ }
}

let polling = false;
async function poll() {
  if (polling) return;
  polling = true;
  try {
    renderStatus(await api("GET", "/api/status"));
    $("#live").textContent = "Live · " + new Date().toLocaleTimeString();
    $("#live").className = "live ok";
    await loadMessages();
    await loadNotifications();
  } catch (e) {
    $("#live").textContent = "Not connected: " + e.message;
    $("#live").className = "live down";
  } finally {
    polling = false;
  }
}

// --- upload: preview (dry run), then queue ------------------------------------------------------------
function formData(dryRun) {
  const fd = new FormData();
  const file = $("#file").files[0];
  if (file) fd.append("file", file, file.name);
  const attachment = $("#attachment").files[0];
  if (attachment) fd.append("attachment", attachment, attachment.name);
  fd.append("message", $("#message").value);
  for (const id of ["name", "country", "session", "at", "max_attempts"]) {
    const v = $("#" + id).value.trim();
    if (v) fd.append(id, v);
  }
  if ($("#phone-column").value) fd.append("phone_column", $("#phone-column").value);
  if ($("#name-column").value) fd.append("name_column", $("#name-column").value);
  fd.append("dry_run", dryRun ? "true" : "false");
  return fd;
}

function formKey() {
  const f = $("#file").files[0];
  const a = $("#attachment").files[0];
  return JSON.stringify([f && f.name, f && f.size, f && f.lastModified, a && a.name, a && a.size,
    ...FORM_FIELDS.map((id) => $("#" + id).value)]);
}

function showError(msg) {
  $("#form-error").textContent = msg || "";
  $("#form-error").hidden = !msg;
  if (msg) { $("#form-error").focus({ preventScroll: true }); $("#form-error").scrollIntoView({ block: "nearest" }); }
}

function showRejects(rejects) {
  $("#rejects-title").hidden = $("#rejects").hidden = !rejects.length;
  setRows($("#rejects tbody"), rejects.map((r) => labelCells(el("tr", {},
    el("td", {}, r.row), el("td", {}, r.column), el("td", {}, r.value), el("td", {}, r.reason)), "#rejects")));
}

// The column-mapping step: every header, with wabulk's own pick first ("detected") and kept selectable.
function showMapping(columns) {
  if (!columns || !columns.headers || !columns.headers.length) return;
  const fill = (select, detected, noneText) => {
    const keep = select.value;
    const auto = el("option", { value: "" }, detected ? detected + " (detected)" : noneText);
    setRows(select, [auto, ...columns.headers.filter((h) => h).map((h) => el("option", { value: h }, h))]);
    select.value = columns.headers.includes(keep) ? keep : "";
  };
  fill($("#phone-column"), columns.phone, "none found: choose one");
  fill($("#name-column"), columns.name, "none found");
  $("#mapping").hidden = false;
}

function resetMapping() {
  setRows($("#phone-column"), []);
  setRows($("#name-column"), []);
  $("#mapping").hidden = true;
}

// Messages that would go out with a placeholder rendered as nothing ("Hi , …"): say which and where.
function emptyNotice(r) {
  if (!r.empty_rows) return [];
  const keys = Object.keys(r.empty_placeholders || {}).map((k) => "{" + k + "}");
  const rows = r.empty_examples || [];
  const where = rows.length ? " (row" + (rows.length > 1 ? "s " : " ") + rows.join(", ") + (r.empty_rows > rows.length ? ", …" : "") + ")" : "";
  const example = keys.length ? keys[0].slice(0, -1) + "|there}" : "{name|there}";
  return [count(r.empty_rows, "message") + " would have an empty " + (keys.join(", ") || "placeholder") + where +
    ": give it a fallback, e.g. " + example + "."];
}

function stat(n, label, tone) {
  return el("li", { class: "stat tone-" + tone }, el("strong", {}, n), el("span", {}, label));
}

async function preview() {
  showError("");
  $("#queued-ok").hidden = true;
  $("#enqueue-btn").disabled = true;
  previewed = null;
  if (!$("#file").files[0]) { showError("Choose a contacts file first."); return; }
  if (!$("#message").value.trim()) { showError("Write the message first."); return; }
  $("#preview-btn").disabled = true;
  try {
    const r = await api("POST", "/api/jobs", formData(true));
    showMapping(r.columns);
    $("#preview").hidden = false;
    $("#preview-summary").textContent = count(r.enqueued, "message") + " will be queued" +
      (r.phone_column ? ", to the numbers in “" + r.phone_column + "”" : "") + ".";
    setRows($("#preview-stats"), [
      stat(r.enqueued, "to send", "ok"), stat(r.invalid, "left out", r.invalid ? "bad" : "neutral"),
      stat(r.duplicates, "duplicates", "neutral"), stat(r.opted_out, "opted out", "neutral"),
      stat(r.not_mobile, "not mobile (kept)", r.not_mobile ? "warn" : "neutral")]);
    setRows($("#preview-notices"), [...emptyNotice(r), ...(r.notices || [])].map((n) => el("li", {}, n)));
    $("#bodies-title").hidden = !(r.previews || []).length;
    setRows($("#preview-bodies"), (r.previews || []).map((b) => el("div", { class: "bubble" }, b)));
    showRejects(r.rejects || []);
    previewed = formKey();
    $("#enqueue-btn").textContent = "Queue " + count(r.enqueued, "message");
    $("#enqueue-btn").disabled = r.enqueued === 0;
    $("#enqueue-hint").textContent = "";
  } catch (e) {
    showMapping(e.data && e.data.columns);
    $("#preview").hidden = !((e.data && e.data.rejects) || []).length;
    $("#preview-summary").textContent = "Nothing can be queued yet.";
    setRows($("#preview-stats"), []);
    setRows($("#preview-notices"), []);
    $("#bodies-title").hidden = true;
    setRows($("#preview-bodies"), []);
    showRejects((e.data && e.data.rejects) || []);
    showError(e.message);
  } finally {
    $("#preview-btn").disabled = false;
  }
}

async function enqueue() {
  if (previewed !== formKey()) { showError("The form changed: preview it again."); $("#enqueue-btn").disabled = true; return; }
  $("#enqueue-btn").disabled = true;
  try {
    const r = await api("POST", "/api/jobs", formData(false));
    showError("");
    previewed = null;
    $("#upload-form").reset();
    resetMapping();
    $("#preview").hidden = true;
    $("#queued-ok").textContent = "Job " + r.job_id + " queued: " + count(r.enqueued, "message") + ".";
    $("#queued-ok").hidden = false;
    selectedJob = r.job_id;
    page = 0;
    location.hash = "#jobs";
    poll();
  } catch (e) {
    showError(e.message);
  }
}

function formChanged() {
  if (previewed !== formKey()) {
    $("#enqueue-btn").disabled = true;
    if (previewed !== null) $("#enqueue-hint").textContent = "You changed the form: preview it again.";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  // The token came in the URL once; the cookie carries it from now on.
  if (location.search.includes("token=")) history.replaceState(null, "", location.pathname + location.hash);
  window.addEventListener("hashchange", showScreen);
  showScreen();
  $("#preview-btn").addEventListener("click", preview);
  $("#enqueue-btn").addEventListener("click", enqueue);
  $("#detail-filter").addEventListener("change", () => { page = 0; loadMessages(); });
  $("#page-prev").addEventListener("click", () => { page = Math.max(0, page - 1); loadMessages(); });
  $("#page-next").addEventListener("click", () => { page += 1; loadMessages(); });
  $("#file").addEventListener("change", () => { resetMapping(); formChanged(); });
  // A changed column is previewed at once: the user sees what the choice does.
  for (const id of ["phone-column", "name-column"]) $("#" + id).addEventListener("change", preview);
  for (const id of ["attachment", ...FORM_FIELDS]) $("#" + id).addEventListener("input", formChanged);
  poll();
  setInterval(poll, POLL_MS);
});
