// The handle of one protector: acquire, run and report a call.
//
// Design note. Every call is decided by the daemon, or, in cached mode (the default), from
// what the Watch stream says about the daemon (see view.ts):
// - Cached fast path: while the stream is live and fresh, the protector CLOSED and no
//   override holds, a call is admitted here in the generation the stream announced. Its
//   SUCCESS is counted and batched (pending.ts); its FAILURE is sent at once, after the
//   pending outcomes, in one ReportBatch whose answer (a trip included) is applied before
//   the permit's promise settles, so a process sees its own trips.
// - Remote path: otherwise each call is an Acquire, answered within the acquire deadline
//   (50 ms by default). The RPC itself carries the longer request timeout and is never
//   cancelled on the caller's behalf: a trial permit that arrives after the caller gave
//   up (the deadline passed, or its AbortSignal fired) is reported IGNORED at once, so it
//   does not expire as a FAILURE (proto/SEMANTICS.md section 2). The outcome of a CLOSED
//   permit goes the cached path's way; a HALF_OPEN trial's is a Report of its own.
// - Fallback: when the daemon cannot be asked in time, or the link is in its backoff
//   period, the declared fallback decides: "allow" admits (outcomes recorded nowhere),
//   "deny" rejects, "local" asks an in-process status machine with the same policy.
// Every outcome carries the call's duration (measured from the acquire), for the policy's
// slow-call rule.
import { EventEmitter } from "node:events";
import { debuglog } from "node:util";

import type { Client, Replica } from "./client.js";
import { ProtectedCallError, ProtectionError, type RejectReason, type StatusName, unreachable } from "./errors.js";
import { Machine, type MachinePermit, type OutcomeName } from "./machine.js";
import { Notifier, type StatusChange } from "./notifier.js";
import { FLUSH_AT, FLUSH_INTERVAL_MS, Pending } from "./pending.js";
import { Permit, type Resolved, type Resolver, UNANSWERED } from "./permit.js";
import { type PolicyOptions, wirePolicy } from "./policy.js";
import { View } from "./view.js";
import { noOverride, statusName, Watch } from "./watch.js";
import type {
  AcquireResponse,
  EnsureProtectorResponse,
  GetProtectorResponse,
  OutcomeBatchResult,
  Policy,
  Protector as WireProtector,
  ReportBatchResponse,
  ReportResponse,
  Transition,
} from "./wire.js";
import { millis, num, reportDuration, short } from "./wire.js";

const log = debuglog("resilient-circuit");

/** Who decides when the daemon cannot be asked in time. */
export type Fallback = "allow" | "deny" | "local";

export interface ProtectorOptions {
  /** The policy to create the protector with if the daemon does not have it. */
  policy?: PolicyOptions;
  /** Default "deny". */
  fallback?: Fallback;
  /** Decide locally while the Watch stream vouches for CLOSED. Default true. */
  cached?: boolean;
  /** How long an Acquire may take before the fallback decides. Default 50 ms. */
  acquireDeadlineMs?: number;
  /** The cached mode's freshness bound on the Watch stream. Default 2,000 ms. */
  stalenessMs?: number;
}

export interface CallOptions {
  /** Aborting gives up the call: the acquire rejects with the signal's reason. */
  signal?: AbortSignal;
  /** This call's acquire deadline, instead of the protector's `acquireDeadlineMs`. */
  deadlineMs?: number;
}

export interface ExecuteOptions extends CallOptions {
  /** Whether an error counts as a FAILURE (default: every error); false = a SUCCESS, as
   * the library counts an exception its `should_handle` declines. */
  shouldHandle?: (error: unknown) => boolean;
}

/** A protector's handle. Emits "statusChange" (a StatusChange) exactly once per
 * transition; listening starts its Watch stream. */
