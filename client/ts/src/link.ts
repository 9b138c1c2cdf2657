// Whether the daemon is worth asking now, and which replica (the Rust and Python
// clients' link, ported).
//
// Design note. A client may know several addresses of the daemon (the replicas of one
// cluster). The link asks the *current* replica until it fails to answer, then moves to
// the next at once; only when every replica failed in turn (a full round) does the link
// go down for a backoff period (capped exponential, full jitter: attempt n waits uniformly
// in [0, min(cap, initial * 2^n)]). While down, every caller answers from its fallback at
// once instead of paying the acquire deadline again; when the period ends, the first
// caller becomes the probe and pushes the next attempt a fresh backoff away, so
// concurrent callers keep answering from the fallback. Any answer from the daemon (an RPC
// or a Watch message) marks the link up. Moving is keyed by the *turn* a call asked in,
// so calls failing together on one replica move the link on once.

export type Attempt = "ask" | "probe" | "skip";

/** Full-jitter capped exponential delay before retry `attempt` (0 = the first). */
export function backoffDelay(initialMs: number, capMs: number, attempt: number): number {
  const ceiling = Math.min(capMs, initialMs * 2 ** Math.min(attempt, 20));
  return Math.random() * ceiling;
}

export class Link {
  readonly initialMs: number;
  readonly capMs: number;
  current = 0;
  down = false;
  /** How many times the link went down: successes pending across an outage are dropped. */
  downs = 0;
  private moves = 0;
  private round = 0;
  private failures = 0;
  private nextTry = 0;

  constructor(
    readonly replicas: number,
    initialMs = 50,
    capMs = 5_000,
  ) {
    this.initialMs = initialMs;
    this.capMs = Math.max(capMs, initialMs);
  }

  attempt(): Attempt {
    if (!this.down) return "ask";
    const now = performance.now();
    if (now < this.nextTry) return "skip";
    this.nextTry = now + backoffDelay(this.initialMs, this.capMs, this.failures);
    return "probe";
  }

  up(): void {
    this.down = false;
    this.failures = 0;
    this.round = 0;
  }

  /** The replica to ask now, and the moves so far (for `failed`). */
  turn(): [number, number] {
    return [this.current, this.moves];
  }

  /** The replica asked in `turn` could not be reached. Returns whether the caller may ask
   * the (new) current replica at once: false once a full round failed. */
  failed(turn: [number, number] = this.turn()): boolean {
    if (turn[0] !== this.current || turn[1] !== this.moves) return !this.down;
    this.current = (this.current + 1) % this.replicas;
    this.moves += 1;
    this.round += 1;
    if (this.round < this.replicas) {
      if (this.down) this.nextTry = performance.now();
      return true;
    }
    this.round = 0;
    this.nextTry = performance.now() + backoffDelay(this.initialMs, this.capMs, this.failures);
    this.failures += 1;
    if (!this.down) {
      this.down = true;
      this.downs += 1;
    }
    return false;
  }
}
