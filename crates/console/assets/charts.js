// Small SVG charts of a webhook's last 24 hours (GET …/stats): success
// rate per hour as bars, latency p50 and p99 per hour as lines. Each chart
// has a text alternative.

const SVG = "http://www.w3.org/2000/svg";
const W = 480;
const H = 150;
const PAD = { left: 38, right: 8, top: 8, bottom: 22 };

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function frame(label, yTicks, yFormat, buckets) {
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
  const plotH = H - PAD.top - PAD.bottom;
  for (const t of yTicks.values) {
    const y = PAD.top + plotH - (t / yTicks.max) * plotH;
    svg.append(s("line", { class: "axis", x1: PAD.left, x2: W - PAD.right, y1: y, y2: y }));
    svg.append(s("text", { x: PAD.left - 4, y: y + 3, "text-anchor": "end" }, yFormat(t)));
  }
  const step = (W - PAD.left - PAD.right) / buckets.length;
  buckets.forEach((b, i) => {
    if (i % 6 !== 0) return;
    const d = new Date(b.start);
    svg.append(s("text", { x: PAD.left + i * step, y: H - 6 }, `${String(d.getHours()).padStart(2, "0")}:00`));
  });
  return { svg, step, plotH };
}

function hourLabel(b) {
  const d = new Date(b.start);
  return `${String(d.getHours()).padStart(2, "0")}:00`;
}

/** Success rate per hour; hours without attempts stay empty. */
export function successChart(stats) {
  const buckets = stats.buckets;
  const { svg, step, plotH } = frame(
    "Success rate per hour over the last 24 hours",
    { max: 1, values: [0, 0.5, 1] },
    (t) => `${Math.round(t * 100)}%`,
    buckets,
  );
  buckets.forEach((b, i) => {
    if (b.success_rate === null) return;
    const bh = Math.max(1, b.success_rate * plotH);
    const rect = s("rect", {
      class: b.success_rate < 0.9 ? "bar low" : "bar",
      x: PAD.left + i * step + 1,
      y: PAD.top + plotH - bh,
      width: Math.max(1, step - 2),
      height: bh,
    });
    rect.append(s("title", {}, `${hourLabel(b)}: ${(b.success_rate * 100).toFixed(1)}% of ${b.attempts} attempts`));
    svg.append(rect);
  });
  return svg;
}

/** Latency p50 and p99 per hour, milliseconds. */
export function latencyChart(stats) {
  const buckets = stats.buckets;
  const worst = Math.max(1, ...buckets.map((b) => (b.latency_ms ? b.latency_ms.p99 : 0)));
  const max = niceCeiling(worst);
  const { svg, step, plotH } = frame(
    "Latency per hour over the last 24 hours, p50 and p99",
    { max, values: [0, max / 2, max] },
    (t) => (t >= 1000 ? `${(t / 1000).toFixed(1)}s` : `${Number.isInteger(t) ? t : t.toFixed(1)}ms`),
    buckets,
  );
  for (const key of ["p50", "p99"]) {
    let d = "";
    buckets.forEach((b, i) => {
      if (!b.latency_ms) return;
      const x = PAD.left + i * step + step / 2;
      const y = PAD.top + plotH - (b.latency_ms[key] / max) * plotH;
      d += `${d ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)} `;
      const dot = s("circle", { class: key, cx: x, cy: y, r: 2 });
      dot.append(s("title", {}, `${hourLabel(b)}: ${key} ${b.latency_ms[key]} ms`));
      svg.append(dot);
    });
    if (d) svg.append(s("path", { class: key, d: d.trim() }));
  }
  return svg;
}

/** 1, 2 or 5 times a power of ten, at least `v`. */
function niceCeiling(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * p).find((c) => c >= v);
}
