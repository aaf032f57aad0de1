// The Spooled dashboard: plain ES modules, no build step, nothing loaded from outside this server.
import { dagChart, lineChart } from "/dashboard/charts.js";

const KEY_STORAGE = "spooled.apiKey";
const TRANSPORT_STORAGE = "spooled.transport";
const BUCKET_SECS = 10;
const BUCKETS = 60; // ten minutes of history in the charts
const TERMINAL = new Set(["completed", "deadletter", "cancelled"]);

// --- small helpers -----------------------------------------------------------------------------------------

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

class Safe {
  constructor(html) { this.html = html; }
  toString() { return this.html; }
}
const raw = (html) => new Safe(html);
const esc = (value) => String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

/** Tagged template: interpolations are escaped unless wrapped in raw(); arrays are joined. */
function h(strings, ...values) {
  let out = strings[0];
  values.forEach((value, i) => {
    const render = (v) => (v instanceof Safe ? v.html : esc(v));
    out += Array.isArray(value) ? value.map(render).join("") : render(value);
    out += strings[i + 1];
  });
  return raw(out);
}

const pill = (status) => h`<span class="pill s-${status}">${status}</span>`;
const num = (value) => (value === null || value === undefined ? "—" : Number(value).toLocaleString());
const shortId = (id) => (id ? String(id).slice(0, 8) : "—");

function ago(iso) {
  if (!iso) return "—";
  const secs = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (secs < 5) return "just now";
  if (secs < 60) return `${Math.round(secs)} s ago`;
  if (secs < 3600) return `${Math.round(secs / 60)} min ago`;
  if (secs < 86400) return `${Math.round(secs / 3600)} h ago`;
  return `${Math.round(secs / 86400)} d ago`;
}

function until(iso) {
  if (!iso) return "—";
  const secs = (Date.parse(iso) - Date.now()) / 1000;
  if (secs <= 0) return "due";
  if (secs < 60) return `in ${Math.round(secs)} s`;
  if (secs < 3600) return `in ${Math.round(secs / 60)} min`;
  if (secs < 86400) return `in ${(secs / 3600).toFixed(1)} h`;
  return `in ${Math.round(secs / 86400)} d`;
}

const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : "");
const stamp = (iso) => (iso ? new Date(iso).toLocaleString([], { hour12: false }) : "—");
const json = (value) => JSON.stringify(value, null, 2);

function toast(message, bad = false) {
  const node = document.createElement("div");
  node.className = `toast${bad ? " bad" : ""}`;
  node.textContent = message;
  $("#toasts").append(node);
  setTimeout(() => node.remove(), 4000);
}

/** At most one run at a time; calls made meanwhile collapse into one more run (no stale overwrites). */
function serial(fn) {
  let running = null;
  let again = false;
  return () => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        await fn();
      } while (again);
    })().finally(() => { running = null; });
    return running;
  };
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

// --- API ---------------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.code;
  }
}

let apiKey = sessionStorage.getItem(KEY_STORAGE);

async function api(path, { method = "GET", body, key = apiKey } = {}) {
  const headers = { Authorization: `Bearer ${key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 204) return null;
  const data = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) {
    if (response.status === 401 && key === apiKey) signOut("Your session ended: sign in again.");
    throw new ApiError(response.status, data);
  }
  return data;
}

async function apiOrNull(path) {
  try {
    return await api(path);
  } catch (err) {
    if (err.status === 404 || err.status === 403 || err.status === 405) return null;
    throw err;
  }
}

// --- live events -------------------------------------------------------------------------------------------

const listeners = new Set();
const onEvent = (fn) => {
  listeners.add(fn);
  return () => listeners.delete(fn);
};

class Live {
  constructor() {
    this.stopped = true;
    this.lastId = null;
    this.retry = 1000;
    this.abort = null;
    this.socket = null;
  }

  start(transport) {
    this.stop();
    this.stopped = false;
    this.transport = transport;
    this.connect();
  }

  stop() {
    this.stopped = true;
    this.abort?.abort();
    this.socket?.close();
    this.abort = this.socket = null;
    clearTimeout(this.timer);
  }

  status(state, text) {
    const box = $("#live");
    box.classList.toggle("on", state === "on");
    box.classList.toggle("off", state === "off");
    $("#live-text").textContent = text;
  }

  deliver(envelope) {
    for (const fn of [...listeners]) {
      try {
        fn(envelope);
      } catch (err) {
        console.error(err);
      }
    }
  }

  again() {
    if (this.stopped) return;
    this.status("off", "reconnecting");
    this.timer = setTimeout(() => this.connect(), this.retry);
    this.retry = Math.min(this.retry * 2, 15000);
  }

  connect() {
    if (this.transport === "ws") this.connectWs();
    else this.connectSse();
  }

  connectWs() {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/ws?token=${encodeURIComponent(apiKey)}`;
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.onopen = () => {
      this.retry = 1000;
      this.status("on", "live · WebSocket");
    };
    socket.onmessage = (msg) => {
      const envelope = JSON.parse(msg.data);
      if (envelope.type !== "Ping") this.deliver(envelope);
    };
    socket.onclose = () => {
      if (this.socket === socket) this.again();
    };
  }

  async connectSse() {
    // fetch() instead of EventSource: the key travels in a header, not in the URL.
    const controller = new AbortController();
    this.abort = controller;
    const headers = { Authorization: `Bearer ${apiKey}`, Accept: "text/event-stream" };
    if (this.lastId) headers["Last-Event-ID"] = this.lastId;
    try {
      const response = await fetch("/api/v1/events", { headers, signal: controller.signal, cache: "no-store" });
      if (response.status === 401) return signOut("Your session ended: sign in again.");
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      this.retry = 1000;
      this.status("on", "live · SSE");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let data = null;
          for (const line of frame.split("\n")) {
            if (line.startsWith("data: ")) data = line.slice(6);
            else if (line.startsWith("id: ")) this.lastId = line.slice(4);
          }
          if (data) this.deliver(JSON.parse(data));
        }
      }
    } catch (err) {
      if (controller.signal.aborted) return;
    }
    if (this.abort === controller) this.again();
  }
}

