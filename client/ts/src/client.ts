// The connection to the daemon: one gRPC channel per replica, the link that says which
// one to ask and whether any is worth asking, the bearer token and TLS, and the counters
// of what decided each call.
import { readFileSync } from "node:fs";

import * as grpc from "@grpc/grpc-js";

import { unreachable } from "./errors.js";
import { Link } from "./link.js";
import { Protector, type ProtectorOptions } from "./protector.js";
import { Session } from "./session.js";
import type { AcquireResponse } from "./wire.js";
import { AdminServiceClient, ProtectorServiceClient } from "./wire.js";

/** TLS for every replica: PEM text or a file's path (a string not starting with
 * "-----BEGIN" is read as a path). cert and key together give mTLS. */
export interface TlsOptions {
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
}

export interface ClientOptions {
  /** The bearer token of a daemon started with --tokens; default $RESILIENT_CIRCUIT_TOKEN. */
  token?: string;
  /** TLS options, or true for the system's roots; "https://" addresses imply true. */
  tls?: TlsOptions | boolean;
  /** The deadline of every call but Acquire (which has the protector's own). Default 1,000 ms. */
  requestTimeoutMs?: number;
  /** How uncached Acquires travel: "session" (default), pipelined on one Session stream
   * per replica, or "unary", one call each. */
  transport?: "session" | "unary";
  /** The reconnect backoff: first delay and cap, ms (defaults 50 and 5,000). */
  backoffInitialMs?: number;
  backoffCapMs?: number;
}

/** How many calls each source decided, and what became of batched outcomes. */
export interface ClientStats {
  daemonDecisions: number;
  cachedDecisions: number;
  fallbackDecisions: number;
  batchedAccepted: number;
  batchedStale: number;
  /** Outcomes that never reached the daemon (down, or an outage between call and send). */
  reportsLost: number;
}

/** One replica of the daemon. */
export interface Replica {
  address: string;
  protectors: grpc.Client & Record<string, Function>;
  admin: grpc.Client & Record<string, Function>;
  /** Its Session stream, when uncached Acquires use one. */
  session?: Session;
}

function pem(value: string | Buffer | undefined): Buffer | null {
  if (value === undefined) return null;
  if (Buffer.isBuffer(value)) return value;
  return value.startsWith("-----BEGIN") ? Buffer.from(value) : readFileSync(value);
}

