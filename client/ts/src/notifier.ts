// Status-change notifications: exactly once per transition, from two sources (the Rust
// and Python clients' notifier, ported).
//
// Design note. A transition reaches a protector either in the answer to this process's
// own call (fired at once) or on its Watch stream. Both feed one Notifier, which fires
// each generation once: a generation is unique within one life of a protector, so the
// notifier keeps the generations fired above a floor and drops repeats. A protector
// deleted and created again, or re-created by a daemon that restarted without its state,
// starts again at generation 1: the notifier resets on CREATED, after DELETED, on a
// snapshot whose generation moved other than by a transition it saw, and when the
// daemon's history started over. After a reset, a snapshot whose status differs from the
// last one known fires a synthetic change (reason undefined). A snapshot older (by
// revision) than what was applied is ignored.
import type { StatusName } from "./errors.js";

/** One status change of a protector, as the `statusChange` event carries it. */
export interface StatusChange {
  name: string;
  from: StatusName;
  to: StatusName;
  /** The generation entered. */
  generation: number;
  /** The transition's reason ("FAILURE_LIMIT", ...); undefined when reconciled from a snapshot. */
  reason?: string;
}

/** The most generations remembered above the floor; older ones count as fired. */
const MAX_REMEMBERED = 256;

export class Notifier {
  status: StatusName | undefined;
  revision = 0;
  private floor = 0;
  private fired = new Set<number>();

  constructor(
    private readonly name: string,
    private readonly fire: (change: StatusChange) => void,
  ) {}

  private highest(): number {
    let h = this.floor;
    for (const g of this.fired) if (g > h) h = g;
    return h;
  }

  transition(from: StatusName, to: StatusName, generation: number, revision: number, reason?: string): void {
    if (generation <= this.floor || this.fired.has(generation)) return;
    this.fired.add(generation);
    if (generation === this.highest()) this.status = to;
    this.revision = Math.max(this.revision, revision);
    while (this.fired.has(this.floor + 1) || this.fired.size > MAX_REMEMBERED) {
      const lowest = Math.min(...this.fired);
      this.fired.delete(lowest);
      this.floor = lowest;
    }
    this.fire({ name: this.name, from, to, generation, reason });
  }

  /** The protector is known to be in `status` at `generation` (an Acquire's answer): when
   * the generation before it is the last one known, the transition between them fires now. */
  entered(generation: number, status: StatusName, revision: number): void {
    const before = this.status;
    if (before !== undefined && this.highest() === generation - 1) {
      this.transition(before, status, generation, revision);
    }
  }

  snapshot(status: StatusName, generation: number, revision: number, created: boolean): void {
    if (!created && revision < this.revision) return;
    this.revision = revision;
    const synthetic = created || generation !== this.highest();
    if (synthetic) {
      this.floor = generation;
      this.fired.clear();
    }
    const before = this.status;
    this.status = status;
    if (synthetic && before !== undefined && before !== status) {
      this.fire({ name: this.name, from: before, to: status, generation });
    }
  }

  deleted(revision: number): void {
    this.floor = 0;
    this.fired.clear();
    this.status = undefined;
    this.revision = revision;
  }

  newHistory(): void {
    this.floor = 0;
    this.fired.clear();
    this.revision = 0;
  }
}