const live = new Live();

// --- rolling statistics from the stream (feeds the overview charts) ------------------------------------------

const stats = {
  buckets: [],
  feed: [],
  started: Date.now(),
  bucket() {
    const slot = Math.floor(Date.now() / 1000 / BUCKET_SECS);
    let last = this.buckets[this.buckets.length - 1];
    if (!last || last.slot !== slot) {
      // fill gaps so the time axis stays even
      let next = last ? last.slot + 1 : slot;
      while (next <= slot) {
        this.buckets.push({ slot: next, created: 0, completed: 0, failed: 0, retried: 0, durations: [] });
        next += 1;
      }
      this.buckets = this.buckets.slice(-BUCKETS);
      last = this.buckets[this.buckets.length - 1];
    }
    return last;
  },
  record(envelope) {
    const d = envelope.data || {};
    const b = this.bucket();
    switch (envelope.type) {
      case "JobCreated": b.created += 1; break;
      case "JobCompleted":
        b.completed += 1;
        if (typeof d.duration_ms === "number") b.durations.push(d.duration_ms);
        break;
      case "JobFailed":
        b.failed += 1;
        if (d.will_retry) b.retried += 1;
        break;
      default: break;
    }
    if (feedWorthy(envelope)) {
      this.feed.unshift(envelope);
      this.feed.length = Math.min(this.feed.length, 40);
    }
  },
  window(secs) {
    const from = Math.floor(Date.now() / 1000 / BUCKET_SECS) - Math.ceil(secs / BUCKET_SECS) + 1;
    return this.buckets.filter((b) => b.slot >= from);
  },
};
onEvent((e) => stats.record(e));

/** The feed skips status changes that a richer event (created, completed, failed) already tells. */
function feedWorthy(envelope) {
  const d = envelope.data || {};
  if (envelope.type === "SystemHealth" || envelope.type === "QueueStats") return false;
  if (envelope.type !== "JobStatusChange") return true;
  if (d.new_status === "completed") return false;
  return !(d.old_status === "processing" && (d.new_status === "pending" || d.new_status === "deadletter"));
}

function percentile(values, p) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
}

// --- pages -------------------------------------------------------------------------------------------------

// Each page captures its own <main>: callbacks that fire after navigating away touch a detached tree.
function scoped() {
  const root = $("#main");
  const q = (selector) => root.querySelector(selector);
  q.all = (selector) => [...root.querySelectorAll(selector)];
  q.root = root;
  q.live = () => root.isConnected;
  return q;
}

const pages = {};
let cleanup = null;

function mount(html) {
  $("#main").innerHTML = String(html);
}

function head(title, sub, actions = "") {
  return h`<div class="page-head"><div><h1>${title}</h1>${sub ? h`<div class="sub">${sub}</div>` : ""}</div><div class="actions">${actions}</div></div>`;
}

function eventLabel(envelope) {
  const d = envelope.data || {};
  switch (envelope.type) {
    case "JobStatusChange": return h`${pill(d.new_status)} <span class="muted">from ${d.old_status || "—"}</span>`;
    case "JobCreated": return h`${pill("pending")} <span class="muted">created, priority ${d.priority}</span>`;
    case "JobCompleted": return h`${pill("completed")} <span class="muted">in ${d.duration_ms == null ? "?" : Math.round(d.duration_ms)} ms</span>`;
    case "JobFailed": return h`${pill(d.will_retry ? "failed" : "deadletter")} <span class="muted">${d.error || ""}</span>`;
    case "JobProgress": return h`<span class="muted">progress ${d.percent}% ${d.message || ""}</span>`;
    default: return h`<span class="muted">${envelope.type}</span>`;
  }
}

function feedItem(envelope) {
  const d = envelope.data || {};
  const subject = d.job_id
    ? h`<a class="id" href="#/jobs/${d.job_id}">${shortId(d.job_id)}</a> <span class="muted">${d.queue_name || ""}</span>`
    : h`<span class="id">${d.worker_id || ""}</span>`;
  return h`<li><time>${clock(envelope.timestamp)}</time><span>${subject}</span><span>${eventLabel(envelope)}</span></li>`;
}

