import { describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { MOVE_STEPS, stopPoint } from "../../dynamic-providers/migration/stop-points";

describe("stop points (the kill matrix's deterministic kill points)", () => {
  it("without TENANTFLEET_STOP_AT every stop point returns at once", async () => {
    const t = Date.now();
    for (const s of MOVE_STEPS) await stopPoint(s);
    expect(Date.now() - t).toBeLessThan(100);
  });

  it("the named one freezes the process after reporting it; the steps before it pass", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "tf-stop-"));
    const file = path.join(dir, "stopped");
    const mark = path.join(dir, "after");
    const code = `const sp = require(${JSON.stringify(path.resolve(__dirname, "../../dynamic-providers/migration/stop-points.ts"))});
      (async () => { await sp.stopPoint("paused"); await sp.stopPoint("after-commit"); require("fs").writeFileSync(${JSON.stringify(mark)}, "ran on"); })();
      setInterval(() => require("fs").writeFileSync(${JSON.stringify(mark)}, "timer ran"), 20);`;
    const child = spawn(process.execPath, ["--import", "tsx", "-e", code], { env: { ...process.env, TENANTFLEET_STOP_AT: "after-commit", TENANTFLEET_STOP_FILE: file }, stdio: "ignore" });
    try {
      for (const end = Date.now() + 20_000; !existsSync(file) && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
      expect(readFileSync(file, "utf8")).toBe(`after-commit ${child.pid}\n`);
      await new Promise((r) => setTimeout(r, 300));
      // Frozen: neither the next step nor a timer of the process ran, and it did not exit.
      expect(existsSync(mark)).toBe(false);
      expect(child.exitCode).toBeNull();
    } finally {
      child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
