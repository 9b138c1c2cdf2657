// The circuitd dashboard: plain JavaScript served from the binary, no build step.
//
// Data flow. The table is one page of ListProtectors (GET /api/protectors, paged with the
// registry's page tokens, so 10,000 protectors cost one page at a time), refreshed every
// second for the figures no event announces (window fill, trials in flight). Changes
// arrive at once over Server-Sent Events (GET /api/events), read with fetch() streaming
// rather than EventSource because EventSource cannot send the Authorization header. The
// stream starts at the revision the table was read at and resumes after a drop from the
// last revision seen (Last-Event-ID), exactly like Watch's start_revision; a RESYNC from
// the server (this page read too slowly, or the history no longer reaches back) reloads
// the table. A row is only replaced by a newer state (mod_revision), so a refresh that
// raced an event never takes it back.
//
// The token (when the daemon runs with --tokens) is kept in sessionStorage: it lives as
// long as the tab, is never written to disk by the page, and is sent as a bearer header.
"use strict";

const PAGE_SIZE = 100;
const FEED_MAX = 300;
const HISTORY_MS = 5 * 60 * 1000;
const STALL_MS = 35000; // the server sends progress every 10 s; a silent stream is dead
const TOKEN_KEY = "circuitd.token";

const $ = (id) => document.getElementById(id);
const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  prefix: "",
  pageTokens: [""], // the token of each page visited, for "prev"
  page: 0,
  nextToken: "",
  rows: new Map(), // name -> protector, the current page
  order: [],
  offset: 0, // server clock - browser clock, ms
  offsetError: 0, // how far off that may be, ms (half the round trip it was read in)
  offsetReadAt: 0, // when it was read (browser clock, ms; 0: never)
  lastRevision: null, // the newest revision the feed accounted for
  epoch: null, // the history lastRevision belongs to (from SYNCED; a string, as it is a u64)
  stream: null, // the AbortController of the live feed
  streamGen: 0,
  selected: null,
  samples: [], // {t, counters} of the selected protector, one per second
  history: [], // {t, shown} of the selected protector
  feedLog: [], // {name, to, at} of recent transitions, for a new selection's timeline
};

// ---- HTTP -----------------------------------------------------------------------------

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (state.token) h["Authorization"] = "Bearer " + state.token;
  return h;
}

async function getJson(path) {
  const response = await fetch(path, { headers: headers(), cache: "no-store" });
  return answer(response);
}

