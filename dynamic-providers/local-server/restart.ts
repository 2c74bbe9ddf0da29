/**
 * Bring recorded local servers back after a reboot (processes end with the session/machine; data
 * dirs stay). Reads each server's `server.json`, never the Pulumi state, so it needs no passphrase.
 */
import { localRuntime } from "../engines/local-runtime";
import { resolveLayout } from "./provider";
import { claimPort } from "./ports";
import { portOpen } from "./process";
import { listServerRecords, stateRoot } from "./state";

export interface RestartResult {
  stack: string;
  serverName: string;
  engine: string;
  port: number;
  outcome: "already running" | "started" | "failed";
  error?: string;
}

export async function restartServers(stack?: string, log: (line: string) => void = () => {}): Promise<RestartResult[]> {
  const root = stateRoot();
  const results: RestartResult[] = [];
  for (const rec of await listServerRecords(root, stack)) {
    const base = { stack: rec.stack, serverName: rec.serverName, engine: rec.engine, port: rec.port };
    try {
      const rt = await localRuntime(rec.engine);
      const l = await resolveLayout(rec);
      if ((await rt.runningPid(l)) !== undefined && (await portOpen(rec.port))) {
        results.push({ ...base, outcome: "already running" });
        continue;
      }
      log(`starting ${rec.engine} ${rec.serverName} (stack ${rec.stack}) on port ${rec.port}`);
      await claimPort(rec.port, l.dir);
      await rt.start(l);
      results.push({ ...base, outcome: "started" });
    } catch (err) {
      results.push({ ...base, outcome: "failed", error: (err as Error).message });
    }
  }
  return results;
}
