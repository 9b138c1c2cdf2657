// The TypeScript player of the shared conformance vectors (conformance/vectors.json, whose
// format conformance/README.md defines): every vector against a daemon of its own, the
// client's operations through this package's public API, the harness's (admin calls,
// inspections) on gRPC stubs of the player's own. VECTOR=name plays one.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import * as grpc from "@grpc/grpc-js";

import { Client, ProtectedCallError, wire } from "../dist/index.js";
import { startDaemon, waitFor } from "./daemon.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const FILE = path.join(ROOT, "conformance", "vectors.json");
const doc = JSON.parse(readFileSync(FILE, "utf8"));
assert.equal(doc.format, 1, `${FILE}: format ${doc.format} is not one this player knows`);
const DEADLINE_MS = Math.max(doc.deadline_ms, Number(process.env.CONFORMANCE_DEADLINE_MS ?? 0));

/** The keys each op may carry (besides `op` and `description`). */
const KEYS = {
  protector: ["id", "name", "policy", "fallback", "cached", "staleness_ms", "watch"],
  acquire: ["protector", "permit", "expect"],
  acquire_until: ["protector", "permit", "expect"],
  report: ["permit", "outcome", "expect"],
  execute: ["protector", "result", "times", "expect"],
  change: ["protector", "from", "to", "reason"],
  no_change: ["protector"],
  admin: ["action", "name", "status", "kind"],
  inspect: ["name", "expect"],
  stop_daemon: [],
  start_daemon: [],
  freeze_daemon: [],
  thaw_daemon: [],
};
const POLICY_KEYS = ["cooldown_ms", "failure_limit", "success_limit", "trial_permits", "permit_ttl_ms"];

function checkKeys(object, allowed, where) {
  for (const key of Object.keys(object)) {
    if (key === "description") continue;
    if (!allowed.includes(key)) throw new Error(`${where}: unknown key ${JSON.stringify(key)}`);
  }
}

function policyOf(p = {}) {
  checkKeys(p, POLICY_KEYS, "policy");
  return {
    cooldownMs: p.cooldown_ms,
    failureLimit: p.failure_limit,
    successLimit: p.success_limit,
    trialPermits: p.trial_permits,
    permitTtlMs: p.permit_ttl_ms,
  };
}

const SOURCES = { cached: "cache", daemon: "daemon", local: "fallback", allowed: "fallback" };

/** What an acquire came to, in the vectors' terms. */
async function acquireOnce(protector) {
  try {
    const permit = await protector.acquire();
    return { decision: "admitted", trial: permit.id !== 0, source: SOURCES[permit.source], permit };
  } catch (error) {
    if (!(error instanceof ProtectedCallError)) throw error;
    return {
      decision: "rejected",
      reason: error.reason,
      status: error.status,
      fallback: error.fallback,
      retry_after: error.retryAfterMs !== undefined,
    };
  }
}

function matches(got, expect) {
  return Object.entries(expect).every(([k, v]) => got[k] === v);
}

function shown(got) {
  const { permit, ...rest } = got;
  return JSON.stringify(rest);
}

function expectKeys(expect, where) {
  checkKeys(expect, ["decision", "trial", "source", "reason", "status", "fallback", "retry_after", "outcome", "accepted"], where);
}

