// Decisions per second of the Node client, cached and uncached, in one process.
//
//   node bench.mjs [--addr HOST:PORT] [--seconds N] [--concurrency N]
//
// Without --addr it starts a daemon of its own from $CIRCUITD_BIN (a release build for
// figures worth comparing: `cargo build --release -p circuitd`). Each phase runs for
// --seconds (default 3) on a protector of its own and prints calls per second of wall
// time and of the process's CPU time; nothing is asserted.
//   cached acquire+success: the two-step API on a cached protector (a decision and its
//                           batched outcome, both in the process);
//   cached execute:         the one-step call of an async function on it;
//   uncached, sequential:   one Acquire at a time, each a round trip to the daemon;
//   uncached, concurrent:   --concurrency (default 64) callers at once on one channel.
import { parseArgs } from "node:util";

import { Client, ProtectedCallError } from "./dist/index.js";
import { startDaemon } from "./test/daemon.mjs";

const { values } = parseArgs({
  options: {
    addr: { type: "string" },
    seconds: { type: "string", default: "3" },
    concurrency: { type: "string", default: "64" },
  },
});
const seconds = Number(values.seconds);
const concurrency = Number(values.concurrency);

const daemon = values.addr ? undefined : await startDaemon();
// Whatever happens below, the daemon this script started is stopped.
process.on("exit", () => {
  try {
    if (daemon) process.kill(daemon.pid, "SIGTERM");
  } catch {
    // Already stopped.
  }
});
const address = values.addr ?? daemon.address;
const client = new Client(address);
const stamp = `${process.pid}-${Date.now()}`;

const fmt = (n) => Math.round(n).toLocaleString("en-US");

/** Runs `run(end)`, which makes calls until `end` and answers how many, and prints calls
 * per second of wall time and per second of this process's CPU time: on a machine other
 * work keeps busy, the second is what the client itself costs (for the cached phases,
 * which never wait on the daemon). */
async function phase(label, run) {
  const end = performance.now() + seconds * 1000;
  const started = performance.now();
  const cpu = process.cpuUsage();
  const calls = await run(end);
  const wall = calls / ((performance.now() - started) / 1000);
  const used = process.cpuUsage(cpu);
  const perCpu = calls / ((used.user + used.system) / 1e6);
  console.log(
    `${label.padEnd(28)} ${fmt(wall).padStart(10)} calls/s  ${fmt(perCpu).padStart(10)} per CPU-second  (${fmt(calls)} calls)`,
  );
}

/** A cached protector, once its Watch stream vouches for CLOSED. */
async function cachedProtector(name) {
  const p = client.protector(name, { acquireDeadlineMs: 1_000, policy: { failureLimit: [1000, 1000] } });
  await p.ensure();
  for (;;) {
    // A loaded daemon past the deadline: the fallback (deny) rejects, and the loop goes on.
    const permit = await p.acquire().catch(() => undefined);
    await permit?.ignore();
    if (permit?.source === "cached") return p;
    await new Promise((resolve) => setTimeout(resolve, 10)); // waiting for the Watch to go live
  }
}

const cached = await cachedProtector(`bench-ts-cached-${stamp}`);
await phase("cached acquire+success", async (end) => {
  let calls = 0;
  while (performance.now() < end) {
    // Checking the clock once every 1,000 calls keeps it out of the figure.
    for (let i = 0; i < 1000; i++) {
      const permit = await cached.acquire();
      permit.success();
    }
    calls += 1000;
  }
  return calls;
});
await phase("cached execute", async (end) => {
  let calls = 0;
  const fn = async () => calls;
  while (performance.now() < end) {
    for (let i = 0; i < 1000; i++) await cached.execute(fn);
    calls += 1000;
  }
  return calls;
});

const uncached = client.protector(`bench-ts-uncached-${stamp}`, {
  cached: false,
  acquireDeadlineMs: 1_000,
  policy: { failureLimit: [1000, 1000] },
});
await uncached.ensure();
/** One uncached decision; a rejection (the fallback's, past the deadline) counts too. */
async function decide() {
  try {
    (await uncached.acquire()).success();
  } catch (error) {
    if (!(error instanceof ProtectedCallError)) throw error;
  }
}
await phase("uncached, sequential", async (end) => {
  let calls = 0;
  while (performance.now() < end) {
    await decide();
    calls += 1;
  }
  return calls;
});
await phase(`uncached, ${concurrency} concurrent`, async (end) => {
  let calls = 0;
  const worker = async () => {
    while (performance.now() < end) {
      await decide();
      calls += 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return calls;
});
console.log(`fallback decisions: ${client.stats.fallbackDecisions} (a loaded daemon past the deadline)`);

await client.close();
await daemon?.stop();