export class Protector extends EventEmitter implements Resolver {
  readonly policy: Policy;
  readonly fallback: Fallback;
  readonly cached: boolean;
  readonly acquireDeadlineMs: number;
  readonly stalenessMs: number;
  /** @internal */ readonly view: View;
  /** @internal */ readonly notifier: Notifier;
  /** @internal */ ensured = false;
  private readonly local: Machine | undefined;
  private readonly pending = new Pending();
  private flushTimer: NodeJS.Timeout | undefined;
  private readonly watch: Watch;
  private watching = false;
  private closed = false;
  /** The revision of the newest creation or deletion of the protector learned: where the
   * life the pending outcomes belong to starts or ends. */
  private life = 0;
  /** Lives of the protector that ended, as this handle learned of them: outcomes pending
   * from an earlier one are dropped at the next flush (pending.ts). */
  private lives = 0;
  /** ReportBatch calls sent and not answered yet. */
  private readonly inFlight = new Set<Promise<unknown>>();
  /** The daemon's slow-call threshold (ms), when its policy has one. */
  private slowMs: number | undefined;

  /** @internal use Client.protector */
  constructor(
    readonly client: Client,
    readonly name: string,
    options: ProtectorOptions = {},
  ) {
    super();
    this.policy = wirePolicy(options.policy);
    this.fallback = options.fallback ?? "deny";
    if (!["allow", "deny", "local"].includes(this.fallback)) throw new RangeError(`unknown fallback ${this.fallback}`);
    this.cached = options.cached ?? true;
    this.acquireDeadlineMs = options.acquireDeadlineMs ?? 50;
    this.stalenessMs = options.stalenessMs ?? 2_000;
    this.view = new View(this.cached);
    this.notifier = new Notifier(name, (change) => this.fire(change));
    this.local = this.fallback === "local" ? new Machine(this.policy) : undefined;
    this.slowMs = millis(this.policy.slowCallDuration);
    this.watch = new Watch(this);
    if (this.cached) this.startWatch();
    this.on("newListener", (event) => {
      if (event === "statusChange") this.startWatch();
    });
  }

  private fire(change: StatusChange): void {
    try {
      this.emit("statusChange", change);
    } catch (error) {
      // A listener's exception must not break the stream or the call that carried the news.
      process.emitWarning(`a statusChange listener of ${this.name} threw: ${String(error)}`);
    }
  }

  private startWatch(): void {
    if (this.watching || this.closed) return;
    this.watching = true;
    this.watch.start();
  }

  // ---- deciding ---------------------------------------------------------------------

  /** A permit for one call, or a ProtectedCallError. */
  async acquire(options?: CallOptions): Promise<Permit> {
    options?.signal?.throwIfAborted();
    const now = performance.now();
    const gen = this.view.fastGeneration(now);
    if (gen !== 0) {
      this.client.stats.cachedDecisions += 1;
      return new Permit(this, "cached", gen, 0, false, undefined, now);
    }
    if (this.client.link.attempt() === "skip") return this.decideLocally("the link to the daemon is down");
    return this.remote(options?.signal, options?.deadlineMs ?? this.acquireDeadlineMs);
  }

  /** Acquires, runs `fn`, reports how it went (its duration included) and returns its result. */
  async execute<T>(fn: (signal?: AbortSignal) => Promise<T> | T, options: ExecuteOptions = {}): Promise<T> {
    const permit = await this.acquire(options);
    let result: T;
    try {
      result = await fn(options.signal);
    } catch (error) {
      if (options.signal?.aborted) await permit.ignore();
      else if (options.shouldHandle === undefined || options.shouldHandle(error)) await permit.failure();
      else await permit.success();
      throw error;
    }
    await permit.success();
    return result;
  }

