// How long a retry waits before its next attempt (the library's `backoff` module, as the
// Python client has it): attempt n (from 1) waits minDelayMs * factor^(n-1), the growth
// capped at maxDelayMs step by step, then spread by `jitter` (a fraction: uniform in
// [d(1-jitter), d(1+jitter)]) and kept within [minDelayMs, maxDelayMs].

export interface Backoff {
  /** The wait in ms after failed attempt `attempt` (1 = the first). */
  forAttempt(attempt: number): number;
}

export interface ExponentialDelayOptions {
  minDelayMs: number;
  maxDelayMs: number;
  /** Default 2; at least 1. */
  factor?: number;
  /** In [0, 1]; unset = none. */
  jitter?: number;
  /** A source of uniform numbers in [0, 1), for reproducible jitter. Default Math.random. */
  random?: () => number;
}

export class ExponentialDelay implements Backoff {
  readonly minDelayMs: number;
  readonly maxDelayMs: number;
  readonly factor: number;
  readonly jitter: number | undefined;
  private readonly random: () => number;

  constructor(options: ExponentialDelayOptions) {
    this.minDelayMs = options.minDelayMs;
    this.maxDelayMs = options.maxDelayMs;
    this.factor = options.factor ?? 2;
    this.jitter = options.jitter;
    this.random = options.random ?? Math.random;
    if (this.jitter !== undefined && !(this.jitter >= 0 && this.jitter <= 1)) throw new RangeError("jitter must be in [0, 1]");
    if (!(this.factor >= 1)) throw new RangeError("factor must be >= 1");
    if (!(this.minDelayMs >= 0)) throw new RangeError("minDelayMs must be >= 0");
    if (!(this.maxDelayMs >= this.minDelayMs)) throw new RangeError("maxDelayMs must be >= minDelayMs");
  }

  forAttempt(attempt: number): number {
    if (!(attempt >= 1)) throw new RangeError("attempt must be positive");
    let delay = this.minDelayMs;
    // Multiplied step by step, ending at the cap, so a huge attempt costs nothing.
    for (let i = 1; i < attempt && delay < this.maxDelayMs; i++) {
      delay = Math.min(delay * this.factor, this.maxDelayMs);
    }
    if (this.jitter !== undefined) delay += (this.random() * 2 - 1) * delay * this.jitter;
    return Math.max(this.minDelayMs, Math.min(delay, this.maxDelayMs));
  }
}

/** The same wait after every attempt. */
export class FixedDelay extends ExponentialDelay {
  constructor(delayMs: number) {
    super({ minDelayMs: delayMs, maxDelayMs: delayMs, factor: 1 });
  }
}