async function answer(response) {
  const text = await response.text();
  let body = null;
  try { body = JSON.parse(text); } catch (_) { body = null; }
  if (!response.ok) {
    // The API answers {"error": ...}; the token check answers plain text.
    const message = (body && body.error) || text.trim() || response.statusText;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return body;
}

function notice(text) {
  const n = $("notice");
  n.hidden = !text;
  n.textContent = text || "";
}

function refused(error) {
  if (error.status === 401 || error.status === 403) {
    notice("circuitd refused: " + error.message + ". Enter a token with the read role (admin for actions) above.");
    return true;
  }
  return false;
}

// ---- the table ------------------------------------------------------------------------

// The daemon read its clock (`now_ms`) somewhere between `sent` and `back`: the middle
// (Cristian's estimate) is off by at most half the round trip. The reading with the
// shortest round trip is kept, and replaced after ten minutes, for the clocks' drift.
function readClock(nowMs, sent, back) {
  const error = (back - sent) / 2;
  if (state.offsetReadAt === 0 || error <= state.offsetError || back - state.offsetReadAt > 600000) {
    state.offset = nowMs - (sent + back) / 2;
    state.offsetError = error;
    state.offsetReadAt = back;
  }
}

async function loadPage() {
  const q = new URLSearchParams({ prefix: state.prefix, page_size: String(PAGE_SIZE) });
  const token = state.pageTokens[state.page];
  if (token) q.set("page_token", token);
  let page, sent, back;
  try {
    sent = Date.now();
    page = await getJson("/api/protectors?" + q);
    back = Date.now();
  } catch (error) {
    if (!refused(error)) notice("could not list protectors: " + error.message);
    return null;
  }
  notice("");
  readClock(page.now_ms, sent, back);
  state.nextToken = page.next_page_token;
  // A row an event already moved past this page's read keeps the newer state.
  const rows = page.protectors.map((p) => {
    const seen = state.rows.get(p.name);
    return seen && seen.mod_revision > p.mod_revision ? seen : p;
  });
  state.rows = new Map(rows.map((p) => [p.name, p]));
  state.order = page.protectors.map((p) => p.name);
  renderTable();
  return page;
}

function shown(p) {
  return p.override || p.status;
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  if (text !== null) td.textContent = text;
  tr.appendChild(td);
  return td;
}

function renderRow(p) {
  const tr = document.createElement("tr");
  tr.dataset.name = p.name;
  tr.dataset.status = shown(p);
  if (p.name === state.selected) tr.classList.add("selected");
  cell(tr, p.name);
  const pill = document.createElement("span");
  pill.className = "pill " + shown(p);
  pill.textContent = shown(p).replace("_", " ");
  cell(tr, null).appendChild(pill);
  cell(tr, String(p.generation), "num");
  const w = p.window;
  const filled = w.successes + w.failures;
  const fill = cell(tr, null);
  const bar = document.createElement("span");
  bar.className = "bar";
  const inner = document.createElement("span");
  inner.style.width = (w.size ? (100 * filled) / w.size : 0) + "%";
  bar.appendChild(inner);
  fill.appendChild(bar);
  fill.appendChild(document.createTextNode(filled + "/" + w.size));
  cell(tr, p.failure_rate === null ? "–" : (100 * p.failure_rate).toFixed(1) + "%", "num");
  cell(tr, String(p.trials_in_flight), "num");
  const cooldown = cell(tr, "", "num cooldown");
  if (p.open_until_ms !== null && p.status === "open") cooldown.dataset.until = String(p.open_until_ms);
  tr.addEventListener("click", () => select(p.name));
  return tr;
}

function renderTable() {
  const body = document.querySelector("#protectors tbody");
  const rows = state.order.map((name) => renderRow(state.rows.get(name)));
  body.replaceChildren(...rows);
  $("page-prev").disabled = state.page === 0;
  $("page-next").disabled = !state.nextToken;
  $("page-info").textContent = "page " + (state.page + 1);
  $("counts").textContent = state.order.length + " shown";
  tickCountdowns();
}

// Replaces one row when `p` is at least as new as what the row shows.
function updateRow(p, flash) {
  const old = state.rows.get(p.name);
  if (!old || old.mod_revision > p.mod_revision) return;
  state.rows.set(p.name, p);
  const tr = document.querySelector('#protectors tbody tr[data-name="' + CSS.escape(p.name) + '"]');
  if (!tr) return;
  const fresh = renderRow(p);
  if (flash) fresh.classList.add("flash");
  tr.replaceWith(fresh);
  tickCountdowns();
}

function tickCountdowns() {
  const now = Date.now() + state.offset;
  for (const td of document.querySelectorAll("td.cooldown[data-until]")) {
    const left = Number(td.dataset.until) - now;
    td.textContent = left > 0 ? (left / 1000).toFixed(1) + " s" : "due";
  }
}

async function refresh() {
  const page = await loadPage();
  if (page && state.stream === null) startFeed(page.revision);
}

// ---- the live feed ----------------------------------------------------------------------

function startFeed(fromRevision) {
  if (state.stream) state.stream.abort();
  state.lastRevision = fromRevision;
  state.streamGen += 1;
  readFeed(state.streamGen, 0);
}

async function readFeed(gen, attempt) {
  const controller = new AbortController();
  state.stream = controller;
  const h = headers({ Accept: "text/event-stream" });
  if (state.lastRevision !== null) h["Last-Event-ID"] = String(state.lastRevision);
  const q = new URLSearchParams({ prefix: state.prefix });
  if (state.epoch !== null) q.set("epoch", state.epoch);
  const url = "/api/events?" + q;
  let stall = null;
  const armStall = () => {
    clearTimeout(stall);
    stall = setTimeout(() => controller.abort(), STALL_MS);
  };
  try {
    const response = await fetch(url, { headers: h, signal: controller.signal, cache: "no-store" });
    if (!response.ok) await answer(response);
    connState("live");
    attempt = 0;
    armStall();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      armStall();
      buffer += value;
      let end;
      while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
        if (gen === state.streamGen) dispatch(parseEvent(block));
      }
    }
  } catch (error) {
    if (error.status) refused(error);
  } finally {
    clearTimeout(stall);
  }
  if (gen !== state.streamGen) return; // replaced by a newer stream
  connState("error");
  const wait = Math.min(5000, 250 * 2 ** attempt);
  setTimeout(() => { if (gen === state.streamGen) readFeed(gen, attempt + 1); }, wait);
}

function parseEvent(block) {
  const event = { type: "message", data: "", id: null };
  for (const line of block.split(/\r?\n/)) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event.type = value;
    else if (field === "data") event.data += (event.data ? "\n" : "") + value;
    else if (field === "id") event.id = value;
  }
  return event;
}

function connState(s) {
  const c = $("conn");
  c.dataset.state = s;
  c.textContent = s === "live" ? "live" : s === "error" ? "reconnecting" : s;
}

