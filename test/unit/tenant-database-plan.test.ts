import { describe, expect, it } from "vitest";
import { checkTenantDatabase, connectionString, planTenantDatabase, refreshedOutputs } from "../../dynamic-providers/tenant-database/plan";
import type { Route } from "../../proxy/catalog/routes";
import { UNKNOWN } from "../../dynamic-providers/preview";
import type { TenantDatabaseInputs, TenantDatabaseOutputs } from "../../dynamic-providers/tenant-database/types";
import { tenantDatabaseInputs } from "../fixtures/tenant-database-inputs";

const inputs = (over: Partial<TenantDatabaseInputs> = {}): Record<string, unknown> => tenantDatabaseInputs(over);

function checked(olds: Record<string, unknown> | undefined, news: Record<string, unknown>): TenantDatabaseInputs {
  const r = checkTenantDatabase(olds as Partial<TenantDatabaseInputs> | undefined, news);
  if ("failures" in r) throw new Error(JSON.stringify(r.failures));
  return r.inputs;
}

function outputsOf(i: TenantDatabaseInputs, over: Partial<TenantDatabaseOutputs> = {}): TenantDatabaseOutputs {
  return { ...i, role: "app__acme", password: "p", scramVerifier: "v", backendDatabase: "app__acme", epoch: 1, connectionString: "c", status: "ready", lastMigration: null, retained: [], ...over };
}

describe("TenantDatabase check", () => {
  it("defaults the rollback window to 24 hours and describes a create", () => {
    const i = checked(undefined, inputs());
    expect(i.rollbackWindowHours).toBe(24);
    expect(i.plan).toBe("on shared-postgres-eu-west (shared, eu-west)");
  });

  it("describes a tier change as a migration from server to server, with the method", () => {
    const olds = checked(undefined, inputs());
    const i = checked(olds as unknown as Record<string, unknown>, inputs({ isolation: "dedicated", serverName: "dedicated-acme-app-eu-west" }));
    expect(i.plan).toMatch(/^migrate shared-postgres-eu-west \(shared, eu-west\) → dedicated-acme-app-eu-west \(dedicated, eu-west\): PostgreSQL logical replication/);
  });

  it("a database that stays keeps the words of its stored plan (the checked inputs of an unchanged resource do not change, so the engine does not rewrite the checkpoint for it)", () => {
    const created = checked(undefined, inputs());
    expect(checked(created as unknown as Record<string, unknown>, inputs()).plan).toBe(created.plan);
    // An earlier version's words are kept too.
    const earlier = { ...created, plan: "create on shared-postgres-eu-west (shared, eu-west)" };
    expect(checked(earlier as unknown as Record<string, unknown>, inputs()).plan).toBe(earlier.plan);
    // The plan of the move that brought it there gives way to where it is.
    const moved = checked(created as unknown as Record<string, unknown>, inputs({ isolation: "dedicated", serverName: "dedicated-acme-app-eu-west" }));
    expect(checked(moved as unknown as Record<string, unknown>, inputs({ isolation: "dedicated", serverName: "dedicated-acme-app-eu-west" })).plan).toBe("on dedicated-acme-app-eu-west (dedicated, eu-west)");
  });

  it("refuses a rename and an engine change, saying why (no path drops data)", () => {
    const olds = checked(undefined, inputs()) as unknown as Partial<TenantDatabaseInputs>;
    const renamed = checkTenantDatabase(olds, inputs({ tenant: "acmecorp" }));
    expect(renamed).toEqual({ failures: [{ property: "tenant", reason: expect.stringMatching(/cannot be renamed to acmecorp\/app: a rename would create an empty database and drop this one/) }] });
    const engine = checkTenantDatabase({ ...olds, engine: "mysql" as never }, inputs());
    expect(engine).toEqual({ failures: [{ property: "engine", reason: expect.stringMatching(/cannot change engine from mysql to postgres/) }] });
  });

  it("names each bad field", () => {
    const r = checkTenantDatabase(undefined, inputs({ tenant: "Bad Name", isolation: "solo" as never, engine: "mongodb" as never, rollbackWindowHours: -1 }));
    expect("failures" in r && r.failures.map((f) => f.property)).toEqual(["tenant", "engine", "isolation", "rollbackWindowHours"]);
  });

  it("manages postgres, mysql and redis databases; another engine is refused naming the ones it manages", () => {
    expect(checkTenantDatabase(undefined, inputs({ engine: "mysql" }))).not.toHaveProperty("failures");
    expect(checkTenantDatabase(undefined, inputs({ engine: "redis" }))).not.toHaveProperty("failures");
    const r = checkTenantDatabase(undefined, inputs({ engine: "mongodb" as never }));
    expect(r).toEqual({ failures: [{ property: "engine", reason: expect.stringMatching(/engine "mongodb" has no live migration yet; TenantDatabase manages "postgres", "mysql" and "redis" databases/) }] });
  });

  it("accepts values still unknown at preview", () => {
    expect(() => checked(undefined, inputs({ server: UNKNOWN as never, catalog: UNKNOWN as never }))).not.toThrow();
  });
});

