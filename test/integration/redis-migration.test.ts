/**
 * The Redis migration engine (REPLICAOF of the tenant database's own instance) driven by the real
 * orchestrator, with real proxies, under ioredis load through both of them: acme's cache moves
 * back and forth between two instances (the way back reuses the fenced copy). Every acknowledged
 * write is on the instance that serves at the end, no client sees an error, the subscriber gets
 * every message, blocked consumers and the stream group carry on, EVALSHA never gets NOSCRIPT,
 * and globex's cache on its own instance is never paused.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as path from "node:path";
import * as os from "node:os";
import { promises as fs } from "node:fs";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import IORedis from "ioredis";
import { migrate } from "../../dynamic-providers/migration/orchestrator";
import { RedisMigration } from "../../dynamic-providers/engines/redis/migration";
import { redisVerifier } from "../../proxy/redis/verifier";
import { redisFleet, RedisServers, type RedisFleet } from "../../scripts/lib/local-redis-servers";
import { RedisLoad } from "../../scripts/lib/redis-load";
import type { LocalServerOutputs } from "../../dynamic-providers/local-server/types";

let f: RedisFleet;

beforeAll(async () => {
  f = await redisFleet("redis-migration");
}, 240_000);

afterAll(async () => {
  await f?.rs.close();
  await f?.fleet.close();
}, 120_000);

const execFileP = promisify(execFile);
const engineFor = (from: LocalServerOutputs, to: LocalServerOutputs) =>
  new RedisMigration({ source: RedisServers.access(from), target: RedisServers.access(to), user: f.acme.user, verifier: redisVerifier(f.acme.password) });

async function metric(p: { adminPort: number }, name: string, tenant: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) && l.includes(`tenant="${tenant}"`));
  return line ? Number(line.split(" ").pop()) : 0;
}

describe("Redis migration (REPLICAOF) through the proxies", () => {
  it("moves acme's cache back and forth under load: no client error, every acknowledged write present, other tenants not paused", async () => {
    const endpoints = [f.p1, f.p2].map((p) => ({ port: p.redisPort, user: f.acme.user, password: f.acme.password }));
    // Data before the load starts: a full sync has something to copy.
    await f.rs.admin(f.a1, async (c) => {
      const batch = c.pipeline();
      for (let i = 0; i < 20_000; i++) batch.set(`pre:${i}`, "x".repeat(100));
      batch.set("with-ttl", "1", "EX", 3600);
      await batch.exec();
    });
    const globex = new IORedis({ port: f.p1.redisPort, username: f.globex.user, password: f.globex.password, maxRetriesPerRequest: 0 });
    const load = new RedisLoad("acme", endpoints);
    await load.start();
    const moves: { pauseMs: number; stallMs: number; timings: Record<string, number> }[] = [];
    let epoch = 1;
    try {
      for (const [from, to] of [
        [f.a1, f.a2],
        [f.a2, f.a1],
        [f.a1, f.a2],
      ] as const) {
        await new Promise((r) => setTimeout(r, 700));
        const logs: string[] = [];
        const started = Date.now();
        const r = await migrate(engineFor(from, to), { key: f.acme, fromServer: from.serverName, toServer: to.serverName, epoch }, { catalog: f.fleet.catalogConfig, backupDir: path.join(f.fleet.root, "backups"), log: (m) => void logs.push(m) });
        expect(r, `${r.error}\n${logs.join("\n")}`).toMatchObject({ status: "done", method: "native" });
        expect(logs.join("\n")).toMatch(/migrating_sync 100%/);
        expect(r.backup?.bytes).toBeGreaterThan(0);
        moves.push({ pauseMs: r.pauseMs!, stallMs: load.maxLatencyBetween(started, Date.now()), timings: r.timings });
        epoch++;
        expect(await globex.set("alive", String(epoch))).toBe("OK");
      }
      await new Promise((r) => setTimeout(r, 500)); // writes after the last switch
    } finally {
      await load.stop();
      load.close();
    }
    console.log(JSON.stringify({ redisMoves: moves, counts: load.counts() }));
    expect(load.errors).toEqual([]);
    const missing = await f.rs.admin(f.a2, (c) => load.check(c));
    expect(missing).toEqual([]);
    expect(await f.rs.admin(f.a2, (c) => c.get("pre:19999"))).toBe("x".repeat(100));
    // Every kind of client did work, across the moves.
    for (const [k, n] of Object.entries(load.counts())) if (k !== "watchAborts") expect(n, k).toBeGreaterThan(0);
    // The source copies are fenced: acme's user is off on a1 (it served last from a2).
    const fenced = new IORedis({ port: f.a1.port, username: f.acme.user, password: f.acme.password, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    const refused = new Promise<string>((r) => fenced.on("error", (e: Error) => r(e.message)));
    await fenced.connect().catch(() => undefined);
    expect(await refused).toMatch(/WRONGPASS/);
    // Nothing of the moves is left: no replica, no replication user.
    for (const s of [f.a1, f.a2]) {
      expect(await f.rs.admin(s, async (c) => (await c.info("replication")).includes("role:master"))).toBe(true);
      expect(await f.rs.admin(s, (c) => c.call("ACL", "USERS"))).not.toContain(`tf_repl_${f.acme.user}`);
    }
    // Sessions logged in on the announced target while the migration's final steps ran: the switch only swapped connections.
    const switched = [...f.p1.logs, ...f.p2.logs].filter((l) => l.msg === "session switched to the committed route" && l.engine === "redis");
    expect(switched.length).toBeGreaterThan(10);
    expect(switched.filter((l) => l.warm === true).length).toBeGreaterThan(switched.length / 2);
    expect(await metric(f.p1, "tenantfleet_proxy_pauses_total", "globex")).toBe(0);
    expect(await metric(f.p1, "tenantfleet_proxy_pauses_total", "acme")).toBe(3);
    globex.disconnect();
  }, 600_000);

  it("without the disk for the safety backup and the target's copy, the move is refused at preflight; nothing moves", async () => {
    // A real filesystem too small for the data: a 1 MB tmpfs, probed as the platform probes its disk.
    const small = await fs.mkdtemp(path.join(os.tmpdir(), "tf-small-disk-"));
    await execFileP("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", small]);
    try {
      const epoch = (await f.fleet.route(f.acme)).epoch;
      const engine = new RedisMigration({ source: RedisServers.access(f.a2), target: RedisServers.access(f.a1), user: f.acme.user, verifier: redisVerifier(f.acme.password), freeBytes: async () => {
        const st = await fs.statfs(small);
        return st.bavail * st.bsize;
      } });
      await expect(migrate(engine, { key: f.acme, fromServer: f.a2.serverName, toServer: f.a1.serverName, epoch }, { catalog: f.fleet.catalogConfig, backupDir: path.join(f.fleet.root, "backups"), log: () => undefined })).rejects.toThrow(
        /failed during preflight: cannot move cache__acme: not enough disk: the safety backup and the target's copy of [\d.]+ MB of data need about [\d.]+ MB, [\d.]+ MB are free/,
      );
      expect(await f.fleet.route(f.acme)).toMatchObject({ server: f.a2.serverName, epoch });
    } finally {
      await execFileP("umount", [small]);
      await fs.rm(small, { recursive: true, force: true });
    }
  }, 120_000);

  it("a target with less memory than the source is refused at preflight, naming both; nothing moves", async () => {
    await f.rs.admin(f.a1, (c) => c.call("CONFIG", "SET", "maxmemory", "1mb"));
    await f.rs.admin(f.a2, (c) => c.call("CONFIG", "SET", "maxmemory", "64mb"));
    try {
      const epoch = (await f.fleet.route(f.acme)).epoch;
      await expect(migrate(engineFor(f.a2, f.a1), { key: f.acme, fromServer: f.a2.serverName, toServer: f.a1.serverName, epoch }, { catalog: f.fleet.catalogConfig, backupDir: path.join(f.fleet.root, "backups"), log: () => undefined })).rejects.toThrow(
        /failed during preflight: cannot move cache__acme: the target acme-cache-1 has maxmemory 1 MB, less than the source's 64 MB/,
      );
      expect(await f.fleet.route(f.acme)).toMatchObject({ server: f.a2.serverName, epoch });
      const c = new IORedis({ port: f.p1.redisPort, username: f.acme.user, password: f.acme.password, maxRetriesPerRequest: 0 });
      expect(await c.set("after-refusal", "1")).toBe("OK");
      c.disconnect();
    } finally {
      await f.rs.admin(f.a1, (c) => c.call("CONFIG", "SET", "maxmemory", "0"));
      await f.rs.admin(f.a2, (c) => c.call("CONFIG", "SET", "maxmemory", "0"));
    }
  }, 120_000);
});
