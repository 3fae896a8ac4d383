// Draws a drover report's Gantt chart as SVG from the JSON in #drover-data (written by html.rs):
// a lane per site or pool, each labelled, overlapping bars stacked in rows, a time axis, the
// critical path.
// No dependencies; runs once on load and again when the window is resized.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("drover-data").textContent);
  const section = document.getElementById("timeline");
  const host = document.getElementById("gantt");
  const note = document.getElementById("gantt-note");

  // Fields of a bar, in the order html.rs writes them.
  const STEP = 0, LANE = 1, ROW = 2, START = 3, END = 4, PRODUCT = 5, KIND = 6, OUTCOME = 7,
    CRITICAL = 8, NOTE = 9;

  const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" };
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ESCAPES[c]);
  const two = (n) => (n < 10 ? "0" : "") + n;

  // A time from the start, for axis labels and hover text: drover's one duration style, as
  // `report::human_ms` writes it (850ms, 12.3s, 10s, 4m 05s, 2h 07m, 1d 16h).
  function fmt(ms) {
    if (ms < 1000) return ms + "ms";
    if (ms < 60000) return (ms % 1000 ? (ms / 1000).toFixed(1) : ms / 1000) + "s";
    const s = Math.floor(ms / 1000);
    if (s < 3600) return Math.floor(s / 60) + "m " + two(s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + two(Math.floor(s / 60) % 60) + "m";
    return Math.floor(s / 86400) + "d " + two(Math.floor(s / 3600) % 24) + "h";
  }

  // Round tick intervals (ms); the first that keeps labels minGap pixels apart is used.
  const TICKS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 15e3, 3e4, 6e4, 12e4,
    3e5, 6e5, 9e5, 18e5, 36e5, 72e5, 108e5, 216e5, 432e5, 864e5];
  function tickStep(span, pixels, minGap) {
    const step = TICKS.find((t) => (span / t) * minGap <= pixels);
    return step || Math.ceil((span * minGap) / pixels / 864e5) * 864e5;
  }

  // Vertical layout. Rows are as tall as fits ~900px, but never under MIN_ROW: with hundreds of
  // lanes the chart grows instead, scrolling in its box under an axis that stays in view. Every
  // lane is at least LABEL_H tall, so that each has its label, descenders included; its rows are
  // centred in it.
  const MIN_ROW = 7, MAX_ROW = 16, LABEL_H = 16;
  function layout() {
    const rows = data.rows.map((r) => Math.max(r, 1));
    const total = rows.reduce((a, b) => a + b, 0);
    const rowH = Math.max(MIN_ROW, Math.min(MAX_ROW, Math.floor(900 / total)));
    const gap = rowH >= 8 ? 4 : 2;
    const longest = data.lanes.reduce((m, l) => Math.max(m, l.length), 0);
    const labelW = Math.round(Math.min(240, Math.max(80, 16 + 6.5 * longest)));
    const width = Math.max(760, host.clientWidth);
    const y = [], h = [], pad = [];
    let at = 0;
    for (const r of rows) {
      const lane = Math.max(r * rowH + gap, LABEL_H);
      y.push(at);
      h.push(lane);
      pad.push((lane - r * rowH) / 2);
      at += lane;
    }
    return { rowH, labelW, width, plotW: width - labelW - 40, y, h, pad, bottom: at, height: at + 1 };
  }

  const barY = (b, L) => L.y[b[LANE]] + L.pad[b[LANE]] + b[ROW] * L.rowH + 1;
  const important = (b) => b[CRITICAL] === 1 || data.outcomes[b[OUTCOME]] === "failed";

  // Every bar, up to data.maxBars. Beyond that, per row, only bars reaching a pixel column that
  // no bar drawn before them in that row covers; then, if still too many, failed and critical
  // bars first and the longest of the rest.
  function choose(x) {
    if (data.bars.length <= data.maxBars) return data.bars;
    const reach = new Map();
    let kept = [];
    for (const b of data.bars.slice().sort((a, b) => a[START] - b[START])) {
      const row = b[LANE] + "/" + b[ROW];
      const end = Math.floor(x(b[END]));
      if (important(b) || end > (reach.has(row) ? reach.get(row) : -1)) {
        kept.push(b);
        reach.set(row, Math.max(end, Math.floor(x(b[START])) + 1));
      }
    }
    if (kept.length > data.maxBars) {
      const len = (b) => b[END] - b[START];
      kept.sort((a, b) => important(b) - important(a) || len(b) - len(a));
      kept = kept.slice(0, data.maxBars);
    }
    return kept;
  }

  // Lane stripes, then a label for every lane (after all stripes, so no stripe covers a label).
  function lanes(out, L) {
    const chars = Math.floor((L.labelW - 12) / 6.5);
    data.lanes.forEach((name, i) => {
      const parity = i % 2 ? "odd" : "even";
      out.push(`<rect class="lane-bg ${parity}" x="0" y="${L.y[i]}" width="${L.width}" height="${L.h[i]}"/>`);
    });
    data.lanes.forEach((name, i) => {
      const label = name.length > chars ? name.slice(0, chars - 1) + "…" : name;
      const idle = data.rows[i] ? "" : " idle";
      out.push(`<text class="lane-label${idle}" x="8" y="${L.y[i] + L.h[i] / 2}"><title>${esc(name)}</title>${esc(label)}</text>`);
    });
  }

  // Grid lines in the chart; the time labels in a strip of their own (the caller's `head`),
  // which stays at the top of the chart's box while the lanes scroll under it.
  function axis(out, head, L, x, span) {
    const step = tickStep(span, L.plotW, 90);
    const end = L.labelW + L.plotW;
    head.push(`<rect class="axis-bg" x="0" y="0" width="${L.width}" height="26"/>`);
    head.push(`<line class="axis-line" x1="${L.labelW}" x2="${end}" y1="25.5" y2="25.5"/>`);
    out.push(`<line class="axis-line" x1="${L.labelW}" x2="${end}" y1="${L.bottom - 0.5}" y2="${L.bottom - 0.5}"/>`);
    for (let t = 0; t <= span; t += step) {
      const px = x(t).toFixed(1);
      out.push(`<line class="grid" x1="${px}" x2="${px}" y1="0" y2="${L.bottom}"/>`);
      head.push(`<line class="grid" x1="${px}" x2="${px}" y1="21" y2="26"/>`);
      head.push(`<text class="axis-label" x="${px}" y="15">${fmt(t)}</text>`);
    }
  }

  function hover(b, outcome) {
    const product = b[PRODUCT] < 0 ? "" : " · product " + data.products[b[PRODUCT]];
    const critical = b[CRITICAL] ? " · on the critical path" : "";
    const times = fmt(b[START]) + " → " + fmt(b[END]) + " (" + fmt(b[END] - b[START]) + ")";
    const detail = b[NOTE] ? "\n" + b[NOTE] : "";
    return `${b[STEP]}\n${data.kinds[b[KIND]]}${product} · ${outcome}${critical}\n${times}${detail}`;
  }

  function bars(out, L, x, drawn) {
    const h = Math.max(2, L.rowH - 2);
    for (const b of drawn) {
      const x0 = x(b[START]);
      const outcome = esc(data.outcomes[b[OUTCOME]]);
      // Wide enough to see and to hover; a failure, often instant, wider still.
      const w = Math.max(outcome === "failed" ? 6 : 2, x(b[END]) - x0);
      const product = b[PRODUCT] < 0 ? "pnone" : "p" + b[PRODUCT];
      const cls = `bar ${product} o-${outcome}${b[CRITICAL] ? " critical" : ""}`;
      out.push(`<rect class="${cls}" data-step="${esc(b[STEP])}" data-outcome="${outcome}" x="${x0.toFixed(1)}" y="${barY(b, L)}" width="${w.toFixed(1)}" height="${h}"><title>${esc(hover(b, outcome))}</title></rect>`);
    }
  }

  // A dashed line through the critical path's bars, in path order.
  function criticalPath(out, L, x, drawn) {
    const byStep = new Map(drawn.filter((b) => b[CRITICAL]).map((b) => [b[STEP], b]));
    const points = [];
    for (const id of data.critical) {
      const b = byStep.get(id);
      if (!b) continue;
      const y = barY(b, L) + Math.max(2, L.rowH - 2) / 2;
      points.push(`${x(b[START]).toFixed(1)},${y}`, `${Math.max(x(b[END]), x(b[START]) + 2).toFixed(1)},${y}`);
    }
    if (points.length > 2) out.push(`<polyline class="critical-path" points="${points.join(" ")}"/>`);
  }

  function draw() {
    if (!data.bars.length) {
      host.innerHTML = '<p class="note" style="padding: 8px">No step has started yet.</p>';
      return;
    }
    const L = layout();
    const span = Math.max(data.span, 1);
    const x = (ms) => L.labelW + (ms / span) * L.plotW;
    const drawn = choose(x);
    const svg = (cls, height, label) =>
      `<svg xmlns="http://www.w3.org/2000/svg" class="${cls}" width="${L.width}" height="${height}" role="img" aria-label="${label}">`;
    const out = [svg("gantt-chart", L.height, "Gantt chart of the restore")];
    const head = [svg("gantt-axis", 26, "Time from the first step's start")];
    lanes(out, L);
    axis(out, head, L, x, span);
    bars(out, L, x, drawn);
    criticalPath(out, L, x, drawn);
    out.push("</svg>");
    head.push("</svg>");
    // The chart first in the document; CSS puts the axis strip above it.
    host.innerHTML = out.join("") + head.join("");
    note.textContent = drawn.length < data.bars.length
      ? `Drew ${drawn.length.toLocaleString()} of ${data.bars.length.toLocaleString()} bars: ` +
        "bars hidden under others at this width are left out (failed and critical-path steps " +
        "never are). The JSON timeline (drover report --timeline) lists every step."
      : "";
  }

  for (const input of document.querySelectorAll('input[name="colour-by"]')) {
    input.addEventListener("change", () => { section.className = "by-" + input.value; });
  }
  let pending = 0, width = host.clientWidth;
  window.addEventListener("resize", () => {
    clearTimeout(pending);
    pending = setTimeout(() => {
      if (host.clientWidth !== width) draw();
      width = host.clientWidth;
    }, 200);
  });
  draw();
})();
