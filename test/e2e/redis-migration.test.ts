/**
 * Redis tenant databases end to end: the real Pulumi CLI, real Redis instances (one per tenant
 * database, also on the shared host), two real proxies with their Redis listeners. `pulumi up`
 * makes acme's instance, its ACL user and its route; ioredis clients use it through both proxies
 * with the connection string from the `fleet` output (pipelines, transactions, pub/sub, BLPOP
 * consumers, EVALSHA, a stream consumer group) while the test edits acme's placement and runs
 * `pulumi up`: a target stopped during the full sync (up fails clearly, acme serves, the next up
 * retries), then shared → dedicated → another region → shared, each a live move by REPLICAOF. The
 * steps build on each other.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import IORedis from "ioredis";
import { setup } from "../../scripts/setup";
import { pulumiOk, runPulumi } from "../../scripts/lib/pulumi-cli";
import { backendDir, repoRoot } from "../../scripts/lib/pulumi-env";
import type { Toolchain } from "../../scripts/lib/toolchain";
import { writeLocalStackConfig } from "../../scripts/lib/local-stack-config";
import { RedisLoad } from "../../scripts/lib/redis-load";
import { redisVerifier } from "../../proxy/redis/verifier";
import type { ChildProcess } from "node:child_process";
import { Client } from "pg";
import { untilMigrationPhase } from "../fixtures/migration-phase";
import { listServerRecords, stateRoot } from "../../dynamic-providers/local-server/state";
import { resolveLayout } from "../../dynamic-providers/local-server/provider";
import { localRuntime } from "../../dynamic-providers/engines/local-runtime";
import type { LocalServerOutputs } from "../../dynamic-providers/local-server/types";

const stack = `e2e-redis-${randomBytes(3).toString("hex")}`;
const stackFile = path.join(repoRoot, "stacks", `Pulumi.${stack}.yaml`);
let tc: Toolchain;

type Db = { engine: string; isolation: string; region: string };
/** acme's cache gets 1 GB: 100 MB of seed data, so its full sync takes long enough to stop the target during it. */
const writeConfig = (acme: Db) =>
  writeLocalStackConfig(stackFile, {
    acme: { databases: { cache: { ...acme, memory: "1gb" } } },
    globex: { databases: { cache: { engine: "redis", isolation: "shared", region: "eu-west" } } },
  });
const pulumi = (args: string[]) => pulumiOk(tc, [...args, "--stack", stack, "--non-interactive"]);

interface Outputs {
  catalogUrl: string;
  proxies: { endpoints: string[]; redis?: { endpoints: string[] } };
  tenantDatabases: Record<string, Record<string, { server: string; isolation: string; status: string; epoch: number }>>;
  fleet: { proxies: Record<string, { endpoints: string[] }>; tenants: Record<string, Record<string, { connectionString: string }>> };
  servers: Record<string, { host: string; port: number; adminUser: string; adminPassword: string; tenantDatabase?: string }>;
}
const catalogUrlOf = (o: Outputs) => o.catalogUrl;
const outputs = async (): Promise<Outputs> => JSON.parse((await pulumi(["stack", "output", "--json", "--show-secrets"])).stdout);

async function onServer<T>(server: string, fn: (c: IORedis) => Promise<T>): Promise<T> {
  const s = (await outputs()).servers[server]!;
  const c = new IORedis({ host: s.host, port: s.port, username: s.adminUser, password: s.adminPassword, maxRetriesPerRequest: 0 });
  try {
    return await fn(c);
  } finally {
    c.disconnect();
  }
}

let load: RedisLoad;
let firstUrl: string;

beforeAll(async () => {
  tc = await setup({ quiet: true });
  await writeConfig({ engine: "redis", isolation: "shared", region: "eu-west" });
  await pulumiOk(tc, ["stack", "init", stack, "--non-interactive"]);
});

afterAll(async () => {
  await load?.stop().catch(() => undefined);
  load?.close();
  if (tc) {
    await runPulumi(tc, ["destroy", "--yes", "--stack", stack, "--non-interactive"]);
    await runPulumi(tc, ["stack", "rm", "--yes", "--force", stack, "--non-interactive"]);
  }
  await fs.rm(stackFile, { force: true });
}, 300_000);

