// A permit: an admitted call, resolved exactly once with how it went.
import type { OutcomeName } from "./machine.js";
import type { Permit as WirePermit } from "./wire.js";

/** What became of a permit's outcome. */
export interface Resolved {
  /** The daemon's verdict (false: stale, it changed nothing), when the outcome was sent
   * at once and answered; undefined when it was batched, decided locally, or lost. */
  accepted?: boolean;
}

/** The answer of an outcome that got no verdict (shared: it is never mutated). */
export const UNANSWERED: Promise<Resolved> = Promise.resolve(Object.freeze({}));

/** Which source decided a permit. */
export type Source = "cached" | "daemon" | "local" | "allowed";

/** What a permit's outcome goes to: its protector. */
export interface Resolver {
  /** `durationMs` undefined: the time since the acquire, read only when needed. */
  resolve(permit: Permit, outcome: OutcomeName, durationMs: number | undefined): Promise<Resolved>;
}

/** An admitted call: resolve it exactly once with how the call went. */
export class Permit {
  private resolved = false;

  /** @internal */
  constructor(
    private readonly protector: Resolver,
    /** Who admitted the call. */
    readonly source: Source,
    /** The generation it was admitted in (0 for "allowed"). */
    readonly generation: number,
    /** Non-zero for a HALF_OPEN trial. */
    readonly id: number,
    /** Shadow mode: the daemon would have rejected this call. */
    readonly wouldReject = false,
    /** @internal the daemon's permit, for its Report */
    readonly wire?: WirePermit,
    /** When the call was admitted (performance.now()), for its duration. */
    readonly startedAt = performance.now(),
  ) {}

  /** The call succeeded; `durationMs` defaults to the time since the acquire. */
  success(durationMs?: number): Promise<Resolved> {
    return this.resolve("SUCCESS", durationMs);
  }

  /** The call failed; `durationMs` defaults to the time since the acquire. */
  failure(durationMs?: number): Promise<Resolved> {
    return this.resolve("FAILURE", durationMs);
  }

  /** The call's outcome should not count (it was cancelled): releases a trial permit. */
  ignore(): Promise<Resolved> {
    return this.resolve("IGNORED");
  }

  private resolve(outcome: OutcomeName, durationMs?: number): Promise<Resolved> {
    if (this.resolved) return Promise.reject(new Error("this permit was already resolved"));
    this.resolved = true;
    return this.protector.resolve(this, outcome, durationMs);
  }
}
