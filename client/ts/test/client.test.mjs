// The client against a real daemon: what the shared vectors do not cover (every policy
// field on the wire, durations on reports, AbortSignal and late trial answers, replicas,
// tokens, cached batching).
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { Client, ProtectedCallError, ProtectionError, wire } from "../dist/index.js";
import { eventually, EVERY_FIELD, startDaemon, uniqueName } from "./daemon.mjs";

/** Generous acquire deadline: the daemon decides, even on a loaded machine. */
const PATIENT = { acquireDeadlineMs: 5_000 };

/** Records every request the client sends, by method. */
function recording(client) {
  const sent = [];
  const unary = client.unary.bind(client);
  client.unary = (replica, service, method, request, ...rest) => {
    sent.push({ method, request });
    return unary(replica, service, method, request, ...rest);
  };
  return sent;
}

describe("a client of one daemon", () => {
  let daemon;
  let client;
  before(async () => {
    daemon = await startDaemon();
    client = new Client(daemon.address);
  });
  after(async () => {
    await client.close();
    await daemon.stop();
  });

  test("every policy field, issue 18's included, reaches the daemon", async () => {
    const p = client.protector(uniqueName("policy"), {
      ...PATIENT,
      cached: false,
      policy: EVERY_FIELD,
    });
    const got = (await p.get()).policy;
    assert.equal(wire.millis(got.cooldown), 1500);
    assert.deepEqual(got.failureLimit, { numerator: 3, denominator: 10 });
    assert.deepEqual(got.successLimit, { numerator: 2, denominator: 4 });
    assert.equal(got.trialPermits, 0);
    assert.equal(wire.millis(got.permitTtl), 2000);
    assert.equal(got.autoHalfOpen, true);
    assert.equal(wire.millis(got.windowDuration), 60_000);
    assert.equal(got.minimumCalls, 20);
    assert.equal(got.consecutiveFailures, 5);
    assert.equal(wire.millis(got.slowCallDuration), 250);
    assert.deepEqual(got.slowCallLimit, { numerator: 1, denominator: 2 });
    assert.equal(got.cooldownMultiplier, 2);
    assert.equal(wire.millis(got.maxCooldown), 600_000);
    assert.equal(got.shadow, true);
    assert.equal(got.historySize, 100);
  });

  test("a policy the daemon refuses is an error naming the field, not a fallback", async () => {
    const p = client.protector(uniqueName("bad"), { ...PATIENT, policy: { windowDurationMs: 10 } });
    const error = await p.execute(() => 1).catch((e) => e);
    assert.ok(error instanceof ProtectionError, String(error));
    assert.match(error.message, /window_duration/);
  });

  test("execute measures each call's duration and sends it with the outcome, once", async () => {
    const sent = recording(client);
    const name = uniqueName("duration");
    const p = client.protector(name, { ...PATIENT, cached: false, policy: { failureLimit: [1, 1] } });
    const slow = () => new Promise((resolve) => setTimeout(() => resolve("done"), 20));
    assert.equal(await p.execute(slow), "done");
    await p.execute(() => Promise.reject(new Error("down"))).catch(() => undefined);
    const trial = await p.acquire();
    assert.ok(trial.id > 0);
    // The call takes a few milliseconds, so its measured duration cannot be zero.
    await new Promise((resolve) => setTimeout(resolve, 5));
    assert.deepEqual(await trial.success(), { accepted: true });
    await assert.rejects(trial.failure(), /already resolved/);
    const batch = sent.find((s) => s.method === "ReportBatch").request.batches.at(-1);
    assert.equal(batch.outcomes.length, batch.durations.length, "every listed outcome has its duration");
    const report = sent.find((s) => s.method === "Report").request;
    assert.ok(wire.millis(report.duration) > 0, `the trial's duration, ${wire.millis(report.duration)} ms`);
    // The successful slow call went in the batch before the failure, as a count (no
    // slow-call rule); the failure's own duration is listed.
    assert.ok(wire.millis(batch.durations.at(-1)) >= 0);
    const counters = (await p.get()).counters;
    assert.equal(wire.num(counters.successes), 2);
    assert.equal(wire.num(counters.failures), 1);
  });

  test("an aborted signal gives up the acquire, and a trial given up mid-call is released", async () => {
    const name = uniqueName("abort");
    const p = client.protector(name, { ...PATIENT, cached: false, policy: { failureLimit: [1, 1] } });
    await p.execute(() => Promise.reject(new Error("down"))).catch(() => undefined);
    const gone = AbortSignal.abort(new Error("gave up before asking"));
    await assert.rejects(p.acquire({ signal: gone }), /gave up before asking/);
    const controller = new AbortController();
    const error = await p
      .execute(
        async () => {
          controller.abort(new Error("the caller left"));
          throw new Error("interrupted");
        },
        { signal: controller.signal },
      )
      .catch((e) => e);
    assert.equal(error.message, "interrupted");
    const got = await p.get();
    assert.equal(got.status, "STATUS_HALF_OPEN");
    assert.equal(got.trialsInFlight, 0, "the trial was reported IGNORED");
    assert.equal(wire.num(got.counters.ignored), 1);
  });

  test("a failure's answer trips the cached protector before the call returns, and successes are batched", async () => {
    const name = uniqueName("cached");
    const p = client.protector(name, { ...PATIENT, policy: { failureLimit: [1, 1], cooldownMs: 60_000 } });
    await p.ensure();
    let permit;
    await eventually(async () => {
      permit = await p.acquire();
      if (permit.source === "cached") return true;
      await permit.ignore();
      return false;
    }, "a cached decision");
    await permit.success();
    for (let i = 0; i < 99; i++) await p.execute(() => i);
    await eventually(async () => wire.num((await p.get()).counters.successes) === 100, "100 batched successes");
    await p.execute(() => Promise.reject(new Error("down"))).catch(() => undefined);
    const error = await p.acquire().catch((e) => e);
    assert.ok(error instanceof ProtectedCallError);
    assert.equal(error.reason, "OPEN");
    assert.equal(error.fallback, false);
    assert.ok(client.stats.cachedDecisions >= 100);
  });
});

