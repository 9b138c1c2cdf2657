// The dashboard in a real browser: headless Chromium (Debian's `chromium`) driven by
// playwright-core, against a real circuitd. Run with `npm test` (node --test) after
// `npm ci`; ./run-tests does both. Every wait is on the page's DOM with DEADLINE_MS.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { DEADLINE_MS, ROOT, circuitctl, startDaemon, tokensFile, trip } from "./daemon.mjs";

const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
// The README's screenshot: written under target/ so a test run leaves the tree clean;
// `SCREENSHOT=docs/dashboard.png ./run-tests` refreshes the committed one.
const SCREENSHOT = path.resolve(ROOT, process.env.SCREENSHOT || path.join("target", "browser", "dashboard.png"));

/// A fresh headless Chromium with an empty profile: {page, close}.
async function openBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install it with \`apt-get install chromium\` (or set CHROMIUM_BIN)`);
  }
  const profile = mkdtempSync(path.join(tmpdir(), "circuitd-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1440, height: 900 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  context.setDefaultTimeout(DEADLINE_MS);
  const page = context.pages()[0] || (await context.newPage());
  return {
    page,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

const row = (name) => `#protectors tbody tr[data-name="${name}"]`;

async function select(page, name) {
  await page.click(row(name) + " td:first-child");
  await page.waitForSelector(`#detail-name:text-is("${name}")`);
}

async function act(page, button) {
  await page.evaluate(() => (document.getElementById("act-result").textContent = ""));
  await page.click(button);
  await page.waitForFunction(() => {
    const t = document.getElementById("act-result").textContent;
    return t !== "" && t !== "…";
  });
  return page.evaluate(() => {
    const r = document.getElementById("act-result");
    return { text: r.textContent, error: r.classList.contains("error") };
  });
}

describe("the dashboard", () => {
  const names = ["checkout", "inventory", "payments.eu", "payments.us", "search"];
  let daemon;
  let browser;
  let page;

  before(async () => {
    daemon = await startDaemon();
    for (const name of names) await circuitctl(daemon, ["ensure", name, "--cooldown", "60s"]);
    browser = await openBrowser();
    page = browser.page;
    await page.goto(daemon.http + "/");
    // Marks this document: a reload would lose it.
    await page.evaluate(() => (window.loadedOnce = true));
  });

  after(async () => {
    await browser?.close();
    await daemon?.stop();
  });

  test("lists every protector", async () => {
    for (const name of names) await page.waitForSelector(row(name) + '[data-status="closed"]');
  });

  test("shows a trip made over gRPC in the table and the feed, without a reload", async (t) => {
    await page.waitForSelector('#conn[data-state="live"]');
    await trip(daemon, "payments.eu");
    await page.waitForSelector(row("payments.eu") + '[data-status="open"]');
    const item = await page.waitForSelector('#feed li[data-name="payments.eu"][data-to="open"]');
    const at = Number(await item.getAttribute("data-at"));
    const received = Number(await item.getAttribute("data-received"));
    const error = Number(await item.getAttribute("data-received-error"));
    // Both on the daemon's clock: the transition's own instant, and when the page had it
    // (the page's reading of the daemon's clock is off by at most `error`). Reported, not
    // asserted: no test asserts a latency (a loaded CI machine is no measurement); the
    // issue's 1 s bound is read off this line.
    t.diagnostic(`the feed showed the trip ${received - at} ms after it happened (give or take ${error} ms)`);
    assert.equal(await page.evaluate(() => window.loadedOnce), true, "the page was reloaded");
    const cooldown = await page.textContent(row("payments.eu") + " td.cooldown");
    assert.match(cooldown, /^\d+\.\d s$/);
  });

  test("force-open from the page takes effect", async () => {
    await select(page, "search");
    const result = await act(page, "#act-force-open");
    assert.equal(result.error, false, result.text);
    const got = await circuitctl(daemon, ["get", "search"], { json: true });
    assert.equal(got.protector.override.kind, "OVERRIDE_KIND_FORCED_OPEN");
    await page.waitForSelector(row("search") + '[data-status="forced_open"]');
  });

  test("filters by name prefix", async () => {
    await page.fill("#filter", "payments.");
    await page.waitForFunction(() => document.querySelectorAll("#protectors tbody tr").length === 2);
    await page.fill("#filter", "");
    await page.waitForFunction((n) => document.querySelectorAll("#protectors tbody tr").length === n, names.length);
    // Each new feed resumed from the table's revision: no resync on the way.
    assert.equal(await page.locator("#feed li.note").count(), 0, await page.textContent("#feed"));
  });

  test("the feed replays what a reader missed, from Last-Event-ID", async () => {
    const listed = await (await fetch(daemon.http + "/api/protectors?prefix=payments.us")).json();
    await circuitctl(daemon, ["set-status", "payments.us", "open"]);
    await circuitctl(daemon, ["set-status", "payments.us", "closed"]);
    const controller = new AbortController();
    const response = await fetch(daemon.http + "/api/events?prefix=payments.us", {
      headers: { "Last-Event-ID": String(listed.revision) },
      signal: controller.signal,
    });
    assert.equal(response.headers.get("content-type"), "text/event-stream");
    const seen = [];
    const decoder = new TextDecoder();
    let text = "";
    const timer = setTimeout(() => controller.abort(), DEADLINE_MS);
    try {
      for await (const chunk of response.body) {
        text += decoder.decode(chunk, { stream: true });
        const frames = text.split("\n\n");
        text = frames.pop();
        for (const frame of frames) {
          const data = frame.split("\n").find((l) => l.startsWith("data: "));
          if (frame.startsWith("event: transition")) seen.push(JSON.parse(data.slice(6)).to);
          if (frame.startsWith("event: synced")) controller.abort();
        }
      }
    } catch (error) {
      if (error.name !== "AbortError") throw error;
    } finally {
      clearTimeout(timer);
    }
    assert.deepEqual(seen, ["open", "closed"]);
  });

  test("charts a selected protector and writes the README's screenshot", async () => {
    // Some traffic with failures for the rate chart, on bench-0 (the load generator's).
    const bench = circuitctl(daemon, [
      "bench", "--mode", "unary", "--concurrency", "1", "--duration", "6s", "--warmup", "0s", "--failure-rate", "0.2",
    ]);
    await page.waitForSelector(row("bench-0"));
    await select(page, "bench-0");
    await page.waitForFunction(() => Number(document.getElementById("rates").dataset.samples) >= 5);
    // Just the content, for the README.
    await page.setViewportSize({ width: 1280, height: 560 });
    mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT });
    await bench;
  });
});

describe("the dashboard with more protectors than a page", () => {
  let daemon;
  let browser;

  before(async () => {
    daemon = await startDaemon();
    // The load generator creates bench-0 .. bench-149.
    await circuitctl(daemon, [
      "bench", "--mode", "unary", "--concurrency", "1", "--duration", "1s", "--warmup", "0s",
      "--protectors", "150", "--acquire-only",
    ]);
    browser = await openBrowser();
    await browser.page.goto(daemon.http + "/");
  });

  after(async () => {
    await browser?.close();
    await daemon?.stop();
  });

  test("pages through them with the registry's page tokens", async () => {
    const page = browser.page;
    const rows = (n) => page.waitForFunction((n) => document.querySelectorAll("#protectors tbody tr").length === n, n);
    await rows(100);
    await page.click("#page-next");
    await rows(50);
    await page.waitForSelector(row("bench-99"));
    assert.equal(await page.isDisabled("#page-next"), true);
    await page.click("#page-prev");
    await rows(100);
    await page.waitForSelector(row("bench-0"));
  });
});

describe("the dashboard with --tokens", () => {
  let daemon;
  let browser;
  let page;
  let tokens;

  before(async () => {
    tokens = await tokensFile(["read", "admin"]);
    daemon = await startDaemon(["--tokens", tokens.file]);
    await circuitctl(daemon, ["ensure", "guarded"], { token: tokens.tokens.admin });
    browser = await openBrowser();
    page = browser.page;
    await page.goto(daemon.http + "/");
  });

  after(async () => {
    await browser?.close();
    await daemon?.stop();
    tokens?.cleanup();
  });

  async function useToken(token) {
    await page.fill("#token", token);
    await page.click("#token-save");
  }

  test("asks for a token, reads with the read role, and acts only with the admin role", async () => {
    await page.waitForSelector("#notice:not([hidden])");
    assert.match(await page.textContent("#notice"), /refused/);
    await useToken(tokens.tokens.read);
    await page.waitForSelector(row("guarded") + '[data-status="closed"]');
    await select(page, "guarded");
    const refused = await act(page, "#act-disable");
    assert.equal(refused.error, true, refused.text);
    assert.match(refused.text, /admin/);
    await useToken(tokens.tokens.admin);
    const done = await act(page, "#act-disable");
    assert.equal(done.error, false, done.text);
    const got = await circuitctl(daemon, ["get", "guarded"], { json: true, token: tokens.tokens.read });
    assert.equal(got.protector.override.kind, "OVERRIDE_KIND_DISABLED");
  });
});
