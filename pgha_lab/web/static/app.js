// pgha-lab dashboard: one SSE stream in, JSON POSTs out (with the token from the page's URL).
// Plain JS and SVG, no build step, nothing loaded from elsewhere.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const SVG = "http://www.w3.org/2000/svg";
const W = 210, H = 96, VW = 900;
const ROLE_LABEL = { leader: "Leader", sync_standby: "Sync Standby", quorum_standby: "Quorum Standby",
                     replica: "Replica", standby_leader: "Standby Leader", unknown: "unknown" };
const PALETTE = ["#1f6feb", "#8250df", "#bf8700", "#0a7ea4", "#bc4c00", "#6e7781", "#1a7f37", "#cf222e"];
const CHART_WINDOW_MS = 60000;
const DOWN_LABEL = { stopped: "powered off: no Patroni figures", paused: "frozen: no Patroni figures",
                     isolated: "cut off: no Patroni figures", missing: "no container" };

const page = {
  token: "", controls: false, catalogue: null, view: null, selected: null,
  events: [], points: [], tasks: [], refusals: [], layout: {}, colours: {}, probe: { running: false },
  firstRender: false, drillsRunning: new Set(),
};

// -- token: from ?token=… once, then kept for this tab only, and taken out of the address bar ------
function takeToken() {
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl) {
    sessionStorage.setItem("pgha-token", fromUrl);
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
  page.token = sessionStorage.getItem("pgha-token") || "";
}

async function post(path, body) {
  const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json", "X-PGHA-Token": page.token },
                                body: JSON.stringify(body || {}) });
  const text = await r.text();
  let doc;
  try { doc = JSON.parse(text); } catch (e) { doc = { error: text.trim() }; }
  return { ok: r.ok, status: r.status, doc };
}

async function checkAccess() {
  const badge = $("#access");
  if (!page.token) { setControls(false, "read-only (open the URL `pgha-lab dashboard` printed to act)"); return; }
  const r = await post("/api/session", {});
  setControls(r.ok, r.ok ? "controls enabled" : "read-only: " + (r.doc.error || r.status));
  badge.classList.toggle("ok", r.ok);
}

function setControls(on, text) {
  page.controls = on;
  $("#access").textContent = text;
  document.body.dataset.controls = on ? "on" : "off";
  for (const b of document.querySelectorAll("#controls button, #probe-panel button, #drills-panel button")) b.disabled = !on;
}

// -- the stream ---------------------------------------------------------------------------------
function connect() {
  const es = new EventSource("/api/stream");
  es.addEventListener("state", (e) => apply(JSON.parse(e.data)));
  es.onopen = () => { $("#stream").textContent = "live"; $("#stream").className = "badge ok"; };
  es.onerror = () => { $("#stream").textContent = "stream: reconnecting"; $("#stream").className = "badge bad"; };
}

function apply(msg) {
  if (msg.catalogue) {   // the first message of a connection carries everything: start afresh
    page.catalogue = msg.catalogue;
    page.events = []; page.points = [];
    $("#title").textContent = msg.title;
    document.title = `${msg.title} dashboard`;
    buildMap(); fillSelects();
  }
  page.view = msg.view;
  page.probe = msg.probe;
  // Newest first by the time each thing happened (a reading can see a node stop before the action
  // that stopped it has returned).
  page.events = msg.events.concat(page.events).sort((a, b) => b.at - a.at || b.seq - a.seq).slice(0, 300);
  page.points = page.points.concat(msg.points).slice(-900);
  const wasRunning = [...page.drillsRunning];
  page.tasks = msg.tasks;
  page.drillsRunning = new Set(msg.tasks.filter((t) => t.kind === "drill" && t.status === "running").map((t) => t.id));
  if (wasRunning.some((id) => !page.drillsRunning.has(id))) loadDrills();
  render();
}

