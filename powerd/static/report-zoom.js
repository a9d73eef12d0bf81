// The report's zoomable traces (powerd/report/zoom.py embeds this file in the HTML report):
// a uPlot chart per channel from the page's JSON data block; zooming picks the finest embedded
// min/max level that gives at most __PER_PX__ columns per pixel, down to the raw samples.
// Drag zooms, the wheel zooms around the pointer, Shift+wheel pans, double-click: whole run.
// window.powerdReport holds the charts and the level shown, for people and the browser tests.
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("powerd-traces").textContent);
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
  const box = document.getElementById("zoomchart"), info = box.querySelector(".zinfo");
  const Z = (window.powerdReport = { charts: {}, level: {}, range: null });
  const lower = (a, x) => { let lo = 0, hi = a.length; while (lo < hi) { const m = (lo + hi) >> 1; if (a[m] < x) lo = m + 1; else hi = m; } return lo; };
  function pick(levels, x0, x1, px) {
    for (let i = levels.length - 1; i >= 0; i--) {       // finest first
      const L = levels[i], n = lower(L.t, x1) - lower(L.t, x0);
      if (n <= px * __PER_PX__ || i === 0) return i;
    }
    return 0;
  }
  function view(cid, x0, x1) {
    const u = Z.charts[cid], levels = D.channels[cid];
    const i = pick(levels, x0, x1, u.bbox.width / devicePixelRatio), L = levels[i];
    const a = Math.max(0, lower(L.t, x0) - 1), b = Math.min(L.t.length, lower(L.t, x1) + 1);
    const lo = L.raw ? L.v : L.lo, hi = L.raw ? L.v : L.hi;
    Z.level[cid] = { index: i, raw: !!L.raw, points: b - a };
    u.setData([L.t.slice(a, b), lo.slice(a, b), hi.slice(a, b)], false);
    u.setScale("x", { min: x0, max: x1 });
  }
  let syncing = false;
  function zoom(x0, x1) {
    if (syncing) return;
    syncing = true;
    Z.range = [x0, x1];
    for (const cid of Object.keys(Z.charts)) view(cid, x0, x1);
    syncing = false;
    const full = x0 <= D.x0 && x1 >= D.x1;
    const lv = Object.values(Z.level);
    const T = D.text, span = (x1 - x0).toPrecision(3);
    info.textContent = full ? T.whole : (lv.some((l) => l.raw) ? T.raw : T.columns).replace("{span}", span);
  }
  Z.zoom = zoom;
  const shade = { hooks: { drawAxes: [(u) => {
    const c = u.ctx, { left, top, width, height } = u.bbox;
    c.save();
    for (const p of D.phases) {
      if (p.e < u.scales.x.min || p.b > u.scales.x.max) continue;
      const x0 = Math.max(left, u.valToPos(p.b, "x", true)), x1 = Math.min(left + width, u.valToPos(p.e, "x", true));
      c.fillStyle = p.fill + "29"; c.fillRect(x0, top, Math.max(1, x1 - x0), height);
      c.fillStyle = "#222"; c.font = 11 * devicePixelRatio + "px sans-serif"; c.fillText(p.label, x0 + 3, top + 12 * devicePixelRatio);
    }
    c.restore();
  }] } };
  box.classList.add("on"); // shown first: the charts take its width
  document.getElementById("svgchart").style.display = "none";
  Object.keys(D.channels).forEach((cid, k) => {
    const el = document.createElement("div"); el.className = "zch";
    const h = document.createElement("h3"); h.textContent = cid + (D.units[cid] ? " [" + D.units[cid] + "]" : ""); el.appendChild(h);
    box.appendChild(el);
    const color = COLORS[k % COLORS.length], L = D.channels[cid][0] || { t: [D.x0, D.x1], lo: [null, null], hi: [null, null] };
    Z.charts[cid] = new uPlot({
      width: Math.max(300, box.clientWidth - 12), height: 180, plugins: [shade],
      scales: { x: { time: false } },
      cursor: { drag: { x: true, y: false, setScale: true }, bind: { dblclick: () => () => { zoom(D.x0, D.x1); return null; } } },
      legend: { show: false },
      series: [{ label: "s" }, { stroke: color, width: 1 }, { stroke: color, width: 1 }],
      bands: [{ series: [2, 1], fill: color + "55" }],
      axes: [{ label: D.text.time }, { label: "W" }],
      hooks: { setScale: [(u, key) => { if (key === "x" && !syncing) zoom(u.scales.x.min, u.scales.x.max); }] },
    }, [L.t || [], L.lo || L.v || [], L.hi || L.v || []], el);
  });
  box.querySelector("button").onclick = () => zoom(D.x0, D.x1);
  // the wheel zooms around the pointer; with Shift (or sideways) it pans; both stay in the run
  for (const u of Object.values(Z.charts)) {
    u.over.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const [a, b] = Z.range, span = b - a, full = D.x1 - D.x0;
      const pan = ev.shiftKey || Math.abs(ev.deltaX) > Math.abs(ev.deltaY);
      let x0, x1;
      if (pan) {
        const d = Math.sign(ev.shiftKey ? ev.deltaY || ev.deltaX : ev.deltaX) * span * 0.2;
        x0 = Math.min(Math.max(D.x0, a + d), D.x1 - span); x1 = x0 + span;
      } else {
        const at = u.posToVal(ev.offsetX, "x"), k = ev.deltaY > 0 ? 1.25 : 0.8;
        const w = Math.min(full, Math.max(span * k, 1e-6));
        x0 = Math.max(D.x0, at - (at - a) * (w / span)); x1 = Math.min(D.x1, x0 + w);
      }
      zoom(x0, x1);
    }, { passive: false });
  }
  zoom(D.x0, D.x1);
})();
