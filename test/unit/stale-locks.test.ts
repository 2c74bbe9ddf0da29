import { afterEach, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { clearStaleLocks, describeStaleLock } from "../../scripts/lib/pulumi-cli";

let root: string | undefined;
afterEach(() => root && rmSync(root, { recursive: true, force: true }));

/** A pid that certainly exited: a child that ran and was reaped. */
function deadPid(): Promise<number> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, ["-e", ""]);
    c.once("exit", () => resolve(c.pid!));
  });
}

describe("stale stack locks of the file backend (a killed `pulumi up`)", () => {
  it("removes a lock whose process is gone on this machine; keeps a live process's and another machine's", async () => {
    root = mkdtempSync(path.join(os.tmpdir(), "tf-locks-"));
    const dir = path.join(root, ".pulumi-state", ".pulumi", "locks", "organization", "tenantfleet", "local");
    mkdirSync(dir, { recursive: true });
    const lock = (name: string, pid: number, hostname = os.hostname()) => {
      writeFileSync(path.join(dir, `${name}.json`), JSON.stringify({ pid, username: "root", hostname, timestamp: "2026-12-02T07:00:00Z" }));
      return path.join(dir, `${name}.json`);
    };
    const dead = await deadPid();
    const stale = lock("killed", dead);
    const live = lock("running", process.pid);
    const remote = lock("elsewhere", dead, `${os.hostname()}-other`);
    const removed = await clearStaleLocks(root);
    expect(removed).toEqual([{ file: stale, stack: path.join("organization", "tenantfleet", "local"), pid: dead, timestamp: "2026-12-02T07:00:00Z" }]);
    expect([existsSync(stale), existsSync(live), existsSync(remote)]).toEqual([false, true, true]);
    expect(describeStaleLock(removed[0]!)).toBe(`removed the lock on stack local left by pulumi process ${dead} (started 2026-12-02T07:00:00Z), which is gone: a killed run. The next \`pulumi up\` finishes or undoes what it left`);
    expect(await clearStaleLocks(root)).toEqual([]);
  });
});
