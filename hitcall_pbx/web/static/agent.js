// The agent's desk: state bar, customer card, disposition, callback, own day.
// Everything goes through the REST API with the session cookie (+ CSRF header); the page is
// pushed the agent's own events (state changes, calls) and reloads what they change.
"use strict";

(() => {
  const { t, api, el, formatDateTime, formatDuration, toast, failed } = window.HC;
  const root = document.getElementById("agent");
  const agentId = Number(root.dataset.agentId);
  const $ = (id) => document.getElementById(id);
  const view = { state: null, since: null, pauseCode: null, card: null, wrapS: null, callbackPath: null };

  // ----------------------------------------------------------------- state bar
  function showState(s) {
    // A pushed change is newer than what the database said a moment ago (it is written behind): keep it.
    const since = s.state_since ? new Date(s.state_since) : new Date();
    if (view.since && since < view.since && s.state !== view.state) return;
    view.state = s.state;
    view.since = since;
    view.pauseCode = s.pause_code;
    const badge = $("state-badge");
    badge.textContent = t(`state.${s.state}`) + (s.pause_code ? ` · ${t(`pause.${s.pause_code}`) || s.pause_code}` : "");
    badge.className = `badge state-${s.state}`;
    root.dataset.state = s.state;
    $("phone-banner").hidden = s.state !== "logged_out";
    const loggedIn = s.state !== "logged_out";
    $("btn-ready").disabled = !loggedIn || !["paused", "wrap_up"].includes(s.state);
    $("btn-pause").disabled = !loggedIn || !["ready", "wrap_up"].includes(s.state);
    $("pause-code").disabled = $("btn-pause").disabled;
    $("btn-end-wrap").hidden = s.state !== "wrap_up";
    tick();
  }

  function tick() {
    const now = Date.now();
    if (view.since) $("state-time").textContent = formatDuration((now - view.since.getTime()) / 1000);
    const wrap = $("wrap-left");
    if (view.state === "wrap_up" && view.wrapS !== null && view.since) {
      const left = view.wrapS - (now - view.since.getTime()) / 1000;
      wrap.textContent = t("agent.wrap_left", { seconds: Math.max(0, Math.ceil(left)) });
      wrap.hidden = false;
    } else {
      wrap.hidden = true;
    }
    const timer = $("call-timer");
    const card = view.card;
    if (card && card.kind === "call" && card.bridged_at) {
      timer.textContent = `${t("agent.call_timer")} ${formatDuration((now - new Date(card.bridged_at).getTime()) / 1000)}`;
      timer.hidden = false;
    } else {
      timer.hidden = true;
    }
    if (card && card.kind === "offer" && card.expires_at) {
      const left = (new Date(card.expires_at).getTime() - now) / 1000;
      $("offer-left").textContent = t("card.offer_left", { seconds: Math.max(0, Math.ceil(left)) });
    }
  }

  // --------------------------------------------------------------- the card
  function text(id, value) {
    $(id).textContent = value === null || value === undefined || value === "" ? "–" : String(value);
  }

  function showCard(card) {
    view.card = card;
    const body = $("card-body");
    if (!card) {
      body.hidden = true;
      $("no-card").hidden = false;
      $("card").removeAttribute("data-attempt-id");
      $("card").removeAttribute("data-kind");
      $("btn-hangup").disabled = true;
      setDispositionEnabled(false);
      tick();
      return;
    }
    view.wrapS = card.wrap_up_s ?? view.wrapS;
    $("no-card").hidden = true;
    body.hidden = false;
    $("card").dataset.kind = card.kind;
    $("card").dataset.attemptId = card.attempt_id || "";
    $("offer").hidden = card.kind !== "offer";
    text("c-name", card.name || (card.contact_id === null ? card.phone : null)); // a number dialled by hand: the number
    text("c-organisation", card.organisation);
    text("c-title", card.title);
    text("c-numbers", [card.phone, ...card.earlier_numbers].join(", "));
    text("c-email", card.email);
    text("c-campaign", card.campaign_name);
    text("c-timezone", card.timezone);
    const m = $("c-marketing");
    m.textContent = card.marketing_prohibited ? t("card.prohibited") : card.marketing_permission ? t("card.permission") : t("card.none");
    m.className = card.marketing_prohibited ? "flag bad" : card.marketing_permission ? "flag good" : "flag";
    const extra = $("c-extra");
    extra.replaceChildren();
    $("c-extra-title").hidden = Object.keys(card.extra || {}).length === 0;
    for (const [k, v] of Object.entries(card.extra || {})) {
      extra.append(el("dt", {}, k), el("dd", {}, typeof v === "object" ? JSON.stringify(v) : String(v)));
    }
    if (document.activeElement !== $("c-notes")) $("c-notes").value = card.notes || "";
    const rows = $("c-history");
    rows.replaceChildren();
    for (const h of card.history) {
      rows.append(el("tr", {},
        el("td", {}, formatDateTime(h.at)),
        el("td", {}, h.outcome ? t(`outcome.${h.outcome}`) : "–"),
        el("td", {}, h.disposition ? messageOr(`disp.${h.disposition}`, h.disposition) : "–"),
        el("td", {}, h.agent_name || "–")));
    }
    $("c-history-empty").hidden = card.history.length > 0;
    const select = $("disposition");
    const current = select.value;
    view.rules = Object.fromEntries(card.dispositions.map((d) => [d.code, d.rule]));
    select.replaceChildren(...card.dispositions.map((d) => el("option", { value: d.code },
      (HC.locale === "fi" ? d.label_fi : d.label_en) + (d.phone_key ? ` (${d.phone_key})` : ""))));
    const fresh = view.shownAttempt !== (card.attempt_id || `offer:${card.offer_id}`);
    if (card.disposition && card.disposition in view.rules) select.value = card.disposition;
    else if (!fresh && current in view.rules) select.value = current;
    if (fresh || !$("callback-at").value) $("callback-at").value = card.callback_at ? localInput(card.callback_at, card.timezone) : "";
    $("callback-at").required = view.rules[select.value] === "callback";
    view.shownAttempt = card.attempt_id || `offer:${card.offer_id}`;
    showCallbackTime();
    $("btn-hangup").disabled = card.kind !== "call";
    setDispositionEnabled(card.kind !== "offer" && Boolean(card.attempt_id));
    if (!window.hcCardShown || window.hcCardShown.attempt !== (card.attempt_id || `offer:${card.offer_id}`)) {
      window.hcCardShown = { attempt: card.attempt_id || `offer:${card.offer_id}`, at: Date.now() };
    }
    tick();
  }

  // The picked callback time written out in the user's language, and whose clock it is.
  function showCallbackTime() {
    const zone = view.card?.timezone || "";
    const when = HC.formatWallTime($("callback-at").value);
    $("callback-zone").textContent = when ? `${when} · ${zone}` : zone;
  }
  $("callback-at").addEventListener("input", showCallbackTime);

  // An instant as the value of a datetime-local input in `zone` (the customer's local time).
  function localInput(iso, zone) {
    const parts = Object.fromEntries(new Intl.DateTimeFormat("en-GB", {
      timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
    }).formatToParts(new Date(iso)).map((p) => [p.type, p.value]));
    return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}`;
  }

  function messageOr(key, fallback) {
    const text = t(key);
    return text === key ? fallback : text;
  }

  function setDispositionEnabled(on) {
    for (const id of ["disposition", "btn-disposition", "callback-at"]) $(id).disabled = !on;
    $("btn-notes").disabled = !view.card || view.card.contact_id === null; // a number dialled by hand: no contact
    $("btn-callback").disabled = !(on && view.callbackPath);
  }

  // ----------------------------------------------------------------- loading
  let loading = null;
  async function loadState() {
    showState(await api("GET", `/agents/${agentId}/state`));
  }
  // The database is written a moment after a pushed change: a card the push says exists
  // (a call, an offer, a wrap-up) is asked for again a few times before the page gives up.
  async function loadCard(tries = 0) {
    try {
      showCard(await api("GET", `/agents/${agentId}/card`));
    } catch (err) {
      if (err.status !== 404) throw err;
      const expected = ["reserved", "on_call", "wrap_up"].includes(view.state);
      if (expected && tries < 8) {
        setTimeout(() => loadCard(tries + 1).catch(failed), 250);
      } else {
        showCard(null);
      }
    }
  }
  async function loadDay() {
    const d = await api("GET", `/agents/${agentId}/day`);
    $("day-calls").textContent = String(d.calls);
    $("day-talk").textContent = formatDuration(d.talk_s);
    $("day-callbacks").textContent = String(d.callbacks_due);
  }
  function loadAll() {
    if (!loading) {
      loading = Promise.all([loadState(), loadCard(), loadDay()])
        .catch(failed)
        .finally(() => { loading = null; });
    }
    return loading;
  }

  // A callback is booked through the callbacks API when this HitCall has one (POST /callbacks:
  // a time without an offset is the contact's local time).
  async function findCallbackApi() {
    try {
      const spec = await fetch("/api/v1/openapi.json", { cache: "no-store" }).then((r) => r.json());
      view.callbackPath = spec.paths && spec.paths["/api/v1/callbacks"]?.post ? "/callbacks" : null;
    } catch (err) {
      view.callbackPath = null;
    }
    $("btn-callback").hidden = !view.callbackPath;
    setDispositionEnabled(Boolean(view.card && view.card.kind !== "offer" && view.card.attempt_id));
  }

  // Call tools, shown when this HitCall's API has them: recording pause, transfer, manual dial.
  const tools = { recording: false, transfer: false, dial: false, campaignId: null };
  async function findTools() {
    try {
      const spec = await fetch("/api/v1/openapi.json", { cache: "no-store" }).then((r) => r.json());
      const paths = spec.paths || {};
      tools.recording = Boolean(paths["/api/v1/agents/{agent_id}/recording/pause"]);
      tools.transfer = Boolean(paths["/api/v1/agents/{agent_id}/transfer"]);
      tools.dial = Boolean(paths["/api/v1/agents/{agent_id}/dial"]);
      if (tools.dial) tools.campaignId = (await api("GET", `/agents/${agentId}`)).campaign_ids[0] ?? null;
    } catch (err) { /* the tools stay hidden */ }
    $("tool-recording").hidden = !tools.recording;
    $("tool-transfer").hidden = !tools.transfer;
    $("tool-dial").hidden = !(tools.dial && tools.campaignId);
    $("tools").hidden = !(tools.recording || tools.transfer || (tools.dial && tools.campaignId));
  }
  $("btn-rec-pause").addEventListener("click", () => act(() => api("POST", `/agents/${agentId}/recording/pause`), t("tools.rec_paused")));
  $("btn-rec-resume").addEventListener("click", () => act(() => api("POST", `/agents/${agentId}/recording/resume`), t("tools.rec_resumed")));
  $("tool-transfer").addEventListener("submit", (e) => {
    e.preventDefault();
    const number = $("transfer-number").value.trim();
    const colleague = Number($("transfer-agent").value);
    if (!number && !colleague) return $("transfer-number").focus();
    const target = colleague ? { agent_id: colleague } : { number };
    act(() => api("POST", `/agents/${agentId}/transfer`, { kind: $("transfer-kind").value, target }),
      t("tools.transferring"));
  });
  for (const b of document.querySelectorAll("[data-transfer]")) {
    b.addEventListener("click", () => act(() => api("POST", `/agents/${agentId}/transfer/${b.dataset.transfer}`)));
  }
  $("tool-dial").addEventListener("submit", (e) => {
    e.preventDefault();
    const number = $("dial-number").value.trim();
    if (!number || !tools.campaignId) return $("dial-number").focus();
    act(() => api("POST", `/agents/${agentId}/dial`, { campaign_id: tools.campaignId, number }), t("tools.dialling"));
  });

  // ----------------------------------------------------------------- actions
  async function act(fn, okText) {
    try {
      await fn();
      if (okText) toast(okText);
    } catch (err) {
      failed(err);
    }
    await loadAll();
  }
  const ready = () => act(() => view.state === "wrap_up"
    ? api("POST", `/agents/${agentId}/wrap-up/end`)
    : api("POST", `/agents/${agentId}/unpause`));
  const pause = () => act(() => api("POST", `/agents/${agentId}/pause`, { pause_code: $("pause-code").value }));
  const hangup = () => view.card?.attempt_id && act(() => api("POST", `/calls/${view.card.attempt_id}/hangup`));
  const accept = () => view.card?.kind === "offer" && act(() => api("POST", `/agents/${agentId}/offer/accept`));
  const skip = () => view.card?.kind === "offer" && act(() => api("POST", `/agents/${agentId}/offer/skip`, { reason: $("skip-reason").value || null }));

  $("btn-ready").addEventListener("click", ready);
  $("btn-end-wrap").addEventListener("click", ready);
  $("btn-pause").addEventListener("click", pause);
  $("btn-hangup").addEventListener("click", hangup);
  $("btn-accept").addEventListener("click", accept);
  $("btn-skip").addEventListener("click", skip);
  $("btn-notes").addEventListener("click", () => act(
    () => api("PUT", `/agents/${agentId}/card/notes`, { notes: $("c-notes").value }), t("card.notes_saved")));
  // The callback time is the contact's local time: sent without a UTC offset, the API reads it so.
  function callbackAt() {
    const local = $("callback-at").value;
    return local ? (local.length === 16 ? `${local}:00` : local) : null;
  }
  $("disposition").addEventListener("change", () => {
    $("callback-at").required = view.rules?.[$("disposition").value] === "callback";
  });
  $("disposition-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const card = view.card;
    if (!card?.attempt_id) return;
    const code = $("disposition").value;
    const body = { disposition: code, attempt_id: card.attempt_id };
    if (view.rules?.[code] === "callback") {
      body.callback_at = callbackAt();
      if (!body.callback_at) {
        $("callback-at").focus();
        return toast(t("card.callback_needed"), "bad");
      }
    }
    act(() => api("POST", `/agents/${agentId}/disposition`, body),
      body.callback_at ? `${t("card.disposition_saved")} ${t("card.callback_saved")}` : t("card.disposition_saved"));
  });
  $("btn-callback").addEventListener("click", () => {
    const card = view.card;
    const at = callbackAt();
    if (!card || !at || !view.callbackPath) return;
    act(() => api("POST", view.callbackPath, { contact_id: card.contact_id, at, kind: "personal" }),
      t("card.callback_saved"));
  });

  // The phone's keys, on the keyboard: P pause (1), R ready (2), H hang up (0), A accept (#), S skip (*), D disposition.
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const tag = (e.target.tagName || "").toLowerCase();
    if (["input", "textarea", "select"].includes(tag)) return;
    const key = e.key.toLowerCase();
    const actions = { p: pause, r: ready, h: hangup, a: accept, s: skip, d: () => $("disposition").focus() };
    if (actions[key]) {
      e.preventDefault();
      actions[key]();
    }
  });

  // ------------------------------------------------------------------- live
  HC.stream("/web/live/agent", {
    hello: () => loadAll(),
    resync: () => loadAll(),
    agent: (m) => {
      if (m.type === "agent.state_changed") {
        showState({ state: m.state, pause_code: m.pause_code, state_since: m.at });
        loadCard().catch(failed);
        if (m.state === "wrap_up" || m.state === "ready") loadDay().catch(failed);
      } else if (m.type === "call.bridged" || m.type === "call.answered") {
        loadCard().catch(failed);
      } else if (m.type === "call.ended") {
        loadAll();
      }
    },
    down: () => toast(t("error.network"), "bad"),
  });
  setInterval(tick, 1000);
  loadAll();
  findCallbackApi();
  findTools();
})();
