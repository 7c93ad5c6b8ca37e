// HitCall workspace: what every page shares. Messages come from the server's catalogue in the
// user's language; times are shown in the user's time zone; every state-changing API call
// carries the session's CSRF token in a header.
"use strict";

const HC = (() => {
  const body = document.body;
  const locale = body.dataset.locale || "fi";
  const timeZone = body.dataset.timezone || "Europe/Helsinki";
  const messages = JSON.parse(document.getElementById("hc-messages").textContent);
  const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content || "";
  const csrf = meta("csrf-token");
  const csrfHeader = meta("csrf-header") || "X-CSRF-Token";
  const intlLocale = locale === "fi" ? "fi-FI" : "en-GB";

  function t(key, values) {
    let text = messages[key] ?? key;
    for (const [k, v] of Object.entries(values || {})) text = text.replaceAll(`{${k}}`, String(v));
    return text;
  }

  class ApiError extends Error {
    constructor(status, body) {
      super(body?.message || `HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  async function api(method, path, data) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") headers[csrfHeader] = csrf;
    if (data !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(`/api/v1${path}`, {
      method,
      headers,
      credentials: "same-origin",
      cache: "no-store",
      body: data === undefined ? undefined : JSON.stringify(data),
    });
    if (resp.status === 401) {
      window.location.assign("/web/login");
      throw new ApiError(401, null);
    }
    const text = await resp.text();
    const parsed = text ? JSON.parse(text) : null;
    if (!resp.ok) throw new ApiError(resp.status, parsed);
    return parsed;
  }

  const dateTime = new Intl.DateTimeFormat(intlLocale, {
    timeZone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
  });
  const timeOnly = new Intl.DateTimeFormat(intlLocale, { timeZone, hour: "2-digit", minute: "2-digit", second: "2-digit" });

  // A wall time ("2026-12-07T11:30", no zone) spelled out in the user's language, whatever
  // format the browser's own date field uses.
  const wallTime = new Intl.DateTimeFormat(intlLocale, {
    timeZone: "UTC", weekday: "short", year: "numeric", month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit",
  });
  function formatWallTime(local) {
    const at = local ? new Date(`${local.slice(0, 16)}:00Z`) : null;
    return at && !Number.isNaN(at.getTime()) ? wallTime.format(at) : "";
  }

  function formatDateTime(iso) {
    return iso ? dateTime.format(new Date(iso)) : "–";
  }
  function formatTime(iso) {
    return iso ? timeOnly.format(new Date(iso)) : "–";
  }
  function formatDuration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    const mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? `${h}:` : "") + `${mm}:${String(s).padStart(2, "0")}`;
  }
  function formatPercent(x, digits = 1) {
    return x === null || x === undefined ? "–" : `${(x * 100).toFixed(digits).replace(".", locale === "fi" ? "," : ".")} %`;
  }

  let toastTimer = null;
  function toast(text, tone = "good") {
    const el = document.getElementById("hc-toast");
    if (!el) return;
    el.textContent = text;
    el.className = `toast ${tone}`;
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.hidden = true; }, 4000);
  }
  function failed(err) {
    toast(t("error.action", { message: err?.body?.message || err?.message || "?" }), "bad");
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== false && v !== null && v !== undefined) node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
    return node;
  }

  // A server-sent event stream that reconnects by itself (EventSource does), showing when it is down.
  function stream(url, handlers) {
    const source = new EventSource(url, { withCredentials: true });
    for (const [event, fn] of Object.entries(handlers)) {
      source.addEventListener(event, (e) => fn(JSON.parse(e.data)));
    }
    source.addEventListener("error", () => { if (source.readyState !== EventSource.OPEN) handlers.down?.(); });
    source.addEventListener("open", () => handlers.up?.());
    return source;
  }

  return { t, api, ApiError, formatDateTime, formatWallTime, formatTime, formatDuration, formatPercent, toast, failed, el, stream, locale, timeZone };
})();
window.HC = HC;
