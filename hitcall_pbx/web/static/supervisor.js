// The supervisor's wallboard: one campaign's live figures, pushed by the server (server-sent
// events): a full snapshot when figures change, and each agent-state change the moment it
// happens. Actions go through the REST API with the session cookie (+ CSRF header).
"use strict";

(() => {
  const { t, api, el, formatDuration, formatPercent, toast, failed } = window.HC;
  const root = document.getElementById("wallboard");
  const campaignId = Number(root.dataset.campaignId);
  if (!campaignId) return;
  const $ = (id) => document.getElementById(id);
  const agents = new Map(); // id -> {row, since, state}
  let snapshot = null;

  function messageOr(key, fallback) {
    const found = t(key);
    return found === key ? fallback : found;
  }

  function text(id, value) {
    $(id).textContent = value === null || value === undefined ? "–" : String(value);
  }

  function meter(id, rate, cap) {
    const bar = $(id);
    const ratio = rate === null || rate === undefined || !cap ? 0 : Math.min(rate / cap, 1.5);
    bar.style.width = `${Math.min(ratio, 1) * 100}%`;
    bar.className = ratio >= 1 ? "bad" : ratio >= 0.8 ? "warn" : "good";
  }

  function showSnapshot(s) {
    if (s.missing || !s.agents) return; // the campaign is gone, or its figures are not read yet
    snapshot = s;
    const state = $("camp-state");
    state.textContent = t(`campaign.${s.state}`);
    state.className = `badge campaign-${s.state}`;
    text("camp-mode", messageOr(`mode.${s.mode}`, s.mode));
    const option = document.querySelector(`#campaign option[value="${campaignId}"]`);
    if (option) option.textContent = `${s.name} (${t(`campaign.${s.state}`)})`;
    for (const b of document.querySelectorAll("[data-campaign-action]")) {
      const action = b.dataset.campaignAction;
      b.disabled = !((action === "start" && s.state === "draft") || (action === "pause" && s.state === "running")
        || (action === "resume" && s.state === "paused"));
    }
    const calls = s.calls || {};
    text("f-ringing", calls.ringing ?? t("sup.not_available"));
    text("f-waiting", calls.waiting ?? t("sup.not_available"));
    text("f-bridged", calls.bridged ?? t("sup.not_available"));
    const ab = s.abandon || {};
    text("f-ab-today", formatPercent(ab.today, 2));
    text("f-ab-30", formatPercent(ab.last_30_days, 2));
    text("f-cap", `${t("sup.cap")} ${formatPercent(ab.cap, 1)}`);
    meter("m-ab-today", ab.today, ab.cap);
    meter("m-ab-30", ab.last_30_days, ab.cap);
    const lat = s.latency_ms || {};
    text("f-latency", lat.p50 === null || lat.p50 === undefined ? "–" : `${lat.p50} / ${lat.p99} ms`);
    const pacing = s.pacing || {};
    text("f-contact", formatPercent(pacing.contact_rate ?? s.contact_rate, 0));
    const working = s.agents.filter((a) => !["logged_out", "paused"].includes(a.state)).length;
    const lines = (calls.ringing ?? 0) + (calls.waiting ?? 0) + (calls.bridged ?? 0);
    text("f-lines", working ? (lines / working).toFixed(2) : "–");
    const d = pacing.decision;
    text("f-decision", d ? t("sup.decision_text", { calls: d.dial_now, mode: messageOr(`mode.${d.mode_effective}`, d.mode_effective) }) : "–");
    text("f-hopper", s.hopper);
    text("f-callbacks", s.callbacks_due);
    showAgents(s.agents);
    showAlarms(s.alarms || []);
    drawChart(s.history || []);
  }

  function showAgents(list) {
    const body = $("agents-body");
    const seen = new Set();
    for (const a of list) {
      seen.add(a.id);
      let entry = agents.get(a.id);
      if (!entry) {
        entry = makeRow(a);
        agents.set(a.id, entry);
        body.append(entry.row);
      }
      // The snapshot is at most a few seconds old: a pushed change newer than it wins.
      if (!entry.pushedAt || new Date(a.since) >= entry.pushedAt) setAgentState(entry, a.state, a.pause_code, a.since);
      // The monitor buttons work on a live call of the agent's (the snapshot names it).
      const call = snapshot?.agent_calls?.[String(a.id)];
      if (call) entry.row.dataset.call = call;
      else delete entry.row.dataset.call;
      for (const b of entry.row.querySelectorAll("[data-monitor]")) b.disabled = !call;
    }
    for (const [id, entry] of agents) {
      if (!seen.has(id)) {
        entry.row.remove();
        agents.delete(id);
      }
    }
    $("no-agents").hidden = list.length > 0;
    paintMonitor();
  }

  function makeRow(a) {
    const stateCell = el("span", { class: "badge" });
    const timeCell = el("td", { class: "num" });
    const actions = el("td", { class: "actions" },
      el("button", { type: "button", onclick: () => agentAction(a.id, "pause") }, t("sup.force_pause")),
      el("button", { type: "button", onclick: () => agentAction(a.id, "unpause") }, t("sup.unpause")),
      el("button", { type: "button", "data-needs": "logout", onclick: () => agentAction(a.id, "logout") }, t("sup.logout_agent")),
      el("button", { type: "button", "data-edit": "campaigns", onclick: () => editCampaigns(a) }, t("sup.campaigns")),
      ...MODES.map((mode) => el("button", { type: "button", "data-needs": "listen", "data-monitor": mode,
        "aria-pressed": "false", onclick: () => agentAction(a.id, mode) }, t(`sup.${mode}`))),
      el("button", { type: "button", class: "bad", "data-monitor-stop": "", hidden: true,
        onclick: () => agentAction(a.id, "stop") }, t("sup.stop_monitor")));
    const row = el("tr", { dataset: { agentId: String(a.id) } },
      el("th", { scope: "row" }, `${a.name} `, el("span", { class: "muted" }, `#${a.number}`)),
      el("td", {}, stateCell), timeCell, actions);
    applyCapabilities(row);
    return { row, stateCell, timeCell, since: null, state: null, pushedAt: null };
  }

  function setAgentState(entry, state, pauseCode, since) {
    entry.state = state;
    entry.since = since ? new Date(since) : new Date();
    entry.stateCell.textContent = t(`state.${state}`) + (pauseCode ? ` · ${messageOr(`pause.${pauseCode}`, pauseCode)}` : "");
    entry.stateCell.className = `badge state-${state}`;
    entry.row.dataset.state = state;
    tickAgent(entry);
  }

  function tickAgent(entry) {
    if (entry.since) entry.timeCell.textContent = formatDuration((Date.now() - entry.since.getTime()) / 1000);
  }

  function showAlarms(list) {
    const ul = $("alarms");
    ul.replaceChildren(...list.map((a) => el("li", { class: `alarm ${a.severity}` },
      el("strong", {}, a.name), ` · ${a.severity} · ${HC.formatDateTime(a.raised_at)}`)));
    $("no-alarms").hidden = list.length > 0;
  }

  // Calls by state over the last minutes: stacked areas in an inline SVG.
  function drawChart(points) {
    const box = $("chart");
    const W = 460, H = 140, pad = 24;
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("aria-hidden", "true");
    const keys = ["bridged", "waiting", "ringing"];
    const max = Math.max(4, ...points.map((p) => keys.reduce((s, k) => s + (p[k] || 0), 0)));
    const now = Date.now() / 1000, span = 300;
    const x = (tt) => pad + ((tt - (now - span)) / span) * (W - pad - 4);
    const y = (v) => H - pad + 4 - (v / max) * (H - pad - 8);
    for (let g = 0; g <= 2; g++) {
      const v = Math.round((max * g) / 2);
      const line = document.createElementNS(ns, "line");
      line.setAttribute("x1", pad); line.setAttribute("x2", W - 4);
      line.setAttribute("y1", y(v)); line.setAttribute("y2", y(v));
      line.setAttribute("class", "grid");
      svg.append(line);
      const label = document.createElementNS(ns, "text");
      label.setAttribute("x", 2); label.setAttribute("y", y(v) + 4);
      label.textContent = String(v);
      svg.append(label);
    }
    if (points.length > 1) {
      let base = points.map(() => 0);
      for (const k of keys) {
        const top = points.map((p, i) => base[i] + (p[k] || 0));
        const upper = points.map((p, i) => `${x(p.t).toFixed(1)},${y(top[i]).toFixed(1)}`);
        const lower = points.map((p, i) => `${x(p.t).toFixed(1)},${y(base[i]).toFixed(1)}`).reverse();
        const poly = document.createElementNS(ns, "polygon");
        poly.setAttribute("points", [...upper, ...lower].join(" "));
        poly.setAttribute("class", `area ${k}`);
        svg.append(poly);
        base = top;
      }
    }
    box.replaceChildren(svg);
  }

  // ----------------------------------------------------------------- actions
  const capabilities = { logout: null, listen: null };
  const MODES = ["listen", "whisper", "barge"];
  const MODE_TOAST = { listen: "sup.listening", whisper: "sup.whispering", barge: "sup.barging" };
  let monitor = null; // this supervisor's monitoring session: {agentId, attemptId, id, mode}

  function setMonitor(agentId, session) {
    monitor = session && !session.ended_at
      ? { agentId, attemptId: session.attempt_id, id: session.id, mode: session.mode } : null;
    paintMonitor();
  }
  function paintMonitor() {
    for (const [id, entry] of agents) {
      const mode = monitor && monitor.agentId === id ? monitor.mode : null;
      if (mode) entry.row.dataset.monitor = mode;
      else delete entry.row.dataset.monitor;
      for (const b of entry.row.querySelectorAll("[data-monitor]")) {
        b.setAttribute("aria-pressed", String(b.dataset.monitor === mode));
      }
      entry.row.querySelector("[data-monitor-stop]").hidden = !mode;
    }
  }

  function applyCapabilities(row) {
    for (const b of row.querySelectorAll("[data-needs]")) b.hidden = !capabilities[b.dataset.needs];
  }
  async function findCapabilities() {
    try {
      const spec = await fetch("/api/v1/openapi.json", { cache: "no-store" }).then((r) => r.json());
      const paths = Object.keys(spec.paths || {});
      capabilities.logout = paths.includes("/api/v1/agents/{agent_id}/logout") ? "/agents/{agent_id}/logout" : null;
      capabilities.listen = paths.includes("/api/v1/calls/{attempt_id}/monitor") ? "/calls/{attempt_id}/monitor" : null;
    } catch (err) { /* the buttons stay hidden */ }
    for (const entry of agents.values()) applyCapabilities(entry.row);
    if (capabilities.listen) {
      // A session this supervisor left running (the page was reloaded) is shown again.
      try {
        const { items } = await api("GET", "/monitoring?active=true");
        const mine = items.find((m) => m.supervisor === root.dataset.user && m.campaign_id === campaignId);
        if (mine) setMonitor(mine.agent_id, mine);
      } catch (err) { /* shown as not monitoring */ }
    }
  }

  async function agentAction(id, action) {
    try {
      if (action === "pause") await api("POST", `/agents/${id}/pause`, { pause_code: "supervisor" });
      else if (action === "unpause") {
        const entry = agents.get(id);
        await api("POST", entry?.state === "wrap_up" ? `/agents/${id}/wrap-up/end` : `/agents/${id}/unpause`);
      } else if (action === "logout" && capabilities.logout) {
        await api("POST", capabilities.logout.replace("{agent_id}", String(id)));
      } else if (MODES.includes(action) && capabilities.listen) {
        // One session per supervisor: a mode button on the call being monitored switches its mode.
        if (monitor && monitor.agentId === id) {
          if (monitor.mode === action) return;
          setMonitor(id, await api("PATCH", `/calls/${monitor.attemptId}/monitor/${monitor.id}`, { mode: action }));
        } else {
          const attempt = snapshot?.agent_calls?.[String(id)];
          if (!attempt) return toast(t("sup.no_call"), "bad");
          if (monitor) await stopMonitor();
          setMonitor(id, await api("POST", capabilities.listen.replace("{attempt_id}", attempt), { mode: action }));
        }
        toast(t(MODE_TOAST[action]));
      } else if (action === "stop" && monitor) {
        await stopMonitor();
        toast(t("sup.monitor_stopped"));
      }
    } catch (err) {
      failed(err);
    }
  }

  // The agent's campaigns: those the user may assign (a supervisor's own, an admin's all).
  const dialog = $("campaigns-dialog");
  async function editCampaigns(a) {
    try {
      const [agent, list] = await Promise.all([api("GET", `/agents/${a.id}`), api("GET", "/campaigns")]);
      const have = new Set(agent.campaign_ids);
      $("campaigns-title").textContent = t("sup.campaigns_of", { name: a.name });
      $("campaigns-list").replaceChildren($("campaigns-list").querySelector("legend"), ...list.items.map((c) =>
        el("label", { class: "check" },
          el("input", { type: "checkbox", name: "campaign", value: String(c.id), checked: have.has(c.id) }),
          ` ${c.name}`)));
      dialog.dataset.agentId = String(a.id);
      dialog.showModal();
    } catch (err) {
      failed(err);
    }
  }
  $("campaigns-cancel").addEventListener("click", () => dialog.close());
  $("campaigns-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const ids = [...dialog.querySelectorAll("input[name=campaign]:checked")].map((i) => Number(i.value));
    try {
      await api("PATCH", `/agents/${dialog.dataset.agentId}`, { campaign_ids: ids });
      dialog.close();
      toast(t("sup.campaigns_saved"));
    } catch (err) {
      failed(err);
    }
  });

  async function stopMonitor() {
    const { attemptId, id } = monitor;
    try {
      await api("DELETE", `/calls/${attemptId}/monitor/${id}`);
    } catch (err) {
      if (err.status !== 404) throw err; // 404: the call (and so the session) had already ended
    }
    setMonitor(null, null);
  }

  for (const b of document.querySelectorAll("[data-campaign-action]")) {
    b.addEventListener("click", async () => {
      try {
        const c = await api("POST", `/campaigns/${campaignId}/${b.dataset.campaignRoute}`);
        toast(`${t("sup.state")}: ${t(`campaign.${c.state}`)}`);
        if (snapshot) showSnapshot({ ...snapshot, state: c.state });
      } catch (err) {
        failed(err);
      }
    });
  }

  // ------------------------------------------------------------------- live
  HC.stream(`/web/live/wallboard?campaign=${campaignId}`, {
    snapshot: (s) => showSnapshot(s),
    live: (m) => {
      if (m.type !== "agent.state_changed") return;
      const entry = agents.get(m.agent_id);
      if (!entry) return;
      entry.pushedAt = m.at ? new Date(m.at) : new Date();
      setAgentState(entry, m.state, m.pause_code, m.at);
      if (m.state !== "on_call") {
        delete entry.row.dataset.call;
        for (const b of entry.row.querySelectorAll("[data-monitor]")) b.disabled = true;
        if (monitor && monitor.agentId === m.agent_id) setMonitor(null, null);
      }
      entry.row.dataset.changedAt = String(Date.now());
      if (window.hcPushLatencies && m.at) window.hcPushLatencies.push(Date.now() - Date.parse(m.at)); // benchmarks/ui.py
      entry.row.classList.add("changed");
      setTimeout(() => entry.row.classList.remove("changed"), 1200);
    },
    up: () => { $("live-dot").className = "live"; },
    down: () => { $("live-dot").className = "live down"; toast(t("error.network"), "bad"); },
  });
  setInterval(() => { for (const entry of agents.values()) tickAgent(entry); }, 1000);
  findCapabilities();
})();
