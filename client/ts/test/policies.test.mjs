// The parts that need no daemon: the LOCAL fallback's machine, the backoff, the retry
// policy and SafetyNet, and the policy's wire form.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { ExponentialDelay, FixedDelay, ProtectedCallError, RetryLimitReached, RetryWithBackoff, SafetyNet } from "../dist/index.js";
import { Machine } from "../dist/machine.js";
import { wirePolicy } from "../dist/policy.js";
import { duration } from "../dist/wire.js";
import { EVERY_FIELD } from "./daemon.mjs";

describe("the LOCAL fallback's machine", () => {
  const policy = (p) => wirePolicy(p);

  test("trips on a full window, rejects until the cooldown ends, then closes on good trials", () => {
    const m = new Machine(policy({ cooldownMs: 1000, failureLimit: [2, 3] }));
    const changes = [];
    for (const outcome of ["SUCCESS", "FAILURE", "FAILURE"]) {
      const p = m.acquire(0, changes);
      assert.equal(m.report(p, outcome, 0, changes), true);
    }
    assert.deepEqual(changes.map((c) => [c.from, c.to, c.reason]), [["CLOSED", "OPEN", "FAILURE_LIMIT"]]);
    assert.deepEqual(m.acquire(400), { reason: "OPEN", retryAfterMs: 600 });
    const trial = m.acquire(1000, changes);
    assert.ok(trial.id > 0, "the first acquire after the cooldown is a trial");
    assert.equal(m.status, "HALF_OPEN");
    // The HALF_OPEN window is failure_limit's denominator: 3 trials decide.
    const more = [m.acquire(1000), m.acquire(1000)];
    assert.equal(m.acquire(1000).reason, "TRIALS_EXHAUSTED");
    for (const p of [trial, ...more]) m.report(p, "SUCCESS", 1001, changes);
    assert.deepEqual(changes.at(-1), { from: "HALF_OPEN", to: "CLOSED", reason: "TRIALS_SUCCEEDED", generation: 4 });
  });

  test("a report from another generation is stale, and an expired trial counts as a failure", () => {
    const m = new Machine(policy({ permitTtlMs: 100, failureLimit: [1, 1] }));
    const old = m.acquire(0);
    m.report(m.acquire(0), "FAILURE", 0);
    assert.equal(m.report(old, "SUCCESS", 0), false);
    const changes = [];
    m.acquire(0, changes); // the trial, never reported
    m.acquire(150, changes);
    assert.deepEqual(
      changes.map((c) => c.reason),
      ["COOLDOWN_ELAPSED", "PERMIT_EXPIRED", "COOLDOWN_ELAPSED"],
    );
  });

  test("consecutive failures trip before the window is full, and lose to FAILURE_LIMIT on the same failure", () => {
    // Two FAILUREs in a row under consecutiveFailures 2: a 10/10 window is not full yet; a
    // 2/2 one is, and the older rule's reason wins, as the daemon reports it.
    for (const [window, want] of [[10, "CONSECUTIVE_FAILURES"], [2, "FAILURE_LIMIT"]]) {
      const m = new Machine(policy({ failureLimit: [window, window], consecutiveFailures: 2 }));
      const changes = [];
      m.report(m.acquire(0), "FAILURE", 0, changes);
      m.report(m.acquire(0), "FAILURE", 0, changes);
      assert.deepEqual(changes.map((c) => c.reason), [want], `failureLimit ${window}/${window}`);
    }
  });
});

describe("the policy's wire form", () => {
  test("carries every field, issue 18's included, and names a malformed one", () => {
    const p = wirePolicy(EVERY_FIELD);
    assert.deepEqual(p.cooldown, { seconds: 1, nanos: 500_000_000 });
    assert.deepEqual(p.failureLimit, { numerator: 3, denominator: 10 });
    assert.equal(p.trialPermits, 0, "an explicit 0 (unlimited) is kept, not dropped");
    assert.deepEqual(p.slowCallDuration, duration(250));
    assert.equal(p.cooldownMultiplier, 2);
    assert.equal(p.shadow, true);
    assert.equal(p.historySize, 100);
    assert.equal("trialPermits" in wirePolicy({}), false, "unset optional fields stay absent");
    assert.throws(() => wirePolicy({ failureLimit: [3, 2] }), /policy\.failure_limit/);
    assert.throws(() => wirePolicy({ cooldownMs: -1 }), /policy\.cooldown/);
  });
});

