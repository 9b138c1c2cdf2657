// The contract on the wire: ProtectorService and AdminService, loaded with
// @grpc/proto-loader from the .proto files scripts/generate.mjs copies beside the build,
// and the conversions between the wire's durations and instants and milliseconds.
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

import type { Duration, Timestamp } from "./generated/wire.js";

export type * from "./generated/wire.js";

const PROTO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "proto");

/** The decoding every type of src/generated/wire.ts assumes (scripts/generate.mjs). */
const OPTIONS: protoLoader.Options = {
  keepCase: false,
  // Decimal strings: a SYNCED epoch is a random 64-bit number a JavaScript number would
  // round (and a rounded epoch asks every resume for a resync). Revisions and generations
  // stay far below 2^53 and are read with `num`.
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
};

function load(): grpc.GrpcObject {
  const files = ["types.proto", "protector.proto", "admin.proto"].map((f) => path.join("resilient_circuit", "v1", f));
  if (!existsSync(path.join(PROTO_ROOT, files[0]))) {
    throw new Error(`${PROTO_ROOT} holds no contract: run \`npm run build\` in client/ts`);
  }
  return grpc.loadPackageDefinition(protoLoader.loadSync(files, OPTIONS));
}

const v1 = (load().resilient_circuit as grpc.GrpcObject).v1 as grpc.GrpcObject;

/** The generated gRPC client constructors. */
export const ProtectorServiceClient = v1.ProtectorService as grpc.ServiceClientConstructor;
export const AdminServiceClient = v1.AdminService as grpc.ServiceClientConstructor;

/** A 64-bit count or revision of the wire (a decimal string) as a number; 0 when unset. */
export function num(value: string | number | null | undefined): number {
  return value == null ? 0 : Number(value);
}

/** The wire's largest duration a report may carry (ReportRequest.duration: 0 to 1 h). */
const HOUR_MS = 3_600_000;

/** Milliseconds as a google.protobuf.Duration. */
export function duration(ms: number): Duration {
  const whole = Math.floor(ms / 1000);
  return { seconds: whole, nanos: Math.round((ms - whole * 1000) * 1e6) };
}

/** A call's measured duration for a report, within the contract's bounds. */
export function reportDuration(ms: number): Duration {
  return duration(Math.min(HOUR_MS, Math.max(0, ms)));
}

/** A google.protobuf.Duration (or Timestamp, from the epoch) in milliseconds. */
export function millis(d: Duration | Timestamp | null | undefined): number | undefined {
  if (d == null) return undefined;
  return Number(d.seconds ?? 0) * 1000 + (d.nanos ?? 0) / 1e6;
}

/** "STATUS_OPEN" -> "OPEN", "DECISION_REASON_TRIAL" -> "TRIAL": the enum's own prefix off. */
export function short(value: string | undefined, prefix: string): string {
  return value && value.startsWith(prefix) ? value.slice(prefix.length) : (value ?? "");
}