test("a late trial answer, after the deadline passed and the fallback decided, is reported IGNORED", async () => {
  const daemon = await startDaemon();
  const client = new Client(daemon.address);
  try {
    const name = uniqueName("late");
    const patient = client.protector(name, { ...PATIENT, cached: false, policy: { failureLimit: [1, 1] } });
    await patient.execute(() => Promise.reject(new Error("down"))).catch(() => undefined);
    const hasty = client.protector(name, { ...PATIENT, cached: false, policy: { failureLimit: [1, 1] } });
    await hasty.ensure();
    daemon.freeze();
    // This call's own deadline, shorter than the protector's.
    const error = await hasty.acquire({ deadlineMs: 100 }).catch((e) => e);
    daemon.thaw();
    assert.ok(error instanceof ProtectedCallError && error.fallback, `${error?.constructor?.name} ${JSON.stringify(error, (k, v) => (typeof v === "bigint" ? String(v) : k === "protector" ? undefined : v))}`);
    await eventually(async () => {
      const got = await patient.get().catch(() => undefined);
      return got !== undefined && wire.num(got.counters.ignored) === 1 && got.trialsInFlight === 0;
    }, "the late trial reported IGNORED");
  } finally {
    daemon.thaw();
    await client.close();
    await daemon.stop();
  }
});

test("a replica that cannot be reached hands the call to the next one", async () => {
  const daemon = await startDaemon();
  // Port 1 on loopback refuses connections.
  const client = new Client(["127.0.0.1:1", daemon.address]);
  try {
    const p = client.protector(uniqueName("replicas"), { ...PATIENT, cached: false });
    assert.equal(await p.execute(() => "answered"), "answered");
    assert.equal(client.stats.fallbackDecisions, 0);
    assert.equal(client.link.current, 1);
  } finally {
    await client.close();
    await daemon.stop();
  }
});

test("a daemon with --tokens: a missing token is refused, the right one admitted", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "circuitd-tokens-"));
  const token = randomBytes(32).toString("hex");
  const sha256 = createHash("sha256").update(token).digest("hex");
  const file = path.join(dir, "tokens.toml");
  writeFileSync(file, `[[token]]\nname = "ts-test"\nsha256 = "${sha256}"\nrole = "data"\n`);
  const daemon = await startDaemon({ extra: ["--tokens", file] });
  const without = new Client(daemon.address, { token: "" });
  const withToken = new Client(daemon.address, { token });
  try {
    const refused = await without.protector(uniqueName("token"), PATIENT).execute(() => 1).catch((e) => e);
    assert.ok(refused instanceof ProtectionError, String(refused));
    assert.equal(refused.code, 16 /* UNAUTHENTICATED */);
    assert.equal(await withToken.protector(uniqueName("token"), PATIENT).execute(() => "in"), "in");
  } finally {
    await without.close();
    await withToken.close();
    await daemon.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("with the unary transport, uncached calls are decided the same way", async () => {
  const daemon = await startDaemon();
  const client = new Client(daemon.address, { transport: "unary" });
  try {
    assert.equal(client.replicas[0].session, undefined);
    const p = client.protector(uniqueName("unary"), { ...PATIENT, cached: false, policy: { failureLimit: [1, 1], cooldownMs: 60_000 } });
    assert.equal(await p.execute(() => "ran"), "ran");
    await p.execute(() => Promise.reject(new Error("down"))).catch(() => undefined);
    const error = await p.acquire().catch((e) => e);
    assert.ok(error instanceof ProtectedCallError && !error.fallback && error.reason === "OPEN", String(error));
    assert.equal(client.stats.daemonDecisions, 3);
  } finally {
    await client.close();
    await daemon.stop();
  }
});
