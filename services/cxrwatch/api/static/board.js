// The live alert board: the newest alerts from GET /alerts, then new ones as
// they arrive on /alerts/stream (EventSource with a stream token, resumed
// from the last event id), acknowledge and resolve buttons for responders.
"use strict";

const board = {
  rows: new Map(),
  cursor: null,
  lastEventId: null,
  source: null,
  retryTimer: null,

  async open() {
    document.getElementById("board").hidden = false;
    board.rows.clear();
    document.querySelector("#alerts tbody").replaceChildren();
    try {
      const page = await cx.api("/alerts?limit=50");
      board.lastEventId = page.feed_id;
      page.items.forEach((alert) => board.show(alert, false, false));
      board.cursor = page.next_cursor;
      board.refreshControls();
      board.connect();
    } catch (error) {
      document.getElementById("board-error").textContent = error.message;
    }
  },

  async older() {
    if (!board.cursor) return;
    const page = await cx.api(
      `/alerts?limit=50&cursor=${encodeURIComponent(board.cursor)}`,
    );
    page.items.forEach((alert) => board.show(alert, false, false));
    board.cursor = page.next_cursor;
    board.refreshControls();
  },

  refreshControls() {
    document.getElementById("older").hidden = !board.cursor;
    document.getElementById("empty").hidden = board.rows.size > 0;
  },

  async connect() {
    board.close();
    const live = document.getElementById("live");
    try {
      const grant = await cx.api("/auth/stream-token", { method: "POST" });
      const query = new URLSearchParams({ token: grant.token });
      if (board.lastEventId) query.set("last_event_id", board.lastEventId);
      const source = new EventSource(`/alerts/stream?${query}`);
      board.source = source;
      source.addEventListener("open", () => {
        live.textContent = "Live";
        live.classList.add("on");
      });
      source.addEventListener("alert", (event) => {
        board.lastEventId = event.lastEventId;
        board.show(JSON.parse(event.data), true, true);
        board.refreshControls();
      });
      source.addEventListener("reset", () => board.open());
      source.addEventListener("error", () => {
        live.textContent = "Reconnecting…";
        live.classList.remove("on");
        // A closed source (token expired, server restarted) needs a new token;
        // an open one reconnects by itself with Last-Event-ID.
        if (source.readyState === EventSource.CLOSED) board.later();
      });
    } catch (error) {
      live.textContent = "Offline";
      live.classList.remove("on");
      if (cx.key()) board.later();
    }
  },

  later() {
    clearTimeout(board.retryTimer);
    board.retryTimer = setTimeout(() => board.connect(), 3000);
  },

  close() {
    clearTimeout(board.retryTimer);
    if (board.source) board.source.close();
    board.source = null;
  },

  show(alert, atTop, fresh) {
    const row = board.row(alert);
    const old = board.rows.get(alert.alert_id);
    const body = document.querySelector("#alerts tbody");
    if (old) {
      old.replaceWith(row);
    } else if (atTop) {
      body.prepend(row);
    } else {
      body.append(row);
    }
    if (fresh && !old) row.classList.add("fresh");
    board.rows.set(alert.alert_id, row);
  },

  row(alert) {
    const row = cx.element("tr");
    row.dataset.alertId = alert.alert_id;
    row.dataset.status = alert.status;
    const cell = (content, className) => {
      const td = cx.element("td", null, className);
      if (content instanceof Node) td.append(content);
      else td.textContent = content;
      row.append(td);
      return td;
    };
    const raised = cx.element("time", cx.time(alert.raised_at));
    raised.dateTime = alert.raised_at;
    cell(raised, "num");
    cell(cx.patientLink(alert.patient_key));
    cell(cx.band(alert.band));
    cell(`${cx.risk(alert.previous_p_critical)} → ${cx.risk(alert.p_critical)}`, "num");
    cell(alert.news2.score === null ? "–" : String(alert.news2.score), "num");
    cell(
      alert.changes
        .map((c) => `${c.feature} ${cx.value(c.previous)} → ${cx.value(c.current)} ${c.unit}`)
        .join("; "),
    );
    cell(board.statusText(alert), `status status-${alert.status}`);
    cell(board.actions(alert));
    return row;
  },

  statusText(alert) {
    const change = alert.resolved || alert.acknowledged;
    return change ? `${alert.status} by ${change.by}` : alert.status;
  },

  actions(alert) {
    const box = cx.element("span");
    if (!cx.canRespond()) return box;
    if (alert.status === "open") {
      box.append(board.button("Acknowledge", alert, "acknowledge"));
    }
    if (alert.status !== "resolved") {
      box.append(" ", board.button("Resolve", alert, "resolve"));
    }
    return box;
  },

  button(label, alert, action) {
    const button = cx.element("button", label);
    button.type = "button";
    button.setAttribute("aria-label", `${label} alert for ${alert.patient_key}`);
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const updated = await cx.api(
          `/alerts/${encodeURIComponent(alert.alert_id)}/${action}`,
          { method: "POST" },
        );
        board.show(updated, false, false);
      } catch (error) {
        document.getElementById("board-error").textContent = error.message;
        button.disabled = false;
      }
    });
    return button;
  },
};

document.getElementById("older").addEventListener("click", () => board.older());
document.addEventListener("cx:signed-out", () => board.close());
cx.start(() => board.open());
