/**
 * The control catalog on a real PostgreSQL server: migrations (idempotent, safe when several
 * programs start at once, refused when the catalog is newer), the route commit's compare-and-set,
 * and the notifications proxies follow.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client } from "pg";
import { LocalPgFleet } from "../../scripts/lib/local-pg-fleet";
import { CATALOG_VERSION, CHANNELS, migrateCatalog } from "../../proxy/catalog/schema";
import { commitRoute, EpochConflictError, loadRoute, rowToRoute, upsertRoute } from "../../proxy/catalog/routes";
import { makeVerifier } from "../../proxy/postgres/scram";

let fleet: LocalPgFleet;

beforeAll(async () => {
  fleet = await LocalPgFleet.create({ stack: "catalog" });
});
afterAll(async () => {
  await fleet?.close();
});

async function withCatalog<T>(fn: (c: Client) => Promise<T>, db = "tenantfleet_catalog"): Promise<T> {
  const c = new Client(fleet.catalog.admin(db));
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

describe("control catalog", () => {
  it("migrates a fresh database once, even with five programs starting together", async () => {
    await withCatalog((c) => c.query("create database fresh_catalog"), "postgres");
    const results = await Promise.all(Array.from({ length: 5 }, () => withCatalog((c) => migrateCatalog(c), "fresh_catalog")));
    const applied = results.flat();
    expect(applied).toEqual([...Array(CATALOG_VERSION).keys()].map((i) => i + 1)); // each version applied by exactly one
    expect(await withCatalog((c) => migrateCatalog(c), "fresh_catalog")).toEqual([]);
    const versions = await withCatalog(async (c) => (await c.query("select version from tenantfleet.schema_migrations order by 1")).rows.map((r) => r.version), "fresh_catalog");
    expect(versions).toHaveLength(CATALOG_VERSION);
  });

  it("refuses a catalog newer than the program, saying to upgrade", async () => {
    await withCatalog((c) => c.query("create database future_catalog"), "postgres");
    await withCatalog(async (c) => {
      await migrateCatalog(c);
      await c.query("insert into tenantfleet.schema_migrations (version, name) values ($1, 'from the future')", [CATALOG_VERSION + 1]);
    }, "future_catalog");
    await expect(withCatalog((c) => migrateCatalog(c), "future_catalog")).rejects.toThrow(/newer than this program knows.*upgrade tenantfleet/);
  });

  it("commits a route only on top of the epoch before it; a retried commit is a no-op", async () => {
    const k = { tenant: "acme", database: "app" };
    await withCatalog(async (c) => {
      const events: string[] = [];
      c.on("notification", (n) => events.push(`${n.channel}:${n.payload}`));
      await c.query(`listen ${CHANNELS.routes}`);
      const r = await upsertRoute(c, { ...k, engine: "postgres", role: "acme", scramVerifier: makeVerifier("pw"), server: "s1", host: "127.0.0.1", port: 1111, backendDatabase: "app__acme" });
      expect(r.epoch).toBe(1);
      const target = { server: "s2", host: "127.0.0.1", port: 2222, backendDatabase: "app__acme" };
      const moved = await commitRoute(c, k, target, 2);
      expect(moved).toMatchObject({ epoch: 2, server: "s2", port: 2222 });
      expect((await commitRoute(c, k, target, 2)).epoch).toBe(2); // retry after a lost reply
      await expect(commitRoute(c, k, { ...target, port: 3333 }, 2)).rejects.toBeInstanceOf(EpochConflictError);
      await expect(commitRoute(c, k, target, 4)).rejects.toThrow(/at epoch 2; cannot commit epoch 4/);
      expect((await loadRoute(c, k))!.port).toBe(2222);
      await c.query("select 1"); // let notifications arrive
      expect(events.some((e) => e.includes('"epoch" : 2') || e.includes('"epoch":2'))).toBe(true);
      // The commit's notification carries the committed route itself (version 7): proxies switch
      // on it without reading the row back.
      const committed = events.map((e) => JSON.parse(e.slice(e.indexOf(":") + 1))).find((p) => p.epoch === 2);
      expect(rowToRoute(committed.route)).toEqual(await loadRoute(c, k));
    });
  });

  it("rejects a route with a bad engine or port", async () => {
    await withCatalog(async (c) => {
      await expect(
        upsertRoute(c, { tenant: "x", database: "y", engine: "oracle" as "postgres", role: "x", scramVerifier: "v", server: "s", host: "h", port: 5432, backendDatabase: "d" }),
      ).rejects.toThrow(/check constraint/);
      await expect(
        upsertRoute(c, { tenant: "x", database: "y", engine: "postgres", role: "x", scramVerifier: "v", server: "s", host: "h", port: 70000, backendDatabase: "d" }),
      ).rejects.toThrow(/check constraint/);
    });
  });
});
