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
});
