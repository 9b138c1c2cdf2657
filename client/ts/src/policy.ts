// A protector's policy in the client's terms (milliseconds, fractions as [n, d]) and its
// wire form. The daemon validates a policy whole and names the field at fault; the checks
// here are those the LOCAL fallback's machine relies on, with the daemon's field names.
import type { Fraction, Policy } from "./wire.js";
import { duration } from "./wire.js";

/** n/d with 1 <= n <= d <= 10,000; d is also the size of the window it judges. */
export type Limit = readonly [numerator: number, denominator: number];

/** Every field of the contract's Policy (proto/SEMANTICS.md sections 1 and 2a); unset =
 * the daemon's default. Durations in milliseconds. */
export interface PolicyOptions {
  /** How long OPEN rejects before a trial may go. Default 0. */
  cooldownMs?: number;
  /** Trip when the CLOSED window (size d) is full and failures/len >= n/d. Default [1, 1]. */
  failureLimit?: Limit;
  /** HALF_OPEN closes when its window is full and successes/len >= n/d. */
  successLimit?: Limit;
  /** Most trials in flight in HALF_OPEN; 0 = unlimited; unset = the HALF_OPEN window size. */
  trialPermits?: number;
  /** How long a trial permit lives unreported (then counts as a FAILURE). Default 30 s. */
  permitTtlMs?: number;
  /** The daemon itself moves OPEN to HALF_OPEN at open_until. */
  autoHalfOpen?: boolean;
  /** CLOSED judges the last `windowDurationMs` of outcomes (1 s to 1 h) instead of the last d. */
  windowDurationMs?: number;
  /** With windowDurationMs: no rate rule is judged below this many calls. */
  minimumCalls?: number;
  /** In CLOSED, this many FAILUREs in a row trip at once. 0 = off. */
  consecutiveFailures?: number;
  /** A call whose duration is at or above this is slow (set with slowCallLimit). */
  slowCallDurationMs?: number;
  /** Trip (or reopen) when slow calls / calls >= n/d (set with slowCallDurationMs). */
  slowCallLimit?: Limit;
  /** Each reopening from HALF_OPEN multiplies the cooldown by this (1 to 100). */
  cooldownMultiplier?: number;
  /** The cap of the multiplied cooldown. Default 30 days. */
  maxCooldownMs?: number;
  /** Every Acquire is admitted; answers say `wouldReject`. */
  shadow?: boolean;
  /** Recent outcomes kept for SimulatePolicy. 0 = none. */
  historySize?: number;
}

function fraction(limit: Limit | undefined, field: string): Fraction | null {
  if (limit === undefined) return null;
  const [n, d] = limit;
  if (!Number.isInteger(n) || !Number.isInteger(d) || n < 1 || n > d || d > 10_000) {
    throw new RangeError(`policy.${field}: a limit needs integers 1 <= n <= d <= 10000, got ${n}/${d}`);
  }
  return { numerator: n, denominator: d };
}

function ms(value: number | undefined, field: string): ReturnType<typeof duration> | null {
  if (value === undefined) return null;
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`policy.${field}: a duration must be >= 0 ms, got ${value}`);
  return duration(value);
}

/** The wire Policy of `options`; throws RangeError naming the field of a malformed value. */
export function wirePolicy(options: PolicyOptions = {}): Policy {
  const p: Policy = {
    cooldown: ms(options.cooldownMs, "cooldown"),
    failureLimit: fraction(options.failureLimit, "failure_limit"),
    successLimit: fraction(options.successLimit, "success_limit"),
    permitTtl: ms(options.permitTtlMs, "permit_ttl"),
    autoHalfOpen: options.autoHalfOpen ?? false,
    windowDuration: ms(options.windowDurationMs, "window_duration"),
    consecutiveFailures: options.consecutiveFailures ?? 0,
    slowCallDuration: ms(options.slowCallDurationMs, "slow_call_duration"),
    slowCallLimit: fraction(options.slowCallLimit, "slow_call_limit"),
    maxCooldown: ms(options.maxCooldownMs, "max_cooldown"),
    shadow: options.shadow ?? false,
    historySize: options.historySize ?? 0,
  };
  // proto3 `optional` fields: present only when given.
  if (options.trialPermits !== undefined) p.trialPermits = options.trialPermits;
  if (options.minimumCalls !== undefined) p.minimumCalls = options.minimumCalls;
  if (options.cooldownMultiplier !== undefined) p.cooldownMultiplier = options.cooldownMultiplier;
  return p;
}