describe("Redis tenant database through `pulumi up`", () => {
  it("up gives each tenant database its own instance, ACL user and route; the proxies serve Redis; the connection string names the first", async () => {
    await pulumi(["up", "--yes"]);
    const out = await outputs();
    expect(out.proxies.redis?.endpoints).toHaveLength(2);
    expect(out.fleet.proxies.redis?.endpoints).toEqual(out.proxies.redis!.endpoints);
    expect(out.tenantDatabases.acme!.cache).toMatchObject({ server: "shared-redis-eu-west--acme-cache", status: "ready", epoch: 1 });
    expect(out.tenantDatabases.globex!.cache).toMatchObject({ server: "shared-redis-eu-west--globex-cache", status: "ready", epoch: 1 });
    expect(out.servers["shared-redis-eu-west--acme-cache"]).toMatchObject({ tenantDatabase: "acme/cache" });
    expect(out.servers["shared-redis-eu-west"]).toBeDefined(); // the host's own instance, as stacks had it before
    const url = (firstUrl = out.fleet.tenants.acme!.cache!.connectionString);
    expect(url).toMatch(new RegExp(`^redis://cache__acme:[^@]+@${out.proxies.redis!.endpoints[0]}$`));
    const acme = new IORedis(url);
    await acme.set("hello", "acme");
    const batch = acme.pipeline();
    for (let i = 0; i < 30_000; i++) batch.set(`pre:${i}`, "y".repeat(64));
    await batch.exec();
    await acme.eval("local v = string.rep('z', 1000) for i = 1, 100000 do redis.call('SET', 'big:' .. i, v) end return 1", 0);
    acme.disconnect();
    // globex's URL reaches globex's instance only.
    const globex = new IORedis(out.fleet.tenants.globex!.cache!.connectionString);
    expect(await globex.get("hello")).toBeNull();
    globex.disconnect();
    expect(await onServer("shared-redis-eu-west--acme-cache", (c) => c.get("hello"))).toBe("acme");
    // Each instance has its tenant database's memory as its maxmemory.
    expect(await onServer("shared-redis-eu-west--acme-cache", (c) => c.call("CONFIG", "GET", "maxmemory"))).toEqual(["maxmemory", String(1024 * 1024 * 1024)]);
    const { username, password } = new URL(url);
    load = new RedisLoad("acme", out.proxies.redis!.endpoints.map((e) => ({ port: Number(e.split(":")[1]), user: decodeURIComponent(username), password: decodeURIComponent(password) })));
    await load.start();
  }, 300_000);

  it("a target stopped during the full sync fails `up` with a clear message; acme keeps serving from its instance (the next `up` retries)", async () => {
    await writeConfig({ engine: "redis", isolation: "dedicated", region: "eu-west" });
    const out = await outputs();
    let child: ChildProcess | undefined;
    const up = runPulumi(tc, ["up", "--yes", "--stack", stack, "--non-interactive"], { onSpawn: (c) => (child = c) });
    await untilMigrationPhase(catalogUrlOf(out), "acme", "sync", ["preflight", "prepare"], async () => {
      child?.kill("SIGINT");
      await up;
    });
    const rec = (await listServerRecords(stateRoot(), stack)).find((r) => r.serverName === "dedicated-acme-cache-eu-west")!;
    await (await localRuntime("redis")).stop(await resolveLayout(rec as LocalServerOutputs));
    const r = await up;
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/migration of acme\/cache from shared-redis-eu-west--acme-cache to dedicated-acme-cache-eu-west failed during sync: .*acme\/cache still serves from shared-redis-eu-west--acme-cache/s);
    const c = new Client({ connectionString: catalogUrlOf(out) });
    await c.connect();
    const route = (await c.query("select server, status from tenantfleet.tenant_databases where tenant = 'acme' and database = 'cache'")).rows[0];
    await c.end();
    expect(route).toEqual({ server: "shared-redis-eu-west--acme-cache", status: "failed" });
    // The source takes writes (its write pause lifted, or never set) and nothing of the attempt is left on it.
    expect(await onServer("shared-redis-eu-west--acme-cache", (x) => x.call("ACL", "USERS"))).not.toContain("tf_repl_cache__acme");
    await new Promise((res) => setTimeout(res, 500));
    expect(load.errors).toEqual([]);
  }, 400_000);

  for (const [isolation, region, server, epoch] of [
    ["dedicated", "eu-west", "dedicated-acme-cache-eu-west", 2],
    ["dedicated", "us-east", "dedicated-acme-cache-us-east", 3],
    ["shared", "eu-west", "shared-redis-eu-west--acme-cache", 4],
  ] as const) {
    it(`acme → ${isolation} in ${region}: \`pulumi up\` moves it live by REPLICAOF; no client error, nothing lost, the same connection string; preview then shows no changes`, async () => {
      await writeConfig({ engine: "redis", isolation, region });
      const acked = [...load.setAcked];
      const r = await pulumi(["up", "--yes"]);
      expect(r.stdout).toMatch(/cutover: queries held \d+ ms/);
      expect(r.stdout).toMatch(/migrating_sync 100%/);
      const out = await outputs();
      expect(out.tenantDatabases.acme!.cache).toMatchObject({ server, isolation, status: "ready", epoch });
      expect(out.fleet.tenants.acme!.cache!.connectionString).toBe(firstUrl);
      await new Promise((res) => setTimeout(res, 500));
      expect(load.errors).toEqual([]);
      expect(acked.length).toBeGreaterThan(20);
      const present = await onServer(server, async (c) => {
        let n = 0;
        for (let i = 0; i < acked.length; i += 1000) n += await c.exists(...acked.slice(i, i + 1000));
        return n;
      });
      expect(present).toBe(acked.length);
      expect(await onServer(server, (c) => c.get("pre:29999"))).toBe("y".repeat(64));
      const p = JSON.parse((await pulumi(["preview", "--json"])).stdout) as { steps: Array<{ op: string; urn: string }> };
      expect(p.steps.filter((s) => s.op !== "same").map((s) => `${s.op} ${s.urn.split("::").pop()}`)).toEqual([]);
    }, 400_000);
  }

  it("after the moves every acknowledged write of every kind is on acme's instance", async () => {
    await load.stop();
    console.log(JSON.stringify({ e2eRedis: load.counts() }));
    expect(load.errors).toEqual([]);
    expect(await onServer("shared-redis-eu-west--acme-cache", (c) => load.check(c))).toEqual([]);
  }, 120_000);

  it("the state file holds neither the tenant's password nor its verifier", async () => {
    const password = decodeURIComponent(new URL(firstUrl).password);
    const state = await fs.readFile(path.join(backendDir(), ".pulumi", "stacks", "tenantfleet", `${stack}.json`), "utf8");
    expect(state).not.toContain(password);
    expect(state).not.toContain(redisVerifier(password));
  });
});