describe("backoff", () => {
  test("grows by its factor up to the cap, and jitter stays within the bounds", () => {
    const b = new ExponentialDelay({ minDelayMs: 10, maxDelayMs: 100, factor: 3 });
    assert.deepEqual([1, 2, 3, 4, 1000].map((n) => b.forAttempt(n)), [10, 30, 90, 100, 100]);
    const low = new ExponentialDelay({ minDelayMs: 10, maxDelayMs: 100, jitter: 0.5, random: () => 0 });
    assert.equal(low.forAttempt(2), 10);
    assert.equal(new FixedDelay(7).forAttempt(9), 7);
    assert.throws(() => new ExponentialDelay({ minDelayMs: 10, maxDelayMs: 5 }), /maxDelayMs/);
  });
});

describe("retry and SafetyNet", () => {
  const rejection = (retryAfterMs) => new ProtectedCallError("p", "OPEN", "OPEN", retryAfterMs, false);

  test("retries until the limit, then gives up with the last error as the cause", async () => {
    let calls = 0;
    const retry = new RetryWithBackoff({ maxRetries: 2 });
    const error = await retry
      .execute(() => {
        calls += 1;
        throw new Error(`attempt ${calls}`);
      })
      .catch((e) => e);
    assert.ok(error instanceof RetryLimitReached);
    assert.equal(error.attempts, 3);
    assert.equal(error.cause.message, "attempt 3");
  });

  test("an error shouldHandle declines is thrown at once", async () => {
    let calls = 0;
    const retry = new RetryWithBackoff({ shouldHandle: (e) => e.message !== "fatal" });
    await assert.rejects(
      retry.execute(() => {
        calls += 1;
        throw new Error("fatal");
      }),
      /fatal/,
    );
    assert.equal(calls, 1);
  });

  test("honourRetryAfter stops at a rejection whose retry-after the backoff cannot wait", async () => {
    const retry = new RetryWithBackoff({ backoff: new FixedDelay(0), honourRetryAfter: true });
    let calls = 0;
    const error = await retry
      .execute(() => {
        calls += 1;
        throw rejection(60_000);
      })
      .catch((e) => e);
    assert.ok(error instanceof ProtectedCallError, "the rejection itself, not RetryLimitReached");
    assert.equal(calls, 1);
  });

  test("SafetyNet runs the first policy outermost: each retry asks the inner policy again", async () => {
    const seen = [];
    const inner = {
      async execute(fn) {
        seen.push("inner");
        return fn();
      },
    };
    const net = new SafetyNet(new RetryWithBackoff({ maxRetries: 1 }), inner);
    let calls = 0;
    const value = await net.execute(() => {
      calls += 1;
      if (calls === 1) throw new Error("first");
      return "second";
    });
    assert.equal(value, "second");
    assert.deepEqual(seen, ["inner", "inner"]);
    assert.throws(() => new SafetyNet(inner, inner), /unique/);
  });

  test("an aborted signal ends the retries", async () => {
    const controller = new AbortController();
    const retry = new RetryWithBackoff({ maxRetries: 5, backoff: new FixedDelay(0) });
    let calls = 0;
    await assert.rejects(
      retry.execute(
        () => {
          calls += 1;
          controller.abort(new Error("gave up"));
          throw new Error("failed");
        },
        { signal: controller.signal },
      ),
      /failed|gave up/,
    );
    assert.equal(calls, 1);
  });
});

describe("pending outcomes", () => {
  test("batch by generation, keep positions of listed durations, and drop another life's or outage's", async () => {
    const { Pending } = await import("../dist/pending.js");
    const p = new Pending();
    p.success(1, 0, 0, 5, false);
    p.success(1, 0, 0, 500, true);
    p.outcome(1, 0, 0, "OUTCOME_FAILURE", 7);
    p.success(2, 0, 0, 5, false);
    let { batches, lost } = p.take("x", 0, 0);
    assert.equal(lost, 0);
    assert.deepEqual(
      batches.map((b) => [b.generation, b.successes, b.outcomes, b.durations.length]),
      [
        [1, 1, ["OUTCOME_SUCCESS", "OUTCOME_FAILURE"], 2],
        [2, 1, [], 0],
      ],
    );
    p.success(1, 0, 0, 5, false); // then the protector was deleted: life 1
    p.success(1, 1, 1, 5, false); // then the link went down once more
    ({ batches, lost } = p.take("x", 2, 1));
    assert.deepEqual([batches.length, lost], [0, 2]);
    assert.equal(p.count, 0);
  });
});
