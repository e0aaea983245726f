// cxrwatch page session: the API key from the sign-in form, kept in
// sessionStorage (gone when the tab closes), sent as X-API-Key on every call.
// Shared by the board and the patient view; page text is set with
// textContent only, never parsed as HTML.
"use strict";

const KEY_STORE = "cxrwatch.apiKey";

const cx = {
  identity: null,

  key() {
    return sessionStorage.getItem(KEY_STORE);
  },

  async api(path, options = {}) {
    const headers = { "X-API-Key": cx.key() || "", ...(options.headers || {}) };
    const response = await fetch(path, { ...options, headers });
    if (response.status === 401) {
      cx.signOut("Your key was refused; sign in again.");
      throw new Error("not signed in");
    }
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const body = await response.json();
        detail = typeof body.detail === "string" ? body.detail : detail;
      } catch (_) { /* not JSON: keep the status text */ }
      throw new Error(`${response.status}: ${detail}`);
    }
    return response.json();
  },

  canRespond() {
    return cx.identity !== null && ["responder", "admin"].includes(cx.identity.role);
  },

  signOut(message) {
    sessionStorage.removeItem(KEY_STORE);
    cx.identity = null;
    document.getElementById("who").hidden = true;
    document.getElementById("sign-out").hidden = true;
    document.querySelectorAll("main > section:not(#sign-in)").forEach((s) => {
      s.hidden = true;
    });
    document.getElementById("sign-in").hidden = false;
    document.getElementById("sign-in-error").textContent = message || "";
    document.getElementById("api-key").focus();
    document.dispatchEvent(new Event("cx:signed-out"));
  },

  async start(onReady) {
    const form = document.getElementById("sign-in-form");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const field = document.getElementById("api-key");
      sessionStorage.setItem(KEY_STORE, field.value.trim());
      field.value = "";
      await cx.resume(onReady);
    });
    document.getElementById("sign-out").addEventListener("click", () => cx.signOut());
    if (cx.key()) {
      await cx.resume(onReady);
    } else {
      cx.signOut();
    }
  },

  async resume(onReady) {
    try {
      cx.identity = await cx.api("/auth/whoami");
    } catch (error) {
      if (cx.key()) cx.signOut(error.message);
      return;
    }
    const who = document.getElementById("who");
    who.textContent = `${cx.identity.name} (${cx.identity.role})`;
    who.hidden = false;
    document.getElementById("sign-out").hidden = false;
    document.getElementById("sign-in").hidden = true;
    await onReady();
  },

  time(iso) {
    return new Date(iso).toLocaleString(undefined, {
      dateStyle: "medium",
      timeStyle: "short",
    });
  },

  risk(p) {
    return p === null || p === undefined ? "–" : p.toFixed(2);
  },

  value(v) {
    return v === null || v === undefined ? "–" : String(Math.round(v * 100) / 100);
  },

  element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (className) node.className = className;
    return node;
  },

  band(band) {
    return cx.element("span", band, `band band-${band}`);
  },

  patientLink(patientKey) {
    const link = cx.element("a", patientKey);
    link.href = `patient.html#${encodeURIComponent(patientKey)}`;
    return link;
  },
};
