import { describe, expect, it } from "vitest";
import { renderTable, statusOf, statusRows } from "../../scripts/lib/status";

describe("npm run status", () => {
  it("words each status as the issue names them", () => {
    expect(statusOf({ status: "ready", sync_percent: null, error: null, phase: "done" })).toBe("ready");
    expect(statusOf({ status: "migrating_sync", sync_percent: 42.7, error: null, phase: "sync" })).toBe("migrating_sync 42%");
    expect(statusOf({ status: "migrating", sync_percent: 100, error: null, phase: "cutover" })).toBe("migrating");
    expect(statusOf({ status: "failed", sync_percent: 10, error: "sync: target gone", phase: "failed" })).toBe("failed: sync: target gone");
  });

  it("joins placement with the catalog, filters one tenant, and renders aligned columns", () => {
    const placement = {
      acme: { app: { engine: "postgres", isolation: "dedicated", region: "eu-west", server: "dedicated-acme-app-eu-west" } },
      globex: { shop: { engine: "mysql", isolation: "shared", region: "us-east", server: "shared-mysql-us-east" } },
    };
    const catalog = [
      {
        tenant: "acme", database: "app", server: "dedicated-acme-app-eu-west", epoch: "2", status: "ready", migration_id: "7",
        from_server: "shared-postgres-eu-west", to_server: "dedicated-acme-app-eu-west", method: "native", phase: "done",
        sync_percent: 100, lag_ms: 3, error: null, record: { timings: { total: 4200 }, pauseMs: 38 }, updated_at: null,
      },
    ];
    const rows = statusRows(placement, catalog);
    expect(rows[0]).toMatchObject({ status: "ready", epoch: 2, lastMigration: "#7 shared-postgres-eu-west → dedicated-acme-app-eu-west (replication): 4.2 s, queries held 38 ms" });
    expect(rows[1]!.status).toMatch(/^ready \(no proxy route/);
    expect(statusRows(placement, catalog, { tenant: "globex" }).map((r) => r.tenant)).toEqual(["globex"]);
    // A move back to the kept copy, whose counts differed at the cutover, leaving a way back.
    const back = [{ ...catalog[0]!, status: "verify_failed", migration_id: "8", from_server: "dedicated-acme-app-eu-west", to_server: "shared-postgres-eu-west", method: "standby",
      record: { timings: { total: 1500 }, pauseMs: 40, verification: { ok: false, mismatches: ["public.bars: source 100, target 101"] }, keptCurrentBy: "tf_rev_8" } }];
    expect(statusRows(placement, back)[0]).toMatchObject({
      status: "verify_failed",
      lastMigration: "#8 dedicated-acme-app-eu-west → shared-postgres-eu-west (switch to the copy kept current): 1.5 s, queries held 40 ms; copies differed at the cutover: public.bars: source 100, target 101; old copy on dedicated-acme-app-eu-west kept current (tf_rev_8)",
    });
    const text = renderTable(rows).split("\n");
    expect(text[0]).toMatch(/^TENANT\/DATABASE\s+ENGINE/);
    expect(text[1]!.indexOf("postgres")).toBe(text[0]!.indexOf("ENGINE"));
  });
});