pages.overview = async () => {
  const q = scoped();
  mount(h`${head("Overview", "Live from the event stream; totals refresh every 15 s.")}
    <div class="grid kpis">
      <div class="card kpi"><div class="label">Throughput</div><div class="value" id="k-throughput">0<small>/min</small></div><div class="hint" id="k-throughput-hint">completions, last minute</div></div>
      <div class="card kpi"><div class="label">Latency p95</div><div class="value" id="k-latency">—</div><div class="hint" id="k-latency-hint">processing time, last 5 min</div></div>
      <div class="card kpi"><div class="label">Success rate</div><div class="value" id="k-success">—</div><div class="hint" id="k-success-hint">completed vs failed, 24 h</div></div>
      <div class="card kpi"><div class="label">Retries</div><div class="value" id="k-retries">0</div><div class="hint">requeued after a failure, this session</div></div>
      <div class="card kpi"><div class="label">Pending</div><div class="value" id="k-pending">—</div><div class="hint" id="k-processing">— processing</div></div>
      <div class="card kpi"><div class="label">Dead letters</div><div class="value" id="k-dlq">—</div><div class="hint" id="k-workers">— workers healthy</div></div>
    </div>
    <div class="grid charts">
      <div class="card"><div class="card-head"><h2>Throughput <span class="muted">jobs/min</span></h2><div class="legend"><span><i style="background:#4f46e5"></i>created</span><span><i style="background:#16a34a"></i>completed</span><span><i style="background:#dc2626"></i>failed</span></div></div><svg id="c-throughput" class="chart" role="img" aria-label="Jobs per minute"></svg></div>
      <div class="card"><div class="card-head"><h2>Processing latency <span class="muted">ms</span></h2><div class="legend"><span><i style="background:#0284c7"></i>p50</span><span><i style="background:#d97706"></i>p95</span></div></div><svg id="c-latency" class="chart" role="img" aria-label="Processing latency"></svg></div>
    </div>
    <div class="grid charts">
      <div class="card"><div class="card-head"><h2>Success rate</h2><div class="legend"><span><i style="background:#16a34a"></i>% completed of finished</span></div></div><svg id="c-success" class="chart" role="img" aria-label="Success rate"></svg></div>
      <div class="card"><div class="card-head"><h2>Recent activity</h2><span class="muted" id="feed-count"></span></div><ul class="feed" id="feed"></ul></div>
    </div>
    <div class="card"><div class="card-head"><h2>Busiest queues</h2><a href="#/queues">All queues →</a></div><div class="table-wrap" id="top-queues"></div></div>`);

  const labels = () => stats.buckets.map((b) => new Date(b.slot * BUCKET_SECS * 1000).toLocaleTimeString([], { hour12: false }));
  const perMinute = (n) => (n * 60) / BUCKET_SECS;
  let summary = null;

  const draw = () => {
    if (!q.live()) return;
    stats.bucket();
    const b = stats.buckets;
    lineChart(q("#c-throughput"), {
      labels: labels(), unit: "",
      series: [
        { name: "created", color: "#4f46e5", values: b.map((x) => perMinute(x.created)) },
        { name: "completed", color: "#16a34a", values: b.map((x) => perMinute(x.completed)), area: true },
        { name: "failed", color: "#dc2626", values: b.map((x) => perMinute(x.failed)) },
      ],
    });
    lineChart(q("#c-latency"), {
      labels: labels(),
      series: [
        { name: "p50", color: "#0284c7", values: b.map((x) => percentile(x.durations, 50)) },
        { name: "p95", color: "#d97706", values: b.map((x) => percentile(x.durations, 95)) },
      ],
    });
    lineChart(q("#c-success"), {
      labels: labels(), unit: "%", yMax: 100,
      series: [{ name: "success", color: "#16a34a", area: true, values: b.map((x) => (x.completed + x.failed ? (100 * x.completed) / (x.completed + x.failed) : null)) }],
    });
    const minute = stats.window(60);
    q("#k-throughput").innerHTML = String(h`${num(minute.reduce((s, x) => s + x.completed, 0))}<small>/min</small>`);
    const five = stats.window(300).flatMap((x) => x.durations);
    const p95 = percentile(five, 95);
    if (p95 !== null) q("#k-latency").innerHTML = String(h`${p95 < 10 ? p95.toFixed(1) : Math.round(p95)}<small>ms</small>`);
    else if (summary?.jobs?.avg_processing_time_ms != null) {
      q("#k-latency").innerHTML = String(h`${Math.round(summary.jobs.avg_processing_time_ms)}<small>ms</small>`);
      q("#k-latency-hint").textContent = "average processing time";
    }
    q("#k-retries").textContent = num(stats.buckets.reduce((s, x) => s + x.retried, 0));
    q("#feed").innerHTML = stats.feed.length ? stats.feed.map((e) => String(feedItem(e))).join("") : '<li class="muted">No events yet: enqueue a job to see it here.</li>';
    q("#feed-count").textContent = stats.feed.length ? `last ${stats.feed.length}` : "";
  };

  const refresh = serial(async () => {
    if (!q.live()) return;
    const [dash, jobStats] = await Promise.all([apiOrNull("/api/v1/dashboard"), apiOrNull("/api/v1/jobs/stats")]);
    summary = dash;
    if (jobStats) {
      q("#k-pending").textContent = num(jobStats.pending + jobStats.scheduled);
      q("#k-processing").textContent = `${num(jobStats.processing)} processing`;
      q("#k-dlq").textContent = num(jobStats.deadletter);
      setDlqBadge(jobStats.deadletter);
    }
    if (dash) {
      const done = dash.jobs.completed_24h + dash.jobs.failed_24h;
      q("#k-success").innerHTML = done ? String(h`${((100 * dash.jobs.completed_24h) / done).toFixed(1)}<small>%</small>`) : "—";
      q("#k-success-hint").textContent = `${num(dash.jobs.completed_24h)} completed, ${num(dash.jobs.failed_24h)} failed in 24 h`;
      q("#k-workers").textContent = `${num(dash.workers.healthy)} of ${num(dash.workers.total)} workers healthy`;
      const queues = dash.queues || [];
      q("#top-queues").innerHTML = queues.length
        ? String(h`<table><thead><tr><th>Queue</th><th class="num">Pending</th><th class="num">Processing</th><th>State</th></tr></thead><tbody>${queues.slice(0, 8).map((q) => h`<tr><td><a href="#/jobs?queue=${encodeURIComponent(q.name)}">${q.name}</a></td><td class="num">${num(q.pending)}</td><td class="num">${num(q.processing)}</td><td>${pill(q.paused ? "paused" : "active")}</td></tr>`)}</tbody></table>`)
        : '<div class="empty-state">No queues yet.</div>';
    }
    draw();
  });

  await refresh();
  const off = onEvent(debounce(draw, 150));
  const offTotals = onEvent(debounce(refresh, 2000));
  const tick = setInterval(draw, 5000);
  const poll = setInterval(refresh, 15000);
  return () => { off(); offTotals(); clearInterval(tick); clearInterval(poll); };
};

