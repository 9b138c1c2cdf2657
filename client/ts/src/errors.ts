// The errors of the client. A rejected call is an answer, not a failure of the client:
// `ProtectedCallError` says which protector, why, and when asking again may succeed.

/** A protector's status. */
export type StatusName = "CLOSED" | "OPEN" | "HALF_OPEN";

/** Why a call was rejected: the daemon's DecisionReason without its prefix. */
export type RejectReason = "OPEN" | "TRIALS_EXHAUSTED" | "FORCED_OPEN";

/** The call was not made: the protector rejected it (the daemon, the cache, or the fallback). */
export class ProtectedCallError extends Error {
  override readonly name = "ProtectedCallError";
  constructor(
    /** The protector's name. */
    readonly protector: string,
    /** Its status as the decider knew it. */
    readonly status: StatusName,
    readonly reason: RejectReason,
    /** When asking again may succeed, when known. */
    readonly retryAfterMs: number | undefined,
    /** true when the declared fallback decided (the daemon could not be asked). */
    readonly fallback: boolean,
  ) {
    super(
      `protector ${protector} rejected the call (${reason}${fallback ? ", by its fallback" : ""}` +
        `${retryAfterMs !== undefined ? `, retry after ${Math.ceil(retryAfterMs)} ms` : ""})`,
    );
  }
}

/** The daemon refused a request for a reason no fallback covers (a bad policy or name, a
 * missing or wrong token, a role without the right): the caller's mistake to fix. */
export class ProtectionError extends Error {
  override readonly name = "ProtectionError";
  constructor(
    message: string,
    /** The gRPC status code, when the daemon answered one. */
    readonly code?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A retry policy ran out of attempts; `cause` is the last attempt's error. */
export class RetryLimitReached extends Error {
  override readonly name = "RetryLimitReached";
  constructor(
    readonly attempts: number,
    options: { cause: unknown },
  ) {
    super(`gave up after ${attempts} attempts`, options);
  }
}

/** The last error of a chain of causes (a RetryLimitReached's rejection, say). */
export function lastError(error: unknown): unknown {
  let e = error;
  while (e instanceof RetryLimitReached) e = e.cause;
  return e;
}

/** The gRPC codes that mean the daemon could not be reached (rather than: it refused):
 * UNAVAILABLE, UNKNOWN, DEADLINE_EXCEEDED, CANCELLED, INTERNAL, ABORTED. */
const UNREACHABLE = new Set([14, 2, 4, 1, 13, 10]);

/** Whether `error` (a gRPC error, or anything else) means the daemon could not be reached. */
export function unreachable(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code !== "number" || UNREACHABLE.has(code);
}
