// TLS and mTLS to a real circuitd, with certificates made by the `openssl` command (as the
// Python client's TLS tests make theirs). With fallback "deny", a call that runs proves
// the daemon was reached over TLS; one refused at the handshake is a fallback rejection.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";

import { Client, ProtectedCallError } from "../dist/index.js";
import { startDaemon, uniqueName } from "./daemon.mjs";

let pki;
let daemon;

function openssl(...args) {
  execFileSync("openssl", args, { cwd: pki, stdio: "ignore" });
}

before(async () => {
  pki = mkdtempSync(path.join(tmpdir(), "circuitd-ts-pki-"));
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl("req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=ts test CA", "-days", "1");
  for (const [name, subject] of [
    ["server", "circuitd"],
    ["client", "ts-client"],
  ]) {
    openssl("req", "-new", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${subject}`);
    writeFileSync(path.join(pki, `${name}.ext`), "subjectAltName=IP:127.0.0.1\n");
    openssl("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-out", `${name}.pem`, "-extfile", `${name}.ext`);
  }
  const file = (f) => path.join(pki, f);
  daemon = await startDaemon({
    extra: ["--tls-cert", file("server.pem"), "--tls-key", file("server.key"), "--tls-client-ca", file("ca.pem")],
  });
});

after(async () => {
  await daemon?.stop();
  rmSync(pki, { recursive: true, force: true });
});

test("with the CA and a client certificate, calls reach the daemon (mTLS)", async () => {
  const file = (f) => path.join(pki, f);
  const client = new Client(daemon.address, { tls: { ca: file("ca.pem"), cert: file("client.pem"), key: file("client.key") } });
  try {
    const p = client.protector(uniqueName("mtls"), { cached: false, acquireDeadlineMs: 5_000 });
    assert.equal(await p.execute(() => "ran"), "ran");
  } finally {
    await client.close();
  }
});

test("without a client certificate the daemon refuses the handshake: the fallback decides", async () => {
  const client = new Client(daemon.address, { tls: { ca: path.join(pki, "ca.pem") } });
  try {
    const p = client.protector(uniqueName("no-cert"), { cached: false, acquireDeadlineMs: 5_000 });
    const error = await p.execute(() => "ran").catch((e) => e);
    assert.ok(error instanceof ProtectedCallError && error.fallback, String(error));
  } finally {
    await client.close();
  }
});