pages.queues = async () => {
  const q = scoped();
  mount(h`${head("Queues", "Depth and throughput per queue; pausing stops claims, enqueues still land.")}<div class="card"><div class="table-wrap" id="queue-table"><div class="empty-state">Loading…</div></div></div>`);
  const render = serial(async () => {
    if (!q.live()) return;
    const queues = (await apiOrNull("/api/v1/queues?limit=100")) || [];
    const rows = await Promise.all(queues.map(async (q) => ({ q, s: await apiOrNull(`/api/v1/queues/${encodeURIComponent(q.queue_name)}/stats`) })));
    const table = q("#queue-table");
    if (!table) return;
    table.innerHTML = rows.length ? String(h`<table><thead><tr><th>Queue</th><th>State</th><th class="num">Pending</th><th class="num">Processing</th><th class="num">Done 24 h</th><th class="num">Failed 24 h</th><th class="num">Avg time</th><th class="num">Oldest</th><th class="num">Workers</th><th></th></tr></thead><tbody>${rows.map(({ q, s }) => h`
      <tr data-queue="${q.queue_name}">
        <td><a href="#/jobs?queue=${encodeURIComponent(q.queue_name)}"><b>${q.queue_name}</b></a><div class="muted">retries ${q.max_retries} · timeout ${q.default_timeout}s</div></td>
        <td>${pill(q.enabled ? "active" : "paused")}</td>
        <td class="num">${num(s?.pending_jobs)}</td><td class="num">${num(s?.processing_jobs)}</td>
        <td class="num">${num(s?.completed_jobs_24h)}</td><td class="num">${num(s?.failed_jobs_24h)}</td>
        <td class="num">${s?.avg_processing_time_ms == null ? "—" : `${Math.round(s.avg_processing_time_ms)} ms`}</td>
        <td class="num">${s?.max_job_age_seconds == null ? "—" : `${s.max_job_age_seconds} s`}</td>
        <td class="num">${num(s?.active_workers)}</td>
        <td class="num">${q.enabled ? h`<button class="btn btn-sm" data-act="pause">Pause</button>` : h`<button class="btn btn-sm btn-primary" data-act="resume">Resume</button>`}</td>
      </tr>`)}</tbody></table>`) : '<div class="empty-state">No queues yet: a queue appears when its first job is enqueued.</div>';
  });
  q.root.addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-act]");
    if (!button) return;
    const queue = button.closest("tr").dataset.queue;
    button.disabled = true;
    try {
      await api(`/api/v1/queues/${encodeURIComponent(queue)}/${button.dataset.act}`, { method: "POST", body: {} });
      toast(`Queue ${queue} ${button.dataset.act === "pause" ? "paused" : "resumed"}`);
    } catch (err) {
      toast(err.message, true);
    }
    await render();
  });
  await render();
  const off = onEvent(debounce(render, 1000));
  return off;
};

function jobFilters() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  return { queue: params.get("queue") || "", status: params.get("status") || "" };
}

pages.jobs = async () => {
  const q = scoped();
  const f = jobFilters();
  const statuses = ["", "pending", "scheduled", "processing", "completed", "failed", "deadletter", "cancelled"];
  mount(h`${head("Jobs", "Newest first; new jobs and status changes appear as they happen.")}
    <div class="card"><div class="filters" style="margin-bottom:12px">
      <input id="f-queue" type="search" placeholder="Queue" value="${f.queue}">
      <select id="f-status">${statuses.map((s) => h`<option value="${s}" ${s === f.status ? raw("selected") : ""}>${s || "any status"}</option>`)}</select>
      <span class="muted" id="job-count"></span>
    </div><div class="table-wrap" id="job-table"><div class="empty-state">Loading…</div></div></div>`);
  const apply = () => {
    const q = q("#f-queue").value.trim();
    const s = q("#f-status").value;
    const params = new URLSearchParams();
    if (q) params.set("queue", q);
    if (s) params.set("status", s);
    location.hash = `#/jobs${params.toString() ? `?${params}` : ""}`;
  };
  q("#f-queue").addEventListener("change", apply);
  q("#f-status").addEventListener("change", apply);
  const row = (j) => h`<tr data-id="${j.id}"><td><a class="id" href="#/jobs/${j.id}">${shortId(j.id)}</a></td><td>${j.queue_name}</td><td class="st">${pill(j.status)}</td><td class="num">${j.priority}</td><td class="num">${j.retry_count}${j.max_retries === undefined ? "" : `/${j.max_retries}`}</td><td class="muted">${ago(j.created_at)}</td><td class="muted err">${(j.last_error || "").slice(0, 60)}</td></tr>`;
  const render = serial(async () => {
    if (!q.live()) return;
    const params = new URLSearchParams({ limit: "50" });
    if (f.queue) params.set("queue_name", f.queue);
    if (f.status) params.set("status", f.status);
    const jobs = (await apiOrNull(`/api/v1/jobs?${params}`)) || [];
    const table = q("#job-table");
    if (!table) return;
    table.innerHTML = jobs.length ? String(h`<table><thead><tr><th>Job</th><th>Queue</th><th>Status</th><th class="num">Priority</th><th class="num">Retries</th><th>Created</th><th>Last error</th></tr></thead><tbody>${jobs.map(row)}</tbody></table>`) : '<div class="empty-state">No jobs match.</div>';
    q("#job-count").textContent = jobs.length ? `${jobs.length} shown` : "";
  });
  await render();
  const off = onEvent((e) => {
    const d = e.data || {};
    if (f.queue && d.queue_name !== f.queue) return;
    const tr = d.job_id && q(`tr[data-id="${d.job_id}"]`);
    if (e.type === "JobStatusChange" && tr) {
      if (f.status && d.new_status !== f.status) return;
      tr.querySelector(".st").innerHTML = String(pill(d.new_status));
      tr.classList.remove("flash");
      void tr.offsetWidth;
      tr.classList.add("flash");
    } else if (e.type === "JobCreated" && !tr && (!f.status || f.status === (d.status || "pending"))) {
      let body = q("#job-table tbody");
      if (!body) {
        q("#job-table").innerHTML = '<table><thead><tr><th>Job</th><th>Queue</th><th>Status</th><th class="num">Priority</th><th class="num">Retries</th><th>Created</th><th>Last error</th></tr></thead><tbody></tbody></table>';
        body = q("#job-table tbody");
      }
      body.insertAdjacentHTML("afterbegin", String(row({ id: d.job_id, queue_name: d.queue_name, status: d.status || "pending", priority: d.priority, retry_count: 0, created_at: e.timestamp, last_error: "" })));
      body.firstElementChild.classList.add("flash");
    }
  });
  return off;
};

