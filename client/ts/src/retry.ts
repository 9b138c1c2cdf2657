// Retrying a call with a backoff between attempts, and composing policies (the library's
// `retry` and `failsafe` modules, as the Python and Rust clients have them).
//
// `RetryWithBackoff` runs a call up to maxRetries + 1 times: an error `shouldHandle` declines is
// thrown at once; after every failed attempt (the last one included, as the library does)
// it waits backoff.forAttempt(n) when a backoff is set; running out of attempts throws
// RetryLimitReached whose `cause` is the last error. A rejection is an error like any
// other, unless `honourRetryAfter`: then it is retried only when its retryAfterMs fits the
// wait the backoff would make (and after exactly retryAfterMs), else thrown at once as
// itself, instead of burning the attempts on a protector that will still be OPEN.
//
// `SafetyNet(outer, ..., inner)` runs a call under every policy, the first outermost:
// SafetyNet(retry, protector) is retry(protector(call)), so each retry asks the protector
// again and an open protector stops the retries reaching a failing service.
import { setTimeout as sleep } from "node:timers/promises";

import type { Backoff } from "./backoff.js";
import { lastError, ProtectedCallError, RetryLimitReached } from "./errors.js";

/** Anything that runs a call under a policy: a Protector, a RetryWithBackoff, a SafetyNet. */
export interface CallPolicy {
  execute<T>(fn: (signal?: AbortSignal) => Promise<T> | T, options?: { signal?: AbortSignal }): Promise<T>;
}

export interface RetryOptions {
  backoff?: Backoff;
  /** Default 3. */
  maxRetries?: number;
  /** Whether an error is worth another attempt. Default: every error. */
  shouldHandle?: (error: unknown) => boolean;
  honourRetryAfter?: boolean;
}

export class RetryWithBackoff implements CallPolicy {
  readonly maxAttempts: number;
  private readonly backoff: Backoff | undefined;
  private readonly shouldHandle: (error: unknown) => boolean;
  private readonly honourRetryAfter: boolean;

  constructor(options: RetryOptions = {}) {
    const retries = options.maxRetries ?? 3;
    if (!Number.isInteger(retries) || retries < 0) throw new RangeError("maxRetries must be a non-negative integer");
    this.maxAttempts = retries + 1;
    this.backoff = options.backoff;
    this.shouldHandle = options.shouldHandle ?? (() => true);
    this.honourRetryAfter = options.honourRetryAfter ?? false;
  }

  /** The wait after failed attempt `attempt`, or undefined to throw `error` as it is. */
  private waitAfter(error: unknown, attempt: number): number | undefined {
    if (!this.shouldHandle(error)) return undefined;
    let wait = this.backoff?.forAttempt(attempt) ?? 0;
    const rejection = lastError(error);
    if (this.honourRetryAfter && rejection instanceof ProtectedCallError) {
      const after = rejection.retryAfterMs;
      if (after === undefined || after > wait) return undefined;
      wait = after;
    }
    return wait;
  }

  async execute<T>(fn: (signal?: AbortSignal) => Promise<T> | T, options: { signal?: AbortSignal } = {}): Promise<T> {
    let last: unknown;
    let attempt = 0;
    while (attempt < this.maxAttempts) {
      options.signal?.throwIfAborted();
      let wait: number | undefined;
      try {
        return await fn(options.signal);
      } catch (error) {
        if (options.signal?.aborted) throw error;
        wait = this.waitAfter(error, attempt + 1);
        if (wait === undefined) throw error;
        last = error;
      }
      attempt += 1;
      // The library waits only when a backoff is set (then even after the last attempt).
      if (this.backoff !== undefined) await sleep(wait, undefined, { signal: options.signal });
    }
    throw new RetryLimitReached(attempt, { cause: last });
  }
}

/** Policies composed, the first outermost; itself a CallPolicy, so nets nest. */
export class SafetyNet implements CallPolicy {
  readonly policies: readonly CallPolicy[];

  constructor(...policies: CallPolicy[]) {
    if (policies.length === 0) throw new RangeError("a SafetyNet needs at least one policy");
    if (new Set(policies).size !== policies.length) throw new RangeError("all policies must be unique");
    this.policies = policies;
  }

  execute<T>(fn: (signal?: AbortSignal) => Promise<T> | T, options: { signal?: AbortSignal } = {}): Promise<T> {
    const run = (i: number): Promise<T> =>
      i === this.policies.length
        ? Promise.resolve().then(() => fn(options.signal))
        : this.policies[i].execute(() => run(i + 1), options);
    return run(0);
  }
}
