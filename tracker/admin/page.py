"""The status page at / on the admin listener: the figures at a glance, requests per
door, the instances sharing swarms (--redis), the busiest swarms, the database and
access mode, and one chart per series (peers; announces per minute) with time and
value axes. Drawn in the browser with plain SVG from /api/status, /api/swarms and
/api/totals (no build step, no external assets), refreshed every few seconds."""
from __future__ import annotations

import html

from twisted.web.resource import Resource

from tracker import __version__

REFRESH_S = 10

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tracker status</title>
<style>
 body { font: 15px system-ui, sans-serif; margin: 2em; color: #222; max-width: 980px; }
 h1 small { font-size: .5em; color: #666; font-weight: normal; }
 h2 { font-size: 1.1em; margin: 1.4em 0 .4em; }
 .figures { display: flex; gap: 1em; flex-wrap: wrap; }
 .figure { border: 1px solid #ddd; border-radius: 6px; padding: .5em .9em; min-width: 6.5em; }
 .figure b { display: block; font-size: 1.5em; }
 table { border-collapse: collapse; }
 th, td { padding: .2em .8em; border-bottom: 1px solid #eee; text-align: right; }
 th:first-child, td:first-child, td.text { text-align: left; }
 svg { border: 1px solid #ddd; display: block; }
 svg .axis { stroke: #888; } svg .grid { stroke: #eee; } svg text { font-size: 11px; fill: #555; }
 path.peers { stroke: #1f77b4; } path.announces { stroke: #d62728; }
 #error { color: #b00; } .problem { color: #b00; font-weight: bold; }
 .columns { display: flex; gap: 3em; flex-wrap: wrap; }
</style></head>
<body>
<h1>Tracker status <small>cdn-tracker @VERSION@ &middot; updated <span id="updated">never</span></small></h1>
<div class="figures" id="figures"></div>
<div class="columns">
 <div><h2>Requests per door</h2><table id="doors"></table></div>
 <div><h2>Database</h2><table id="database"></table></div>
</div>
<div id="cluster" hidden><h2>Instances sharing swarms <small id="cluster-redis"></small></h2>
<table id="instances"></table></div>
<h2>Busiest swarms</h2><table id="swarms"></table>
<h2>Peers</h2>
<svg id="chart-peers" width="900" height="220" viewBox="0 0 900 220" data-points="0"></svg>
<h2>Announces per minute</h2>
<svg id="chart-announces" width="900" height="220" viewBox="0 0 900 220" data-points="0"></svg>
<p><a href="metrics">metrics</a> &middot; <a href="api/status">status JSON</a></p>
<p id="error"></p>
<script>
const token = new URLSearchParams(location.search).get("token");
const opts = token ? {headers: {"Authorization": "Bearer " + token}} : {};
const SVG = "http://www.w3.org/2000/svg";
async function getJSON(path) {
  const response = await fetch(path, opts);
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}
function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text; if (cls) td.className = cls; row.appendChild(td);
}
function fillTable(id, head, rows) {
  const table = document.getElementById(id); table.replaceChildren();
  const tr = table.createTHead().insertRow();
  for (const h of head) { const th = document.createElement("th"); th.textContent = h; tr.appendChild(th); }
  const body = table.createTBody();
  if (!rows.length) { const r = body.insertRow(); cell(r, "none yet", "text"); }
  for (const values of rows) {
    const r = body.insertRow();
    values.forEach((v, i) => cell(r, v, i === 0 || typeof v === "string" && isNaN(v) ? "text" : ""));
  }
}
function figure(label, value, cls) {
  const d = document.createElement("div"); d.className = "figure";
  d.innerHTML = "<b></b><span></span>"; d.querySelector("b").textContent = value;
  d.querySelector("span").textContent = label; if (cls) d.classList.add(cls);
  return d;
}
function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m";
}
function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const f of [1, 2, 2.5, 5, 10]) if (f * p >= v) return f * p;
}
function add(svg, name, attrs, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  svg.appendChild(e); return e;
}
function clock(minute) {
  const t = new Date(minute * 60000);
  return String(t.getHours()).padStart(2, "0") + ":" + String(t.getMinutes()).padStart(2, "0");
}
// One series, its own scale: value axis on the left, time axis below (local time).
function chart(id, series, key) {
  const svg = document.getElementById(id); svg.replaceChildren();
  const L = 60, R = 890, T = 10, B = 190;
  svg.setAttribute("data-points", String(series.length));
  if (!series.length) { add(svg, "text", {x: L, y: 100}, "no history yet"); return; }
  const max = niceMax(Math.max(...series.map(p => p[key])));
  const first = series[0].minute, last = series[series.length - 1].minute;
  const span = Math.max(1, last - first);
  const x = m => L + (m - first) * (R - L) / span, y = v => B - v * (B - T) / max;
  for (let i = 0; i <= 4; i++) {
    const v = max * i / 4, yy = y(v);
    add(svg, "line", {x1: L, x2: R, y1: yy, y2: yy, class: i ? "grid" : "axis"});
    add(svg, "text", {x: L - 6, y: yy + 4, "text-anchor": "end", class: "tick value"},
        Number.isInteger(v) ? String(v) : v.toFixed(1));
  }
  add(svg, "line", {x1: L, x2: L, y1: T, y2: B, class: "axis"});
  for (let i = 0; i <= 5; i++) {
    const m = Math.round(first + span * i / 5), xx = x(m);
    add(svg, "line", {x1: xx, x2: xx, y1: B, y2: B + 4, class: "axis"});
    const anchor = i === 0 ? "start" : i === 5 ? "end" : "middle";  // the ends stay inside
    add(svg, "text", {x: xx, y: B + 17, "text-anchor": anchor, class: "tick time"}, clock(m));
  }
  const d = series.map((p, i) => (i ? "L" : "M") + x(p.minute).toFixed(1) + " " + y(p[key]).toFixed(1));
  add(svg, "path", {d: d.join(" "), class: key, fill: "none", "stroke-width": "2"});
}
// --redis: this instance, its Redis, and every instance's heartbeat and lag.
function showCluster(c) {
  document.getElementById("cluster").hidden = !c;
  if (!c) return;
  const redis = document.getElementById("cluster-redis");
  redis.textContent = "this is " + c.instance + ", via " + c.redis + ": " +
      (c.redis_up ? "up, lag " + c.lag_s.toFixed(3) + " s" : "REDIS UNREACHABLE") +
      ", outbox " + c.outbox;
  redis.className = c.redis_up ? "" : "problem";
  fillTable("instances", ["instance", "last heartbeat", "peers", "replication lag"],
            Object.entries(c.instances || {}).map(([name, b]) => [name,
                b.heartbeat_age_s.toFixed(1) + " s ago", b.peers === null ? "" : b.peers,
                b.lag_s === null || b.lag_s === undefined ? "" : Number(b.lag_s).toFixed(3) + " s"]));
}
async function refresh() {
  try {
    const status = await getJSON("api/status");
    const box = document.getElementById("figures"); box.replaceChildren();
    const total = o => Object.values(o || {}).reduce((a, b) => a + b, 0);
    for (const [label, value] of [["swarms", status.swarms], ["peers", status.peers],
        ["seeders", status.seeders], ["leechers", status.leechers],
        ["announces", total(status.announces)], ["scrapes", total(status.scrapes)],
        ["nodes", status.line ? status.line.connected_nodes : 0],
        ["access mode", status.access_mode], ["uptime", duration(status.uptime_s)]])
      box.appendChild(figure(label, value));
    const doors = [...new Set([...Object.keys(status.announces || {}), ...Object.keys(status.scrapes || {})])].sort();
    fillTable("doors", ["door", "announces", "scrapes"],
              doors.map(d => [d, (status.announces || {})[d] || 0, (status.scrapes || {})[d] || 0]));
    const p = status.persistence;
    fillTable("database", ["", ""], p ? [["file", p.path], ["backlog", p.backlog], ["flushes", p.flushes],
        ["last flush", (p.last_flush_s * 1000).toFixed(1) + " ms"], ["failed flushes", p.failures],
        ["state", p.problem || "writing"]] : [["file", "none (--db off)"]]);
    if (p && p.problem) document.querySelector("#database tbody tr:last-child td:last-child").className = "problem";
    showCluster(status.cluster);
    const top = (await getJSON("api/swarms?sort=peers&order=desc&limit=5")).swarms;
    fillTable("swarms", ["info hash", "name", "seeders", "leechers", "completed"],
              top.map(s => [s.info_hash.slice(0, 16) + "\\u2026", s.name || "", s.seeders, s.leechers, s.completed]));
    const series = (await getJSON("api/totals?minutes=360")).series;
    chart("chart-peers", series, "peers");
    chart("chart-announces", series, "announces");
    document.getElementById("updated").textContent = new Date().toLocaleTimeString();
    document.getElementById("error").textContent = "";
  } catch (e) { document.getElementById("error").textContent = "cannot reach the tracker: " + e; }
}
refresh(); setInterval(refresh, @REFRESH_MS@);
</script>
</body></html>
"""


def render_page() -> bytes:
    return (PAGE.replace("@VERSION@", html.escape(__version__))
            .replace("@REFRESH_MS@", str(REFRESH_S * 1000)).encode("utf-8"))


class StatusPage(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.body = render_page()

    def render_GET(self, request) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return self.body
