// The Session stream of one replica: uncached Acquires pipelined on one bidirectional
// stream, each answered once and correlated by id, with the unary call's semantics
// (protector.proto). A message on an open stream costs grpc-js far less than a unary call
// (no new HTTP/2 stream, no headers), which is most of an uncached decision's cost.
//
// Design note. The stream opens on the first Acquire and lives until it breaks (the
// daemon went away or shut down, a request found no answer in time); every request still
// waiting then fails UNAVAILABLE, so the caller's link and fallback take over as after a
// failed unary call, and the next Acquire opens a fresh stream. A request that waits past
// its timeout (the request timeout, far beyond the decision deadline) breaks the stream
// rather than leave its answer to arrive unread: the daemon releases a trial permit whose
// stream ended before its answer was sent (proto/SEMANTICS.md section 2), and a stream that
// says nothing for that long is not worth keeping. An answer that comes after the caller's
// own decision deadline is still read, and the protector gives a late trial back.
import type * as grpc from "@grpc/grpc-js";

import type { Replica } from "./client.js";
import type { AcquireResponse, SessionRequest, SessionResponse } from "./wire.js";
import { num } from "./wire.js";

interface Waiting {
  resolve(response: AcquireResponse): void;
  reject(error: unknown): void;
  timer: NodeJS.Timeout;
}

/** An error shaped as grpc-js's, so callers judge it as they judge a unary call's. */
function failure(code: number, details: string): Error & { code: number; details: string } {
  return Object.assign(new Error(details), { code, details });
}

export class Session {
  private call: grpc.ClientDuplexStream<SessionRequest, SessionResponse> | undefined;
  private nextId = 1;
  private readonly waiting = new Map<number, Waiting>();

  constructor(
    private readonly replica: Replica,
    private readonly metadata: grpc.Metadata,
  ) {}

  acquire(name: string, timeoutMs: number): Promise<AcquireResponse> {
    const call = this.open();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.broken(call, 4 /* DEADLINE_EXCEEDED */, "no answer on the Session stream in time"), timeoutMs);
      this.waiting.set(id, { resolve, reject, timer });
      call.write({ id, acquire: { name } });
    });
  }

  close(): void {
    if (this.call) this.broken(this.call, 1 /* CANCELLED */, "the client is closed");
  }

  private open(): grpc.ClientDuplexStream<SessionRequest, SessionResponse> {
    if (this.call !== undefined) return this.call;
    const call = this.replica.protectors.Session(this.metadata) as grpc.ClientDuplexStream<SessionRequest, SessionResponse>;
    call.on("data", (r: SessionResponse) => {
      const id = num(r.id);
      const w = this.waiting.get(id);
      if (w === undefined) return;
      this.waiting.delete(id);
      clearTimeout(w.timer);
      if (r.error) w.reject(failure(r.error.code ?? 2, r.error.message ?? "the daemon refused the request"));
      else w.resolve(r.acquire ?? {});
    });
    call.on("error", (e: grpc.ServiceError) => this.broken(call, e.code ?? 14, e.details ?? String(e)));
    call.on("end", () => this.broken(call, 14 /* UNAVAILABLE */, "the Session stream ended"));
    this.call = call;
    return call;
  }

  /** The stream is done: every request still waiting fails with `code`. */
  private broken(call: grpc.ClientDuplexStream<SessionRequest, SessionResponse>, code: number, details: string): void {
    if (this.call !== call) return;
    this.call = undefined;
    call.cancel();
    // Every waiting request was written on this stream: the daemon answers none of them now.
    for (const w of this.waiting.values()) {
      clearTimeout(w.timer);
      w.reject(failure(code, details));
    }
    this.waiting.clear();
  }
}