function dispatch(event) {
  if (event.id !== null && event.id !== "") state.lastRevision = Number(event.id);
  if (!event.data) return;
  const d = JSON.parse(event.data);
  switch (event.type) {
    case "transition": return onTransition(d);
    case "created": addFeed(d.protector.name, "created", null, d.revision); return;
    case "deleted": addFeed(d.name, "deleted", null, d.revision); return;
    case "override": return onOverride(d);
    case "policy": addFeed(d.name, "policy updated", null, d.revision); return;
    case "synced": state.epoch = d.epoch; return;
    case "resync":
      addNote("resynchronised (" + d.reason + "): reloading");
      loadPage();
      return;
    default:
  }
}

function onTransition(d) {
  const row = state.rows.get(d.name);
  if (row && row.mod_revision < d.revision) {
    const p = Object.assign({}, row, {
      status: d.to,
      generation: d.generation,
      open_until_ms: d.open_until_ms,
      mod_revision: d.revision,
    });
    updateRow(p, true);
  }
  addFeed(d.name, d.from.replace("_", " ") + " → " + d.to.replace("_", " ") + " (" + d.reason + ")", d, d.revision);
  state.feedLog.push({ name: d.name, to: d.to, at: d.at_ms });
  if (state.feedLog.length > FEED_MAX) state.feedLog.shift();
  if (d.name === state.selected) pushHistory(d.at_ms, row ? shown(Object.assign({}, row, { status: d.to })) : d.to);
}

function onOverride(d) {
  const row = state.rows.get(d.name);
  if (row && row.mod_revision < d.revision) {
    updateRow(Object.assign({}, row, { override: d.kind, mod_revision: d.revision }), true);
  }
  const what = d.kind ? d.kind.replace("_", " ") : d.expired ? "override expired" : "override cleared";
  addFeed(d.name, what, null, d.revision);
}

function addFeed(name, text, transition, revision) {
  const li = document.createElement("li");
  li.dataset.name = name;
  li.dataset.revision = String(revision);
  li.dataset.received = String(Math.round(Date.now() + state.offset));
  li.dataset.receivedError = String(Math.ceil(state.offsetError));
  if (transition) {
    li.dataset.to = transition.to;
    li.dataset.at = String(transition.at_ms);
  }
  const at = transition ? transition.at_ms : Date.now() + state.offset;
  const t = document.createElement("span");
  t.className = "t";
  t.textContent = new Date(at).toLocaleTimeString();
  const n = document.createElement("b");
  n.textContent = name;
  li.append(t, n, document.createTextNode(" " + text));
  prependFeed(li);
}

function addNote(text) {
  const li = document.createElement("li");
  li.className = "note";
  li.textContent = text;
  prependFeed(li);
}

function prependFeed(li) {
  const feed = $("feed");
  feed.prepend(li);
  while (feed.children.length > FEED_MAX) feed.lastChild.remove();
}

// ---- the replica, the token, the controls ------------------------------------------------

async function loadReplica() {
  try {
    const c = await getJson("/api/cluster");
    const text = c.role === "follower"
      ? "follower of " + (c.leader || "no leader yet") + " (actions go to the leader)"
      : c.role + " " + c.answered_by;
    $("replica").textContent = text;
  } catch (_) {
    $("replica").textContent = "";
  }
}

let filterTimer = null;
function onFilter() {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(async () => {
    state.prefix = $("filter").value;
    state.pageTokens = [""];
    state.page = 0;
    const page = await loadPage();
    if (page) startFeed(page.revision);
  }, 200);
}

function wire() {
  $("filter").addEventListener("input", onFilter);
  $("page-next").addEventListener("click", () => {
    state.pageTokens[state.page + 1] = state.nextToken;
    state.page += 1;
    loadPage();
  });
  $("page-prev").addEventListener("click", () => {
    state.page = Math.max(0, state.page - 1);
    loadPage();
  });
  $("token").value = state.token ? "********" : "";
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("token").value.trim();
    if (value && value !== "********") {
      state.token = value;
      sessionStorage.setItem(TOKEN_KEY, value);
      $("token").value = "********";
    }
    restart();
  });
  $("token-clear").addEventListener("click", () => {
    state.token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    $("token").value = "";
    restart();
  });
  $("act-force-open").addEventListener("click", () => act({ action: "force_open" }));
  $("act-disable").addEventListener("click", () => act({ action: "disable" }));
  $("act-clear").addEventListener("click", () => act({ action: "clear" }));
  $("act-set-status").addEventListener("click", () => act({ action: "set_status", status: $("act-status").value }));
}

async function restart() {
  if (state.stream) state.stream.abort();
  state.stream = null;
  state.streamGen += 1;
  loadReplica();
  await refresh();
}

wire();
restart();
setInterval(tickCountdowns, 200);
setInterval(() => { loadPage(); sample(); }, 1000);
setInterval(loadReplica, 10000);