describe("TenantDatabase update plan", () => {
  const now = new Date("2026-11-22T12:00:00Z");
  it("a server change is a migration; nothing else changed is no change", () => {
    const i = checked(undefined, inputs());
    expect(planTenantDatabase(outputsOf(i), i, now)).toMatchObject({ changes: false, migrate: false });
    const moved = checked(i as unknown as Record<string, unknown>, inputs({ region: "us-east", serverName: "shared-postgres-us-east" }));
    expect(planTenantDatabase(outputsOf(i), moved, now)).toMatchObject({ changes: true, migrate: true });
  });

  it("retained copies past the rollback window are an update that drops them", () => {
    const i = checked(undefined, inputs());
    const retained = [
      { kind: "backup" as const, location: "/b1", expiresAt: "2026-11-22T11:00:00Z" },
      { kind: "backup" as const, location: "/b2", expiresAt: "2026-11-23T11:00:00Z" },
    ];
    const p = planTenantDatabase(outputsOf(i, { retained }), i, now);
    expect(p).toMatchObject({ changes: true, migrate: false, expired: [retained[0]] });
  });
});

it("the connection string is a libpq multi-host URI naming every proxy", () => {
  expect(connectionString("app__acme", "p/w", ["127.0.0.1:16432", "127.0.0.1:16433"], "app__acme")).toBe("postgresql://app__acme:p%2Fw@127.0.0.1:16432,127.0.0.1:16433/app__acme");
});

describe("TenantDatabase refresh (pulumi refresh after a killed run)", () => {
  const now = new Date("2026-12-02T10:00:00Z");
  const route = (over: Partial<Route>): Route => ({ tenant: "acme", database: "app", engine: "postgres", role: "app__acme", scramVerifier: "v", server: "shared-postgres-eu-west", host: "127.0.0.1", port: 25432, backendDatabase: "app__acme", epoch: 1, status: "ready", poolMode: "session", poolSize: 20, serverBudget: undefined, ...over });

  it("a route on the recorded server: the state takes the catalog's status and epoch, nothing else moves", () => {
    const o = outputsOf(checked(undefined, inputs()));
    const r = refreshedOutputs(o, route({ status: "migrating" }), now);
    expect(r).toEqual({ ...o, status: "migrating" });
    expect(planTenantDatabase(r, checked(inputs(), inputs()), now).reasons).toEqual(["status is migrating: the update repairs it"]);
  });

  it("a route committed elsewhere: the state follows it, keeps the left copy to finish and its backup, and the plan says so", () => {
    const o = outputsOf(checked(undefined, inputs()), { retained: [{ kind: "backup", location: "/b/old.dump", expiresAt: "2026-12-03T00:00:00Z" }] });
    const committed = { migrationId: 7, backup: { location: "/b/new.dump", bytes: 10, takenAt: "x" } } as never;
    const r = refreshedOutputs(o, route({ server: "dedicated-acme-app-eu-west", port: 25440, backendDatabase: "app__acme_e2", epoch: 2 }), now, committed);
    expect(r).toMatchObject({ serverName: "dedicated-acme-app-eu-west", server: { host: "127.0.0.1", port: 25440, adminUser: "admin" }, backendDatabase: "app__acme_e2", epoch: 2, status: "finishing", lastMigration: committed });
    expect(r.retained).toEqual([
      o.retained[0],
      { kind: "fenced_copy", server: { name: "shared-postgres-eu-west", host: "127.0.0.1", port: 25432, adminUser: "admin" }, adminPassword: "pw", backendDatabase: "app__acme", role: "app__acme", expiresAt: "2026-12-03T10:00:00.000Z", finishMove: true },
      { kind: "backup", location: "/b/new.dump", expiresAt: "2026-12-03T10:00:00.000Z" },
    ]);
    const news = checked(inputs(), inputs({ isolation: "dedicated", serverName: "dedicated-acme-app-eu-west" }));
    const plan = planTenantDatabase(r, news, now);
    expect(plan.migrate).toBe(false);
    expect(plan.reasons).toEqual(["an interrupted run moved it to dedicated-acme-app-eu-west: the update finishes that move's cleanup and fence"]);
  });
});

describe("TenantDatabase pool settings", () => {
  const now = new Date("2026-12-02T10:00:00Z");
  const tx = { mode: "transaction" as const, size: 5, serverBudget: 45 };

  it("a state written before pools existed, with no pool in the config: no change (an upgrade moves and rewrites nothing)", () => {
    const old = outputsOf(checked(undefined, inputs()));
    expect(planTenantDatabase(old, checked(inputs(), inputs()), now)).toMatchObject({ changes: false, migrate: false, reasons: [] });
  });

  it("setting, resizing or removing a pool is an in-place update that moves nothing", () => {
    const old = outputsOf(checked(undefined, inputs()));
    const set = planTenantDatabase(old, checked(inputs(), inputs({ pool: tx })), now);
    expect(set).toMatchObject({ changes: true, migrate: false });
    expect(set.reasons).toEqual(["pool: session (default) → transaction, 5 per proxy (server budget 45 per proxy) (the proxies apply it to new transactions; nothing moves)"]);
    const pooled = outputsOf(checked(undefined, inputs({ pool: tx })));
    expect(planTenantDatabase(pooled, checked(inputs(), inputs({ pool: tx })), now).changes).toBe(false);
    expect(planTenantDatabase(pooled, checked(inputs(), inputs({ pool: { ...tx, size: 8 } })), now).reasons[0]).toMatch(/→ transaction, 8 per proxy/);
    expect(planTenantDatabase(pooled, checked(inputs(), inputs()), now).reasons[0]).toMatch(/^pool: transaction, 5 per proxy .* → session \(default\)/);
  });

  it("check refuses a malformed pool", () => {
    const r = checkTenantDatabase(undefined, inputs({ pool: { mode: "statement", size: 5, serverBudget: 45 } as never }));
    expect("failures" in r && r.failures[0]!.property).toBe("pool");
  });
});
