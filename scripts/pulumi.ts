#!/usr/bin/env -S npx tsx
/**
 * npm run pulumi -- <args>: the real Pulumi CLI with this project's environment (offline toolchain,
 * file backend in .pulumi-state/, local passphrase unless PULUMI_CONFIG_PASSPHRASE is set).
 * e.g. `npm run pulumi -- preview --diff --stack local`
 * A stack lock left by a killed run (its process gone) is removed first, with a line saying so.
 */
import { spawn } from "node:child_process";
import * as path from "node:path";
import { setup } from "./setup";
import { clearStaleLocks, describeStaleLock } from "./lib/pulumi-cli";
import { pulumiEnv, repoRoot } from "./lib/pulumi-env";

async function main(): Promise<void> {
  const toolchain = await setup({ quiet: true });
  const args = process.argv.slice(2);
  for (const l of await clearStaleLocks()) console.error(`[pulumi] ${describeStaleLock(l)}`);
  const child = spawn(path.join(toolchain.binDir, "pulumi"), args, {
    cwd: repoRoot,
    env: pulumiEnv({ binDir: toolchain.binDir }),
    stdio: "inherit",
  });
  child.once("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}

main().catch((err: Error) => {
  console.error(`[pulumi] ${err.message}`);
  process.exit(1);
});
