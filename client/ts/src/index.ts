/**
 * resilient-circuit: the Node.js client of circuitd, the daemon that holds the circuit
 * protectors of a whole fleet.
 *
 * A protector is a circuit breaker shared by every process that names it: the daemon
 * decides whether each call may go ahead (Acquire), learns how it went (Report) and
 * announces every status change (Watch). A {@link Client} is one connection to the daemon
 * (to any of its replicas); a {@link Protector} acquires, runs and reports a call, answers
 * within its acquire deadline even when the daemon is down (its declared fallback
 * decides), decides locally while the Watch stream vouches for CLOSED (cached mode), and
 * emits "statusChange" once per transition.
 *
 * Layout: client.ts (the connection, its link and counters), session.ts (the Session
 * stream uncached Acquires take), protector.ts (Protector), permit.ts (Permit), view.ts
 * and pending.ts (cached decisions and batched outcomes), watch.ts (the Watch stream),
 * notifier.ts (exactly-once events), machine.ts (the LOCAL fallback's status machine),
 * link.ts (replicas and the reconnect backoff), policy.ts, backoff.ts, retry.ts
 * (RetryWithBackoff, SafetyNet), errors.ts, wire.ts (the contract, loaded from proto/).
 */
export { ExponentialDelay, FixedDelay, type Backoff, type ExponentialDelayOptions } from "./backoff.js";
export { Client, type ClientOptions, type ClientStats, type TlsOptions } from "./client.js";
export {
  lastError,
  ProtectedCallError,
  ProtectionError,
  RetryLimitReached,
  type RejectReason,
  type StatusName,
} from "./errors.js";
export type { StatusChange } from "./notifier.js";
export type { Limit, PolicyOptions } from "./policy.js";
export { Permit, type Resolved, type Source } from "./permit.js";
export { Protector, type CallOptions, type ExecuteOptions, type Fallback, type ProtectorOptions } from "./protector.js";
export { RetryWithBackoff, SafetyNet, type CallPolicy, type RetryOptions } from "./retry.js";
export * as wire from "./wire.js";
