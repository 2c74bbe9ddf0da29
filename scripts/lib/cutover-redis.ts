/**
 * `npm run bench:cutover -- --engine redis`: a Redis tenant database's instance of a given size
 * moved live (REPLICAOF) by the real orchestrator and engine, under a steady write load through
 * two real proxies, against an RDB dump-and-load of the same data in the same run (`redis-cli
 * --rdb` of the source, then a fresh `redis-server` loading that file until it answers).
 */
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import IORedis from "ioredis";
import { RedisMigration } from "../../dynamic-providers/engines/redis/migration";
import { migrate } from "../../dynamic-providers/migration/orchestrator";
import { redisVerifier } from "../../proxy/redis/verifier";
import { RedisServers, redisFleet } from "./local-redis-servers";
import { freePort } from "./free-port";
import { SteadyLoad } from "./load";

const execFileP = promisify(execFile);
/** Value size of the keys the instance is filled with. */
const VALUE_BYTES = 1000;

export interface RedisCutoverOptions {
  sizeMb: number;
  writes: number;
  clients: number;
  progress(m: string): void;
}

/** Until a redis-server started on `port` has loaded its data (it answers -LOADING meanwhile). */
async function untilLoaded(port: number): Promise<void> {
  for (;;) {
    const c = new IORedis({ port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    c.on("error", () => undefined);
    const loaded = await c
      .connect()
      .then(() => c.info("persistence"))
      .then((i) => /loading:0/.test(i))
      .catch(() => false);
    c.disconnect();
    if (loaded) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function redisCutover(opts: RedisCutoverOptions): Promise<Record<string, unknown>> {
  const { fleet, rs, a1: shared, a2: dedicated, p1, p2, acme } = await redisFleet("bench-cutover-redis");
  const scratch = mkdtempSync(path.join(os.tmpdir(), "tf-rdb-"));
  try {
    const keys = Math.max(1000, Math.round((opts.sizeMb * 1024 * 1024) / (VALUE_BYTES + 100)));
    opts.progress(`filling acme's instance: ${keys} keys of ${VALUE_BYTES} bytes (≈${opts.sizeMb} MB)`);
    let t = Date.now();
    await rs.admin(shared, async (c) => {
      const fill = "local v = string.rep('x', tonumber(ARGV[3])) for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do redis.call('SET', 'k:' .. i, v) end return 1";
      for (let from = 0; from < keys; from += 50_000) await c.eval(fill, 0, from, Math.min(keys, from + 50_000) - 1, VALUE_BYTES);
    });
    const info = await rs.admin(shared, (c) => c.info("memory"));
    const sizeBytes = Number(/used_memory_dataset:(\d+)/.exec(info)?.[1] ?? 0);
    opts.progress(`filled ${(sizeBytes / 1024 / 1024).toFixed(0)} MB (used_memory_dataset) in ${((Date.now() - t) / 1000).toFixed(0)} s`);

    // Baseline: an RDB of the same instance, loaded by a fresh redis-server.
    opts.progress("baseline: redis-cli --rdb of the instance, then a fresh redis-server loading it");
    t = Date.now();
    const access = RedisServers.access(shared);
    await execFileP("redis-cli", ["-h", access.host, "-p", String(access.port), "--user", access.adminUser, "--no-auth-warning", "--rdb", path.join(scratch, "dump.rdb")], { env: { ...process.env, REDISCLI_AUTH: access.adminPassword } });
    const dumpMs = Date.now() - t;
    const port = await freePort();
    const server = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--dir", scratch, "--dbfilename", "dump.rdb", "--appendonly", "no", "--save", ""], { stdio: "ignore" });
    await untilLoaded(port);
    const dumpLoadMs = Date.now() - t;
    server.kill();
    opts.progress(`baseline took ${(dumpLoadMs / 1000).toFixed(1)} s (dump ${(dumpMs / 1000).toFixed(1)} s)`);

    const connect = (i: number) => {
      const c = new IORedis({ port: (i % 2 === 0 ? p1 : p2).redisPort, username: acme.user, password: acme.password, maxRetriesPerRequest: 0 });
      c.on("error", () => undefined);
      return c;
    };
    const load = new SteadyLoad<IORedis, string>(
      {
        open: connect,
        write: async (c, n) => {
          await c.set(`w:${n}`, "w");
          return `w:${n}`;
        },
        close: (c) => c.disconnect(),
      },
      opts.clients,
      opts.writes,
    );
    const loadStarted = Date.now();
    load.start();
    await sleep(3000);
    const beforeMax = load.maxLatencyBetween(loadStarted, Date.now());
    const migStarted = Date.now();
    let cutoverStarted = 0;
    const engine = new RedisMigration({ source: access, target: RedisServers.access(dedicated), user: acme.user, verifier: redisVerifier(acme.password) });
    const record = await migrate(engine, { key: acme, fromServer: shared.serverName, toServer: dedicated.serverName, epoch: (await fleet.route(acme)).epoch }, {
      catalog: fleet.catalogConfig,
      backupDir: path.join(fleet.root, "backups"),
      log: (m) => {
        if (/^caught up/.test(m)) cutoverStarted = Date.now();
        opts.progress(m);
      },
    });
    const migEnded = Date.now();
    await sleep(3000);
    await load.stop();
    const loadMs = Date.now() - loadStarted;
    const present = await rs.admin(dedicated, async (c) => {
      const have = new Set<string>();
      for (let i = 0; i < load.acked.length; i += 1000) {
        const batch = load.acked.slice(i, i + 1000);
        const res = await c.pipeline(batch.map((k) => ["exists", k])).exec();
        batch.forEach((k, j) => res![j]![1] === 1 && have.add(k));
      }
      return have;
    });
    const missing = load.acked.filter((k) => !present.has(k));
    const migrationMs = migEnded - migStarted;
    return {
      bench: "cutover",
      engine: "redis",
      database: { sizeMB: Math.round(sizeBytes / 1024 / 1024), keys, valueBytes: VALUE_BYTES },
      load: { clients: opts.clients, targetWritesPerSecond: opts.writes, achievedWritesPerSecond: Math.round((load.samples.length * 1000) / loadMs), acknowledgedWrites: load.acked.length, through: "both proxies' Redis listeners, ioredis SET" },
      migration: { method: record.method, status: record.status, error: record.error, totalMs: migrationMs, timings: record.timings, pauseMs: record.pauseMs, verification: record.verification },
      baseline: { dumpLoadMs, dumpMs, loadMs: dumpLoadMs - dumpMs },
      ratio: { migrationOverDumpLoad: Number((migrationMs / dumpLoadMs).toFixed(2)) },
      client: {
        errors: load.errors.length,
        lostWrites: missing.length,
        maxLatencyDuringCutoverMs: load.maxLatencyBetween(cutoverStarted || migStarted, migEnded),
        maxLatencyBeforeMigrationMs: beforeMax,
        latencyMs: load.latency(),
      },
      goals: {
        pauseAtMost50ms: (record.pauseMs ?? Infinity) <= 50,
        noSlowerThanDumpLoad: migrationMs <= dumpLoadMs,
        zeroErrors: load.errors.length === 0,
        zeroLostWrites: missing.length === 0,
      },
      errors: load.errors.slice(0, 5),
    };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
    await rs.close();
    await fleet.close();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
