// The Node agent of the cross-language test (conformance/README.md section 3), played as
// the driver plays it, by two agents on one protector: a trip caused by either is seen by
// the other, and an operator's CLOSED by both.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import * as grpc from "@grpc/grpc-js";

import { wire } from "../dist/index.js";
import { DEADLINE_MS, startDaemon, uniqueName } from "./daemon.mjs";

const AGENT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "dist", "agent.js");

/** An agent process and the lines it wrote, awaited one by one. */
function agent(address, name) {
  const child = spawn(process.execPath, [AGENT, address, name], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = [];
  const waiters = [];
  createInterface({ input: child.stdout }).on("line", (line) => {
    lines.push(line);
    for (const w of [...waiters]) w();
  });
  return {
    send: (command) => child.stdin.write(command + "\n"),
    /** Resolves once the agent wrote `line` (after the lines already taken). */
    expect(line) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`agent never wrote ${JSON.stringify(line)}; wrote ${JSON.stringify(lines)}`)), DEADLINE_MS);
        const check = () => {
          const at = lines.indexOf(line);
          if (at < 0) return;
          lines.splice(0, at + 1);
          clearTimeout(timer);
          waiters.splice(waiters.indexOf(check), 1);
          resolve();
        };
        waiters.push(check);
        check();
      });
    },
    async quit() {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.stdin.end("quit\n");
      return exited;
    },
  };
}

test("two Node agents on one protector: each trip is seen by the other", async () => {
  const daemon = await startDaemon();
  const admin = new wire.AdminServiceClient(daemon.address, grpc.credentials.createInsecure());
  const name = uniqueName("agents");
  const [a, b] = [agent(daemon.address, name), agent(daemon.address, name)];
  try {
    await Promise.all([a.expect("ready"), b.expect("ready")]);
    for (const [tripper, other] of [
      [a, b],
      [b, a],
    ]) {
      tripper.send("succeed 1");
      await tripper.expect("ok succeed 1");
      tripper.send("fail 2");
      await Promise.all([tripper.expect("event CLOSED OPEN"), other.expect("event CLOSED OPEN")]);
      await tripper.expect("ok fail 2");
      await new Promise((resolve, reject) =>
        admin.SetStatus({ name, status: "STATUS_CLOSED" }, (e) => (e ? reject(e) : resolve())),
      );
      await Promise.all([a.expect("event OPEN CLOSED"), b.expect("event OPEN CLOSED")]);
    }
    a.send("bogus");
    await a.expect("error unknown command: bogus");
    assert.equal(await a.quit(), 0);
    assert.equal(await b.quit(), 0);
  } finally {
    admin.close();
    await daemon.stop();
  }
});
