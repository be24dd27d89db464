// DOM and chart helpers shared by the dashboard and the student's page.
// Every piece of text goes in through textContent or setAttribute, never as
// HTML: names, ids and prompts come from users.

const SVG = "http://www.w3.org/2000/svg";

// el builds an element: attrs are attributes (class, data-*, aria-*, ...),
// except "on*" functions, which become listeners; children are nodes or
// text (strings and numbers become text nodes; null and false are skipped).
export function el(tag, attrs = {}, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

// svg builds an SVG element the same way.
export function svg(tag, attrs = {}, ...children) {
  return fill(document.createElementNS(SVG, tag), attrs, children);
}

function fill(node, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "value") node.value = v;
    else if (k === "checked") node.checked = !!v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// clear empties node and appends children.
export function show(node, ...children) {
  node.replaceChildren();
  fill(node, {}, children);
  return node;
}

// usd formats a dollar amount: more decimals for small amounts.
export function usd(v) {
  const n = Number(v) || 0;
  const digits = n !== 0 && Math.abs(n) < 0.1 ? 4 : 2;
  return "$" + n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function count(v) {
  return (Number(v) || 0).toLocaleString("en-US");
}

// when formats unix seconds as a local date and time ("—" for 0).
export function when(sec) {
  if (!sec) return "—";
  const d = new Date(sec * 1000);
  return d.toLocaleString("en-GB", { year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit" });
}

// ago says how long before now unix seconds were.
export function ago(sec) {
  if (!sec) return "never";
  const s = Math.max(0, Date.now() / 1000 - sec);
  if (s < 60) return "just now";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  if (s < 86400) return Math.floor(s / 3600) + " h ago";
  return Math.floor(s / 86400) + " d ago";
}

// meter draws used against limit as a bar, with its figures beside it.
// A limit of 0 means none: the bar is empty and says "no limit".
export function meter(used, limit, label = usd) {
  const f = limit > 0 ? Math.min(used / limit, 1) : 0;
  const level = f >= 0.9 ? "hot" : f >= 0.7 ? "warm" : "ok";
  const bar = svg("svg", { class: "meter " + level, viewBox: "0 0 100 8", preserveAspectRatio: "none", role: "img",
    "aria-label": limit > 0 ? `${label(used)} of ${label(limit)}` : `${label(used)}, no limit`, "data-fraction": f.toFixed(6) },
    svg("rect", { class: "track", x: 0, y: 0, width: 100, height: 8, rx: 2 }),
    svg("rect", { class: "fill", x: 0, y: 0, width: (f * 100).toFixed(2), height: 8, rx: 2 }));
  return el("div", { class: "meterbox" }, bar,
    el("span", { class: "figures" }, limit > 0 ? `${label(used)} / ${label(limit)}` : `${label(used)} · no limit`));
}

// columns draws a column chart of points [{label, value, title}], values
// formatted by fmt on the axis. Hand-drawn SVG: no library.
export function columns(points, { fmt = usd, height = 260, name = "chart" } = {}) {
  const W = 1000, H = height, left = 64, bottom = 22, top = 10;
  const max = Math.max(...points.map((p) => p.value), 0);
  const scale = max > 0 ? niceCeil(max) : 1;
  const plotH = H - bottom - top, plotW = W - left - 6;
  const g = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": name, "data-max": String(max) });
  for (let i = 0; i <= 4; i++) {
    const y = top + plotH - (plotH * i) / 4;
    g.append(svg("line", { class: "grid", x1: left, x2: W - 6, y1: y, y2: y }),
      svg("text", { class: "axis", x: left - 6, y: y + 4, "text-anchor": "end" }, fmt((scale * i) / 4)));
  }
  const step = plotW / Math.max(points.length, 1);
  const every = Math.ceil(points.length / 10);
  points.forEach((p, i) => {
    const h = (plotH * p.value) / scale;
    const x = left + i * step + step * 0.15;
    g.append(svg("rect", { class: "col", x: x.toFixed(1), y: (top + plotH - h).toFixed(1), width: (step * 0.7).toFixed(1), height: Math.max(h, 0).toFixed(1), "data-value": String(p.value) },
      svg("title", {}, `${p.label}: ${fmt(p.value)}${p.title ? " · " + p.title : ""}`)));
    if (i % every === 0) g.append(svg("text", { class: "axis", x: (x + step * 0.35).toFixed(1), y: H - 6, "text-anchor": "middle" }, p.label));
  });
  return g;
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// days lists the UTC days [start, end) as {ts, label}; ts is the day's
// first second, as the reports key days.
export function days(startSec, n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const ts = startSec + i * 86400;
    const d = new Date(ts * 1000);
    out.push({ ts, label: `${d.getUTCDate()} ${d.toLocaleString("en-GB", { month: "short", timeZone: "UTC" })}` });
  }
  return out;
}

// utcDay is the first second of the UTC day holding sec.
export function utcDay(sec) {
  return Math.floor(sec / 86400) * 86400;
}

// table builds a table from column titles and rows of cells.
export function table(titles, rows, attrs = {}) {
  return el("table", attrs,
    el("thead", {}, el("tr", {}, titles.map((t) => (t instanceof Node ? t : el("th", {}, t))))),
    el("tbody", {}, rows));
}