  private remote(signal: AbortSignal | undefined, deadlineMs: number): Promise<Permit> {
    const turn = this.client.link.turn();
    const answer = this.client.ask((replica, left) => this.askOn(replica, left), this.client.requestTimeoutMs);
    return new Promise<Permit>((resolve, reject) => {
      let decided = false;
      const settle = (f: () => void) => {
        if (decided) return;
        decided = true;
        clearTimeout(timer);
        signal?.removeEventListener("abort", aborted);
        f();
      };
      const timer = setTimeout(() => {
        settle(() => {
          // The daemon could not answer in time: it counts as unreachable for the link.
          this.client.link.failed(turn);
          this.decideLocally(`no answer within ${deadlineMs} ms`).then(resolve, reject);
        });
      }, deadlineMs);
      const aborted = () => settle(() => reject(signal!.reason));
      signal?.addEventListener("abort", aborted, { once: true });
      answer.then(
        (response) => {
          if (decided) {
            this.lateAnswer(response);
            return;
          }
          settle(() => {
            try {
              resolve(this.admitted(response));
            } catch (error) {
              reject(error);
            }
          });
        },
        (error) => {
          if (decided) return;
          settle(() => {
            if (!unreachable(error)) {
              reject(new ProtectionError(`the daemon refused an Acquire of ${this.name}: ${error.details ?? error}`, error.code, { cause: error }));
            } else {
              this.decideLocally(`${error.details ?? error}`).then(resolve, reject);
            }
          });
        },
      );
    });
  }

  private async askOn(replica: Replica, left: () => number): Promise<AcquireResponse> {
    if (!this.ensured) await this.ensureOn(replica, left());
    try {
      return await this.client.acquireOn(replica, this.name, left());
    } catch (error) {
      if ((error as { code?: number }).code !== 5 /* NOT_FOUND */) throw error;
    }
    log("the daemon does not know protector %s; ensuring it again", this.name);
    // The life the pending outcomes were in is over, whenever they would be sent.
    this.lives += 1;
    this.ensured = false;
    await this.ensureOn(replica, left());
    return this.client.acquireOn(replica, this.name, left());
  }

  /** An answer that came after the caller stopped waiting: a trial permit is released. */
  private lateAnswer(response: AcquireResponse): void {
    // What it says of the protector is news all the same.
    if (response.transition) this.applyTransition(response.transition, num(response.revision));
    if (response.decision === "DECISION_ADMITTED" && response.permit && response.permit.id) {
      const permit = new Permit(this, "daemon", num(response.permit.generation), num(response.permit.id), false, response.permit);
      permit.ignore().catch(() => undefined);
    }
  }

  private admitted(response: AcquireResponse): Permit {
    this.client.stats.daemonDecisions += 1;
    const revision = num(response.revision);
    const permit = response.permit;
    if (response.decision === "DECISION_ADMITTED" && permit) {
      const generation = num(permit.generation);
      if (response.reason === "DECISION_REASON_CLOSED") {
        this.view.set("CLOSED", generation, true, revision);
      } else if (response.reason === "DECISION_REASON_TRIAL") {
        if (response.transition) {
          // This Acquire ended the cooldown: it fires before the trial's own outcome can
          // announce the next transition.
          this.applyTransition(response.transition, revision);
        } else {
          this.view.set(statusName(response.status), generation, undefined, revision);
          this.notifier.entered(generation, "HALF_OPEN", revision);
        }
      }
      return new Permit(this, "daemon", generation, num(permit.id), response.wouldReject ?? false, permit);
    }
    if (response.transition) this.applyTransition(response.transition, revision);
    throw new ProtectedCallError(
      this.name,
      statusName(response.status),
      short(response.reason, "DECISION_REASON_") as RejectReason,
      millis(response.retryAfter),
      false,
    );
  }

  private async decideLocally(why: string): Promise<Permit> {
    this.client.stats.fallbackDecisions += 1;
    log("protector %s: the daemon could not be asked (%s); fallback %s decides", this.name, why, this.fallback);
    if (this.fallback === "allow") return new Permit(this, "allowed", 0, 0);
    if (this.local !== undefined) {
      const decision = this.local.acquire(performance.now());
      if ("generation" in decision) return new Permit(this, "local", decision.generation, decision.id);
      throw new ProtectedCallError(this.name, this.local.status, decision.reason, decision.retryAfterMs, true);
    }
    throw new ProtectedCallError(this.name, "OPEN", "OPEN", undefined, true);
  }

  // ---- the daemon's answers ------------------------------------------------------------

