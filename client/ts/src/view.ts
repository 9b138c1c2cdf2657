// What this process knows of the daemon's protector, and the cached decision it allows.
//
// Design note (the Python client's view, ported). The view is (status, generation, no
// override) with the revision it reflects, fed by the Watch stream, by the answers to this
// process's own calls, and by its reports' answers. The cached fast path admits a call
// locally, in the view's generation, only while: the protector is cached, the stream is
// *live* (SYNCED since it (re)started, no RESYNC since) and *fresh* (a message came within
// the staleness bound; the daemon is asked for PROGRESS at a third of it), the view says
// CLOSED and no override holds. Anything else takes the remote path (the daemon decides,
// then the fallback), so every HALF_OPEN trial comes from the daemon. An answer older (by
// revision) than the view changes nothing, except a `force`d one (a new life: CREATED, a
// snapshot after RESYNC).
import type { StatusName } from "./errors.js";

export class View {
  status: StatusName | undefined;
  generation = 0;
  noOverride = true;
  revision = 0;
  live = false;
  freshUntil = 0;
  /** The generation cached calls are admitted in; 0 = take the remote path. */
  private fastGen = 0;

  constructor(private readonly cached: boolean) {}

  private recompute(): void {
    const ok = this.cached && this.live && this.status === "CLOSED" && this.noOverride && this.generation > 0;
    this.fastGen = ok ? this.generation : 0;
  }

  /** The generation to admit a call in here, or 0: the daemon decides. */
  fastGeneration(now: number): number {
    return this.fastGen !== 0 && now < this.freshUntil ? this.fastGen : 0;
  }

  set(status: StatusName, generation: number, noOverride: boolean | undefined, revision: number, force = false): void {
    if (!force && revision < this.revision) return;
    if (noOverride !== undefined) this.noOverride = noOverride;
    else if (this.status === undefined) this.noOverride = true;
    this.status = status;
    this.generation = generation;
    this.revision = revision;
    this.recompute();
  }

  forget(revision: number): void {
    this.status = undefined;
    this.generation = 0;
    this.revision = revision;
    this.recompute();
  }

  override(noOverride: boolean, revision: number): void {
    if (this.status !== undefined && revision >= this.revision) {
      this.noOverride = noOverride;
      this.revision = revision;
      this.recompute();
    }
  }

  setLive(live: boolean, freshUntil = 0): void {
    this.live = live;
    this.freshUntil = freshUntil;
    this.recompute();
  }

  /** The daemon's history started over: revisions compare no more. */
  newHistory(): void {
    this.revision = 0;
  }
}