pages.job = async (id) => {
  const q = scoped();
  mount(h`${head("Job", raw(`<span class="id">${esc(id)}</span>`), h`<a class="btn" href="#/jobs">← Jobs</a>`)}<div id="job-body"><div class="empty-state">Loading…</div></div>`);
  const render = serial(async () => {
    if (!q.live()) return;
    let job;
    try {
      job = await api(`/api/v1/jobs/${encodeURIComponent(id)}`);
    } catch (err) {
      q("#job-body").innerHTML = String(h`<div class="card empty-state">${err.status === 404 ? "This job does not exist (or was deleted by retention)." : err.message}</div>`);
      return;
    }
    const history = (await apiOrNull(`/api/v1/jobs/${encodeURIComponent(id)}/history?limit=100`)) || [];
    const canRetry = ["failed", "deadletter", "cancelled"].includes(job.status);
    const canCancel = ["pending", "scheduled"].includes(job.status);
    const body = q("#job-body");
    if (!body) return;
    body.innerHTML = String(h`
      <div class="two-col">
        <div class="stack">
          <div class="card"><div class="card-head"><h2>Summary</h2><div class="actions">
            ${canRetry ? h`<button class="btn btn-primary btn-sm" id="job-retry">Retry</button>` : ""}
            ${canCancel ? h`<button class="btn btn-danger btn-sm" id="job-cancel">Cancel</button>` : ""}
          </div></div>
          <dl class="props">
            <dt>Status</dt><dd id="job-status">${pill(job.status)}</dd>
            <dt>Queue</dt><dd><a href="#/jobs?queue=${encodeURIComponent(job.queue_name)}">${job.queue_name}</a></dd>
            <dt>Attempts</dt><dd>${job.retry_count} of ${job.max_retries} retries used</dd>
            <dt>Priority</dt><dd>${job.priority}</dd>
            <dt>Worker</dt><dd class="id">${job.assigned_worker_id || "—"}</dd>
            <dt>Created</dt><dd>${stamp(job.created_at)}</dd>
            <dt>Started</dt><dd>${stamp(job.started_at)}</dd>
            <dt>Finished</dt><dd>${stamp(job.completed_at)}</dd>
            ${job.progress != null ? h`<dt>Progress</dt><dd><div class="progress"><div style="width:${Math.round(job.progress)}%"></div></div> ${job.progress_message || ""}</dd>` : ""}
            ${job.workflow_id ? h`<dt>Workflow</dt><dd><a href="#/workflows/${job.workflow_id}">${shortId(job.workflow_id)}</a></dd>` : ""}
            <dt>Last error</dt><dd class="${job.last_error ? "error" : "muted"}">${job.last_error || "none"}</dd>
          </dl></div>
          <div class="card"><h2>Payload</h2><pre class="json">${json(job.payload)}</pre></div>
          <div class="card"><h2>Result</h2><pre class="json">${json(job.result)}</pre></div>
        </div>
        <div class="card"><h2>Timeline</h2>${history.length ? h`<ol class="timeline">${history.map((e) => h`
          <li class="t-${e.event_type}"><div class="what">${e.event_type}</div>
          <div class="when">${stamp(e.created_at)}${e.worker_id ? h` · worker <span class="id">${e.worker_id}</span>` : ""}</div>
          ${e.details ? h`<div class="detail">${Object.entries(e.details).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(" · ")}</div>` : ""}</li>`)}</ol>` : h`<div class="muted">No history recorded.</div>`}</div>
      </div>`);
    q("#job-retry")?.addEventListener("click", async () => {
      try { await api(`/api/v1/jobs/${encodeURIComponent(id)}/retry`, { method: "POST", body: {} }); toast("Job re-queued"); } catch (err) { toast(err.message, true); }
      render();
    });
    q("#job-cancel")?.addEventListener("click", async () => {
      try { await api(`/api/v1/jobs/${encodeURIComponent(id)}`, { method: "DELETE" }); toast("Job cancelled"); } catch (err) { toast(err.message, true); }
      render();
    });
  });
  await render();
  const soon = debounce(render, 150);
  const off = onEvent((e) => { if (e.data?.job_id === id) soon(); });
  const poll = setInterval(render, 5000); // safety net: realtime delivery is best effort
  return () => { off(); clearInterval(poll); };
};

