// A writeback HTTP API client in plain Node (18+: the built-in fetch, no packages).
//
// It POSTs examples/heart-rate.json as an Observation with an Idempotency-Key, follows the
// answer's Content-Location (/writes/{id}) until the write settles, prints the outcome as one
// JSON line and exits 0 when the write is verified, 1 otherwise.
//
//   node examples/api-client.mjs
//
// Settings (environment):
//   WRITEBACK_API_TOKEN  a bearer token; without one, `writeback api-token` mints a dev token
//                        (client WRITEBACK_API_CLIENT, default dev-app) with `writeback dev` running
//   WRITEBACK_API_URL    default http://127.0.0.1:8235
//   WRITEBACK_TENANT     default demo-r4
//   WRITEBACK_KEY        the Idempotency-Key (default: a new one); the same key is the same write
//   WRITEBACK_CLI        the writeback command (default .venv/bin/writeback)

import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";

const api = process.env.WRITEBACK_API_URL ?? "http://127.0.0.1:8235";
const tenant = process.env.WRITEBACK_TENANT ?? "demo-r4";
const key = process.env.WRITEBACK_KEY ?? `node-${randomUUID()}`;
// settled: in the chart, refused for good, or waiting for a person
const SETTLED = new Set([
  "verified", "reconciled", "rejected", "abandoned", "conflict", "compensated",
  "pending_confirmation", "mismatch", "compensation_failed",
]);
const FOLLOW_SECONDS = 60;

function token() {
  if (process.env.WRITEBACK_API_TOKEN) return process.env.WRITEBACK_API_TOKEN;
  const cli = process.env.WRITEBACK_CLI ?? ".venv/bin/writeback";
  const client = process.env.WRITEBACK_API_CLIENT ?? "dev-app";
  const args = ["api-token", "--client", client, "--scope", "system/Observation.cu"];
  return execFileSync(cli, args, { encoding: "utf8" }).trim();
}

async function main() {
  const auth = { Authorization: `Bearer ${token()}` };
  const observation = readFileSync(new URL("./heart-rate.json", import.meta.url), "utf8");
  const posted = await fetch(`${api}/fhir/${tenant}/Observation`, {
    method: "POST",
    headers: { ...auth, "Content-Type": "application/fhir+json", "Idempotency-Key": key },
    body: observation,
  });
  if (posted.status !== 202 && posted.status !== 201) {
    // an OperationOutcome: its issues name paths and codes
    console.error(`refused: ${posted.status} ${await posted.text()}`);
    return 1;
  }
  const location = posted.headers.get("Content-Location");
  const deadline = Date.now() + FOLLOW_SECONDS * 1000;
  for (;;) {
    const answer = await fetch(`${api}${location}`, { headers: auth });
    if (answer.status !== 200) {
      console.error(`following ${location}: ${answer.status} ${await answer.text()}`);
      return 1;
    }
    const status = await answer.json();
    if (SETTLED.has(status.state)) {
      const { workflow_id, state, resource, version, reason } = status;
      console.log(JSON.stringify({ workflow_id, state, resource, version, reason }));
      return state === "verified" ? 0 : 1;
    }
    if (Date.now() > deadline) {
      console.error(`${location} is still ${status.state} after ${FOLLOW_SECONDS} s`);
      return 1;
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

process.exitCode = await main();
