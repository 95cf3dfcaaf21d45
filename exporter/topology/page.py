"""The /topology page: HTML around the bands' SVG, its own script and stylesheet allowed by hash
in a strict Content-Security-Policy, rendered once per snapshot and served as bytes."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Callable

from exporter import __version__
from exporter.metrics import Exposition
from exporter.snapshot import Snapshot
from exporter.topology.layout import COL_X, WIDTH, esc
from exporter.topology.model import Band, Topology, build, collector_warnings, when
from exporter.topology.svg import COLUMN_TITLES, STYLE, band_svg, render_svg

_PAGE_STYLE = (
    STYLE
    + """
body{font:14px sans-serif;margin:16px;color:#1d2733}
header p{margin:4px 0}
.failed{background:#fde8ea;border:2px solid #b00020;padding:6px 10px;margin:6px 0}
.problems li{color:#b00020}
details{border-top:1px solid #c9d3de;padding:6px 0}
details>summary{cursor:pointer;font-weight:bold}
summary .sub{font-weight:normal;color:#5a6b7d}
summary .bad{color:#b00020}
.scroll{overflow-x:auto}
#search{font-size:14px;padding:3px 6px;width:22em}
[hidden]{display:none !important}
"""
)

# Search: hide the rows that do not match and stack the rest again; open the bands that match.
_SCRIPT = """
(function(){
var q=document.getElementById('search'),bands=document.querySelectorAll('details.band');
function has(text,terms){for(var i=0;i<terms.length;i++){if(text.indexOf(terms[i])>=0)return true;}
 return false;}
function stack(svg,sel,terms){var g=svg.querySelector(sel),y=0,last=null,n=0;
 if(!g)return [0,null,0];
 for(var r=g.firstChild;r;r=r.nextSibling){
  var ok=!terms.length||has(r.getAttribute('data-s'),terms);
  if(ok){r.removeAttribute('display');r.setAttribute('transform','translate(0,'+y+')');
   if(r.hasAttribute('data-b'))last=y;
   y+=+r.getAttribute('data-h');n++;}else{r.setAttribute('display','none');}}
 return [y,last,n];}
function bus(svg,name,last){var b=svg.querySelector('line[data-bus="'+name+'"]'),
 s=svg.querySelector('line[data-stub="'+name+'"]');if(!b)return;
 if(last===null){b.setAttribute('display','none');if(s)s.setAttribute('display','none');}
 else{b.removeAttribute('display');if(s)s.removeAttribute('display');b.setAttribute('y2',last+15);}}
function run(){var terms=q.value.toLowerCase().split(/\\s+/).filter(Boolean);
 for(var i=0;i<bands.length;i++){var d=bands[i],svg=d.querySelector('svg.band');
  var whole=terms.length&&has(d.querySelector('summary').textContent.toLowerCase(),terms);
  var key=whole?[]:terms,a=stack(svg,'g.rows',key),b=stack(svg,'g.exits',key);
  bus(svg,'rows',a[1]);bus(svg,'exits',b[1]);
  var h=Math.max(a[0],b[0],+svg.getAttribute('data-hub'),22);svg.setAttribute('height',h);
  svg.setAttribute('viewBox','0 0 '+svg.getAttribute('width')+' '+h);
  var hit=!terms.length||whole||a[2]+b[2]>0;d.hidden=!hit;if(terms.length&&hit)d.open=true;}}
q.addEventListener('input',run);
document.getElementById('open').addEventListener('click',function(){
 for(var i=0;i<bands.length;i++)bands[i].open=true;});
document.getElementById('close').addEventListener('click',function(){
 for(var i=0;i<bands.length;i++)bands[i].open=false;});
var h=decodeURIComponent(location.hash.slice(1));if(h.indexOf('q=')===0){q.value=h.slice(2);run();}
})();
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# Only the page's own stylesheet and script, by hash: no other script, style, font, image or
# connection, so a name that slipped through as markup would still run nothing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; "
    f"style-src {_sha256(_PAGE_STYLE)}; "
    f"script-src {_sha256(_SCRIPT)}; "
    "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _open_by_default(topology: Topology, band: Band) -> bool:
    if topology.containers <= 60:
        return True
    return band.broken > 0 or len(band.rows) <= 30


def render_page(topology: Topology, telemetry_path: str = "/metrics") -> bytes:
    """The /topology page: a small HTML page around one server-side SVG per band."""
    warnings = "".join(f'<p class="failed">{esc(w)}</p>' for w in collector_warnings(topology))
    problems = "".join(
        f"<li>{esc(p.band)}: <b>{esc(p.what)}</b>: {esc(p.reason)}</li>"
        for p in topology.problems[:200]
    )
    if len(topology.problems) > 200:
        problems += f"<li>… and {len(topology.problems) - 200} more</li>"
    head = (
        f'<svg class="columns" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="18">'
        + "".join(
            f'<text class="column" x="{COL_X[c]}" y="13">{t}</text>'
            for c, t in enumerate(COLUMN_TITLES)
        )
        + "</svg>"
    )
    bands = []
    for i, band in enumerate(topology.bands):
        svg, _ = band_svg(band)
        bad = f' <span class="bad">{band.broken} broken</span>' if band.broken else ""
        rows = sum(1 for r in band.rows)
        is_open = " open" if _open_by_default(topology, band) else ""
        bands.append(
            f'<details class="band" id="band-{i}"{is_open}>'
            f'<summary>{esc(band.title)} <span class="sub">{esc(band.subtitle)}; '
            f"{rows} rows</span>{bad}</summary>"
            f'<div class="scroll">{svg}</div></details>'
        )
    path = esc(telemetry_path)
    stopped = f", {topology.not_running} not running (not drawn)" if topology.not_running else ""
    broken = f"<h2>Broken ({len(topology.problems)})</h2>"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Topology of {esc(topology.host)}: Docker Host Exporter</title>
<link rel="icon" href="data:,">
<style>{_PAGE_STYLE}</style></head>
<body>
<header>
<h1>Topology of {esc(topology.host)}</h1>
<p>Snapshot of {esc(when(topology.taken_at))} (page rendered {esc(when(topology.rendered_at))}),
{topology.containers} running containers{stopped}.
Drawn from the exporter's latest sample: this page never reads the host.
<a href="{path}">Metrics</a> · <a href="/">Home</a></p>
{warnings}
<p>Left to right: containers (image, host PID of PID 1, namespaces shared with the host) →
their interfaces → host veths (bridge port state) → bridges → Docker networks → the way off
the host (MASQUERADE per subnet, DNAT per published port). <b class="why">Red</b>: broken,
with the reason (hover for the full text); amber: shares a namespace with the host; dashed:
a shared namespace, or no veth.</p>
<p><input id="search" type="search" aria-label="search"
 placeholder="search: names, veths, addresses, ports (any of several words)">
<button id="open" type="button">expand all</button>
<button id="close" type="button">collapse all</button></p>
</header>
<section>{broken}<ul class="problems">{problems or "<li>nothing</li>"}</ul></section>
<div class="scroll">{head}</div>
{"".join(bands) or "<p>Nothing sampled yet.</p>"}
<footer><p>docker-host-exporter {esc(__version__)}</p></footer>
<script>{_SCRIPT}</script>
</body></html>
"""
    return page.encode()


# ---------------------------------------------------------------------------------------------
# Served once per snapshot


class TopologyPage:
    """The page of the latest snapshot. Rendered by the first request after a snapshot is
    published (under a lock: concurrent requests wait for that one rendering), then every
    request serves the same bytes until the next snapshot: a page view costs what a scrape
    costs, and never reads the host."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        host: str,
        telemetry_path: str = "/metrics",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._snapshot = snapshot
        self._host = host
        self._telemetry_path = telemetry_path
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[Snapshot, Exposition] | None = None

    def current(self) -> Exposition:
        snapshot = self._snapshot()
        cached = self._cached
        if cached is not None and cached[0] is snapshot:
            return cached[1]
        with self._lock:
            cached = self._cached
            if cached is not None and cached[0] is snapshot:
                return cached[1]
            page = Exposition(
                render_page(build(snapshot, self._host, self._clock()), self._telemetry_path)
            )
            self._cached = (snapshot, page)
            return page


def topology_svg(snapshot: Snapshot, host: str, now: float | None = None) -> str:
    return render_svg(build(snapshot, host, time.time() if now is None else now))
