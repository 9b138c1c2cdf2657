// The dashboard's detail panel: the selected protector's status timeline, its call and
// failure rates, and the admin actions. Loaded before dashboard.js, whose `state`,
// `$`, `getJson`, `answer`, `headers`, `refused`, `shown` and `updateRow` it uses when called.
"use strict";

// ---- the selected protector: timeline, rates, actions ----------------------------------

function select(name) {
  state.selected = name;
  state.samples = [];
  const now = Date.now() + state.offset;
  state.history = state.feedLog
    .filter((e) => e.name === name && e.at > now - HISTORY_MS)
    .map((e) => ({ t: e.at, shown: e.to }));
  for (const tr of document.querySelectorAll("#protectors tbody tr")) {
    tr.classList.toggle("selected", tr.dataset.name === name);
  }
  $("detail").hidden = false;
  $("detail-name").textContent = name;
  $("act-result").textContent = "";
  sample();
}

function pushHistory(t, s) {
  const last = state.history[state.history.length - 1];
  if (!last || last.shown !== s) state.history.push({ t, shown: s });
  const cutoff = Date.now() + state.offset - HISTORY_MS;
  while (state.history.length > 1 && state.history[1].t < cutoff) state.history.shift();
}

async function sample() {
  const name = state.selected;
  if (!name) return;
  let got;
  try {
    got = await getJson("/api/protector?" + new URLSearchParams({ name }));
  } catch (error) {
    refused(error);
    return;
  }
  if (name !== state.selected) return;
  const p = got.protector;
  pushHistory(got.now_ms, shown(p));
  state.samples.push({ t: got.now_ms, c: p.counters });
  while (state.samples.length > HISTORY_MS / 1000) state.samples.shift();
  updateRow(p, false);
  drawTimeline();
  drawRates();
}

const COLOURS = {};
function colour(s) {
  if (!COLOURS[s]) COLOURS[s] = getComputedStyle(document.documentElement).getPropertyValue("--" + s).trim() || "#ccc";
  return COLOURS[s];
}

// The time axis both charts share: from the oldest point known (at least 20 s,
// at most HISTORY_MS) to now, so a protector selected a moment ago fills the chart.
function axis(width) {
  const now = Date.now() + state.offset;
  const oldest = Math.min(
    state.history.length ? state.history[0].t : now,
    state.samples.length ? state.samples[0].t : now,
  );
  const span = Math.min(HISTORY_MS, Math.max(20000, now - oldest));
  return { now, x: (t) => ((t - (now - span)) / span) * width };
}

function drawTimeline() {
  const canvas = $("timeline");
  const g = canvas.getContext("2d");
  const { now, x } = axis(canvas.width);
  g.fillStyle = "#eceff3";
  g.fillRect(0, 0, canvas.width, canvas.height);
  state.history.forEach((h, i) => {
    const until = i + 1 < state.history.length ? state.history[i + 1].t : now;
    g.fillStyle = colour(h.shown);
    g.fillRect(x(h.t), 0, Math.max(1, x(until) - x(h.t)), canvas.height);
  });
}

function drawRates() {
  const canvas = $("rates");
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  const { x } = axis(canvas.width);
  const points = [];
  for (let i = 1; i < state.samples.length; i++) {
    const a = state.samples[i - 1], b = state.samples[i];
    const dt = (b.t - a.t) / 1000;
    if (dt <= 0) continue;
    const calls = (b.c.successes + b.c.failures + b.c.ignored - a.c.successes - a.c.failures - a.c.ignored) / dt;
    points.push({ t: b.t, calls, failures: (b.c.failures - a.c.failures) / dt });
  }
  const top = Math.max(1, ...points.map((p) => p.calls));
  const y = (v) => canvas.height - 4 - (v / top) * (canvas.height - 16);
  for (const [key, stroke] of [["calls", "#5b7fb8"], ["failures", colour("open")]]) {
    g.strokeStyle = stroke;
    g.beginPath();
    points.forEach((p, i) => (i ? g.lineTo(x(p.t), y(p[key])) : g.moveTo(x(p.t), y(p[key]))));
    g.stroke();
  }
  canvas.dataset.samples = String(state.samples.length);
  g.fillStyle = "#5d6570";
  g.fillText("max " + top.toFixed(1) + "/s", 4, 10);
}

async function act(body) {
  const result = $("act-result");
  result.className = "";
  result.textContent = "…";
  const seconds = Number($("act-duration").value);
  if (seconds > 0) body.seconds = seconds;
  body.name = state.selected;
  try {
    const response = await fetch("/api/admin", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
    });
    const done = await answer(response);
    updateRow(done.protector, true);
    result.textContent = body.action.replace("_", " ") + ": done at revision " + done.revision;
  } catch (error) {
    result.className = "error";
    result.textContent = error.message;
  }
}