function setDlqBadge(count) {
  const badge = $("#dlq-badge");
  badge.hidden = !count;
  badge.textContent = count > 999 ? "999+" : String(count);
}

pages.dlq = async () => {
  const q = scoped();
  mount(h`${head("Dead-letter queue", "Jobs that used up their retries. Inspect, replay or purge them.", h`
      <input id="dlq-queue" type="search" placeholder="Queue (all)">
      <button class="btn" id="dlq-replay-selected" disabled>Replay selected</button>
      <button class="btn btn-primary" id="dlq-replay-all">Replay all</button>
      <button class="btn btn-danger" id="dlq-purge">Purge</button>`)}
    <div class="card"><div class="table-wrap" id="dlq-table"><div class="empty-state">Loading…</div></div></div>`);
  const queue = () => q("#dlq-queue").value.trim();
  const render = serial(async () => {
    if (!q.live()) return;
    const params = new URLSearchParams({ limit: "100" });
    if (queue()) params.set("queue_name", queue());
    const jobs = (await apiOrNull(`/api/v1/jobs/dlq?${params}`)) || [];
    const table = q("#dlq-table");
    if (!table) return;
    if (!queue()) setDlqBadge(jobs.length);
    table.innerHTML = jobs.length ? String(h`<table><thead><tr><th><input type="checkbox" id="dlq-all" aria-label="Select all"></th><th>Job</th><th>Queue</th><th class="num">Attempts</th><th>Failed</th><th>Last error</th><th></th></tr></thead><tbody>${jobs.map((j) => h`
      <tr data-id="${j.id}"><td><input type="checkbox" class="dlq-pick" value="${j.id}" aria-label="Select ${j.id}"></td>
      <td><a class="id" href="#/jobs/${j.id}">${shortId(j.id)}</a></td><td>${j.queue_name}</td><td class="num">${j.retry_count}</td>
      <td class="muted">${ago(j.completed_at || j.created_at)}</td><td class="error">${(j.last_error || "").slice(0, 80)}</td>
      <td class="num"><a class="btn btn-sm" href="#/jobs/${j.id}">Inspect</a> <button class="btn btn-sm btn-primary" data-replay="${j.id}">Replay</button></td></tr>`)}</tbody></table>`) : '<div class="empty-state">The dead-letter queue is empty. 🎉</div>';
    updateSelection();
  });
  const picked = () => q.all(".dlq-pick:checked").map((c) => c.value);
  const updateSelection = () => { q("#dlq-replay-selected").disabled = picked().length === 0; };
  const replay = async (body) => {
    try {
      const r = await api("/api/v1/jobs/dlq/retry", { method: "POST", body });
      toast(`Replayed ${r.retried_count} job${r.retried_count === 1 ? "" : "s"}`);
    } catch (err) { toast(err.message, true); }
    render();
  };
  q.root.addEventListener("change", (ev) => {
    if (ev.target.id === "dlq-all") q.all(".dlq-pick").forEach((c) => { c.checked = ev.target.checked; });
    if (ev.target.id === "dlq-queue") render();
    updateSelection();
  });
  q.root.addEventListener("click", (ev) => {
    const one = ev.target.closest("button[data-replay]");
    if (one) replay({ job_ids: [one.dataset.replay] });
  });
  q("#dlq-replay-selected").addEventListener("click", () => replay({ job_ids: picked() }));
  q("#dlq-replay-all").addEventListener("click", () => replay(queue() ? { queue_name: queue(), limit: 100 } : { limit: 100 }));
  q("#dlq-purge").addEventListener("click", async () => {
    const scope = queue() ? `of queue "${queue()}"` : "of every queue";
    if (!window.confirm(`Permanently delete the dead-lettered jobs ${scope}?`)) return;
    try {
      const r = await api("/api/v1/jobs/dlq/purge", { method: "POST", body: queue() ? { queue_name: queue(), confirm: true } : { confirm: true } });
      toast(`Purged ${r.purged_count} jobs`);
    } catch (err) { toast(err.message, true); }
    render();
  });
  await render();
  const soon = debounce(render, 300);
  return onEvent((e) => {
    if (e.type === "JobStatusChange" && (e.data.new_status === "deadletter" || e.data.old_status === "deadletter")) soon();
  });
};