async function untilDeadline(what, attempt) {
  const end = Date.now() + DEADLINE_MS;
  let last;
  for (;;) {
    last = await attempt();
    if (last.done) return last;
    if (Date.now() > end) throw new Error(`${what}: not within ${DEADLINE_MS} ms (last: ${last.shown})`);
    // A poll interval (conformance/README.md allows up to 50 ms), not a synchronisation.
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The harness's own stubs on the daemon (never the client under test). */
function stubs(address) {
  const credentials = grpc.credentials.createInsecure();
  return {
    protectors: new wire.ProtectorServiceClient(address, credentials),
    admin: new wire.AdminServiceClient(address, credentials),
    close() {
      this.protectors.close();
      this.admin.close();
    },
  };
}

function unary(stub, method, request) {
  return new Promise((resolve, reject) =>
    stub[method](request, { deadline: Date.now() + 2_000 }, (error, response) => (error ? reject(error) : resolve(response))),
  );
}

/** Waits until the daemon answers ListProtectors: it prints its address before its store
 * is recovered. */
function answering(harness) {
  return untilDeadline("the daemon to answer", async () => {
    try {
      await unary(harness.protectors, "ListProtectors", {});
      return { done: true };
    } catch (error) {
      return { done: false, shown: error.details };
    }
  });
}

const COUNTERS = ["admitted", "rejected", "successes", "failures", "ignored", "stale_reports", "expired_permits"];
function inspected(p) {
  const c = p.counters ?? {};
  return {
    status: wire.short(p.status, "STATUS_"),
    generation: wire.num(p.generation),
    trials_in_flight: p.trialsInFlight,
    consecutive_failures: wire.num(p.consecutiveFailures),
    admitted: wire.num(c.admitted),
    rejected: wire.num(c.rejected),
    successes: wire.num(c.successes),
    failures: wire.num(c.failures),
    ignored: wire.num(c.ignored),
    stale_reports: wire.num(c.staleReports),
    expired_permits: wire.num(c.expiredPermits),
  };
}

async function play(vector) {
  checkKeys(vector, ["name", "daemon", "client", "steps"], vector.name);
  checkKeys(vector.daemon ?? {}, ["flags"], `${vector.name}.daemon`);
  checkKeys(vector.client ?? {}, ["acquire_deadline_ms"], `${vector.name}.client`);
  const flags = vector.daemon?.flags ?? [];
  const acquireDeadlineMs = vector.client?.acquire_deadline_ms ?? 2000;
  const dataDir = mkdtempSync(path.join(tmpdir(), "circuitd-conformance-"));
  let daemon = await startDaemon({ dataDir, extra: flags });
  const address = daemon.address;
  let harness = stubs(address);
  await answering(harness);
  const client = new Client(address, { requestTimeoutMs: Math.max(1_000, acquireDeadlineMs) });
  const protectors = new Map();
  const changes = new Map();
  const permits = new Map();
  try {
    for (const [index, step] of vector.steps.entries()) {
      const where = `vector ${vector.name}, step ${index} (${step.op})`;
      const allowed = KEYS[step.op];
      if (!allowed) throw new Error(`${where}: unknown op`);
      checkKeys(step, ["op", ...allowed], where);
      if (step.expect && step.op !== "inspect") expectKeys(step.expect, where);
      const protector = step.protector === undefined ? undefined : protectors.get(step.protector);
      if (step.protector !== undefined && !protector) throw new Error(`${where}: no protector ${step.protector}`);
      try {
        switch (step.op) {
          case "protector": {
            const p = client.protector(step.name, {
              policy: policyOf(step.policy),
              fallback: step.fallback ?? "deny",
              cached: step.cached ?? false,
              stalenessMs: step.staleness_ms,
              acquireDeadlineMs,
            });
            const queue = [];
            if (step.watch) p.on("statusChange", (c) => queue.push(c));
            await p.ensure();
            protectors.set(step.id, p);
            changes.set(step.id, queue);
            break;
          }
          case "acquire": {
            const got = await acquireOnce(protector);
            if (got.permit) {
              if (step.permit) permits.set(step.permit, got.permit);
              else if (step.expect?.decision === "rejected") await got.permit.ignore();
              else throw new Error(`admitted a permit with no name to keep it under: ${shown(got)}`);
            }
            assert.ok(matches(got, step.expect), `expected ${JSON.stringify(step.expect)}, got ${shown(got)}`);
            break;
          }
          case "acquire_until":
            await untilDeadline(`acquire until ${JSON.stringify(step.expect)}`, async () => {
              const got = await acquireOnce(protector);
              const done = matches(got, step.expect);
              if (got.permit) {
                if (done && step.permit) permits.set(step.permit, got.permit);
                else await got.permit.ignore();
              }
              return { done, shown: shown(got) };
            });
            break;
          case "report": {
            const permit = permits.get(step.permit);
            if (!permit) throw new Error(`no permit ${step.permit}`);
            permits.delete(step.permit);
            const method = { success: "success", failure: "failure", ignore: "ignore" }[step.outcome];
            if (!method) throw new Error(`unknown outcome ${step.outcome}`);
            const resolved = await permit[method]();
            // Checked when the client answers a verdict (a report sent at once).
            if (step.expect?.accepted !== undefined && resolved.accepted !== undefined) {
              assert.equal(resolved.accepted, step.expect.accepted, "the report's verdict");
            }
            break;
          }
          case "execute": {
            for (let i = 0; i < (step.times ?? 1); i++) {
              const own = new Error("the function's own failure");
              let got;
              try {
                await protector.execute(() => {
                  if (step.result === "fail") throw own;
                  return "value";
                });
                got = { outcome: "ran" };
              } catch (error) {
                if (error === own) got = { outcome: "ran" };
                else if (error instanceof ProtectedCallError) {
                  got = { outcome: "rejected", reason: error.reason, fallback: error.fallback };
                } else throw error;
              }
              assert.ok(matches(got, step.expect), `call ${i}: expected ${JSON.stringify(step.expect)}, got ${JSON.stringify(got)}`);
            }
            break;
          }
          case "change": {
            const queue = changes.get(step.protector);
            // The queue's listener was added first: when this event fires, it is queued.
            if (queue.length === 0) {
              await waitFor(protectors.get(step.protector), "statusChange", () => true, `a change ${step.from} -> ${step.to}`);
            }
            const c = queue.shift();
            const want = { from: step.from, to: step.to };
            if (step.reason !== undefined && c.reason !== undefined) want.reason = step.reason;
            assert.deepEqual({ from: c.from, to: c.to, ...(want.reason ? { reason: c.reason } : {}) }, want);
            break;
          }
          case "no_change": {
            const queue = changes.get(step.protector);
            assert.deepEqual(queue, [], "no status change queued");
            break;
          }
          case "admin": {
            const request = { name: step.name };
            let method;
            if (step.action === "set_status") [method, request.status] = ["SetStatus", `STATUS_${step.status}`];
            else if (step.action === "set_override") [method, request.kind] = ["SetOverride", `OVERRIDE_KIND_${step.kind}`];
            else if (step.action === "delete") method = "DeleteProtector";
            else throw new Error(`unknown admin action ${step.action}`);
            await untilDeadline(`admin ${step.action}`, async () => {
              try {
                await unary(harness.admin, method, request);
                return { done: true };
              } catch (error) {
                if (error.code !== grpc.status.UNAVAILABLE) throw error;
                return { done: false, shown: error.details };
              }
            });
            break;
          }
          case "inspect":
            checkKeys(step.expect, ["status", "generation", "trials_in_flight", "consecutive_failures", ...COUNTERS], where);
            await untilDeadline(`inspect ${JSON.stringify(step.expect)}`, async () => {
              try {
                const r = await unary(harness.protectors, "GetProtector", { name: step.name });
                const got = inspected(r.protector);
                return { done: matches(got, step.expect), shown: JSON.stringify(got) };
              } catch (error) {
                return { done: false, shown: error.details ?? String(error) };
              }
            });
            break;
          case "stop_daemon":
            await daemon.stop();
            break;
          case "start_daemon":
            harness.close();
            daemon = await startDaemon({ listen: address, dataDir, extra: flags });
            harness = stubs(address);
            await answering(harness);
            break;
          case "freeze_daemon":
            daemon.freeze();
            break;
          case "thaw_daemon":
            daemon.thaw();
            break;
        }
      } catch (error) {
        error.message = `${where}: ${error.message}`;
        throw error;
      }
    }
  } finally {
    for (const permit of permits.values()) await permit.ignore().catch(() => undefined);
    await client.close();
    harness.close();
    await daemon.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const only = process.env.VECTOR;
for (const vector of doc.vectors) {
  if (only && vector.name !== only) continue;
  test(vector.name, { timeout: 10 * DEADLINE_MS }, () => play(vector));
}