  private async ensureOn(replica: Replica, timeoutMs: number): Promise<void> {
    // Batches already sent are answered first: one the daemon had not applied when the
    // protector was deleted must not reach the life this call may create.
    if (this.inFlight.size > 0) await Promise.allSettled(this.inFlight);
    const response = await this.client.unary<EnsureProtectorResponse>(
      replica,
      "protectors",
      "EnsureProtector",
      { name: this.name, policy: this.policy },
      timeoutMs,
    );
    const p = response.protector!;
    if (!response.policyMatches) {
      log("protector %s exists on the daemon with another policy; the daemon's applies", this.name);
      if (p.policy) this.local?.adopt(p.policy);
    }
    this.slowMs = millis(p.policy?.slowCallDuration);
    if (response.created && this.notifier.status !== undefined) {
      log("protector %s was created again (deleted, or the daemon restarted)", this.name);
      this.watch.restart();
    }
    // Just created: its last change is its creation.
    if (response.created) this.lifeEnds(num(p.modRevision));
    this.applySnapshot(p, num(response.revision), response.created ?? false);
    this.ensured = true;
  }

  /** @internal The protector was created or deleted at `revision`: outcomes still pending
   * belong to a life that ended (the next one counts generations from 1 again and would
   * take them for its own), so they are dropped and counted lost, unless a newer creation
   * or deletion was learned already (the Watch lagging behind an answer: they are the new
   * life's). A NOT_FOUND answer ends a life too. */
  lifeEnds(revision: number): void {
    if (revision <= this.life) return;
    this.life = revision;
    this.lives += 1;
  }

  private applySnapshot(p: WireProtector, revision: number, created: boolean): void {
    const status = statusName(p.status);
    this.notifier.snapshot(status, num(p.generation), num(p.modRevision), created);
    this.view.set(status, num(p.generation), noOverride(p), revision, created);
  }

  /** @internal */
  applyTransition(t: Transition, revision: number): void {
    const to = statusName(t.to);
    this.view.set(to, num(t.generation), undefined, revision);
    this.notifier.transition(statusName(t.from), to, num(t.generation), revision, short(t.reason, "TRANSITION_REASON_"));
  }

  // ---- outcomes ----------------------------------------------------------------------

  /** @internal `durationMs` undefined: the time since the acquire, read only when needed. */
  resolve(permit: Permit, outcome: OutcomeName, durationMs: number | undefined): Promise<Resolved> {
    switch (permit.source) {
      case "allowed":
        return UNANSWERED;
      case "local": {
        const p: MachinePermit = { generation: permit.generation, id: permit.id };
        return Promise.resolve({ accepted: this.local!.report(p, outcome, performance.now()) });
      }
      case "daemon":
        if (permit.id !== 0) return this.report(permit, outcome, durationMs ?? performance.now() - permit.startedAt);
        break;
      case "cached":
        // A CLOSED permit of the cache is tracked nowhere: IGNORED has nothing to release.
        if (outcome === "IGNORED") return UNANSWERED;
        break;
    }
    if (outcome === "SUCCESS") {
      // The hot path of cached mode: no clock read unless a slow-call rule needs one.
      let slow = false;
      if (this.slowMs !== undefined) {
        durationMs ??= performance.now() - permit.startedAt;
        slow = durationMs >= this.slowMs;
      }
      this.pending.success(permit.generation, this.client.link.downs, this.lives, durationMs ?? 0, slow);
      if (this.pending.count >= FLUSH_AT) void this.flush();
      else this.flushTimer ??= setTimeout(() => void this.flush(), FLUSH_INTERVAL_MS);
      return UNANSWERED;
    }
    // A FAILURE may trip the protector: the caller's next call must see it.
    const duration = durationMs ?? performance.now() - permit.startedAt;
    this.pending.outcome(permit.generation, this.client.link.downs, this.lives, `OUTCOME_${outcome}`, duration);
    return this.flush().then((last) =>
      last === undefined ? {} : { accepted: last.error == null && num(last.stale) === 0 },
    );
  }