// -- rendering -----------------------------------------------------------------------------------
function el(tag, attrs = {}, parent = null, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

function rowPositions(nodes, y) {
  return nodes.map((n, i) => [n.name, { x: (VW / nodes.length) * (i + 0.5) - W / 2, y }]);
}

function buildMap() {
  const svg = $("#map");
  svg.replaceChildren();
  const nodes = page.catalogue.nodes;
  const etcd = nodes.filter((n) => n.kind === "etcd"), db = nodes.filter((n) => n.kind === "dbnode"),
        ha = nodes.filter((n) => n.kind === "haproxy");
  page.layout = Object.fromEntries([...rowPositions(etcd, 30), ...rowPositions(db, 200), ...rowPositions(ha, 385)]);
  db.forEach((n, i) => { page.colours[n.name] = PALETTE[i % PALETTE.length]; });
  const defs = el("defs", {}, svg);
  for (const port of ["5432", "5433"]) {
    const m = el("marker", { id: `arrow-${port}`, viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7",
                             markerHeight: "7", orient: "auto-start-reverse" }, defs);
    el("path", { d: "M0,0 L10,5 L0,10 z", fill: port === "5432" ? "#1f6feb" : "#1a7f37" }, m);
  }
  el("rect", { class: "group", x: 8, y: 8, width: VW - 16, height: H + 44 }, svg);
  el("text", { class: "group-label", x: 18, y: 24, id: "dcs-label" }, svg, "DCS: etcd");
  const links = el("g", { id: "links" }, svg);
  for (const d of db) for (const e of etcd) {
    const a = page.layout[d.name], b = page.layout[e.name];
    el("line", { class: "link", x1: a.x + W / 2, y1: a.y, x2: b.x + W / 2, y2: b.y + H }, links);
  }
  el("g", { id: "routes" }, svg);
  for (const n of nodes) {
    const p = page.layout[n.name];
    const g = el("g", { class: "node", "data-node": n.name, "data-kind": n.kind, transform: `translate(${p.x},${p.y})` }, svg);
    el("rect", { class: "box", width: W, height: H }, g);
    el("text", { class: "name", x: 10, y: 22 }, g, n.name);
    el("text", { class: "small addr", x: W - 10, y: 22, "text-anchor": "end" }, g, n.address);
    el("text", { class: "l1", x: 10, y: 44 }, g, "");
    el("text", { class: "l2", x: 10, y: 64 }, g, "");
    el("text", { class: "l3 small", x: 10, y: 84 }, g, "");
    g.addEventListener("click", () => select(n.name));
    if (n.kind === "haproxy") {
      for (const [i, port] of ["5432", "5433"].entries()) {
        const pg = el("g", { class: "port", "data-port": port, transform: `translate(${i ? W - 70 : 10},-16)` }, g);
        el("rect", { width: 60, height: 24 }, pg);
        el("text", { x: 30, y: 17, "text-anchor": "middle" }, pg, port);
      }
    }
  }
}

function routePath(port, server, k) {
  const ha = page.layout[Object.keys(page.layout).find((n) => page.catalogue.nodes.find((x) => x.name === n).kind === "haproxy")];
  const dst = page.layout[server];
  const sx = ha.x + (port === "5432" ? 40 : W - 40), sy = ha.y - 16;
  const dx = dst.x + W / 2 + (port === "5432" ? -24 : 24) + k * 8, dy = dst.y + H + 4;
  return `M ${sx} ${sy} C ${sx} ${sy - 60}, ${dx} ${dy + 60}, ${dx} ${dy}`;
}

function renderRoutes(view) {
  const g = $("#routes");
  for (const port of ["5432", "5433"]) {
    const servers = (view && view.up && view.routes[port]) || [];
    const existing = [...g.querySelectorAll(`path[data-port="${port}"]`)];
    servers.forEach((server, k) => {
      // The same path element is re-aimed when routing moves, so the arrow moves rather than blinks.
      const path = existing[k] || el("path", { class: "route", "data-port": port, "marker-end": `url(#arrow-${port})` }, g);
      path.setAttribute("data-to", server);
      path.setAttribute("d", routePath(port, server, k));
    });
    existing.slice(servers.length).forEach((p) => p.remove());
  }
}

function renderNode(n, view) {
  const g = $(`#map g.node[data-node="${n.name}"]`);
  if (!g) return;
  const state = view.up ? n.state : (n.state === "running" ? "unknown" : n.state);
  g.dataset.state = state;
  g.dataset.role = n.kind === "dbnode" ? (n.patroni_role || "none") : n.kind;
  const [l1, l2, l3] = [$(".l1", g), $(".l2", g), $(".l3", g)];
  l1.textContent = state + (n.faults.length && !n.faults.includes(state) ? ` (${n.faults.join(", ")})` : "");
  l1.setAttribute("class", "l1 " + (state === "running" ? "" : ["isolated", "partitioned"].includes(state) ? "state-warn" : "state-bad"));
  if (n.kind === "dbnode") {
    // A node that is down has no Patroni figures to show: the server leaves them out (its member key and
    // last readings outlive it by up to ttl), and the line says why there are none.
    const role = ROLE_LABEL[n.patroni_role] || n.patroni_role;
    l2.textContent = n.patroni_role ? (n.patroni_state === "running" ? role : `${role} · ${n.patroni_state}`)
      : (DOWN_LABEL[state] || "not in Patroni's list");
    l2.setAttribute("class", "l2 role-" + (n.patroni_role || "none"));
    const lag = n.lag === null || n.lag === undefined ? "" : ` · lag ${n.lag}`;
    l3.textContent = n.timeline ? `TL ${n.timeline}${lag}` : "";
  } else if (n.kind === "etcd") {
    l2.textContent = n.etcd_error ? `etcd: ${n.etcd_error}` : (n.etcd_leader ? "★ etcd leader" : "follower");
    l2.setAttribute("class", "l2 " + (n.etcd_error ? "state-bad" : n.etcd_leader ? "role-leader" : ""));
    l3.textContent = "";
  } else {
    const r = view.routes || {};
    l2.textContent = `5432 → ${(r["5432"] || []).join(", ") || "nothing"}`;
    l3.textContent = `5433 → ${(r["5433"] || []).join(", ") || "nothing"}`;
  }
}

function render() {
  const v = page.view;
  const banner = $("#banner");
  if (!v) {   // the server has not read the lab yet: say so, and show what there is (events, tasks, probe)
    $("#health").textContent = "waiting for the first reading of the lab…";
    renderEvents(); renderTasks(); renderProbe();
    return;
  }
  if (!v.up) {
    banner.hidden = false;
    banner.replaceChildren();
    const msg = v.message;
    const m = msg.match(/`([^`]+)`/);
    banner.append(document.createTextNode(m ? msg.slice(0, m.index) : msg));
    if (m) { const c = document.createElement("code"); c.textContent = m[1]; banner.append(c, msg.slice(m.index + m[0].length)); }
  } else banner.hidden = true;
  const health = $("#health");
  // No leader is said first and plainly; the health reason is the badge's tooltip then.
  health.textContent = !v.up ? "lab down" : !v.writes_ok ? v.writes : v.healthy ? "healthy" : "unhealthy: " + v.health;
  health.title = v.up && !v.writes_ok ? "unhealthy: " + v.health : "";
  health.className = "badge " + (v.up && v.healthy ? "ok" : "bad");
  health.dataset.writes = v.up && v.writes_ok ? "taken" : "refused";
  if ($("#stream").classList.contains("ok")) $("#stream").textContent = `live · lab read in ${Math.round(v.read_s * 1000)} ms`;
  const map = $("#map");
  map.dataset.leader = v.leader || "";
  map.dataset.timeline = v.timeline ?? "";
  $("#dcs-label").textContent = `DCS: etcd (${v.etcd_health || "—"}) · leader key ${v.leader_key_read ? (v.leader_key || "(none)") : "unreadable"}` +
    (v.timeline ? ` · timeline ${v.timeline}` : "");
  for (const n of v.nodes) renderNode(n, v);
  renderRoutes(v);
  renderEvents(); renderTasks(); renderProbe();
  if (!page.firstRender && v.nodes.length) {
    page.firstRender = true;
    performance.mark("pgha-first-render");
    document.body.dataset.ready = "1";
  }
}

function fmtTime(epochS) {
  const d = new Date(epochS * 1000);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function renderEvents() {
  const ol = $("#events");
  ol.replaceChildren(...page.events.map((e) => {
    const li = document.createElement("li");
    li.dataset.kind = e.kind;
    const t = document.createElement("time"); t.textContent = fmtTime(e.at);
    const k = document.createElement("span"); k.className = "kind"; k.textContent = e.kind;
    li.append(t, k, document.createTextNode(e.text));
    return li;
  }));
}

function renderTasks() {
  const box = $("#tasks");
  const cards = [...page.refusals, ...page.tasks].sort((a, b) => b.started - a.started).slice(0, 6);
  box.replaceChildren(...cards.map((t) => {
    const div = document.createElement("div");
    div.className = "task" + (t.refused ? " refused" : "");
    div.dataset.status = t.refused ? "refused" : t.status;
    if (t.id) div.dataset.taskId = t.id;
    const add = (cls, text, tag = "div") => { if (!text) return; const x = document.createElement(tag); x.className = cls; x.textContent = text; div.append(x); };
    add("title", t.title);
    add("done", t.refused ? `Refused: ${t.error}` : t.done);
    add("expected", t.expected);
    if (t.lines && t.lines.length) add("lines", t.lines.slice(-8).join("\n"), "pre");
    add("verdict", t.verdict || (t.status === "running" && !t.refused ? "waiting for the outcome…" : ""));
    if (t.link) { const a = document.createElement("a"); a.href = t.link; a.target = "_blank"; a.textContent = "report"; a.className = "report"; div.append(a); }
    return div;
  }));
}

function renderProbe() {
  const p = page.probe;
  $("#probe-stats").textContent = p.running ? `${p.acks} acknowledged, ${p.failures} failed` +
    (p.last_server ? ` · last ack from ${p.last_server}` : "") + (p.last_outage_s !== null ? ` · last outage ${p.last_outage_s} s (last ack before it to first ack after)` : "")
    : "stopped: an insert through HAProxy's 5432 (TLS verified) every ~100 ms when started";
  $("#downtime").textContent = p.running && p.downtime_s !== null ? `writes failing for ${p.downtime_s.toFixed(1)} s (since the last ack)` : "";
  document.body.dataset.probe = p.running ? "running" : "stopped";
  drawChart();
}

function drawChart() {
  const c = $("#chart");
  const scale = window.devicePixelRatio || 1;
  const w = c.clientWidth || 900, h = c.clientHeight || 180;
  if (c.width !== w * scale) { c.width = w * scale; c.height = h * scale; }
  const ctx = c.getContext("2d");
  ctx.setTransform(scale, 0, 0, scale, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const now = Date.now(), t0 = now - CHART_WINDOW_MS;
  const pts = page.points.filter((p) => p.t >= t0);
  const oks = pts.filter((p) => p.ok).map((p) => p.ms).sort((a, b) => a - b);
  const top = Math.min(2000, Math.max(100, (oks[Math.floor(oks.length * 0.98)] || 100) * 1.3));
  const pad = 30, x = (t) => pad + ((t - t0) / CHART_WINDOW_MS) * (w - pad - 5), y = (ms) => h - 14 - (Math.min(ms, top) / top) * (h - 34);
  ctx.strokeStyle = "#eef1f4"; ctx.fillStyle = "#6b7482"; ctx.font = "10px system-ui";
  for (const f of [0, 0.5, 1]) { const yy = y(top * f); ctx.beginPath(); ctx.moveTo(pad, yy); ctx.lineTo(w, yy); ctx.stroke(); ctx.fillText(`${Math.round(top * f)}`, 2, yy + 3); }
  ctx.fillText("ms", 2, 10); ctx.fillText("-60 s", pad, h - 2); ctx.fillText("now", w - 22, h - 2);
  for (const p of pts) {
    if (p.ok) { ctx.fillStyle = page.colours[p.server] || "#57606a"; ctx.fillRect(x(p.t) - 1.5, y(p.ms) - 1.5, 3, 3); }
    else { ctx.fillStyle = "#cf222e"; ctx.fillRect(x(p.t) - 1, 6, 2, h - 20); }
  }
  const legend = $("#legend");
  legend.replaceChildren(...Object.entries(page.colours).map(([name, colour]) => {
    const s = document.createElement("span"); const i = document.createElement("i"); i.style.background = colour;
    s.append(i, `acknowledged by ${name}`); return s;
  }), (() => { const s = document.createElement("span"); const i = document.createElement("i"); i.style.background = "#cf222e"; s.append(i, "failed"); return s; })());
}

// -- controls ------------------------------------------------------------------------------------
function fillSelects() {
  const db = page.catalogue.nodes.filter((n) => n.kind === "dbnode");
  const to = $("#role-to");
  to.replaceChildren(new Option("(Patroni's choice)", ""), ...db.map((n) => new Option(n.name, n.name)));
  const sc = $("#scenario");
  sc.replaceChildren(...Object.entries(page.catalogue.scenarios).map(([k, v]) => new Option(`${k}: ${v}`, k)));
  if (page.selected) select(page.selected);
}

function select(name) {
  page.selected = name;
  for (const g of document.querySelectorAll("#map g.node")) g.classList.toggle("selected", g.dataset.node === name);
  const node = page.catalogue.nodes.find((n) => n.name === name);
  const box = $("#node-actions");
  box.replaceChildren();
  const h = document.createElement("div"); h.className = "title"; h.innerHTML = "<b></b> <span class='hint'></span>";
  h.querySelector("b").textContent = name; h.querySelector("span").textContent = `${node.kind} ${node.address}`;
  box.append(h);
  const row = (buttons) => { const r = document.createElement("div"); r.className = "row"; r.append(...buttons); box.append(r); return r; };
  // The buttons are the fault catalogue's (chaos/catalogue.py): each fault says its rows, labels and inputs.
  const rows = new Map();
  for (const [action, f] of Object.entries(page.catalogue.faults || {})) {
    for (const b of f.buttons) {
      if (b.kinds.length && !b.kinds.includes(node.kind)) continue;
      if (!rows.has(b.row)) rows.set(b.row, []);
      rows.get(b.row).push(...faultButton(action, b, name));
    }
  }
  for (const r of [...rows.keys()].sort((a, b) => a - b)) row(rows.get(r));
  setControls(page.controls, $("#access").textContent);
}

function faultButton(action, b, name) {
  const out = [];
  let input = null;
  if (b.option === "peers") {   // whom to cut the node off from: etcd, or one other node
    input = document.createElement("select");
    input.append(new Option("etcd", "etcd"), ...page.catalogue.nodes.filter((n) => n.name !== name).map((n) => new Option(n.name, n.name)));
  } else if (b.option) {
    input = document.createElement("input"); input.value = b.value; input.size = Math.max(4, b.value.length);
  }
  const btn = document.createElement("button"); btn.textContent = b.label;
  btn.dataset.action = b.tag || action + (b.clear ? "-clear" : "");
  if (b.danger) btn.className = "danger";
  btn.addEventListener("click", () => {
    const body = { action, target: name };
    if (b.clear) body.clear = true;
    if (input) body[b.option] = input.value;
    act(`chaos ${b.label} ${name}`, "/api/chaos", body);
  });
  out.push(btn);
  if (input) {
    if (b.input_id) input.id = b.input_id;
    const lbl = document.createElement("label"); lbl.append(`${b.input_label} `, input);
    out.push(lbl);
  }
  return out;
}

async function act(title, path, body) {
  const started = Date.now() / 1000;
  const r = await post(path, body);
  if (!r.ok) {
    page.refusals.push({ refused: true, title, error: r.doc.error || `HTTP ${r.status}`, started });
    page.refusals = page.refusals.slice(-4);
    renderTasks();
  }
  return r;
}

function wire() {
  $("[data-global='heal-all']").addEventListener("click", () => act("heal-all", "/api/chaos", { action: "heal-all" }));
  for (const b of document.querySelectorAll("[data-role-change]")) {
    b.addEventListener("click", () => act(b.dataset.roleChange, "/api/role", { kind: b.dataset.roleChange, to: $("#role-to").value }));
  }
  $("#probe-start").addEventListener("click", () => act("write probe start", "/api/probe", { run: true }));
  $("#probe-stop").addEventListener("click", () => act("write probe stop", "/api/probe", { run: false }));
  $("#drill-run").addEventListener("click", () => act(`drill ${$("#scenario").value}`, "/api/drill", { scenario: $("#scenario").value }));
}

async function loadDrills() {
  const r = await fetch("/api/drills");
  if (!r.ok) return;
  const rows = await r.json();
  const fig = (f, k) => (f && f[k] !== undefined && f[k] !== null ? String(f[k]) : "—");
  $("#drills tbody").replaceChildren(...rows.map((d) => {
    const tr = document.createElement("tr");
    const cell = (content) => { const td = document.createElement("td"); if (typeof content === "string") td.textContent = content; else if (content) td.append(content); tr.append(td); };
    const a = document.createElement("a"); a.href = d.report; a.target = "_blank"; a.textContent = d.name;
    cell(d.report ? a : d.name); cell(d.scenario);
    for (const k of ["write_downtime_s", "lost_writes", "non_leader_acks", "split_brain_intervals", "new_leader_s"]) cell(fig(d.figures, k));
    cell((d.problems || []).join("; ") || "none");
    if (d.timeline) { const l = document.createElement("a"); l.href = d.timeline; l.target = "_blank"; const img = document.createElement("img"); img.src = d.timeline; img.alt = "timeline"; l.append(img); cell(l); } else cell("");
    return tr;
  }));
}

takeToken();
wire();
setControls(false, "read-only");
checkAccess();
connect();
loadDrills();
setInterval(drawChart, 500);   // keep the chart scrolling between ticks
