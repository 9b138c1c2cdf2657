// The Node agent of the cross-language test (conformance/README.md, section 3):
//   node dist/agent.js ADDRESS NAME
// One protector with the client's default mode, fallback deny, cooldown 60 s and failure
// limit 2/2; "ready" once it is ensured and its statusChange listener registered, then one
// command per stdin line ("fail N", "succeed N", "quit"), each answered "ok COMMAND", and
// "event FROM TO" for every status change, whenever it comes.
import { createInterface } from "node:readline";

import { Client } from "./client.js";
import { ProtectedCallError } from "./errors.js";

function say(line: string): void {
  process.stdout.write(line + "\n");
}

async function main(): Promise<number> {
  const [address, name] = process.argv.slice(2);
  if (!address || !name) {
    process.stderr.write("usage: node dist/agent.js ADDRESS NAME\n");
    return 2;
  }
  const client = new Client(address);
  const protector = client.protector(name, {
    policy: { cooldownMs: 60_000, failureLimit: [2, 2] },
    fallback: "deny",
    // The agent protocol's deadline (conformance/README.md, section 3): the daemon
    // decides, even on a loaded machine.
    acquireDeadlineMs: 2_000,
  });
  protector.on("statusChange", (c) => say(`event ${c.from} ${c.to}`));
  await protector.ensure();
  say("ready");
  const failure = new Error("the agent's own failure");
  for await (const line of createInterface({ input: process.stdin })) {
    const command = line.trim();
    const [verb, count, ...rest] = command.split(/\s+/);
    const n = Number(count);
    if (verb === "quit") break;
    if ((verb !== "fail" && verb !== "succeed") || !Number.isInteger(n) || n < 0 || rest.length > 0) {
      say(`error unknown command: ${command}`);
      continue;
    }
    for (let i = 0; i < n; i++) {
      try {
        await protector.execute(() => {
          if (verb === "fail") throw failure;
        });
      } catch (error) {
        // A rejection is not an error of the agent, and neither is its own failure.
        if (error !== failure && !(error instanceof ProtectedCallError)) throw error;
      }
    }
    say(`ok ${command}`);
  }
  await client.close();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`agent: ${error?.stack ?? error}\n`);
    process.exit(1);
  },
);