  /** Sends the pending outcomes now and applies the answers; answers the last batch's
   * result, when the daemon answered. */
  async flush(): Promise<OutcomeBatchResult | undefined> {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const { batches, lost } = this.pending.take(this.name, this.client.link.downs, this.lives);
    this.client.stats.reportsLost += lost;
    if (batches.length === 0) return undefined;
    const outcomes = batches.reduce((n, b) => n + Number(b.successes) + (b.outcomes?.length ?? 0), 0);
    if (this.client.link.down) {
      this.client.stats.reportsLost += outcomes;
      return undefined;
    }
    let answer: ReportBatchResponse;
    const sent = this.client.ask(
      (replica, left) => this.client.unary<ReportBatchResponse>(replica, "protectors", "ReportBatch", { batches }, left()),
      this.client.requestTimeoutMs,
    );
    this.inFlight.add(sent);
    try {
      answer = await sent;
    } catch (error) {
      this.client.stats.reportsLost += outcomes;
      log("protector %s: %d outcomes could not reach the daemon: %s", this.name, outcomes, error);
      return undefined;
    } finally {
      this.inFlight.delete(sent);
    }
    for (const r of answer.results ?? []) {
      if (r.error) {
        if (r.error.code === 5 /* NOT_FOUND */) {
          this.lives += 1;
          this.ensured = false;
          this.view.forget(num(answer.revision));
        }
        log("protector %s: a batch of outcomes failed: %s", this.name, r.error.message);
        continue;
      }
      this.client.stats.batchedAccepted += num(r.accepted);
      this.client.stats.batchedStale += num(r.stale);
      if (r.transition) this.applyTransition(r.transition, num(answer.revision));
      else this.view.set(statusName(r.status), num(r.generation), undefined, num(answer.revision));
    }
    return answer.results?.at(-1);
  }

  /** A trial's outcome: a Report of its own, after the pending outcomes. */
  private async report(permit: Permit, outcome: OutcomeName, durationMs: number): Promise<Resolved> {
    await this.flush();
    if (this.client.link.down) {
      this.client.stats.reportsLost += 1;
      return {};
    }
    const request = {
      name: this.name,
      permit: permit.wire,
      outcome: `OUTCOME_${outcome}`,
      duration: reportDuration(durationMs),
    };
    try {
      const r = await this.client.ask(
        (replica, left) => this.client.unary<ReportResponse>(replica, "protectors", "Report", request, left()),
        this.client.requestTimeoutMs,
      );
      if (r.transition) this.applyTransition(r.transition, num(r.revision));
      return { accepted: r.accepted ?? false };
    } catch (error) {
      this.client.stats.reportsLost += 1;
      log("protector %s: a trial's report could not reach the daemon: %s", this.name, error);
      return {};
    }
  }

  // ---- reading and closing -------------------------------------------------------------

  /** Makes sure the daemon has the protector (creating it with this handle's policy) and
   * that this handle knows its status. Calls do this themselves; this is for a caller that
   * wants the daemon's word before the first call. */
  async ensure(): Promise<void> {
    await this.client.ask((replica, left) => this.ensureOn(replica, left()), this.client.requestTimeoutMs);
  }

  /** The daemon's protector, after this process's pending outcomes. */
  async get(): Promise<WireProtector> {
    await this.flush();
    const response = await this.client.ask(async (replica, left) => {
      if (!this.ensured) await this.ensureOn(replica, left());
      return this.client.unary<GetProtectorResponse>(replica, "protectors", "GetProtector", { name: this.name }, left());
    }, this.client.requestTimeoutMs);
    const p = response.protector!;
    this.view.set(statusName(p.status), num(p.generation), noOverride(p), num(response.revision));
    return p;
  }

  /** The status last known here (from answers and the Watch stream). */
  get status(): StatusName | undefined {
    return this.notifier.status ?? this.view.status;
  }

  /** Stops the Watch stream and sends the pending outcomes. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.watch.close();
    await this.flush();
    this.client.forget(this);
  }
}
