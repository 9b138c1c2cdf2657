// The in-process status machine of a LOCAL fallback: proto/SEMANTICS.md section 2, ported
// (as the Python client's _machine.py does).
//
// Design note. The daemon's rules, less what one process has no use for (overrides,
// counters, revisions): CLOSED admits and trips only when a FAILURE is recorded into a
// full window whose failure rate reaches failure_limit, or (section 2a) when
// consecutive_failures FAILUREs came in a row; OPEN rejects until open_until, and the
// first acquire at or after it enters HALF_OPEN as a trial; HALF_OPEN admits up to
// trial_permits trials into a fresh window of success_limit's denominator (else
// failure_limit's) and decides once it is full. A permit carries its generation, so a
// report from another generation is stale. A trial unreported after permit_ttl counts as
// a FAILURE at its own expiry instant. The other rules of section 2a (time windows, slow
// calls, cooldown backoff, shadow) are the daemon's alone: a fallback is a stopgap. Time is
// passed in (milliseconds on any monotonic scale), so tests drive it.
import type { StatusName } from "./errors.js";
import type { Policy } from "./wire.js";
import { millis } from "./wire.js";

export type OutcomeName = "SUCCESS" | "FAILURE" | "IGNORED";

interface Fraction {
  n: number;
  d: number;
}

function reached(limit: Fraction, count: number, length: number): boolean {
  return length > 0 && count * limit.d >= limit.n * length;
}

export interface MachinePermit {
  generation: number;
  /** 0 for a CLOSED call, else the trial's id. */
  id: number;
}

export interface MachineRejection {
  reason: "OPEN" | "TRIALS_EXHAUSTED";
  retryAfterMs: number;
}

export interface MachineTransition {
  from: StatusName;
  to: StatusName;
  reason: string;
  generation: number;
}

export class Machine {
  status: StatusName = "CLOSED";
  generation = 1;
  private cooldownMs = 0;
  private failureLimit: Fraction = { n: 1, d: 1 };
  private successLimit: Fraction | undefined;
  private trialPermits: number | undefined;
  private permitTtlMs = 30_000;
  private consecutiveLimit = 0;
  private openUntil = 0;
  private consecutive = 0;
  /** true = FAILURE, oldest first, at most `size` long. */
  private window: boolean[] = [];
  private size = 1;
  private trials = new Map<number, number>();
  private nextId = 1;

  constructor(policy: Policy) {
    this.adopt(policy);
  }

  /** Takes another policy; the window starts anew at the size it gives the status. */
  adopt(p: Policy): void {
    this.cooldownMs = millis(p.cooldown) ?? 0;
    const f = p.failureLimit;
    this.failureLimit = f ? { n: f.numerator ?? 1, d: f.denominator ?? 1 } : { n: 1, d: 1 };
    const s = p.successLimit;
    this.successLimit = s ? { n: s.numerator ?? 1, d: s.denominator ?? 1 } : undefined;
    this.trialPermits = p.trialPermits ?? undefined;
    this.permitTtlMs = millis(p.permitTtl) || 30_000;
    this.consecutiveLimit = p.consecutiveFailures ?? 0;
    this.renewWindow();
  }

  private halfOpenSize(): number {
    return (this.successLimit ?? this.failureLimit).d;
  }

  private renewWindow(): void {
    this.window = [];
    this.size = this.status === "HALF_OPEN" ? this.halfOpenSize() : this.failureLimit.d;
  }

  /** A permit, or why not; `changes` receives the transitions this caused, in order. */
  acquire(now: number, changes: MachineTransition[] = []): MachinePermit | MachineRejection {
    this.expire(now, changes);
    if (this.status === "CLOSED") return { generation: this.generation, id: 0 };
    if (this.status === "OPEN") {
      if (now < this.openUntil) return { reason: "OPEN", retryAfterMs: this.openUntil - now };
      changes.push(this.enter("HALF_OPEN", "COOLDOWN_ELAPSED", now));
    }
    const limit = this.trialPermits === undefined ? this.halfOpenSize() : this.trialPermits || Infinity;
    if (this.trials.size >= limit) {
      const earliest = Math.min(...this.trials.values());
      return { reason: "TRIALS_EXHAUSTED", retryAfterMs: Math.max(0, earliest - now) };
    }
    const id = this.nextId++;
    this.trials.set(id, now + this.permitTtlMs);
    return { generation: this.generation, id };
  }

  /** Whether the report was accepted; `changes` receives the transitions it caused. */
  report(permit: MachinePermit, outcome: OutcomeName, now: number, changes: MachineTransition[] = []): boolean {
    this.expire(now, changes);
    if (permit.generation !== this.generation) return false;
    const valid = permit.id === 0 ? this.status === "CLOSED" : this.trials.delete(permit.id);
    if (!valid) return false;
    this.record(outcome);
    const t = this.evaluate(outcome, now, false);
    if (t) changes.push(t);
    return true;
  }

  private expire(now: number, changes: MachineTransition[]): void {
    while (this.status === "HALF_OPEN" && this.trials.size > 0) {
      let first = 0;
      let at = Infinity;
      for (const [id, expires] of this.trials) {
        if (expires < at) [first, at] = [id, expires];
      }
      if (at > now) return;
      this.trials.delete(first);
      this.record("FAILURE");
      const t = this.evaluate("FAILURE", at, true);
      if (t) changes.push(t);
    }
  }

  private record(outcome: OutcomeName): void {
    if (outcome === "IGNORED") return;
    const failed = outcome === "FAILURE";
    this.window.push(failed);
    if (this.window.length > this.size) this.window.shift();
    this.consecutive = failed ? this.consecutive + 1 : 0;
  }

  private evaluate(outcome: OutcomeName, at: number, expired: boolean): MachineTransition | undefined {
    if (outcome === "IGNORED") return undefined;
    const full = this.window.length >= this.size;
    const length = this.window.length;
    const failures = () => this.window.filter(Boolean).length;
    if (this.status === "CLOSED") {
      // When one FAILURE meets both rules, the older rule's reason wins
      // (proto/SEMANTICS.md, "Which reason wins"): FAILURE_LIMIT, then CONSECUTIVE_FAILURES.
      if (outcome !== "FAILURE") return undefined;
      if (full && reached(this.failureLimit, failures(), length)) return this.enter("OPEN", "FAILURE_LIMIT", at);
      if (this.consecutiveLimit > 0 && this.consecutive >= this.consecutiveLimit) {
        return this.enter("OPEN", "CONSECUTIVE_FAILURES", at);
      }
      return undefined;
    }
    if (this.status !== "HALF_OPEN" || !full) return undefined;
    const failed = failures();
    const close = this.successLimit
      ? reached(this.successLimit, length - failed, length)
      : !reached(this.failureLimit, failed, length);
    const reason = expired ? "PERMIT_EXPIRED" : close ? "TRIALS_SUCCEEDED" : "TRIALS_FAILED";
    return this.enter(close ? "CLOSED" : "OPEN", reason, at);
  }

  private enter(status: StatusName, reason: string, at: number): MachineTransition {
    const from = this.status;
    this.status = status;
    this.generation += 1;
    this.trials.clear();
    if (status === "OPEN") {
      // OPEN keeps the window it tripped with.
      this.openUntil = at + this.cooldownMs;
    } else {
      this.renewWindow();
      if (status === "CLOSED") this.consecutive = 0;
    }
    return { from, to: status, reason, generation: this.generation };
  }
}
