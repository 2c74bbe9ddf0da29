#!/usr/bin/env -S npx tsx
/**
 * npm start — fresh clone → setup → `pulumi up --yes` on stack `local` → the stack's outputs.
 * Extra arguments go to `pulumi up` (e.g. `npm start -- --diff`).
 */
import { setup } from "./setup";
import { clearStaleLocks, describeStaleLock, pulumiOk, selectStack } from "./lib/pulumi-cli";
import { LOCAL_PASSPHRASE } from "./lib/pulumi-env";

const STACK = "local";

async function main(): Promise<void> {
  const toolchain = await setup();
  for (const l of await clearStaleLocks()) console.log(`[start] ${describeStaleLock(l)}`);
  await selectStack(toolchain, STACK);
  console.log(`[start] pulumi up --stack ${STACK} (file backend .pulumi-state/, passphrase "${LOCAL_PASSPHRASE}")`);
  await pulumiOk(toolchain, ["up", "--yes", "--stack", STACK, ...process.argv.slice(2)], { echo: true });
  const out = await pulumiOk(toolchain, ["stack", "output", "--stack", STACK, "--json"]);
  console.log("[start] stack outputs (secrets hidden; `npm run pulumi -- stack output --show-secrets` reveals them):");
  console.log(out.stdout.trim());
}

main().catch((err: Error) => {
  console.error(`[start] failed: ${err.message}`);
  console.error("[start] fix the cause above and run `npm start` again: it resumes from the stack's current state.");
  console.error("[start] inspect with `npm run pulumi -- stack --stack local`; servers down after a reboot: `npm run servers:restart`.");
  process.exit(1);
});