/** The addresses given, each as grpc-js takes it (host:port), and whether any said https. */
function parse(addresses: string | readonly string[]): { targets: string[]; https: boolean } {
  const parts = typeof addresses === "string" ? addresses.split(",") : [...addresses];
  if (parts.length === 0) throw new RangeError("no daemon address given");
  let https = false;
  const targets = parts.map((part) => {
    if (!part || /\s/.test(part)) throw new RangeError(`bad daemon address ${JSON.stringify(part)} (expected host:port)`);
    if (part.startsWith("https://")) https = true;
    return part.replace(/^https?:\/\//, "").replace(/\/$/, "");
  });
  return { targets, https };
}

export class Client {
  readonly replicas: Replica[];
  readonly link: Link;
  readonly requestTimeoutMs: number;
  readonly stats: ClientStats = {
    daemonDecisions: 0,
    cachedDecisions: 0,
    fallbackDecisions: 0,
    batchedAccepted: 0,
    batchedStale: 0,
    reportsLost: 0,
  };
  /** Metadata sent with every call (the bearer token, when there is one). */
  readonly metadata = new grpc.Metadata();
  private readonly protectors = new Set<Protector>();
  private closed = false;

  /** `addresses`: "host:port", several comma-separated, or an array (replicas of one daemon). */
  constructor(addresses: string | readonly string[], options: ClientOptions = {}) {
    const { targets, https } = parse(addresses);
    const token = options.token ?? process.env.RESILIENT_CIRCUIT_TOKEN;
    if (token) {
      if (token !== token.trim() || !/^[\x20-\x7e]+$/.test(token)) {
        throw new RangeError("the token must be printable ASCII without surrounding whitespace");
      }
      this.metadata.set("authorization", `Bearer ${token}`);
    }
    const tls = options.tls ?? https;
    const credentials =
      tls === false
        ? grpc.credentials.createInsecure()
        : tls === true
          ? grpc.credentials.createSsl()
          : grpc.credentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert));
    // grpc-js's own reconnect backoff grows to 120 s: a daemon down for a minute would
    // then stay unasked long after it is back. The link's backoff decides how often this
    // client asks; the channel only has to connect promptly when it does.
    const channel = {
      "grpc.initial_reconnect_backoff_ms": options.backoffInitialMs ?? 50,
      "grpc.max_reconnect_backoff_ms": 1_000,
    };
    this.replicas = targets.map((address) => {
      const replica: Replica = {
        address,
        protectors: new ProtectorServiceClient(address, credentials, channel) as Replica["protectors"],
        admin: new AdminServiceClient(address, credentials, channel) as Replica["admin"],
      };
      if ((options.transport ?? "session") === "session") replica.session = new Session(replica, this.metadata);
      return replica;
    });
    this.link = new Link(targets.length, options.backoffInitialMs, options.backoffCapMs);
    this.requestTimeoutMs = options.requestTimeoutMs ?? 1_000;
  }

  /** The handle of protector `name`, created on the daemon with `options.policy` by its
   * first call if the daemon does not have it. */
  protector(name: string, options: ProtectorOptions = {}): Protector {
    if (this.closed) throw new Error("the client is closed");
    const p = new Protector(this, name, options);
    this.protectors.add(p);
    return p;
  }

  /** One unary call on `replica`, with a deadline; `started` receives the call (to cancel). */
  unary<T>(
    replica: Replica,
    service: "protectors" | "admin",
    method: string,
    request: object,
    timeoutMs: number,
    started?: (call: grpc.ClientUnaryCall) => void,
  ): Promise<T> {
    return new Promise((resolve, reject) => {
      const stub = replica[service];
      const call = stub[method](
        request,
        this.metadata,
        { deadline: Date.now() + Math.max(1, timeoutMs) },
        (error: grpc.ServiceError | null, response: T) => (error ? reject(error) : resolve(response)),
      );
      started?.(call);
    });
  }

  /** One Acquire of protector `name` on `replica`: on its Session stream, else unary. */
  acquireOn(replica: Replica, name: string, timeoutMs: number): Promise<AcquireResponse> {
    if (replica.session) return replica.session.acquire(name, Math.max(1, timeoutMs));
    return this.unary<AcquireResponse>(replica, "protectors", "Acquire", { name }, timeoutMs);
  }

  /** `call(replica, left)` on the current replica, `left()` being the ms left of
   * `timeoutMs`; notes on the link how it went. A replica that cannot be reached hands the
   * call to the next one while the round and the time last; an answer that is a refusal is
   * thrown as it is. */
  async ask<T>(call: (replica: Replica, left: () => number) => Promise<T>, timeoutMs: number): Promise<T> {
    const end = performance.now() + timeoutMs;
    const left = () => Math.max(1, end - performance.now());
    for (;;) {
      const turn = this.link.turn();
      try {
        const answer = await call(this.replicas[turn[0]], left);
        this.link.up();
        return answer;
      } catch (error) {
        if (!unreachable(error) || !this.link.failed(turn) || end - performance.now() <= 0) throw error;
      }
    }
  }

  /** Every protector's pending outcomes sent, its Watch stopped, and the channels closed. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.protectors].map((p) => p.close()));
    for (const r of this.replicas) {
      r.session?.close();
      r.protectors.close();
      r.admin.close();
    }
  }

  /** @internal */
  forget(p: Protector): void {
    this.protectors.delete(p);
  }
}
