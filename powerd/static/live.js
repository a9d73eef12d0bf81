// powerd live view (issue 17): reads the server's min/max column stream (/v1/live, Server-Sent
// Events read with fetch so the bearer token goes in a header), draws one uPlot chart per channel
// with the phases shaded, zooms by fetching /v1/samples, and reconnects when the stream ends.
// window.powerdLive holds the page's state, for people and for the browser tests.
"use strict";
(function () {
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
  const frag = new URLSearchParams(location.hash.slice(1));
  if (frag.get("token")) sessionStorage.setItem("powerd-token", frag.get("token"));
  const token = sessionStorage.getItem("powerd-token");
  const headers = token ? { Authorization: "Bearer " + token } : {};

  const S = (window.powerdLive = {
    connected: false, connects: 0, frames: 0, errors: [], colNs: 0, nowNs: 0,
    data: {}, // cid -> {t: [ns], min: [], max: []}
    columnsReceived: {}, phases: [], results: [], health: null, shaded: 0,
    zoom: null, // {t0Ns, t1Ns, channels: {cid: {raw, n, max}}}
  });
  const charts = (S.charts = {}); // cid -> uPlot
  let dirty = false;

  const el = (id) => document.getElementById(id);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
  const fmt = (x, d = 3) => (x === null || x === undefined ? "–" : Number(x).toPrecision(d));
  const rangeS = () => Number(el("range").value);
  const plotWidth = () => Math.max(200, el("charts").clientWidth - 80);

  function setStatus(text, cls) {
    el("status").textContent = text;
    el("status").className = cls;
  }

  // --- phases drawn under every chart -----------------------------------------------------
  function shadePlugin() {
    return {
      hooks: {
        drawAxes: [
          (u) => {
            const ctx = u.ctx, { left, top, width, height } = u.bbox;
            const xmin = u.scales.x.min, xmax = u.scales.x.max;
            let n = 0;
            ctx.save();
            for (const [i, p] of S.phases.entries()) {
              const b = p.t_begin_ns / 1e9, e = p.t_end_ns === null ? S.nowNs / 1e9 : p.t_end_ns / 1e9;
              if (e < xmin || b > xmax) continue;
              const x0 = Math.max(left, u.valToPos(b, "x", true));
              const x1 = Math.min(left + width, u.valToPos(e, "x", true));
              ctx.fillStyle = p.t_end_ns === null ? "rgba(255,165,0,0.18)" : ["rgba(0,120,255,0.12)", "rgba(0,180,80,0.12)"][i % 2];
              ctx.fillRect(x0, top, Math.max(1, x1 - x0), height);
              ctx.fillStyle = "#444";
              ctx.font = 11 * devicePixelRatio + "px sans-serif";
              ctx.fillText(p.phase, x0 + 3, top + 12 * devicePixelRatio);
              n++;
            }
            ctx.restore();
            if (u === Object.values(charts)[0]) S.shaded = n;
          },
        ],
      },
    };
  }

  const metas = {}; // cid -> channel metadata from hello
  function makeChart(cid, data) {
    const meta = metas[cid] || { kind: "power" }, i = Object.keys(charts).length;
    const box = document.createElement("div");
    box.className = "chart";
    box.dataset.channel = cid;
    box.innerHTML = "<h3>" + esc(cid) + " <span class='now'></span></h3>";
    el("charts").appendChild(box);
    const color = COLORS[i % COLORS.length];
    const unit = meta.kind === "power" ? "W" : meta.unit || "";
    const opts = {
      width: plotWidth(), height: 160, plugins: [shadePlugin()],
      scales: { x: { time: true } },
      cursor: { drag: { x: true, y: false, setScale: false } },
      series: [
        {},
        { label: "min " + unit, stroke: color, width: 1 },
        { label: "max " + unit, stroke: color, width: 1 },
      ],
      bands: [{ series: [2, 1], fill: color + "55" }],
      axes: [{}, { label: unit }],
      hooks: { setSelect: [(u) => u.select.width > 2 && zoomTo(u.posToVal(u.select.left, "x"), u.posToVal(u.select.left + u.select.width, "x"))] },
    };
    charts[cid] = new uPlot(opts, data, box); // created with data: an empty time axis throws
    charts[cid].over.addEventListener("wheel", (ev) => wheel(charts[cid], ev), { passive: false });
    return charts[cid];
  }

  // --- the stream --------------------------------------------------------------------------
  function onHello(msg) {
    S.colNs = msg.col_ns;
    S.data = {};
    Object.entries(msg.channels).forEach(([cid, meta], i) => {
      S.data[cid] = { t: [], min: [], max: [] };
      S.columnsReceived[cid] = S.columnsReceived[cid] || 0;
      metas[cid] = meta;
    });
  }

  function onColumns(msg) {
    S.nowNs = msg.now_ns;
    const horizon = msg.now_ns - rangeS() * 1e9 - S.colNs;
    for (const [cid, c] of Object.entries(msg.channels)) {
      const d = S.data[cid] || (S.data[cid] = { t: [], min: [], max: [] });
      let k = d.t.length;
      while (k > 0 && d.t[k - 1] >= c.t_ns[0]) k--; // the last column is re-sent while it fills
      let drop = 0;
      while (drop < k && d.t[drop] < horizon) drop++;
      d.t = d.t.slice(drop, k).concat(c.t_ns);
      d.min = d.min.slice(drop, k).concat(c.min);
      d.max = d.max.slice(drop, k).concat(c.max);
      S.columnsReceived[cid] = (S.columnsReceived[cid] || 0) + c.t_ns.length;
    }
    dirty = true;
  }

  function onPhases(msg) { S.phases = msg.phases; renderPhases(); dirty = true; Object.values(charts).forEach((u) => u.redraw(false, false)); }
  function onResults(msg) { S.results = msg.results; renderResults(); }
  function onHealth(msg) { S.health = msg; renderHealth(); }
  const HANDLERS = { hello: onHello, columns: onColumns, phases: onPhases, results: onResults, health: onHealth };

  function dispatch(block) {
    let event = "message", data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data += line.slice(5).trim();
    }
    if (!data || !HANDLERS[event]) return;
    S.frames++;
    HANDLERS[event](JSON.parse(data));
  }

  let backoffMs = 250, controller = null;
  async function connect() {
    controller = new AbortController();
    const url = "/v1/live?width=" + plotWidth() + "&range_s=" + rangeS();
    try {
      const resp = await fetch(url, { headers, signal: controller.signal, cache: "no-store" });
      if (resp.status === 401) throw new Error("401: open this page as /live#token=<your API token>");
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      S.connected = true;
      S.connects++;
      backoffMs = 250;
      setStatus("live", "connected");
      const reader = resp.body.getReader(), dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          dispatch(buf.slice(0, cut));
          buf = buf.slice(cut + 2);
        }
      }
    } catch (err) {
      if (err.name !== "AbortError") S.errors.push(String(err.message || err));
    }
    S.connected = false;
    const last = S.errors.length ? " (" + S.errors[S.errors.length - 1] + ")" : "";
    if (S.errors.length > 50) S.errors.splice(0, S.errors.length - 50); // bounded
    setStatus("reconnecting…" + last, "reconnecting");
    setTimeout(connect, backoffMs);
    backoffMs = Math.min(5000, backoffMs * 2);
  }

  // --- zoom: full resolution from /v1/samples ------------------------------------------------
  async function zoomTo(t0s, t1s) {
    const t0Ns = Math.floor(t0s * 1e9), t1Ns = Math.ceil(t1s * 1e9);
    const zoom = { t0Ns, t1Ns, channels: {} };
    S.zoom = zoom;
    el("follow").hidden = false;
    for (const [cid, u] of Object.entries(charts)) {
      const q = "/v1/samples?channel=" + encodeURIComponent(cid) + "&t_begin_ns=" + t0Ns + "&t_end_ns=" + t1Ns + "&width=" + plotWidth();
      const resp = await fetch(q, { headers });
      if (!resp.ok) { S.errors.push("zoom " + cid + ": HTTP " + resp.status); continue; }
      const b = await resp.json();
      const xs = b.t_ns.map((t) => t / 1e9);
      const lo = b.raw ? b.value : b.min, hi = b.raw ? b.value : b.max;
      const finite = hi.filter((x) => x !== null);
      zoom.channels[cid] = { raw: b.raw, n: xs.length, max: finite.length ? Math.max(...finite) : null };
      u.setData([xs, lo, hi], false);
      u.setScale("x", { min: t0s, max: t1s });
      u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
    }
    zoom.done = true;
    el("zoominfo").textContent = "zoomed: " + ((t1Ns - t0Ns) / 1e9).toPrecision(3) + " s, full resolution";
  }
  S.zoomTo = zoomTo;

  // the wheel zooms around the pointer, Shift+wheel pans; either leaves the live view for the
  // range at full resolution (fetched once the wheel rests)
  let wheelTimer = null;
  function wheel(u, ev) {
    ev.preventDefault();
    const a = u.scales.x.min, b = u.scales.x.max, span = b - a;
    const pan = ev.shiftKey || Math.abs(ev.deltaX) > Math.abs(ev.deltaY);
    let x0, x1;
    if (pan) {
      const d = Math.sign(ev.shiftKey ? ev.deltaY || ev.deltaX : ev.deltaX) * span * 0.2;
      x0 = a + d; x1 = b + d;
    } else {
      const at = u.posToVal(ev.offsetX, "x"), w = Math.max(span * (ev.deltaY > 0 ? 1.25 : 0.8), 1e-6);
      x0 = at - (at - a) * (w / span); x1 = x0 + w;
    }
    S.zoom = S.zoom || { t0Ns: 0, t1Ns: 0, channels: {} }; // stop following while the wheel turns
    for (const c of Object.values(charts)) c.setScale("x", { min: x0, max: x1 });
    clearTimeout(wheelTimer);
    wheelTimer = setTimeout(() => zoomTo(x0, x1), 150);
  }
  el("follow").onclick = () => { S.zoom = null; el("follow").hidden = true; el("zoominfo").textContent = ""; dirty = true; };

  // --- drawing -------------------------------------------------------------------------------
  function draw() {
    if (dirty && !S.zoom) {
      dirty = false;
      const xmax = S.nowNs / 1e9, xmin = xmax - rangeS();
      for (const [cid, d] of Object.entries(S.data)) {
        if (!d.t.length) continue;
        const data = [d.t.map((t) => t / 1e9), d.min, d.max];
        const u = charts[cid] || makeChart(cid, data) || charts[cid];
        u.setData(data, false);
        u.setScale("x", { min: xmin, max: xmax });
        const last = d.max.length ? d.max[d.max.length - 1] : null;
        u.root.parentElement.querySelector(".now").textContent = last === null ? "" : fmt(last, 4);
      }
    }
    requestAnimationFrame(draw);
  }

  function renderPhases() {
    el("phases").innerHTML = S.phases.slice(-20).map((p) =>
      "<li>" + esc(p.run) + " / " + esc(p.phase) + (p.trial ? " #" + p.trial : "") +
      (p.t_end_ns === null ? " (open)" : " " + fmt((p.t_end_ns - p.t_begin_ns) / 1e9) + " s") + "</li>").join("");
  }

  function renderResults() {
    const rows = [];
    for (const r of S.results) for (const p of r.phases)
      rows.push("<tr><td class=l>" + esc(r.run) + "</td><td class=l>" + esc(p.phase) + "</td><td>" +
        fmt(p.energy_j, 5) + " ± " + fmt(p.uncertainty_j, 2) + "</td><td>" + fmt(p.net_energy_j, 5) + " ± " +
        fmt(p.net_uncertainty_j, 2) + "</td><td>" + fmt(p.mean_power_w, 4) + "</td><td class='l flag'>" +
        esc((p.flags || []).join(", ")) + "</td></tr>");
    el("results").innerHTML = rows.length ? "<table><tr><th class=l>run</th><th class=l>phase</th><th>energy J</th>" +
      "<th>net J</th><th>mean W</th><th class=l>flags</th></tr>" + rows.join("") + "</table>" : "none yet";
  }

  function renderHealth() {
    const h = S.health;
    const down = Object.entries(h.down).map(([k, v]) => "<li class=down>" + esc(k) + ": " + esc(v) + "</li>").join("");
    const probes = h.probes.map((p) => "<tr><td class=l>" + esc(p.probe) + "</td><td class=l" + (p.up ? ">up" : " class=down>down " + esc(p.down_reason)) +
      "</td><td>" + p.samples + "</td><td>" + p.errors + "</td><td class=l>" + esc(p.last_error) + "</td></tr>").join("");
    const offs = Object.entries(h.offsets).map(([a, o]) => "<tr><td class=l>" + esc(a) + "</td><td>" +
      fmt(o.offset_ns / 1e6, 4) + "</td><td>" + fmt(o.uncertainty_ns / 1e6, 2) + "</td><td>" + fmt(o.drift_ppm, 3) + "</td></tr>").join("");
    el("health").innerHTML = "<p>status: <b>" + esc(h.status) + "</b></p>" + (down ? "<ul>" + down + "</ul>" : "") +
      (probes ? "<table><tr><th class=l>probe</th><th class=l>state</th><th>samples</th><th>errors</th><th class=l>last error</th></tr>" + probes + "</table>" : "") +
      (offs ? "<table><tr><th class=l>agent</th><th>clock offset ms</th><th>± ms</th><th>drift ppm</th></tr>" + offs + "</table>" : "<p>no agents' clock offsets</p>");
  }

  el("range").onchange = () => { if (controller) controller.abort(); };
  // a new width: the charts follow, and the stream restarts with the new column count
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      for (const u of Object.values(charts)) u.setSize({ width: plotWidth(), height: 160 });
      if (controller) controller.abort();
    }, 300);
  });
  requestAnimationFrame(draw);
  connect();
})();
