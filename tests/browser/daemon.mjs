// The browser tests' harness: a real circuitd started on ports the OS picks, stopped by
// its pid, and circuitctl as a subprocess for the gRPC side (the same client an operator
// uses, so the test needs no gRPC stack of its own).
import { spawn, execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

/// How long any awaited condition may take before the test fails: generous, because the
/// machine may be loaded; nothing waits this long when all is well.
export const DEADLINE_MS = 20000;

/// `$ENV_NAME`, else the workspace's debug build; a missing binary fails with the command
/// that builds it (never a skip).
export function binary(envName, name) {
  const given = process.env[envName];
  const found = given || path.join(process.env.CARGO_TARGET_DIR || path.join(ROOT, "target"), "debug", name);
  if (!existsSync(found)) {
    throw new Error(`${found} is missing: build it with \`cargo build -p circuitd -p circuitctl\` (or set ${envName})`);
  }
  return found;
}

/// A circuitd with in-memory state, its gRPC and HTTP listeners on 127.0.0.1:0, and
/// `extra` flags. Resolves once it printed both addresses.
export async function startDaemon(extra = []) {
  const bin = binary("CIRCUITD_BIN", "circuitd");
  const child = spawn(bin, ["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--in-memory", ...extra], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  const found = {};
  const lines = createInterface({ input: child.stdout });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`circuitd did not print its addresses within ${DEADLINE_MS} ms`));
    }, DEADLINE_MS);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`circuitd exited with ${code} before listening (does it know --http-listen?)`));
    });
    lines.on("line", (line) => {
      if (line.startsWith("http listening on ")) found.http = line.slice("http listening on ".length).trim();
      else if (line.startsWith("listening on ")) found.grpc = line.slice("listening on ".length).trim();
      if (found.http && found.grpc) {
        clearTimeout(timer);
        child.removeAllListeners("exit");
        resolve();
      }
    });
  });
  return {
    pid: child.pid,
    grpc: "http://" + found.grpc,
    http: "http://" + found.http,
    /// SIGTERM by pid, then SIGKILL if it outlives the deadline.
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      process.kill(child.pid, "SIGTERM");
      const timer = setTimeout(() => process.kill(child.pid, "SIGKILL"), DEADLINE_MS);
      await exited;
      clearTimeout(timer);
    },
  };
}

/// Runs circuitctl against `daemon` and resolves to its stdout; `--json` output parsed.
export function circuitctl(daemon, args, { token, json = false } = {}) {
  const bin = binary("CIRCUITCTL_BIN", "circuitctl");
  const full = ["--addr", daemon.grpc, ...(json ? ["--json"] : []), ...args];
  const env = Object.assign({}, process.env);
  delete env.CIRCUIT_TOKEN;
  if (token) env.CIRCUIT_TOKEN = token;
  return new Promise((resolve, reject) => {
    execFile(bin, full, { env, timeout: DEADLINE_MS }, (error, stdout, stderr) => {
      if (error) reject(new Error(`circuitctl ${full.join(" ")}: ${error.message}\n${stderr}`));
      else resolve(json ? JSON.parse(stdout) : stdout);
    });
  });
}

/// A tokens file with one token per role, in a fresh directory: {file, tokens, cleanup}.
export async function tokensFile(roles) {
  const dir = mkdtempSync(path.join(tmpdir(), "circuitd-tokens-"));
  const tokens = {};
  let text = "";
  for (const role of roles) {
    const out = await circuitctl({ grpc: "http://127.0.0.1:1" }, ["token", "new", "--role", role, role + "-user"]);
    tokens[role] = out.split("\n")[0].trim();
    text += out.slice(out.indexOf("[[token]]")) + "\n";
  }
  const file = path.join(dir, "tokens.toml");
  writeFileSync(file, text);
  return { file, tokens, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/// Trips `name` the way a client does: one admitted call reported as a failure (the
/// protector's failure limit is 1/1).
export async function trip(daemon, name, options) {
  const acquired = await circuitctl(daemon, ["acquire", name], Object.assign({ json: true }, options));
  const permit = acquired.permit || {};
  await circuitctl(
    daemon,
    ["report", name, "--permit", String(permit.id || 0), "--generation", String(permit.generation), "--outcome", "failure"],
    options,
  );
}
