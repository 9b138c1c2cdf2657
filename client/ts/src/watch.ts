// The Watch stream of one protector, read for as long as the protector lives.
//
// Design note (the Python and Rust clients' watch, ported). The stream feeds the notifier
// (statusChange events) and the view the cached fast path decides from. It reconnects with
// the link's capped, fully jittered backoff and resumes after the last revision it
// applied, sending the `epoch` of the SYNCED that revision came from: a daemon that
// restarted without its state has another epoch and answers RESYNC and a fresh snapshot.
// The stream is *live* from SYNCED until it breaks, a RESYNC arrives, or nothing (not even
// PROGRESS, asked for at a third of the staleness bound) came for the staleness bound, in
// which case it is cancelled and opened again. A snapshot phase that ends without this
// protector means the daemon does not have it: the view is forgotten, so calls take the
// remote path, which ensures it again. A replica that cannot be reached hands the stream
// to the next one at once, resuming with the same revision and epoch.
import type * as grpc from "@grpc/grpc-js";
import { setTimeout as sleep } from "node:timers/promises";
import { debuglog } from "node:util";

import type { Client } from "./client.js";
import type { StatusName } from "./errors.js";
import { backoffDelay } from "./link.js";
import type { Notifier } from "./notifier.js";
import type { View } from "./view.js";
import type { Protector as WireProtector, Transition, WatchEvent, WatchRequest } from "./wire.js";
import { duration, num, short } from "./wire.js";

/** What the stream tells its protector. */
export interface WatchTarget {
  readonly name: string;
  readonly client: Client;
  readonly view: View;
  readonly notifier: Notifier;
  readonly stalenessMs: number;
  ensured: boolean;
  applyTransition(t: Transition, revision: number): void;
  lifeEnds(revision: number): void;
}

const log = debuglog("resilient-circuit");

export function statusName(s: string | undefined): StatusName {
  return short(s, "STATUS_") as StatusName;
}

export function noOverride(p: WireProtector): boolean {
  const kind = p.override?.kind;
  return kind === undefined || kind === "OVERRIDE_KIND_UNSPECIFIED" || kind === "OVERRIDE_KIND_NONE";
}

export class Watch {
  /** The revision to resume after, and the epoch of the SYNCED it came from. */
  resume: number | undefined;
  epoch: string | number | undefined;
  private call: grpc.ClientReadableStream<WatchEvent> | undefined;
  private restartFlag = false;
  private readonly stop = new AbortController();
  /** Settles when the loop has ended (after `close`). */
  done: Promise<void> = Promise.resolve();

  constructor(private readonly t: WatchTarget) {}

  start(): void {
    this.done = this.loop().catch(() => undefined);
  }

  /** Starts over from a snapshot (the protector was created again). */
  restart(): void {
    this.restartFlag = true;
    this.call?.cancel();
  }

  async close(): Promise<void> {
    this.stop.abort();
    this.call?.cancel();
    await this.done;
  }

  private async loop(): Promise<void> {
    const { client, view } = this.t;
    const progressMs = Math.min(3_600_000, Math.max(100, this.t.stalenessMs / 3));
    let failures = 0;
    while (!this.stop.signal.aborted) {
      if (this.restartFlag) {
        this.restartFlag = false;
        this.resume = undefined;
      }
      const request: WatchRequest = { names: { names: [this.t.name] }, progressInterval: duration(progressMs) };
      if (this.resume !== undefined) {
        request.startRevision = this.resume;
        if (this.epoch !== undefined) request.startEpoch = this.epoch;
      }
      const turn = client.link.turn();
      const replica = client.replicas[turn[0]];
      const phase = { startedFrom: this.resume, snapshotting: this.resume === undefined, seen: false, resynced: false };
      let nextNow = false;
      let why = "the stream ended";
      const call = replica.protectors.Watch(request, client.metadata) as grpc.ClientReadableStream<WatchEvent>;
      this.call = call;
      // A silent stream is a dead one (a daemon that hangs, a network that drops packets).
      const silence = setTimeout(() => call.cancel(), this.t.stalenessMs);
      try {
        for await (const event of call as AsyncIterable<WatchEvent>) {
          silence.refresh();
          const now = performance.now();
          view.freshUntil = now + this.t.stalenessMs;
          client.link.up();
          failures = 0;
          this.apply(event, phase, now);
        }
      } catch (error) {
        why = String((error as grpc.ServiceError).details ?? error);
        if ((error as grpc.ServiceError).code === 14 /* UNAVAILABLE */) nextNow = client.link.failed(turn);
      } finally {
        clearTimeout(silence);
        this.call = undefined;
        view.setLive(false);
      }
      if (this.stop.signal.aborted) return;
      let delay = 0;
      if (!nextNow && !this.restartFlag) {
        delay = backoffDelay(client.link.initialMs, client.link.capMs, failures);
        failures += 1;
      }
      log("watch of %s interrupted (%s); reconnecting in %d ms from %s", this.t.name, why, delay, this.resume);
      // A reconnect delay, not synchronisation: the stream is gone.
      await sleep(delay, undefined, { signal: this.stop.signal }).catch(() => undefined);
    }
  }

  private apply(
    event: WatchEvent,
    phase: { startedFrom: number | undefined; snapshotting: boolean; seen: boolean; resynced: boolean },
    now: number,
  ): void {
    const t = this.t;
    const revision = num(event.revision);
    switch (event.event) {
      case "snapshot": {
        const p = event.snapshot!;
        phase.seen = true;
        // After a RESYNC the snapshot is the truth, whatever revisions came before.
        t.notifier.snapshot(statusName(p.status), num(p.generation), revision, phase.resynced);
        t.view.set(statusName(p.status), num(p.generation), noOverride(p), revision, true);
        return; // the resume point moves at SYNCED
      }
      case "created": {
        const p = event.created!;
        // This process's own answers may be ahead of the stream: then it is old news.
        const fresh = revision >= t.notifier.revision;
        t.notifier.snapshot(statusName(p.status), num(p.generation), revision, fresh);
        t.view.set(statusName(p.status), num(p.generation), noOverride(p), revision, fresh);
        t.ensured = true;
        break;
      }
      case "statusChanged":
        if (event.statusChanged?.transition) t.applyTransition(event.statusChanged.transition, revision);
        break;
      case "deleted":
        t.lifeEnds(revision);
        t.notifier.deleted(revision);
        t.ensured = false;
        t.view.forget(revision);
        break;
      case "overrideChanged": {
        const kind = event.overrideChanged?.override?.kind;
        t.view.override(kind === undefined || kind === "OVERRIDE_KIND_NONE" || kind === "OVERRIDE_KIND_UNSPECIFIED", revision);
        break;
      }
      case "resync":
        t.view.setLive(false);
        if (phase.startedFrom !== undefined && revision < phase.startedFrom) {
          // The daemon's history started over (it restarted without its state).
          t.notifier.newHistory();
          t.view.newHistory();
        }
        phase.snapshotting = true;
        phase.seen = false;
        phase.resynced = true;
        return;
      case "synced":
        this.epoch = event.synced?.epoch ?? undefined;
        if (phase.snapshotting && !phase.seen) {
          t.ensured = false;
          t.view.forget(revision);
        }
        phase.snapshotting = false;
        phase.resynced = false;
        t.view.setLive(true, now + t.stalenessMs);
        break;
      default:
        break;
    }
    this.resume = revision;
  }
}
