// The agent productivity report of a day, in the user's time zone, from the reports API.
"use strict";

(() => {
  const { api, el, formatDuration, formatPercent, failed } = window.HC;
  const form = document.getElementById("agent-report-form");
  if (!form) return;
  const body = document.getElementById("agent-report");
  async function load() {
    const day = document.getElementById("agent-day").value;
    const query = new URLSearchParams({ date: day, tz: HC.timeZone });
    try {
      const report = await api("GET", `/reports/agents?${query}`);
      body.replaceChildren(...report.agents.map((a) => el("tr", {},
        el("th", { scope: "row" }, `${a.name || "–"} `, el("span", { class: "muted" }, `#${a.number || a.agent_id}`)),
        el("td", { class: "num" }, formatDuration(a.logged_in_s)),
        el("td", { class: "num" }, formatDuration(a.ready_s)),
        el("td", { class: "num" }, formatDuration(a.talk_s)),
        el("td", { class: "num" }, formatDuration(a.wrap_up_s)),
        el("td", { class: "num" }, formatDuration(a.paused_s)),
        el("td", { class: "num" }, String(a.calls)),
        el("td", { class: "num" }, String(a.connects)),
        el("td", { class: "num" }, a.average_handle_s === null ? "–" : formatDuration(a.average_handle_s)),
        el("td", { class: "num" }, formatPercent(a.occupancy, 0)))));
      document.getElementById("agent-report-empty").hidden = report.agents.length > 0;
    } catch (err) {
      failed(err);
    }
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
  load();
})();
