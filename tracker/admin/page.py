"""The status page at / on the admin listener: the figures at a glance and a
chart of peers and announces per minute, drawn in the browser with plain SVG
from /api/status and /api/totals (no build step, no external assets)."""
from __future__ import annotations

from twisted.web.resource import Resource

PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tracker status</title>
<style>
 body { font: 15px system-ui, sans-serif; margin: 2em; color: #222; }
 .figures { display: flex; gap: 1.5em; flex-wrap: wrap; }
 .figure { border: 1px solid #ddd; border-radius: 6px; padding: .6em 1em; min-width: 7em; }
 .figure b { display: block; font-size: 1.6em; }
 svg { border: 1px solid #ddd; margin-top: 1em; }
 .peers { stroke: #1f77b4; } .announces { stroke: #d62728; }
 #error { color: #b00; }
</style></head>
<body>
<h1>Tracker status</h1>
<div class="figures" id="figures"></div>
<h2>Peers and announces per minute</h2>
<svg id="chart" width="900" height="300" viewBox="0 0 900 300" data-points="0"></svg>
<p><span style="color:#1f77b4">&#9632; peers</span> &nbsp;
   <span style="color:#d62728">&#9632; announces per minute</span> &nbsp;
   <a href="metrics">metrics</a> &middot; <a href="api/status">status JSON</a></p>
<p id="error"></p>
<script>
const token = new URLSearchParams(location.search).get("token");
const opts = token ? {headers: {"Authorization": "Bearer " + token}} : {};
function figure(label, value) {
  const d = document.createElement("div"); d.className = "figure";
  d.innerHTML = "<b></b><span></span>";
  d.querySelector("b").textContent = value; d.querySelector("span").textContent = label;
  return d;
}
function line(svg, points, key, max, cls) {
  const w = 880, h = 270, n = points.length;
  const xy = points.map((p, i) => [10 + (n > 1 ? i * w / (n - 1) : w / 2),
                                    290 - (max ? p[key] * h / max : 0)]);
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", xy.map((c, i) => (i ? "L" : "M") + c[0].toFixed(1) + " " + c[1].toFixed(1)).join(" "));
  path.setAttribute("class", cls); path.setAttribute("fill", "none"); path.setAttribute("stroke-width", "2");
  svg.appendChild(path);
}
async function refresh() {
  try {
    const status = await (await fetch("api/status", opts)).json();
    const box = document.getElementById("figures"); box.replaceChildren();
    for (const [label, value] of [["swarms", status.swarms], ["peers", status.peers],
        ["seeders", status.seeders], ["leechers", status.leechers],
        ["announces", Object.values(status.announces).reduce((a, b) => a + b, 0)],
        ["nodes", status.line ? status.line.connected_nodes : 0],
        ["uptime (s)", Math.round(status.uptime_s)]]) box.appendChild(figure(label, value));
    const series = (await (await fetch("api/totals?minutes=360", opts)).json()).series;
    const svg = document.getElementById("chart"); svg.replaceChildren();
    const max = Math.max(1, ...series.map(p => Math.max(p.peers, p.announces)));
    if (series.length) { line(svg, series, "peers", max, "peers"); line(svg, series, "announces", max, "announces"); }
    const label = document.createElementNS("http://www.w3.org/2000/svg", "text");
    label.setAttribute("x", "14"); label.setAttribute("y", "16"); label.setAttribute("font-size", "12");
    label.textContent = series.length ? "top: " + max + " - last " + series.length + " minutes" : "no history yet";
    svg.appendChild(label);
    svg.setAttribute("data-points", String(series.length));
    document.getElementById("error").textContent = "";
  } catch (e) { document.getElementById("error").textContent = "cannot reach the tracker: " + e; }
}
refresh(); setInterval(refresh, 10000);
</script>
</body></html>
"""


class StatusPage(Resource):
    isLeaf = True

    def render_GET(self, request) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return PAGE
