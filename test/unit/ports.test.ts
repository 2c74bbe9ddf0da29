import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { execFile } from "node:child_process";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { claimPort, releasePort, reservationsDir, reservePort } from "../../dynamic-providers/local-server/ports";

// Reservations live under XDG_CACHE_HOME: point it at a scratch dir so this test owns them.
let scratch: string;
let savedCache: string | undefined;
beforeEach(() => {
  scratch = mkdtempSync(path.join(os.tmpdir(), "tf-ports-"));
  savedCache = process.env.XDG_CACHE_HOME;
  process.env.XDG_CACHE_HOME = scratch;
});
afterEach(() => {
  if (savedCache === undefined) delete process.env.XDG_CACHE_HOME;
  else process.env.XDG_CACHE_HOME = savedCache;
  rmSync(scratch, { recursive: true, force: true });
});

function listen(port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(port, "127.0.0.1", () => resolve(s));
  });
}

describe("reservePort", () => {
  it("never hands the same port to two servers, even when asked at the same moment", async () => {
    const owners = [0, 1, 2, 3].map((i) => path.join(scratch, `owner${i}`));
    owners.forEach((o) => mkdirSync(o));
    const ports = await Promise.all(owners.map((o) => reservePort(41000, o)));
    expect(new Set(ports).size).toBe(4);
  });

  it("skips a port something else is listening on", async () => {
    const owner = path.join(scratch, "o");
    mkdirSync(owner);
    // A port the kernel picks: a fixed one in the ephemeral range can be taken by any outgoing
    // connection of the tests running beside this one.
    const busy = await listen(0);
    const port = (busy.address() as net.AddressInfo).port;
    try {
      expect(await reservePort(port, owner)).toBeGreaterThan(port);
    } finally {
      busy.close();
    }
  });

  it("reclaims a reservation whose owner folder is gone, and a released port is free again", async () => {
    const probe = await listen(0); // a port free right now (see above)
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const gone = path.join(scratch, "gone");
    mkdirSync(gone);
    expect(await reservePort(port, gone)).toBe(port);
    rmSync(gone, { recursive: true });
    const next = path.join(scratch, "next");
    mkdirSync(next);
    expect(await reservePort(port, next)).toBe(port);
    await releasePort(port, next);
    const third = path.join(scratch, "third");
    mkdirSync(third);
    expect(await reservePort(port, third)).toBe(port);
  });

  it("many processes taking over the same stale reservations at once: every port has exactly one owner", async () => {
    // 24 stale reservations (their owners' folders were deleted without releasing them), then 4
    // provider processes × 6 servers reserving from the same base at the same moment.
    const base = 43100;
    mkdirSync(reservationsDir(), { recursive: true });
    for (let p = base; p < base + 24; p++) {
      writeFileSync(path.join(reservationsDir(), String(p)), JSON.stringify({ owner: path.join(scratch, `deleted-clone-${p}`), at: "2026-01-01T00:00:00Z" }));
    }
    const startAt = Date.now() + 2500;
    const procs = [0, 1, 2, 3].map((w) => {
      const owners = [0, 1, 2, 3, 4, 5].map((i) => path.join(scratch, `p${w}-server${i}`));
      owners.forEach((o) => mkdirSync(o));
      return new Promise<Array<{ owner: string; port: number }>>((resolve, reject) =>
        execFile(process.execPath, ["--import", "tsx", path.join(__dirname, "../fixtures/reserve-ports.ts"), String(startAt), String(base), ...owners], { env: { ...process.env, XDG_CACHE_HOME: scratch } }, (err, stdout, stderr) =>
          err ? reject(new Error(stderr || err.message)) : resolve(JSON.parse(stdout)),
        ),
      );
    });
    const got = (await Promise.all(procs)).flat();
    expect(got).toHaveLength(24);
    expect(new Set(got.map((g) => g.port)).size).toBe(24);
    for (const g of got) {
      // The file on disk names the server that was given the port.
      expect(JSON.parse(readFileSync(path.join(reservationsDir(), String(g.port)), "utf8")).owner).toBe(g.owner);
    }
    expect(readdirNames(reservationsDir()).filter((n) => !/^\d+$/.test(n))).toEqual([]); // no drafts or locks left
  }, 60_000);

  it("claimPort re-asserts an owner's own or a stale reservation, and refuses one a live server holds", async () => {
    const mine = path.join(scratch, "mine");
    const other = path.join(scratch, "other");
    mkdirSync(mine);
    mkdirSync(other);
    const port = await reservePort(43300, mine);
    await claimPort(port, mine);
    await expect(claimPort(port, other)).rejects.toThrow(new RegExp(`port ${port} is reserved by the server in ${mine}`));
    rmSync(mine, { recursive: true });
    await claimPort(port, other);
    expect(JSON.parse(readFileSync(path.join(reservationsDir(), String(port)), "utf8")).owner).toBe(other);
  });
});

function readdirNames(dir: string): string[] {
  return require("node:fs").readdirSync(dir) as string[];
}
