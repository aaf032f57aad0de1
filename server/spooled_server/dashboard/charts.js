// Small SVG charts drawn by hand: no library, nothing loaded from the network.

const NS = "http://www.w3.org/2000/svg";

function el(name, attrs = {}, text) {
  const node = document.createElementNS(NS, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

function fmt(value) {
  if (value >= 1000) return `${(value / 1000).toFixed(value >= 10000 ? 0 : 1)}k`;
  if (Number.isInteger(value)) return String(value);
  return value.toFixed(value < 1 ? 2 : 1);
}

/**
 * Draw a line chart into `svg`.
 * series: [{name, color, values: number[] (null = gap), area?: bool}], labels: string[] (x axis)
 */
export function lineChart(svg, { series, labels, unit = "", yMax }) {
  const width = 600;
  const height = 180;
  const pad = { left: 44, right: 12, top: 10, bottom: 22 };
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.replaceChildren();
  const count = labels.length;
  const all = series.flatMap((s) => s.values.filter((v) => v !== null && v !== undefined));
  const top = yMax ?? niceMax(Math.max(0, ...all));
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const x = (i) => pad.left + (count <= 1 ? plotW : (i * plotW) / (count - 1));
  const y = (v) => pad.top + plotH - (Math.min(v, top) / top) * plotH;
  for (let i = 0; i <= 4; i += 1) {
    const value = (top * i) / 4;
    const yy = y(value);
    svg.append(el("line", { x1: pad.left, x2: width - pad.right, y1: yy, y2: yy, class: "grid-line" }));
    svg.append(el("text", { x: pad.left - 6, y: yy + 3, "text-anchor": "end", class: "axis" }, fmt(value) + unit));
  }
  const every = Math.max(1, Math.ceil(count / 6));
  labels.forEach((label, i) => {
    if (i % every === 0 || i === count - 1) {
      svg.append(el("text", { x: x(i), y: height - 6, "text-anchor": i === 0 ? "start" : i === count - 1 ? "end" : "middle", class: "axis" }, label));
    }
  });
  if (!all.length) {
    svg.append(el("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" }, "Waiting for events…"));
    return;
  }
  for (const s of series) {
    let d = "";
    let started = false;
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) {
        started = false;
        return;
      }
      d += `${started ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      started = true;
    });
    if (!d) continue;
    if (s.area) {
      const first = s.values.findIndex((v) => v !== null && v !== undefined);
      const last = s.values.length - 1 - [...s.values].reverse().findIndex((v) => v !== null && v !== undefined);
      svg.append(el("path", { d: `${d}L${x(last)},${y(0)}L${x(first)},${y(0)}Z`, fill: s.color, class: "area" }));
    }
    svg.append(el("path", { d, stroke: s.color, class: "series" }));
  }
}

/** Layered drawing of a workflow DAG: nodes [{id, label, status}], edges [{from, to}]. */
export function dagChart(svg, nodes, edges, colors) {
  svg.replaceChildren();
  const level = new Map(nodes.map((n) => [n.id, 0]));
  // Longest-path layering; the graph is acyclic (the server rejects cycles).
  for (let pass = 0; pass < nodes.length; pass += 1) {
    let changed = false;
    for (const e of edges) {
      const want = (level.get(e.from) ?? 0) + 1;
      if (level.has(e.to) && level.get(e.to) < want) {
        level.set(e.to, want);
        changed = true;
      }
    }
    if (!changed) break;
  }
  const columns = [];
  for (const n of nodes) {
    const l = level.get(n.id);
    (columns[l] ||= []).push(n);
  }
  const nodeW = 150;
  const nodeH = 46;
  const gapX = 70;
  const gapY = 18;
  const rows = Math.max(1, ...columns.map((c) => (c ? c.length : 0)));
  const width = Math.max(1, columns.length) * (nodeW + gapX) - gapX + 20;
  const height = rows * (nodeH + gapY) - gapY + 20;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.style.height = `${Math.min(520, Math.max(160, height))}px`;
  const pos = new Map();
  columns.forEach((col, ci) => {
    if (!col) return;
    const offset = ((rows - col.length) * (nodeH + gapY)) / 2;
    col.forEach((n, ri) => pos.set(n.id, { x: 10 + ci * (nodeW + gapX), y: 10 + offset + ri * (nodeH + gapY) }));
  });
  for (const e of edges) {
    const a = pos.get(e.from);
    const b = pos.get(e.to);
    if (!a || !b) continue;
    const x1 = a.x + nodeW;
    const y1 = a.y + nodeH / 2;
    const x2 = b.x;
    const y2 = b.y + nodeH / 2;
    const mid = (x1 + x2) / 2;
    svg.append(el("path", { d: `M${x1},${y1}C${mid},${y1} ${mid},${y2} ${x2 - 4},${y2}`, class: "edge", "marker-end": "url(#arrow)" }));
  }
  const defs = el("defs");
  const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 8, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" });
  marker.append(el("path", { d: "M0,0L10,5L0,10z", fill: "#c3c8d8" }));
  defs.append(marker);
  svg.prepend(defs);
  for (const n of nodes) {
    const p = pos.get(n.id);
    const [fill, stroke] = colors[n.status] || ["#f1f2f6", "#c3c8d8"];
    const g = el("g", { class: "node", transform: `translate(${p.x},${p.y})`, "data-status": n.status });
    g.append(el("rect", { width: nodeW, height: nodeH, fill, stroke }));
    g.append(el("text", { x: 12, y: 19 }, n.label.length > 20 ? `${n.label.slice(0, 19)}…` : n.label));
    g.append(el("text", { x: 12, y: 35, class: "status" }, n.status));
    const title = el("title", {}, `${n.label} — ${n.status}`);
    g.append(title);
    if (n.href) {
      const link = el("a", { href: n.href });
      link.append(g);
      svg.append(link);
    } else {
      svg.append(g);
    }
  }
}
