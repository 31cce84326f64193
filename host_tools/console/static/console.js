// polewatch console: the receiving centre's alarm queue, alarm workflow, units, reports, audit log
// and user administration (no build step, no outside resources).
//
// After login the queue comes from /api/alarms; /api/events (Server-Sent Events) then carries every
// alarm the receiver commits and every operator action. Whenever the stream (re)opens the list is
// fetched again, so that nothing sent while the console was disconnected is lost. All data goes
// into the page through textContent. Every POST carries the session's CSRF token.
"use strict";

(() => {
  const RECONNECT_MS = 1000; // only used when the browser gives up reconnecting by itself
  const FRESH_S = 60; // a new alarm younger than this is highlighted
  const LATE_S = 300; // a new alarm older than this is shown as overdue
  const UNITS_REFRESH_MS = 10000; // units' health comes with heartbeats, which have no events
  const LANG_KEY = "polewatch.lang";

  const $ = (id) => document.getElementById(id);

  // --- language -----------------------------------------------------------------------------

  const TEXTS = window.POLEWATCH_I18N || { en: {} };
  let lang = localStorage.getItem(LANG_KEY) || "";
  if (!Object.hasOwn(TEXTS, lang)) {
    lang = (navigator.language || "en").toLowerCase().startsWith("sv") ? "sv" : "en";
  }

  function t(key, params) {
    const table = TEXTS[lang] || TEXTS.en;
    let text = Object.hasOwn(table, key) ? table[key] : Object.hasOwn(TEXTS.en, key) ? TEXTS.en[key] : key;
    if (params) {
      for (const [name, value] of Object.entries(params)) text = text.replaceAll(`{${name}}`, String(value));
    }
    return text;
  }

  function translatePage() {
    document.documentElement.lang = lang;
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    for (const node of document.querySelectorAll("[data-i18n-placeholder]")) {
      node.placeholder = t(node.dataset.i18nPlaceholder);
    }
    $("lang").value = lang;
  }

  // --- session ------------------------------------------------------------------------------

  let me = null; // { user, role, csrf, permissions }
  const can = (perm) => me !== null && me.permissions.includes(perm);

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.error) || `HTTP ${status}`);
      this.status = status;
      this.body = body || {};
    }
  }

  async function api(method, path, body) {
    const options = { method, cache: "no-store", headers: { Accept: "application/json" } };
    if (method !== "GET") {
      options.headers["Content-Type"] = "application/json";
      if (me) options.headers["X-CSRF-Token"] = me.csrf;
      options.body = JSON.stringify(body || {});
    }
    const response = await fetch(path, options);
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (response.status === 401 && path !== "/api/login") {
      sessionEnded();
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  function sessionEnded() {
    if (!me) return;
    me = null;
    disconnect();
    showLogin(t("error.session"));
  }

  function showLogin(message) {
    for (const id of VIEWS) $(`${id}-view`).hidden = true;
    $("login-view").hidden = false;
    $("nav").hidden = true;
    $("whoami").hidden = true;
    $("logout").hidden = true;
    const error = $("login-error");
    error.textContent = message || "";
    error.hidden = !message;
    $("login-name").focus();
  }

  async function start() {
    try {
      me = await api("GET", "/api/me");
    } catch {
      me = null;
    }
    if (!me) {
      showLogin("");
      return;
    }
    $("login-view").hidden = true;
    $("nav").hidden = false;
    for (const link of $("nav").querySelectorAll("a[data-perm]")) link.hidden = !can(link.dataset.perm);
    $("whoami").hidden = false;
    $("whoami").textContent = `${me.user} (${t(`role.${me.role}`)})`;
    $("whoami").dataset.role = me.role;
    $("logout").hidden = false;
    document.body.dataset.role = me.role;
    for (const node of document.querySelectorAll(".perm-command")) node.hidden = !can("command");
    refresh();
    refreshCommands();
    refreshUnits();
    connect();
    route();
  }

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = $("login-name").value.trim();
    const password = $("login-password").value;
    try {
      me = await api("POST", "/api/login", { name, password });
    } catch (err) {
      showLogin(err.status === 429 ? t("login.limited") : t("login.failed"));
      return;
    }
    $("login-password").value = "";
    start();
  });

  $("logout").addEventListener("click", async () => {
    try {
      await api("POST", "/api/logout");
    } catch {
      // logged out either way
    }
    me = null;
    disconnect();
    clearQueue();
    location.hash = "";
    showLogin("");
  });

  $("lang").addEventListener("change", () => {
    lang = $("lang").value;
    localStorage.setItem(LANG_KEY, lang);
    translatePage();
    if (me) {
      $("whoami").textContent = `${me.user} (${t(`role.${me.role}`)})`;
      for (const entry of shown.values()) fillRow(entry);
      setConnection(connectionEl.dataset.state);
      updateSummary();
      refreshUnits();
      route();
    }
  });

  // --- formatting ---------------------------------------------------------------------------

  const pad2 = (n) => String(n).padStart(2, "0");

  function formatTime(epochS) {
    const d = new Date(epochS * 1000);
    return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  }

  function formatDate(epochS) {
    const d = new Date(epochS * 1000);
    return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
  }

  const formatDateTime = (epochS) => `${formatDate(epochS)} ${formatTime(epochS)}`;

  function formatAge(s) {
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${pad2(s % 60)} s`;
    const h = Math.floor(m / 60);
    if (h < 24) return `${h} h ${pad2(m % 60)} min`;
    return `${Math.floor(h / 24)} d ${h % 24} h`;
  }

  function eventLabel(event) {
    const key = String(event);
    if (key.startsWith("fault:")) return t("event.fault", { what: key.slice(6).replaceAll("_", " ") });
    if (Object.hasOwn(TEXTS.en, `event.${key}`)) return t(`event.${key}`);
    const words = key.replaceAll("_", " ");
    return words.charAt(0).toUpperCase() + words.slice(1);
  }

  function formatTemp(x) {
    return typeof x === "number" && Number.isFinite(x) ? `${x.toFixed(1)} °C` : "—";
  }

  function formatActions(actions) {
    if (!Array.isArray(actions) || actions.length === 0) return "—";
    return actions
      .filter((a) => Array.isArray(a) && a.length === 2)
      .map(([output, seconds]) => `${output} ${seconds} s`)
      .join(", ");
  }

  function formatSuppressed(list) {
    if (!Array.isArray(list) || list.length === 0) return "—";
    return list
      .filter((a) => Array.isArray(a) && a.length === 2)
      .map(([output, why]) => `${output} (${why})`)
      .join(", ");
  }

  const stateLabel = (state) => t(`state.${state}`);

  // Seconds the alarm has waited at the receiver. Measured from received_at (receiver clock),
  // not from the unit's own clock, which may be off (or simulated).
  function ageSeconds(alarm) {
    return Math.max(0, Math.floor(Date.now() / 1000 - alarm.received_at));
  }

  function ageClass(alarm, age) {
    if (alarm.state !== "new") return `wf-row-${alarm.state}`;
    if (age < FRESH_S) return "age-fresh";
    return age < LATE_S ? "age-waiting" : "age-late";
  }

  // --- rendering helpers --------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function cell(className, ...children) {
    const td = el("td", className);
    td.append(...children);
    return td;
  }

  function button(text, className, onClick) {
    const b = el("button", `btn ${className || ""}`.trim(), text);
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  }

  function priorityBadge(priority) {
    const level = priority === 1 ? "p1" : priority === 2 ? "p2" : "pn";
    return el("span", `badge badge-${level}`, `P${priority}`);
  }

  function showNotice(text) {
    noticeEl.textContent = text;
    noticeEl.hidden = !text;
  }

  // A modal confirmation; resolves to the input's value (or true) when confirmed, null if not.
  function confirmDialog(text, inputCaption, inputValue) {
    return new Promise((resolve) => {
      const box = $("confirm");
      $("confirm-text").textContent = text;
      const withInput = inputCaption !== undefined;
      $("confirm-input-label").hidden = !withInput;
      $("confirm-input-caption").textContent = withInput ? inputCaption : "";
      $("confirm-input").value = inputValue || "";
      $("confirm-input").type = inputCaption === t("users.password") ? "password" : "text";
      box.hidden = false;
      (withInput ? $("confirm-input") : $("confirm-ok")).focus();
      const done = (value) => {
        box.hidden = true;
        $("confirm-ok").removeEventListener("click", ok);
        $("confirm-cancel").removeEventListener("click", cancel);
        document.removeEventListener("keydown", key);
        resolve(value);
      };
      const ok = () => {
        if (withInput && !$("confirm-input").value.trim()) return;
        done(withInput ? $("confirm-input").value.trim() : true);
      };
      const cancel = () => done(null);
      const key = (e) => {
        if (e.key === "Escape") cancel();
      };
      $("confirm-ok").addEventListener("click", ok);
      $("confirm-cancel").addEventListener("click", cancel);
      document.addEventListener("keydown", key);
    });
  }

  // --- the queue ----------------------------------------------------------------------------

  const rowsEl = $("alarm-rows");
  const testRowsEl = $("test-alarm-rows");
  const emptyEl = $("empty");
  const noticeEl = $("notice");
  const openCountEl = $("open-count");
  const connectionEl = $("connection");
  const connectionTextEl = $("connection-text");

  // Alarm id -> { alarm, row, ageCell }.
  const shown = new Map();
  let loaded = false;
  let fetchGeneration = 0;
  // Ids that events updated while a list fetch was under way: the fetched copy may be older.
  let touchedDuringFetch = null;

  function fillRow(entry) {
    const { alarm, row } = entry;
    row.dataset.alarmId = String(alarm.id);
    row.dataset.ref = String(alarm.ref);
    row.dataset.state = String(alarm.state);
    row.dataset.unitState = String(alarm.unit_state);
    entry.ageCell = cell("age");
    const unitState = String(alarm.unit_state);
    const wf = alarm.workflow || {};
    const link = el("a", "open-link", String(alarm.unit_id));
    link.href = `#alarm/${alarm.id}`;
    row.replaceChildren(
      cell("priority", priorityBadge(alarm.priority)),
      cell(
        "opened",
        el("span", "time", formatTime(alarm.opened_at)),
        el("span", "sub", formatDate(alarm.opened_at)),
      ),
      entry.ageCell,
      cell("unit", link, el("span", "sub", `#${alarm.alarm_id}`)),
      cell("event", el("span", "event-label", eventLabel(alarm.event))),
      cell("zone", el("span", "", String(alarm.zone)), el("span", "sub", alarm.rule ?? "")),
      cell("num temp", formatTemp(alarm.max_temp_c)),
      cell("unit-state", el("span", `state state-${unitState}`, t(`unit_state.${unitState}`))),
      cell(
        "status",
        el("span", `wf wf-${alarm.state}`, stateLabel(alarm.state)),
        el("span", "sub owner", wf.owner ? `@${wf.owner}` : ""),
      ),
      cell("actions", formatActions(alarm.actions)),
    );
    row.title = `${alarm.ref}`;
    updateAge(entry);
  }

  function updateAge(entry) {
    const age = ageSeconds(entry.alarm);
    entry.ageCell.textContent = formatAge(age);
    entry.row.className = ageClass(entry.alarm, age);
  }

  // Queue order, as the receiver sorts it: priority, then arrival.
  function before(a, b) {
    if (a.priority !== b.priority) return a.priority < b.priority;
    if (a.received_at !== b.received_at) return a.received_at < b.received_at;
    return a.id < b.id;
  }

  function place(entry) {
    const body = entry.alarm.test ? testRowsEl : rowsEl;
    let next = null;
    for (const other of body.children) {
      if (other === entry.row) continue;
      const o = shown.get(Number(other.dataset.alarmId));
      if (o && before(entry.alarm, o.alarm)) {
        next = other;
        break;
      }
    }
    if (entry.row.parentNode !== body || entry.row.nextSibling !== next) {
      body.insertBefore(entry.row, next);
    }
  }

  function upsert(alarm) {
    let entry = shown.get(alarm.id);
    if (alarm.state === "resolved") {
      remove(alarm.id);
      return;
    }
    if (entry) {
      // The receiver's own events carry no workflow summary: keep the one we have.
      if (!alarm.workflow && entry.alarm.workflow) alarm.workflow = entry.alarm.workflow;
      entry.alarm = alarm;
    } else {
      entry = { alarm, row: document.createElement("tr"), ageCell: null };
      entry.row.addEventListener("click", (e) => {
        if (e.target.closest("a")) return;
        location.hash = `#alarm/${entry.alarm.id}`;
      });
      shown.set(alarm.id, entry);
    }
    fillRow(entry);
    place(entry);
  }

  function remove(id) {
    const entry = shown.get(id);
    if (!entry) return;
    entry.row.remove();
    shown.delete(id);
  }

  function clearQueue() {
    for (const id of [...shown.keys()]) remove(id);
    loaded = false;
    updateSummary();
  }

  function updateSummary() {
    let open = 0;
    let live = 0;
    let test = 0;
    for (const { alarm } of shown.values()) {
      if (alarm.test) {
        test += 1;
        continue;
      }
      live += 1;
      if (alarm.unit_state === "open") open += 1;
    }
    openCountEl.textContent = t(open === 1 ? "open.one" : "open.many", { n: open });
    openCountEl.dataset.count = String(open);
    emptyEl.hidden = live > 0;
    emptyEl.textContent = loaded ? t("empty.none") : t("empty.loading");
    $("no-test-alarms").hidden = test > 0;
  }

  function setConnection(state) {
    connectionEl.dataset.state = state;
    connectionTextEl.textContent = t(`conn.${state}`);
  }

  function isAlarm(a) {
    return (
      a !== null &&
      typeof a === "object" &&
      Number.isInteger(a.id) &&
      Number.isInteger(a.priority) &&
      typeof a.received_at === "number"
    );
  }

  async function refresh() {
    const generation = ++fetchGeneration;
    touchedDuringFetch = new Set();
    let list;
    try {
      list = await api("GET", "/api/alarms");
      if (!Array.isArray(list)) throw new Error("unexpected answer");
    } catch (err) {
      if (generation === fetchGeneration && me) showNotice(t("error.load", { why: err.message }));
      return;
    }
    if (generation !== fetchGeneration) return; // a newer fetch is under way
    const touched = touchedDuringFetch;
    touchedDuringFetch = null;
    const listed = new Set();
    for (const alarm of list) {
      if (!isAlarm(alarm)) continue;
      listed.add(alarm.id);
      if (!touched.has(alarm.id)) upsert(alarm);
    }
    for (const id of [...shown.keys()]) {
      if (!listed.has(id) && !touched.has(id)) remove(id);
    }
    loaded = true;
    showNotice("");
    updateSummary();
  }

  function onAlarm(message) {
    let alarm;
    try {
      alarm = JSON.parse(message.data);
    } catch {
      return;
    }
    if (!isAlarm(alarm)) return;
    if (touchedDuringFetch) touchedDuringFetch.add(alarm.id);
    upsert(alarm);
    updateSummary();
    if (detailId === alarm.id) scheduleDetail();
  }

  // --- operator commands --------------------------------------------------------------------

  const commandRows = new Map(); // command id -> <tr>

  function isCommand(c) {
    return c !== null && typeof c === "object" && Number.isInteger(c.id) &&
      typeof c.unit_id === "string" && typeof c.op === "string" && typeof c.state === "string";
  }

  function showCommand(cmd) {
    let row = commandRows.get(cmd.id);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.commandId = String(cmd.id);
      commandRows.set(cmd.id, row);
      $("command-rows").prepend(row); // newest first
    }
    row.dataset.state = cmd.state;
    row.replaceChildren(
      cell("num", el("span", null, String(cmd.id))),
      cell(null, el("span", null, formatTime(cmd.created))),
      cell(null, el("span", null, cmd.unit_id)),
      cell(null, el("span", null, cmd.arg ? `${cmd.op} ${cmd.arg}` : cmd.op)),
      cell("cmd", el("span", `cmd-state cmd-${cmd.state}`, cmd.state)),
      cell("result", el("span", null, cmd.detail || "")),
    );
    $("no-commands").hidden = commandRows.size > 0;
  }

  async function refreshCommands() {
    try {
      const list = await api("GET", "/api/commands");
      if (!Array.isArray(list)) return;
      for (const cmd of list.slice().reverse()) if (isCommand(cmd)) showCommand(cmd);
    } catch {
      // The alarm list reports connection trouble; commands simply wait for the next refresh.
    }
  }

  function onCommand(message) {
    let cmd;
    try {
      cmd = JSON.parse(message.data);
    } catch {
      return;
    }
    if (isCommand(cmd)) showCommand(cmd);
  }

  // Manual deterrence, always after a confirmation; ``alarm`` links it to an alarm's timeline.
  async function sendCommand(unit, op, alarm) {
    let arg = null;
    if (op === "trigger") {
      arg = await confirmDialog(t("confirm.trigger", { unit }), t("confirm.profile"), "");
      if (arg === null) return false;
    } else if (!(await confirmDialog(t("confirm.silence", { unit })))) {
      return false;
    }
    const body = { op };
    if (arg) body.arg = arg;
    if (alarm) body.alarm = alarm;
    try {
      showCommand(await api("POST", `/api/units/${encodeURIComponent(unit)}/commands`, body));
      showNotice("");
    } catch (err) {
      showNotice(err.message);
    }
    return true;
  }

  // --- units --------------------------------------------------------------------------------

  const MODEM_LABELS = {
    registered: "registered",
    searching: "searching",
    "no-sim": "no SIM",
    hung: "AT port hung",
    unknown: "unknown",
  };

  function isUnit(u) {
    return u !== null && typeof u === "object" && typeof u.unit_id === "string";
  }

  function unitRow(unit) {
    const h = unit.health !== null && typeof unit.health === "object" ? unit.health : {};
    const resets = Number.isInteger(h.modem_resets) ? h.modem_resets : 0;
    const known = typeof h.modem === "string" && Object.hasOwn(MODEM_LABELS, h.modem);
    const modem = known ? h.modem : "unknown";
    // A unit without a supervised modem reports "registered", no signal and no resets.
    const hasModem = modem !== "registered" || typeof h.rssi_dbm === "number" || resets > 0;
    const link = unit.online ? "online" : "offline";
    const row = document.createElement("tr");
    row.dataset.unitId = unit.unit_id;
    row.dataset.modem = hasModem ? modem : "";
    if (!unit.online) row.className = "unit-offline";
    const deter = cell("deter perm-command");
    if (can("command")) {
      deter.append(
        button(t("btn.trigger"), "btn-small unit-trigger", () => sendCommand(unit.unit_id, "trigger")),
        button(t("btn.silence"), "btn-small unit-silence", () => sendCommand(unit.unit_id, "silence")),
      );
    } else {
      deter.hidden = true;
    }
    row.replaceChildren(
      cell("unit", el("span", null, unit.unit_id)),
      cell(null, el("span", `modem-state link-${link}`, t(`link.${link}`))),
      cell(null, typeof unit.last_heard === "number" ? formatTime(unit.last_heard) : "—"),
      cell("num signal", typeof h.rssi_dbm === "number" ? `${h.rssi_dbm} dBm` : "—"),
      cell(
        "modem",
        hasModem ? el("span", `modem-state modem-${modem}`, MODEM_LABELS[modem]) : "—",
      ),
      cell("num modem-resets", hasModem ? String(resets) : "—"),
      cell("num faults", Number.isInteger(h.faults) ? String(h.faults) : "—"),
      cell("num queued", Number.isInteger(h.queued) ? String(h.queued) : "—"),
      deter,
    );
    return row;
  }

  async function refreshUnits() {
    if (!me) return;
    try {
      const list = await api("GET", "/api/units");
      if (!Array.isArray(list)) return;
      const rows = list.filter(isUnit).map(unitRow);
      $("unit-rows").replaceChildren(...rows);
      $("no-units").hidden = rows.length > 0;
    } catch {
      // The alarm list reports connection trouble; units simply wait for the next refresh.
    }
  }

  // --- the live stream ----------------------------------------------------------------------

  let source = null;

  function connect() {
    disconnect();
    const stream = new EventSource("/api/events");
    source = stream;
    stream.addEventListener("open", () => {
      setConnection("live");
      refresh();
      refreshCommands();
      refreshUnits();
    });
    stream.addEventListener("alarm", onAlarm);
    stream.addEventListener("command", onCommand);
    stream.addEventListener("error", () => {
      if (source !== stream) return;
      setConnection("reconnecting");
      // The browser retries by itself unless the server refused the stream outright (which it
      // does when the session has ended: /api/me then says so).
      if (stream.readyState === EventSource.CLOSED) {
        stream.close();
        setTimeout(async () => {
          if (source !== stream) return;
          try {
            await api("GET", "/api/me");
          } catch (err) {
            if (err.status === 401) return;
          }
          if (source === stream) connect();
        }, RECONNECT_MS);
      }
    });
  }

  function disconnect() {
    if (source) source.close();
    source = null;
    setConnection("connecting");
  }

  // --- views --------------------------------------------------------------------------------

  const VIEWS = ["queue", "detail", "reports", "audit", "users"];
  let detailId = null;

  function show(view) {
    for (const id of VIEWS) $(`${id}-view`).hidden = id !== view;
    for (const link of $("nav").querySelectorAll("a")) {
      link.classList.toggle("active", link.dataset.view === view || (view === "detail" && link.dataset.view === "queue"));
    }
  }

  function route() {
    if (!me) return;
    const hash = location.hash.replace(/^#/, "");
    const match = /^alarm\/(\d+)$/.exec(hash);
    if (match) {
      show("detail");
      openDetail(Number(match[1]));
      return;
    }
    detailId = null;
    if (hash === "reports" && can("reports")) {
      show("reports");
      loadReports();
    } else if (hash === "audit" && can("audit")) {
      show("audit");
      loadAudit();
    } else if (hash === "users" && can("users")) {
      show("users");
      loadUsers();
    } else {
      show("queue");
    }
  }

  window.addEventListener("hashchange", route);

  // --- alarm detail -------------------------------------------------------------------------

  let detail = null;
  let detailTimer = null;

  async function openDetail(id) {
    const first = detailId !== id;
    detailId = id;
    if (first) {
      detail = null;
      $("action-error").hidden = true;
      $("detail-title").textContent = "…";
      $("timeline").replaceChildren();
      $("checklist").replaceChildren();
      // Opening an alarm makes its operator the owner (if nobody owns it yet).
      if (can("workflow")) {
        try {
          await api("POST", `/api/alarms/${id}/open`);
        } catch {
          // shown by the detail fetch below (404) or not important (someone else owns it)
        }
      }
    }
    await loadDetail();
  }

  function scheduleDetail() {
    clearTimeout(detailTimer);
    detailTimer = setTimeout(loadDetail, 150);
  }

  async function loadDetail() {
    const id = detailId;
    if (id === null) return;
    let data;
    try {
      data = await api("GET", `/api/alarms/${id}`);
    } catch (err) {
      if (detailId === id) $("detail-title").textContent = err.status === 404 ? t("detail.not_found") : err.message;
      return;
    }
    if (detailId !== id) return;
    detail = data;
    renderDetail();
  }

  function fact(dl, key, value) {
    dl.append(el("dt", null, t(key)), el("dd", `fact-${key.slice(5)}`, value));
  }

  function renderDetail() {
    const a = detail;
    const wf = a.workflow || {};
    $("detail-priority").replaceChildren(priorityBadge(a.priority));
    $("detail-title").textContent = `${a.ref} · ${eventLabel(a.event)}`;
    const stateEl = $("detail-state");
    stateEl.className = `wf wf-${a.state}`;
    stateEl.textContent = stateLabel(a.state);
    stateEl.dataset.state = a.state;
    const owner = $("owner-note");
    owner.dataset.owner = wf.owner || "";
    if (!wf.owner) {
      owner.textContent = t("detail.owner_none");
      owner.className = "owner-note";
    } else if (wf.owner === me.user) {
      owner.textContent = t("detail.owner_you");
      owner.className = "owner-note owner-you";
    } else {
      owner.textContent = t("detail.owner_other", { owner: wf.owner });
      owner.className = "owner-note owner-other warning";
    }
    owner.id = "owner-note";

    const dl = $("detail-facts");
    dl.replaceChildren();
    fact(dl, "fact.unit", `${a.unit_id} #${a.alarm_id}`);
    fact(dl, "fact.zone", a.zone);
    if (a.rule) fact(dl, "fact.rule", a.rule);
    fact(dl, "fact.opened", formatDateTime(a.opened_at));
    fact(dl, "fact.received", formatDateTime(a.received_at));
    fact(dl, "fact.temp", formatTemp(a.max_temp_c));
    fact(dl, "fact.unit_state", t(`unit_state.${a.unit_state}`));
    fact(dl, "fact.deterrence", formatActions(a.actions));
    fact(dl, "fact.suppressed", formatSuppressed(a.suppressed));
    if (a.detail) fact(dl, "fact.detail", a.detail);
    fact(dl, "fact.test", a.test ? t("yes") : t("no"));
    if (wf.acknowledged_by) fact(dl, "fact.acknowledged", `${wf.acknowledged_by} ${formatTime(wf.acknowledged_at)}`);
    if (wf.dispatched_to && wf.dispatched_to.length) {
      fact(dl, "fact.dispatched", wf.dispatched_to.map((x) => t(`to.${x}`)).join(", "));
    }
    if (wf.outcome) fact(dl, "fact.outcome", t(`outcome.${wf.outcome}`));

    const acting = can("workflow") && a.state !== "resolved";
    $("detail-actions").hidden = !can("workflow");
    $("read-only").hidden = can("workflow");
    const enable = (id, states) => {
      $(id).disabled = !acting || !states.includes(a.state);
    };
    enable("act-acknowledge", ["new"]);
    enable("act-hold", ["acknowledged", "dispatched"]);
    enable("act-resume", ["on_hold"]);
    enable("act-dispatch", ["acknowledged", "on_hold", "dispatched"]);
    enable("act-resolve", ["acknowledged", "on_hold", "dispatched"]);
    $("act-note").disabled = !can("workflow");
    $("act-silence").disabled = !can("command");
    $("act-trigger").disabled = !can("command");

    const checklist = $("checklist");
    checklist.replaceChildren();
    (wf.checklist || []).forEach((item, index) => {
      const li = el("li", item.done ? "done" : "");
      li.dataset.index = String(index);
      const box = document.createElement("input");
      box.type = "checkbox";
      box.className = "check";
      box.checked = Boolean(item.done);
      box.disabled = !acting || a.state === "new";
      box.addEventListener("change", () => act("check", { item: index, done: box.checked }));
      const label = el("label");
      label.append(box, el("span", "check-text", item.text));
      if (item.done && item.by) label.append(el("span", "sub", `${item.by} ${formatTime(item.at)}`));
      li.append(label);
      checklist.append(li);
    });

    renderTimeline(a);
  }

  function timelineText(entry) {
    const d = entry.detail || {};
    const params = { user: entry.user, ...d };
    if (entry.action === "dispatch") params.to = t(`to.${d.to}`) + (d.text ? ` (${d.text})` : "");
    if (entry.action === "resolve") params.outcome = t(`outcome.${d.outcome}`) + (d.text ? ` (${d.text})` : "");
    if (entry.action === "command") params.op = d.arg ? `${d.op} ${d.arg}` : d.op;
    if (entry.action === "hold" && d.text) return `${t("tl.hold", params)} (${d.text})`;
    return t(`tl.${entry.action}`, params);
  }

  function renderTimeline(a) {
    const items = [];
    for (const ev of a.timeline || []) {
      items.push({
        at: ev.received_at,
        kind: "unit",
        text: t("tl.unit", { phase: t(`phase.${ev.phase}`), msg: ev.msg_id }),
      });
    }
    const first = items.length ? items[0].at : a.received_at;
    if (Array.isArray(a.actions) && a.actions.length) {
      items.push({ at: first, kind: "unit deterrence", text: t("tl.deterrence", { list: formatActions(a.actions) }) });
    }
    if (Array.isArray(a.suppressed) && a.suppressed.length) {
      items.push({ at: first, kind: "unit suppressed", text: t("tl.suppressed", { list: formatSuppressed(a.suppressed) }) });
    }
    for (const entry of a.operator_actions || []) {
      items.push({ at: entry.at, kind: `operator op-${entry.action}`, text: timelineText(entry) });
    }
    items.sort((x, y) => x.at - y.at); // stable: same-time entries keep their order
    $("timeline").replaceChildren(
      ...items.map((item) => {
        const li = el("li", `tl tl-${item.kind}`);
        li.append(el("time", "tl-time", formatTime(item.at)), el("span", "tl-text", item.text));
        return li;
      }),
    );
  }

  // One workflow action; warns first (and takes over) when another operator owns the alarm.
  async function act(action, fields) {
    if (!detail) return;
    const id = detail.id;
    const body = { ...(fields || {}) };
    const owner = (detail.workflow || {}).owner;
    if (owner && owner !== me.user) {
      const yes = await confirmDialog(t("confirm.takeover", { owner, action: t(`verb.${action}`) }));
      if (!yes) {
        renderDetail(); // undo a checkbox the operator ticked
        return;
      }
      body.take_over = true;
    }
    const error = $("action-error");
    try {
      await api("POST", `/api/alarms/${id}/${action}`, body);
      error.hidden = true;
    } catch (err) {
      if (err.status === 409 && err.body.code === "owned" && !body.take_over) {
        await loadDetail(); // someone took it meanwhile: show who, then ask
        return act(action, fields);
      }
      error.textContent = err.message;
      error.hidden = false;
    }
    if (detailId === id) await loadDetail();
  }

  $("act-acknowledge").addEventListener("click", () => act("acknowledge"));
  $("act-hold").addEventListener("click", () => act("hold"));
  $("act-resume").addEventListener("click", () => act("resume"));
  $("act-dispatch").addEventListener("click", () => act("dispatch", { to: $("dispatch-to").value }));
  $("act-resolve").addEventListener("click", () => act("resolve", { outcome: $("resolve-outcome").value }));
  $("act-note").addEventListener("click", async () => {
    const text = $("note-text").value.trim();
    if (!text) return;
    await act("note", { text });
    $("note-text").value = "";
  });
  $("act-silence").addEventListener("click", async () => {
    if (detail && (await sendCommand(detail.unit_id, "silence", detail.id))) scheduleDetail();
  });
  $("act-trigger").addEventListener("click", async () => {
    if (detail && (await sendCommand(detail.unit_id, "trigger", detail.id))) scheduleDetail();
  });

  // --- reports ------------------------------------------------------------------------------

  const fmtNum = (x) => (x === null || x === undefined ? "—" : String(Math.round(x * 10) / 10));
  const fmtRate = (x) => (x === null || x === undefined ? "—" : `${Math.round(x * 1000) / 10} %`);

  function reportQuery() {
    const q = new URLSearchParams();
    if ($("report-from").value) q.set("from", $("report-from").value);
    if ($("report-to").value) q.set("to", $("report-to").value);
    const s = q.toString();
    return s ? `?${s}` : "";
  }

  function emptyRow(body, columns) {
    const tr = el("tr", "none");
    const td = cell("empty-cell", t("reports.none"));
    td.colSpan = columns;
    tr.append(td);
    body.replaceChildren(tr);
  }

  async function loadReports() {
    const q = reportQuery();
    $("response-csv").href = `/api/reports/response.csv${q}`;
    $("false-csv").href = `/api/reports/false-alarms.csv${q}`;
    try {
      const response = await api("GET", `/api/reports/response${q}`);
      const falses = await api("GET", `/api/reports/false-alarms${q}`);
      showNotice("");
      const rows = response.rows.map((r) => {
        const tr = el("tr");
        tr.dataset.priority = String(r.priority);
        tr.append(
          cell("priority", priorityBadge(r.priority)),
          cell("num", String(r.alarms)),
          cell("num", String(r.acknowledged)),
          cell("num tta-mean", fmtNum(r.tta_mean_s)),
          cell("num tta-median", fmtNum(r.tta_median_s)),
          cell("num tta-max", fmtNum(r.tta_max_s)),
          cell("num", String(r.dispatched)),
          cell("num ttd-mean", fmtNum(r.ttd_mean_s)),
          cell("num ttd-median", fmtNum(r.ttd_median_s)),
          cell("num ttd-max", fmtNum(r.ttd_max_s)),
        );
        return tr;
      });
      if (rows.length) $("response-rows").replaceChildren(...rows);
      else emptyRow($("response-rows"), 10);
      for (const [key, bodyId, field] of [["by_unit", "false-unit-rows", "unit_id"], ["by_rule", "false-rule-rows", "rule"]]) {
        const list = falses[key].map((r) => {
          const tr = el("tr");
          tr.dataset.name = r[field];
          tr.append(
            cell(null, r[field]),
            cell("num", String(r.resolved)),
            cell("num", String(r.real)),
            cell("num false", String(r.false)),
            cell("num", String(r.test)),
            cell("num rate", fmtRate(r.false_rate)),
          );
          return tr;
        });
        if (list.length) $(bodyId).replaceChildren(...list);
        else emptyRow($(bodyId), 6);
      }
    } catch (err) {
      showNotice(err.message);
    }
  }

  $("report-run").addEventListener("click", loadReports);

  // --- audit log ----------------------------------------------------------------------------

  async function loadAudit() {
    try {
      const list = await api("GET", "/api/audit?limit=200");
      $("audit-rows").replaceChildren(
        ...list.map((r) => {
          const tr = el("tr", `audit-${r.outcome}`);
          tr.dataset.action = r.action;
          tr.append(
            cell(null, formatDateTime(r.at)),
            cell(null, r.user || "—"),
            cell(null, r.role ? t(`role.${r.role}`) : "—"),
            cell("audit-action", r.action),
            cell(null, r.target || ""),
            cell("audit-outcome", r.outcome),
            cell("audit-detail", r.detail ? JSON.stringify(r.detail) : ""),
          );
          return tr;
        }),
      );
    } catch (err) {
      showNotice(err.message);
    }
  }

  $("audit-refresh").addEventListener("click", loadAudit);

  // --- users --------------------------------------------------------------------------------

  const ROLES = ["operator", "supervisor", "technician", "viewer"];

  async function changeUser(name, fields) {
    try {
      await api("POST", `/api/users/${encodeURIComponent(name)}`, fields);
      $("user-error").hidden = true;
    } catch (err) {
      $("user-error").textContent = err.message;
      $("user-error").hidden = false;
    }
    loadUsers();
  }

  async function loadUsers() {
    let list;
    try {
      list = await api("GET", "/api/users");
    } catch (err) {
      showNotice(err.message);
      return;
    }
    $("user-rows").replaceChildren(
      ...list.map((u) => {
        const tr = el("tr", u.disabled ? "user-disabled" : "");
        tr.dataset.user = u.name;
        const select = el("select", "user-role");
        for (const role of ROLES) {
          const option = el("option", null, t(`role.${role}`));
          option.value = role;
          option.selected = role === u.role;
          select.append(option);
        }
        tr.append(
          cell("user-name", u.name),
          cell(null, select),
          cell(null, u.disabled ? t("users.disabled") : t("users.active")),
          cell(null, formatDate(u.created)),
          cell(
            "user-actions",
            button(t("users.save_role"), "btn-small", () => changeUser(u.name, { role: select.value })),
            button(u.disabled ? t("users.enable") : t("users.disable"), "btn-small", () =>
              changeUser(u.name, { disabled: !u.disabled }),
            ),
            button(t("users.password_reset"), "btn-small", async () => {
              const password = await confirmDialog(t("confirm.password", { name: u.name }), t("users.password"), "");
              if (password) changeUser(u.name, { password });
            }),
          ),
        );
        return tr;
      }),
    );
  }

  $("user-add-submit").addEventListener("click", async () => {
    const body = {
      name: $("user-add-name").value.trim(),
      role: $("user-add-role").value,
      password: $("user-add-password").value,
    };
    try {
      await api("POST", "/api/users", body);
      $("user-error").hidden = true;
      $("user-add-name").value = "";
      $("user-add-password").value = "";
    } catch (err) {
      $("user-error").textContent = err.message;
      $("user-error").hidden = false;
    }
    loadUsers();
  });

  // --- start --------------------------------------------------------------------------------

  setInterval(() => {
    for (const entry of shown.values()) updateAge(entry);
  }, 1000);
  setInterval(refreshUnits, UNITS_REFRESH_MS);
  translatePage();
  setConnection("connecting");
  updateSummary();
  start();
})();
