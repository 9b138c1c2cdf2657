// The tests' harness: a real circuitd from $CIRCUITD_BIN (never a skip: a missing binary
// fails with the command that builds it), on 127.0.0.1:0 unless an address is given (a
// restart on the address of a daemon that stopped), stopped by its pid.
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createInterface } from "node:readline";

/** How long any awaited condition may take before a test fails: generous, because the
 * machine may be loaded; nothing waits this long when all is well. */
export const DEADLINE_MS = 20_000;

export function circuitdBinary() {
  const bin = process.env.CIRCUITD_BIN;
  if (!bin) {
    throw new Error(
      "CIRCUITD_BIN is not set: build the daemon (`cargo build -p circuitd`) and run these tests with " +
        "CIRCUITD_BIN=target/debug/circuitd (./run-tests does both)",
    );
  }
  if (!existsSync(bin)) throw new Error(`CIRCUITD_BIN=${bin} does not exist: build it with \`cargo build -p circuitd\``);
  return bin;
}

/** A circuitd with in-memory state, or durable state in `dataDir`; resolves once it
 * printed `listening on`. */
export async function startDaemon({ listen = "127.0.0.1:0", dataDir, extra = [] } = {}) {
  const state = dataDir ? ["--data-dir", dataDir] : ["--in-memory"];
  const child = spawn(circuitdBinary(), ["--listen", listen, ...state, ...extra], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  const lines = createInterface({ input: child.stdout });
  const address = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`circuitd did not print its address within ${DEADLINE_MS} ms`));
    }, DEADLINE_MS);
    const exited = (code) => {
      clearTimeout(timer);
      reject(new Error(`circuitd exited with ${code} before listening`));
    };
    child.once("exit", exited);
    lines.on("line", (line) => {
      if (line.startsWith("listening on ")) {
        clearTimeout(timer);
        child.removeListener("exit", exited);
        resolve(line.slice("listening on ".length).trim());
      }
    });
  });
  return {
    address,
    pid: child.pid,
    /** SIGSTOP: it holds its connections open and answers nothing. */
    freeze() {
      process.kill(child.pid, "SIGSTOP");
      // kill(2) only queues the stop: wait until every thread of the daemon has stopped,
      // so that nothing sent after freeze() can be answered before thaw().
      const until = Date.now() + 10_000;
      while (!stoppedAll(child.pid)) {
        if (Date.now() > until) throw new Error(`circuitd (pid ${child.pid}) did not stop on SIGSTOP`);
      }
    },
    thaw() {
      process.kill(child.pid, "SIGCONT");
    },
    /** SIGTERM by pid, then SIGKILL if it outlives the deadline. */
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      // A frozen daemon must run to handle its SIGTERM.
      process.kill(child.pid, "SIGCONT");
      const exited = new Promise((resolve) => child.once("exit", resolve));
      process.kill(child.pid, "SIGTERM");
      const timer = setTimeout(() => process.kill(child.pid, "SIGKILL"), DEADLINE_MS);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** A protector name of its own for each test. */
export function uniqueName(prefix) {
  return `ts-${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
}

/** Resolves with the first `event` of `emitter` that `accept`s, or fails at the deadline. */
export function waitFor(emitter, event, accept = () => true, what = event) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.removeListener(event, on);
      reject(new Error(`no ${what} within ${DEADLINE_MS} ms`));
    }, DEADLINE_MS);
    function on(value) {
      if (!accept(value)) return;
      clearTimeout(timer);
      emitter.removeListener(event, on);
      resolve(value);
    }
    emitter.on(event, on);
  });
}

/** Polls `check` (an async predicate) on each turn of `tick` until it holds, or fails at
 * the deadline. For conditions with no event to wait on (the daemon's counters). */
export async function eventually(check, what) {
  const end = Date.now() + DEADLINE_MS;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error(`${what}: not within ${DEADLINE_MS} ms`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** A policy that sets every field of the contract's Policy (issue 18's included), each to
 * a value other than its default, valid as a whole. */
export const EVERY_FIELD = Object.freeze({
  cooldownMs: 1500,
  failureLimit: [3, 10],
  successLimit: [2, 4],
  trialPermits: 0,
  permitTtlMs: 2000,
  autoHalfOpen: true,
  windowDurationMs: 60_000,
  minimumCalls: 20,
  consecutiveFailures: 5,
  slowCallDurationMs: 250,
  slowCallLimit: [1, 2],
  cooldownMultiplier: 2,
  maxCooldownMs: 600_000,
  shadow: true,
  historySize: 100,
});

/** Whether every thread of process `pid` is stopped (state T in /proc/PID/task/TID/stat). */
function stoppedAll(pid) {
  const tasks = readdirSync(`/proc/${pid}/task`);
  return tasks.every((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("T");
  });
}
