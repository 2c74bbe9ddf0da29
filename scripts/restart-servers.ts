#!/usr/bin/env -S npx tsx
/**
 * npm run servers:restart [-- --stack local] — start every recorded local server that is not
 * running (after a reboot, or after the session that started them ended). Data is kept.
 */
import { restartServers } from "../dynamic-providers/local-server/restart";

async function main(): Promise<void> {
  const i = process.argv.indexOf("--stack");
  const stack = i >= 0 ? process.argv[i + 1] : undefined;
  const results = await restartServers(stack, (line) => console.log(`[servers] ${line}`));
  if (results.length === 0) console.log(`[servers] no local servers recorded${stack ? ` for stack ${stack}` : ""}`);
  for (const r of results) {
    console.log(`[servers] ${r.stack.padEnd(12)} ${r.serverName.padEnd(36)} ${r.engine.padEnd(8)} :${r.port}  ${r.outcome}${r.error ? `: ${r.error}` : ""}`);
  }
  if (results.some((r) => r.outcome === "failed")) {
    console.error("[servers] some servers failed to start: see their logs under .tenantfleet/<stack>/servers/<name>/log/");
    process.exit(1);
  }
}

main().catch((err: Error) => {
  console.error(`[servers] ${err.message}`);
  process.exit(1);
});
