/**
 * A stack made before Redis tenant databases had an instance of their own and a TenantDatabase
 * (commit OLD: the RESP proxy existed, but a `redis` database was only placed on its region's
 * shared host), updated by this checkout's code. The first `up` gives the Redis database its own
 * instance beside the host's, its TenantDatabase (ACL user, route) and the proxies' Redis listener;
 * the host is neither replaced nor restarted and keeps every key written into it by hand (the
 * preview says they stay there), and the PostgreSQL database is untouched.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import IORedis from "ioredis";
import { EarlierCode, type UpgradeOutputs as Outputs } from "../fixtures/earlier-code";

/** The last commit where a `redis` tenant database had no instance of its own and no TenantDatabase. */
const OLD = "51be5ae";

const stack = `e2e-uprd-${randomBytes(3).toString("hex")}`;
const tenants = {
  acme: { databases: { app: { engine: "postgres", isolation: "shared", region: "eu-west" } } },
  globex: { databases: { cache: { engine: "redis", isolation: "shared", region: "eu-west" } } },
};
const earlier = new EarlierCode(OLD, stack);
const newCode = (args: string[]) => earlier.new(args);

let oldOutputs: Outputs;

const host = (o: Outputs) => o.servers["shared-redis-eu-west"]!;
const onHost = async <T>(o: Outputs, fn: (c: IORedis) => Promise<T>): Promise<T> => {
  const s = host(o);
  const c = new IORedis({ host: s.host, port: s.port, username: s.adminUser, password: s.adminPassword, maxRetriesPerRequest: 0 });
  try {
    return await fn(c);
  } finally {
    c.disconnect();
  }
};

beforeAll(async () => {
  await earlier.create(tenants);
  oldOutputs = await earlier.outputs<Outputs>("old");
  // What a user of the earlier code did by hand: keys in the shared host's instance.
  await onHost(oldOutputs, async (c) => {
    const p = c.pipeline();
    for (let i = 0; i < 1000; i++) p.set(`kept:${i}`, String(i));
    await p.exec();
  });
  await earlier.handOver();
}, 600_000);

afterAll(() => earlier.destroy(), 300_000);

describe("a stack with a Redis tenant database from before instances, updated by this code", () => {
  it("the earlier code placed it on the host only: no Redis endpoint, no connection string", () => {
    expect(oldOutputs.fleet.proxies.redis).toBeUndefined();
    expect(oldOutputs.fleet.tenants.globex!.cache!.connectionString).toBeUndefined();
  });

  it("preview plans the database's instance, its TenantDatabase and the proxies' Redis listener: nothing replaced or deleted", async () => {
    const changes = await earlier.plannedChanges();
    // The catalog's schema gains versions 5 and 6 (in place); the proxies restart once with the Redis listener.
    expect(changes).toEqual(["create globex-cache", "create shared-redis-eu-west--globex-cache", "update control-catalog", "update proxy-1", "update proxy-2"]);
  });

  it("up: the host keeps its process and every key, the database gets its own instance served through the proxies; PostgreSQL untouched", async () => {
    const runId = await onHost(oldOutputs, async (c) => (await c.info("server")).match(/run_id:(\w+)/)![1]);
    await newCode(["up", "--yes", "--skip-preview"]);
    const out = await earlier.outputs<Outputs>("new");
    expect(out.tenantDatabases.globex!.cache).toMatchObject({ server: "shared-redis-eu-west--globex-cache", status: "ready", epoch: 1 });
    expect(out.tenantDatabases.acme!.app).toEqual(oldOutputs.tenantDatabases.acme!.app);
    expect(out.fleet.tenants.acme!.app!.connectionString).toBe(oldOutputs.fleet.tenants.acme!.app!.connectionString);
    expect(host(out).port).toBe(host(oldOutputs).port);
    expect(await onHost(out, async (c) => (await c.info("server")).match(/run_id:(\w+)/)![1])).toBe(runId);
    expect(await onHost(out, (c) => c.dbsize())).toBe(1000);
    const app = new IORedis(out.fleet.tenants.globex!.cache!.connectionString!, { maxRetriesPerRequest: 0 });
    try {
      expect(await app.call("ACL", "WHOAMI")).toBe("cache__globex");
      expect(await app.dbsize()).toBe(0); // its own instance, which starts empty
      expect(await app.set("new", "1")).toBe("OK");
    } finally {
      app.disconnect();
    }
    expect(await onHost(out, (c) => c.exists("new"))).toBe(0);
    expect(await earlier.plannedChanges()).toEqual([]);
  }, 300_000);
});
