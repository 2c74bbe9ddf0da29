import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { releasePort, reservePort } from "../../dynamic-providers/local-server/ports";

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
    const busy = await listen(41100);
    try {
      expect(await reservePort(41100, owner)).toBeGreaterThan(41100);
    } finally {
      busy.close();
    }
  });

  it("reclaims a reservation whose owner folder is gone, and a released port is free again", async () => {
    const gone = path.join(scratch, "gone");
    mkdirSync(gone);
    expect(await reservePort(41200, gone)).toBe(41200);
    rmSync(gone, { recursive: true });
    const next = path.join(scratch, "next");
    mkdirSync(next);
    expect(await reservePort(41200, next)).toBe(41200);
    await releasePort(41200, next);
    const third = path.join(scratch, "third");
    mkdirSync(third);
    expect(await reservePort(41200, third)).toBe(41200);
  });
});