pages.workers = async () => {
  const q = scoped();
  mount(h`${head("Workers", "Registered workers, their load and heartbeats.")}<div class="card"><div class="table-wrap" id="worker-table"><div class="empty-state">Loading…</div></div></div>`);
  const render = serial(async () => {
    if (!q.live()) return;
    const workers = (await apiOrNull("/api/v1/workers?limit=100")) || [];
    const table = q("#worker-table");
    if (!table) return;
    table.innerHTML = workers.length ? String(h`<table><thead><tr><th>Worker</th><th>Queue</th><th>Host</th><th>Status</th><th>Load</th><th>Last heartbeat</th></tr></thead><tbody>${workers.map((w) => h`
      <tr><td class="id">${w.id}</td><td>${w.queue_name}</td><td>${w.hostname}</td><td>${pill(w.status)}</td>
      <td><div class="progress" title="${w.current_jobs} of ${w.max_concurrency}"><div style="width:${Math.min(100, (100 * w.current_jobs) / Math.max(1, w.max_concurrency))}%"></div></div><span class="muted">${w.current_jobs}/${w.max_concurrency}</span></td>
      <td class="muted">${ago(w.last_heartbeat)}</td></tr>`)}</tbody></table>`) : '<div class="empty-state">No workers have registered yet.</div>';
  });
  await render();
  const soon = debounce(render, 500);
  const off = onEvent((e) => { if (e.type.startsWith("Worker")) soon(); });
  const tick = setInterval(render, 10000);
  return () => { off(); clearInterval(tick); };
};

pages.schedules = async () => {
  const q = scoped();
  mount(h`${head("Schedules", "Cron schedules and their next fire times.")}
    <div class="card" style="margin-bottom:16px"><div class="card-head"><h2>Preview a cron expression</h2></div>
      <div class="filters"><input id="cron" type="text" value="*/15 * * * *" class="mono" aria-label="Cron expression"><input id="tz" type="text" value="UTC" aria-label="Time zone"><button class="btn" id="preview">Preview</button></div>
      <div id="preview-out" class="chips" style="margin-top:10px"></div></div>
    <div class="card"><div class="table-wrap" id="schedule-table"><div class="empty-state">Loading…</div></div></div>`);
  const preview = async (cron, tz) => {
    const params = new URLSearchParams({ cron, timezone: tz || "UTC", count: "5" });
    try {
      const r = await api(`/api/v1/schedules/preview?${params}`);
      return r?.next_runs || [];
    } catch (err) {
      if (err.status === 404) return null;
      throw err;
    }
  };
  q("#preview").addEventListener("click", async () => {
    const out = q("#preview-out");
    try {
      const runs = await preview(q("#cron").value, q("#tz").value);
      out.innerHTML = runs === null ? '<span class="muted">Preview is not available on this server.</span>' : runs.map((r) => String(h`<span class="chip">${stamp(r)}</span>`)).join("");
    } catch (err) { out.innerHTML = String(h`<span class="error">${err.message}</span>`); }
  });
  let schedules;
  try {
    schedules = await api("/api/v1/schedules?limit=100");
  } catch (err) {
    q("#schedule-table").innerHTML = String(h`<div class="empty-state">${err.status === 404 ? "Schedules are not available on this server yet." : err.message}</div>`);
    return null;
  }
  const table = q("#schedule-table");
  table.innerHTML = schedules.length ? String(h`<table><thead><tr><th>Name</th><th>Cron</th><th>Queue</th><th>State</th><th>Next run</th><th>Upcoming</th><th class="num">Runs</th></tr></thead><tbody>${schedules.map((s) => h`
    <tr data-id="${s.id}"><td><b>${s.name}</b><div class="muted">${s.description || ""}</div></td><td class="mono">${s.cron_expression}<div class="muted">${s.timezone}</div></td><td>${s.queue_name}</td>
    <td>${pill(s.is_active ? "active" : "inactive")}</td><td>${s.next_run_at ? h`${until(s.next_run_at)}<div class="muted">${stamp(s.next_run_at)}</div>` : "—"}</td>
    <td class="upcoming muted">…</td><td class="num">${num(s.run_count)}</td></tr>`)}</tbody></table>`) : '<div class="empty-state">No schedules yet.</div>';
  for (const s of schedules) {
    preview(s.cron_expression, s.timezone).then((runs) => {
      const cell = q(`tr[data-id="${s.id}"] .upcoming`);
      if (cell) cell.innerHTML = runs === null ? "—" : runs.slice(1, 4).map((r) => String(h`<div>${stamp(r)}</div>`)).join("");
    }).catch(() => {});
  }
  return null;
};

const DAG_COLORS = {
  pending: ["#eef2ff", "#818cf8"], scheduled: ["#eef2ff", "#818cf8"], processing: ["#e0f2fe", "#38bdf8"],
  completed: ["#dcfce7", "#4ade80"], failed: ["#fee2e2", "#f87171"], deadletter: ["#fee2e2", "#ef4444"],
  cancelled: ["#f1f2f6", "#c3c8d8"],
};

pages.workflows = async () => {
  const q = scoped();
  mount(h`${head("Workflows", "Dependency graphs of jobs, and how far each has come.")}<div class="card"><div class="table-wrap" id="wf-table"><div class="empty-state">Loading…</div></div></div>`);
  let flows;
  try {
    flows = await api("/api/v1/workflows?limit=100");
  } catch (err) {
    q("#wf-table").innerHTML = String(h`<div class="empty-state">${err.status === 404 ? "Workflows are not available on this server yet." : err.status === 403 ? "Workflows are not part of this organization's plan." : err.message}</div>`);
    return null;
  }
  q("#wf-table").innerHTML = flows.length ? String(h`<table><thead><tr><th>Workflow</th><th>Status</th><th>Progress</th><th class="num">Jobs</th><th>Created</th></tr></thead><tbody>${flows.map((w) => h`
    <tr><td><a href="#/workflows/${w.id}"><b>${w.name}</b></a><div class="muted id">${shortId(w.id)}</div></td><td>${pill(w.status)}</td>
    <td><div class="progress"><div style="width:${Math.round(w.progress_percent || 0)}%"></div></div><span class="muted">${Math.round(w.progress_percent || 0)}%</span></td>
    <td class="num">${w.completed_jobs}/${w.total_jobs}${w.failed_jobs ? h` <span class="error">(${w.failed_jobs} failed)</span>` : ""}</td><td class="muted">${ago(w.created_at)}</td></tr>`)}</tbody></table>`) : '<div class="empty-state">No workflows yet.</div>';
  return null;
};

