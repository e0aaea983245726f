// The patient view: risk over time as an inline SVG plot (band zones, the
// risk line, a triangle per radiograph), the patient's alerts with what
// changed, and a table of each score with the clinical values behind it.
// The patient key comes from the URL fragment, which is never sent to the
// server.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const BANDS = ["low", "moderate", "high", "critical"];
const SIZE = { width: 760, height: 300, left: 58, right: 16, top: 14, bottom: 44 };

const patient = {
  key() {
    return decodeURIComponent(window.location.hash.slice(1));
  },

  async open() {
    const key = patient.key();
    const section = document.getElementById("patient");
    section.hidden = false;
    document.getElementById("patient-key").textContent = key;
    if (!key) {
      document.getElementById("patient-error").textContent = "No patient chosen.";
      return;
    }
    try {
      const path = encodeURIComponent(key);
      const [history, alerts] = await Promise.all([
        cx.api(`/patients/${path}/risk`),
        cx.api(`/alerts?limit=50&patient=${path}`),
      ]);
      patient.plot(history);
      patient.alerts(alerts.items);
      patient.table(history);
    } catch (error) {
      document.getElementById("patient-error").textContent = error.message;
    }
  },

  svg(tag, attributes, text) {
    const node = document.createElementNS(SVG, tag);
    Object.entries(attributes).forEach(([name, value]) => node.setAttribute(name, value));
    if (text !== undefined) node.textContent = text;
    return node;
  },

  bandOf(p, edges) {
    return BANDS[edges.filter((edge) => p >= edge).length];
  },

  plot(history) {
    const points = history.points;
    const edges = history.band_thresholds;
    const { width, height, left, right, top, bottom } = SIZE;
    const times = points.flatMap((p) => [Date.parse(p.as_of), Date.parse(p.acquired_at)]);
    const first = Math.min(...times);
    const last = Math.max(...times);
    const span = Math.max(last - first, 3600 * 1000);
    const x = (iso) => left + ((Date.parse(iso) - first) / span) * (width - left - right);
    const y = (p) => top + (1 - p) * (height - top - bottom);
    const latest = points[points.length - 1];
    const summary = latest
      ? `Risk of critical illness for ${points.length} scores, latest ` +
        `${latest.p_critical.toFixed(2)} (${patient.bandOf(latest.p_critical, edges)})`
      : "No scores in range";
    const svg = patient.svg("svg", {
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": summary,
      id: "risk-plot",
    });
    const lows = [0, ...edges];
    const highs = [...edges, 1];
    BANDS.forEach((band, i) => {
      svg.append(patient.svg("rect", {
        x: left, width: width - left - right,
        y: y(highs[i]), height: y(lows[i]) - y(highs[i]),
        class: `zone-${band}`,
      }));
    });
    BANDS.forEach((band, i) => {
      svg.append(patient.svg("text", {
        x: width - right - 4, y: y(highs[i]) + 13, "text-anchor": "end", class: "zone-label",
      }, band));
    });
    svg.append(patient.svg("text", {
      x: 12, y: top + (height - top - bottom) / 2, "text-anchor": "middle",
      transform: `rotate(-90 12 ${top + (height - top - bottom) / 2})`,
    }, "p(critical)"));
    edges.forEach((edge) => {
      svg.append(patient.svg("line", {
        x1: left, x2: width - right, y1: y(edge), y2: y(edge), class: "edge",
      }));
    });
    [0, 0.25, 0.5, 0.75, 1].forEach((tick) => {
      svg.append(patient.svg("text", {
        x: left - 6, y: y(tick) + 4, "text-anchor": "end",
      }, tick.toFixed(2)));
    });
    svg.append(patient.svg("line", {
      x1: left, x2: left, y1: top, y2: height - bottom, class: "axis",
    }));
    svg.append(patient.svg("line", {
      x1: left, x2: width - right, y1: height - bottom, y2: height - bottom,
      class: "axis",
    }));
    if (points.length) {
      [first, first + span / 2, first + span].forEach((t, i) => {
        const iso = new Date(t).toISOString();
        svg.append(patient.svg("text", {
          x: x(iso), y: height - bottom + 30,
          "text-anchor": ["start", "middle", "end"][i],
        }, cx.time(iso)));
      });
      const line = points.map((p) => `${x(p.as_of).toFixed(1)},${y(p.p_critical).toFixed(1)}`);
      svg.append(patient.svg("polyline", { points: line.join(" "), class: "risk-line" }));
      const radiographs = new Map(points.map((p) => [p.radiograph_id, p.acquired_at]));
      radiographs.forEach((acquired) => {
        const at = x(acquired);
        const base = height - bottom;
        const mark = patient.svg("polygon", {
          points: `${at},${base - 9} ${at - 6},${base + 3} ${at + 6},${base + 3}`,
          class: "radiograph",
        });
        mark.append(patient.svg("title", {}, `Radiograph ${cx.time(acquired)}`));
        svg.append(mark);
      });
      points.forEach((p) => {
        const dot = patient.svg("circle", {
          cx: x(p.as_of), cy: y(p.p_critical), r: 4.5,
          class: `point point-${patient.bandOf(p.p_critical, edges)}`,
        });
        dot.append(patient.svg("title", {},
          `${cx.time(p.as_of)}: ${p.p_critical.toFixed(2)}, NEWS2 ${p.news2.score ?? "–"}`));
        svg.append(dot);
      });
    }
    document.getElementById("plot").prepend(svg);
  },

  alerts(items) {
    const list = document.getElementById("patient-alerts");
    list.replaceChildren();
    if (!items.length) list.append(cx.element("li", "No alerts."));
    items.forEach((alert) => {
      const item = cx.element("li");
      const changes = alert.changes
        .map((c) => `${c.feature} ${cx.value(c.previous)} → ${cx.value(c.current)} ${c.unit}`)
        .join("; ");
      item.append(
        cx.band(alert.band),
        ` ${cx.time(alert.raised_at)}: risk ${cx.risk(alert.previous_p_critical)} → ` +
          `${cx.risk(alert.p_critical)}, NEWS2 ${alert.news2.score ?? "–"}, ` +
          `${alert.status}. ${changes}`,
      );
      list.append(item);
    });
  },

  table(history) {
    const features = [...new Set(history.points.flatMap((p) => Object.keys(p.clinical_values)))];
    const head = document.querySelector("#scores thead tr");
    const headings = ["Scored as of", "Radiograph taken", "Risk", "NEWS2", ...features];
    head.replaceChildren(...headings.map((h) => {
      const th = cx.element("th", h);
      th.scope = "col";
      return th;
    }));
    const body = document.querySelector("#scores tbody");
    body.replaceChildren(...[...history.points].reverse().map((p) => {
      const row = cx.element("tr");
      const cells = [
        cx.time(p.as_of),
        cx.time(p.acquired_at),
        p.p_critical.toFixed(2),
        p.news2.score === null ? "–" : String(p.news2.score),
        ...features.map((f) => cx.value(p.clinical_values[f])),
      ];
      cells.forEach((text) => row.append(cx.element("td", text, "num")));
      return row;
    }));
  },
};

window.addEventListener("hashchange", () => window.location.reload());
cx.start(() => patient.open());
