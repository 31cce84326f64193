// polewatch console: lists the receiver's alarms and follows them live (no build step).
//
// The list comes from /api/alarms; /api/events (Server-Sent Events) then carries every alarm the
// receiver commits. Whenever the stream (re)opens the list is fetched again, so that nothing sent
// while the console was disconnected is lost. All data goes into the page through textContent.
"use strict";

(() => {
  const RECONNECT_MS = 1000; // only used when the browser gives up reconnecting by itself
  const FRESH_S = 60; // a new alarm younger than this is highlighted
  const LATE_S = 300; // a new alarm older than this is shown as overdue

  const EVENT_LABELS = {
    fire: "Fire",
    person: "Person",
    vehicle: "Vehicle",
    loitering: "Loitering",
    gathering: "Gathering",
    person_down: "Person down",
    motion_night: "Motion at night",
    tamper: "Tamper",
    sensor_fault: "Sensor fault",
  };

  const rowsEl = document.getElementById("alarm-rows");
  const emptyEl = document.getElementById("empty");
  const noticeEl = document.getElementById("notice");
  const openCountEl = document.getElementById("open-count");
  const connectionEl = document.getElementById("connection");
  const connectionTextEl = document.getElementById("connection-text");

  // Alarm id -> { alarm, row, ageCell }.
  const shown = new Map();
  let loaded = false;
  let fetchGeneration = 0;
  // Ids that events updated while a list fetch was under way: the fetched copy may be older.
  let touchedDuringFetch = null;

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
    if (Object.hasOwn(EVENT_LABELS, key)) return EVENT_LABELS[key];
    const words = key.replaceAll("_", " ");
    return words.charAt(0).toUpperCase() + words.slice(1);
  }

  function formatTemp(t) {
    return typeof t === "number" && Number.isFinite(t) ? `${t.toFixed(1)} °C` : "—";
  }

  function formatActions(actions) {
    if (!Array.isArray(actions) || actions.length === 0) return "—";
    return actions
      .filter((a) => Array.isArray(a) && a.length === 2)
      .map(([output, seconds]) => `${output} ${seconds} s`)
      .join(", ");
  }

  // Seconds the alarm has waited at the receiver. Measured from received_at (receiver clock),
  // not from the unit's own clock, which may be off (or simulated).
  function ageSeconds(alarm) {
    return Math.max(0, Math.floor(Date.now() / 1000 - alarm.received_at));
  }

  function ageClass(alarm, age) {
    if (alarm.state !== "new") return "";
    if (age < FRESH_S) return "age-fresh";
    return age < LATE_S ? "age-waiting" : "age-late";
  }

  // --- rendering ----------------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function cell(className, ...children) {
    const td = el("td", className);
    td.append(...children);
    return td;
  }

  function priorityBadge(priority) {
    const level = priority === 1 ? "p1" : priority === 2 ? "p2" : "pn";
    return el("span", `badge badge-${level}`, `P${priority}`);
  }

  function fillRow(entry) {
    const { alarm, row } = entry;
    row.dataset.alarmId = String(alarm.id);
    row.dataset.ref = String(alarm.ref);
    row.dataset.state = String(alarm.state);
    row.dataset.unitState = String(alarm.unit_state);
    entry.ageCell = cell("age");
    const unitState = String(alarm.unit_state);
    row.replaceChildren(
      cell("priority", priorityBadge(alarm.priority)),
      cell(
        "opened",
        el("span", "time", formatTime(alarm.opened_at)),
        el("span", "sub", formatDate(alarm.opened_at)),
      ),
      entry.ageCell,
      cell("unit", el("span", "", String(alarm.unit_id)), el("span", "sub", `#${alarm.alarm_id}`)),
      cell("event", el("span", "event-label", eventLabel(alarm.event))),
      cell("zone", el("span", "", String(alarm.zone)), el("span", "sub", alarm.rule ?? "")),
      cell("num temp", formatTemp(alarm.max_temp_c)),
      cell("unit-state", el("span", `state state-${unitState}`, unitState)),
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
    let next = null;
    for (const other of rowsEl.children) {
      if (other === entry.row) continue;
      const o = shown.get(Number(other.dataset.alarmId));
      if (o && before(entry.alarm, o.alarm)) {
        next = other;
        break;
      }
    }
    if (entry.row.parentNode !== rowsEl || entry.row.nextSibling !== next) {
      rowsEl.insertBefore(entry.row, next);
    }
  }

  function upsert(alarm) {
    let entry = shown.get(alarm.id);
    if (entry) {
      entry.alarm = alarm;
    } else {
      entry = { alarm, row: document.createElement("tr"), ageCell: null };
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

  function updateSummary() {
    let open = 0;
    for (const { alarm } of shown.values()) if (alarm.unit_state === "open") open += 1;
    openCountEl.textContent = `${open} open alarm${open === 1 ? "" : "s"}`;
    openCountEl.dataset.count = String(open);
    if (shown.size > 0) {
      emptyEl.hidden = true;
    } else {
      emptyEl.hidden = false;
      emptyEl.textContent = loaded ? "No alarms" : "Loading alarms…";
    }
  }

  function setConnection(state) {
    connectionEl.dataset.state = state;
    connectionTextEl.textContent = state;
  }

  function showNotice(text) {
    noticeEl.textContent = text;
    noticeEl.hidden = !text;
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

  // --- data ---------------------------------------------------------------------------------

  async function refresh() {
    const generation = ++fetchGeneration;
    touchedDuringFetch = new Set();
    let list;
    try {
      const response = await fetch("/api/alarms", {
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      list = await response.json();
      if (!Array.isArray(list)) throw new Error("unexpected answer");
    } catch (err) {
      if (generation === fetchGeneration) showNotice(`Could not load the alarm list (${err.message}).`);
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
      // Newest first.
      document.getElementById("command-rows").prepend(row);
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
    document.getElementById("no-commands").hidden = commandRows.size > 0;
  }

  async function refreshCommands() {
    try {
      const response = await fetch("/api/commands", { cache: "no-store" });
      if (!response.ok) return;
      const list = await response.json();
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

  // --- units --------------------------------------------------------------------------------

  const UNITS_REFRESH_MS = 10000; // units' health comes with heartbeats, which have no events
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
    row.replaceChildren(
      cell("unit", el("span", null, unit.unit_id)),
      cell(null, el("span", `modem-state link-${link}`, link)),
      cell(null, typeof unit.last_heard === "number" ? formatTime(unit.last_heard) : "—"),
      cell("num signal", typeof h.rssi_dbm === "number" ? `${h.rssi_dbm} dBm` : "—"),
      cell(
        "modem",
        hasModem ? el("span", `modem-state modem-${modem}`, MODEM_LABELS[modem]) : "—",
      ),
      cell("num modem-resets", hasModem ? String(resets) : "—"),
      cell("num", Number.isInteger(h.faults) ? String(h.faults) : "—"),
      cell("num", Number.isInteger(h.queued) ? String(h.queued) : "—"),
    );
    return row;
  }

  async function refreshUnits() {
    try {
      const response = await fetch("/api/units", { cache: "no-store" });
      if (!response.ok) return;
      const list = await response.json();
      if (!Array.isArray(list)) return;
      const rows = list.filter(isUnit).map(unitRow);
      document.getElementById("unit-rows").replaceChildren(...rows);
      document.getElementById("no-units").hidden = rows.length > 0;
    } catch {
      // The alarm list reports connection trouble; units simply wait for the next refresh.
    }
  }

  function connect() {
    const source = new EventSource("/api/events");
    source.addEventListener("open", () => {
      setConnection("live");
      refresh();
      refreshCommands();
      refreshUnits();
    });
    source.addEventListener("alarm", onAlarm);
    source.addEventListener("command", onCommand);
    source.addEventListener("error", () => {
      setConnection("reconnecting");
      // The browser retries by itself unless the server refused the stream outright.
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        setTimeout(connect, RECONNECT_MS);
      }
    });
  }

  setInterval(() => {
    for (const entry of shown.values()) updateAge(entry);
  }, 1000);
  setInterval(refreshUnits, UNITS_REFRESH_MS);
  updateSummary();
  refresh();
  refreshCommands();
  refreshUnits();
  connect();
})();