pages.workflow = async (id) => {
  const q = scoped();
  mount(h`${head("Workflow", raw(`<span class="id">${esc(id)}</span>`), h`<a class="btn" href="#/workflows">← Workflows</a>`)}<div id="wf-body"><div class="empty-state">Loading…</div></div>`);
  const render = serial(async () => {
    if (!q.live()) return;
    let wf;
    try {
      wf = await api(`/api/v1/workflows/${encodeURIComponent(id)}`);
    } catch (err) {
      q("#wf-body").innerHTML = String(h`<div class="card empty-state">${err.status === 404 ? "This workflow does not exist." : err.message}</div>`);
      return;
    }
    const body = q("#wf-body");
    if (!body) return;
    const p = wf.progress || {};
    body.innerHTML = String(h`
      <div class="grid kpis">
        <div class="card kpi"><div class="label">Status</div><div class="value">${pill(wf.status)}</div><div class="hint">${wf.name}</div></div>
        <div class="card kpi"><div class="label">Completed</div><div class="value">${num(p.completed)}<small>/ ${num(p.total)}</small></div></div>
        <div class="card kpi"><div class="label">Running</div><div class="value">${num(p.processing)}</div><div class="hint">${num(p.pending)} waiting</div></div>
        <div class="card kpi"><div class="label">Failed</div><div class="value">${num(p.failed)}</div></div>
      </div>
      <div class="card" style="margin-bottom:16px"><h2>Graph</h2><svg id="dag" class="dag" role="img" aria-label="Workflow graph"></svg></div>
      <div class="card"><h2>Steps</h2><table><thead><tr><th>Step</th><th>Queue</th><th>Status</th><th class="num">Attempt</th><th>Error</th></tr></thead><tbody>${wf.jobs.map((j) => h`
        <tr><td><a href="#/jobs/${j.id}"><b>${j.key || shortId(j.id)}</b></a></td><td>${j.queue}</td><td>${pill(j.status)}</td><td class="num">${j.attempt}</td><td class="error">${j.error?.message || ""}</td></tr>`)}</tbody></table></div>`);
    const nodes = wf.jobs.map((j) => ({ id: j.id, label: j.key || shortId(j.id), status: j.status, href: `#/jobs/${j.id}` }));
    const edges = (wf.dependencies || []).map((e) => ({ from: e.parent_job_id, to: e.child_job_id }));
    dagChart(q("#dag"), nodes, edges, DAG_COLORS);
  });
  await render();
  return onEvent(debounce(() => render(), 500));
};

// --- routing, sign-in --------------------------------------------------------------------------------------

async function route() {
  if (!apiKey) return;
  if (cleanup) {
    try { cleanup(); } catch (err) { console.error(err); }
    cleanup = null;
  }
  // a fresh <main> drops the previous page's listeners
  const old = $("#main");
  const fresh = old.cloneNode(false);
  old.replaceWith(fresh);
  const path = (location.hash.replace(/^#\/?/, "").split("?")[0] || "overview").split("/");
  let page = path[0];
  let arg;
  if (page === "jobs" && path[1]) { page = "job"; arg = decodeURIComponent(path[1]); }
  if (page === "workflows" && path[1]) { page = "workflow"; arg = decodeURIComponent(path[1]); }
  if (!pages[page]) page = "overview";
  const navPage = { job: "jobs", workflow: "workflows" }[page] || page;
  $$("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === navPage));
  document.title = `Spooled · ${navPage[0].toUpperCase()}${navPage.slice(1)}`;
  try {
    cleanup = (await pages[page](arg)) || null;
  } catch (err) {
    console.error(err);
    $("#main").innerHTML = String(h`<div class="card empty-state error">Could not load this page: ${err.message}</div>`);
  }
}

function showApp() {
  $("#login").hidden = true;
  $("#shell").hidden = false;
  const transport = sessionStorage.getItem(TRANSPORT_STORAGE) || "sse";
  $("#transport").value = transport;
  live.start(transport);
  if (!location.hash) location.hash = "#/overview";
  route();
}

function signOut(message) {
  live.stop();
  apiKey = null;
  sessionStorage.removeItem(KEY_STORAGE);
  $("#shell").hidden = true;
  $("#login").hidden = false;
  const error = $("#login-error");
  error.hidden = !message;
  error.textContent = message || "";
  $("#api-key").focus();
}

async function signIn(ev) {
  ev.preventDefault();
  const key = $("#api-key").value.trim();
  const error = $("#login-error");
  error.hidden = true;
  try {
    await api("/api/v1/jobs/stats", { key });
  } catch (err) {
    error.hidden = false;
    error.textContent = err.status === 401 ? "That API key was not accepted." : `Sign-in failed: ${err.message}`;
    return;
  }
  apiKey = key;
  sessionStorage.setItem(KEY_STORAGE, key);
  $("#api-key").value = "";
  showApp();
}

function init() {
  $("#login-form").addEventListener("submit", signIn);
  $("#logout").addEventListener("click", () => signOut());
  $("#transport").addEventListener("change", (ev) => {
    sessionStorage.setItem(TRANSPORT_STORAGE, ev.target.value);
    live.start(ev.target.value);
  });
  window.addEventListener("hashchange", route);
  if (apiKey) showApp();
  else signOut();
}

init();
