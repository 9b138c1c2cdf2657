// Outcomes of CLOSED permits (cached or not) waiting for the next ReportBatch.
//
// Design note. A SUCCESS is counted, per generation, and sent with others every
// FLUSH_INTERVAL_MS (50 ms) or as soon as FLUSH_AT (1,000) wait; a FAILURE is sent at once
// by the protector, after the pending outcomes. Each batch carries the generation its
// calls were admitted in, so the daemon fences it like a unary report (stale when the
// generation ended). A success the daemon would judge slow (the policy's
// slow_call_duration) is not a plain count: it is listed with its duration, as
// OutcomeBatch asks. Outcomes still pending when the link to the daemon went down are
// dropped (and counted lost): whoever answers next may be a daemon that restarted without
// its state, where their generation names another life of the protector. So are those
// of a life of the protector that ended (deleted, or created again): the next one counts
// generations from 1 again and would take them for its own.
import type { Duration, OutcomeBatch } from "./wire.js";
import { reportDuration } from "./wire.js";

export const FLUSH_INTERVAL_MS = 50;
export const FLUSH_AT = 1_000;

type WireOutcome = "OUTCOME_SUCCESS" | "OUTCOME_FAILURE" | "OUTCOME_IGNORED";

interface Entry {
  generation: number;
  /** The link's outages when these calls ended. */
  downs: number;
  /** Which life of the protector, as the protector counts them, these calls were in. */
  life: number;
  successes: number;
  outcomes: WireOutcome[];
  durations: Duration[];
}

export class Pending {
  /** Oldest first (a Map keeps insertion order). */
  private entries = new Map<string, Entry>();
  /** The entry used last: nearly every call lands in it, without building a key. */
  private last: Entry | undefined;
  count = 0;

  private entry(generation: number, downs: number, life: number): Entry {
    const last = this.last;
    if (last !== undefined && last.generation === generation && last.downs === downs && last.life === life) return last;
    const key = `${generation}:${downs}:${life}`;
    let e = this.entries.get(key);
    if (e === undefined) {
      e = { generation, downs, life, successes: 0, outcomes: [], durations: [] };
      this.entries.set(key, e);
    }
    this.last = e;
    return e;
  }

  /** Counts a SUCCESS, or lists it when `slow`. */
  success(generation: number, downs: number, life: number, durationMs: number, slow: boolean): void {
    const e = this.entry(generation, downs, life);
    if (slow) {
      e.outcomes.push("OUTCOME_SUCCESS");
      e.durations.push(reportDuration(durationMs));
    } else {
      e.successes += 1;
    }
    this.count += 1;
  }

  /** Lists one more outcome, after everything pending. */
  outcome(generation: number, downs: number, life: number, outcome: WireOutcome, durationMs: number): void {
    const e = this.entry(generation, downs, life);
    // Every listed outcome has its duration, so positions match.
    e.outcomes.push(outcome);
    e.durations.push(reportDuration(durationMs));
    this.count += 1;
  }

  /** Everything pending as batches, oldest first, and how many outcomes were dropped
   * because the link went down after their calls or their life of the protector ended
   * (`downs` and `life` are the counts now). */
  take(name: string, downs: number, life: number): { batches: OutcomeBatch[]; lost: number } {
    const batches: OutcomeBatch[] = [];
    let lost = 0;
    for (const e of this.entries.values()) {
      if (e.downs !== downs || e.life !== life) {
        lost += e.successes + e.outcomes.length;
        continue;
      }
      batches.push({
        name,
        generation: e.generation,
        successes: e.successes,
        outcomes: e.outcomes,
        durations: e.durations,
      });
    }
    this.entries.clear();
    this.last = undefined;
    this.count = 0;
    return { batches, lost };
  }
}
