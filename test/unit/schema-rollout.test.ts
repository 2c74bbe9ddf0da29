import { describe, expect, it } from "vitest";
import { mkdtempSync, mkdirSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { runRollout } from "../../dynamic-providers/schema-rollout/rollout";
import { changedAppliedFiles, rolloutPlan } from "../../dynamic-providers/schema-rollout/plan";
import { ChecksumError, headOf, pendingFiles, type MigrationFile } from "../../dynamic-providers/schema-rollout/types";
import { loadSchemaFiles, validateSchemas, MAX_PER_SERVER } from "../../stacks/schemas";
import type { TenantDatabaseSpec } from "../../stacks/config";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const targets = (n: number, servers = 2) => Array.from({ length: n }, (_, i) => ({ tenant: `t${String(i).padStart(3, "0")}`, server: `s${i % servers}` }));

describe("runRollout", () => {
  it("runs the canary first, then the rest within the per-server and total caps", async () => {
    const order: string[] = [];
    const running = new Map<string, number>();
    let maxTotal = 0;
    const maxPer = new Map<string, number>();
    const apply = async (t: { tenant: string; server: string }) => {
      order.push(t.tenant);
      running.set(t.server, (running.get(t.server) ?? 0) + 1);
      maxPer.set(t.server, Math.max(maxPer.get(t.server) ?? 0, running.get(t.server)!));
      maxTotal = Math.max(maxTotal, [...running.values()].reduce((a, b) => a + b, 0));
      await sleep(2);
      running.set(t.server, running.get(t.server)! - 1);
      return t.tenant;
    };
    const out = await runRollout(targets(40, 3), apply, { canary: ["t007", "t003"], perServer: 2, parallel: 5, maxFailures: 0 });
    expect(order.slice(0, 2).sort()).toEqual(["t003", "t007"]);
    expect(out.done).toHaveLength(40);
    expect(out.failed).toEqual([]);
    expect(out.skipped).toEqual([]);
    expect(Math.max(...maxPer.values())).toBe(2);
    expect(maxTotal).toBe(5);
  });

  it("a failing canary stops the rollout before any other tenant database", async () => {
    const touched: string[] = [];
    const out = await runRollout(targets(10), async (t) => {
      touched.push(t.tenant);
      if (t.tenant === "t001") throw new Error("boom");
    }, { canary: ["t001"], perServer: 4, parallel: 8, maxFailures: 5 });
    expect(touched).toEqual(["t001"]);
    expect(out.failed).toEqual([{ tenant: "t001", error: "boom" }]);
    expect(out.skipped).toHaveLength(9);
    expect(out.stopped).toMatch(/canary failed/);
  });

  it("after the canary, a failure past maxFailures stops new starts; those running finish", async () => {
    const out = await runRollout(targets(30, 1), async (t) => {
      await sleep(1);
      if (t.tenant === "t005") throw new Error("violates");
    }, { canary: ["t000"], perServer: 2, parallel: 2, maxFailures: 0 });
    expect(out.failed).toEqual([{ tenant: "t005", error: "violates" }]);
    // t000 (canary), t001..t005 at least; at most one more started beside t005.
    expect(out.done.length).toBeGreaterThanOrEqual(5);
    expect(out.done.length).toBeLessThanOrEqual(6);
    expect(out.done.length + out.failed.length + out.skipped.length).toBe(30);
    expect(out.stopped).toMatch(/more than the 0 tolerated/);
  });

  it("maxFailures tolerates that many failures and goes on", async () => {
    const out = await runRollout(targets(20), async (t) => {
      if (t.tenant === "t004" || t.tenant === "t009") throw new Error("x");
    }, { canary: [], perServer: 3, parallel: 6, maxFailures: 2 });
    expect(out.failed.map((f) => f.tenant).sort()).toEqual(["t004", "t009"]);
    expect(out.done).toHaveLength(18);
    expect(out.stopped).toBeUndefined();
  });
});

const f = (name: string, checksum = `${name}-sum`): MigrationFile => ({ name, checksum, sql: "" });

describe("files and their history", () => {
  it("pending files are those not applied; a changed or removed applied file is refused, naming it", () => {
    expect(pendingFiles([f("0001_a"), f("0002_b")], [{ name: "0001_a", checksum: "0001_a-sum" }, { name: "seed", checksum: "s" }]).map((x) => x.name)).toEqual(["0002_b"]);
    expect(() => pendingFiles([f("0001_a", "other")], [{ name: "0001_a", checksum: "0001_a-sum" }])).toThrow(ChecksumError);
    expect(() => pendingFiles([f("0001_a", "other")], [{ name: "0001_a", checksum: "0001_a-sum" }])).toThrow(/migration 0001_a was applied with checksum 0001_a-sum but the file now has other/);
    expect(() => pendingFiles([f("0002_b")], [{ name: "0001_a", checksum: "x" }])).toThrow(/0001_a is not in the migrations folder any more/);
    expect(headOf([f("0001_a"), f("0002_b"), f("0003_c")], [{ name: "0001_a", checksum: "" }], [f("0002_b")])).toBe("0002_b");
  });

  it("the preview's plan and the edits it refuses", () => {
    const v1 = [f("0001_init"), f("0002_orders")];
    const v2 = [...v1, f("0003_discount")];
    expect(rolloutPlan("app", v1, v2, 480, { canary: ["acme", "globex"] })).toBe("app: 0002_orders → 0003_discount on 480 tenant databases (canary: acme, globex)");
    expect(rolloutPlan("app", undefined, v2, 1, { canary: [] })).toBe("app: (empty) → 0003_discount (3 migrations: 0001_init, 0002_orders, 0003_discount) on 1 tenant database");
    expect(rolloutPlan("app", v2, v2, 3, { canary: [] })).toBe("app: at 0003_discount on 3 tenant databases, nothing to apply");
    expect(changedAppliedFiles(v1, v2)).toEqual([]);
    expect(changedAppliedFiles(v1, [f("0001_init"), f("0002_orders", "edited")])[0]).toMatch(/migration 0002_orders has been applied .* and its file has changed/);
    expect(changedAppliedFiles(v1, [f("0001_init")])[0]).toMatch(/0002_orders has been applied but is no longer in the folder/);
    expect(changedAppliedFiles(v1, [...v1, f("0001_late")])[0]).toMatch(/0001_late is new but sorts before 0002_orders/);
  });
});

describe("tenantfleet:schemas", () => {
  const dbs: TenantDatabaseSpec[] = [
    { tenant: "globex", database: "app", engine: "postgres", isolation: "shared", region: "eu" },
    { tenant: "acme", database: "app", engine: "postgres", isolation: "dedicated", region: "eu" },
    { tenant: "acme", database: "shop", engine: "mysql", isolation: "shared", region: "eu" },
    { tenant: "globex", database: "shop", engine: "postgres", isolation: "shared", region: "eu" },
    { tenant: "acme", database: "cache", engine: "redis", isolation: "shared", region: "eu" },
  ];
  const validate = (raw: unknown) => {
    const problems: string[] = [];
    const specs = validateSchemas(raw, dbs, (p, m) => problems.push(`${p}: ${m}`));
    return { specs, problems };
  };

  it("defaults: the first tenant by name is the canary, 4 per server, 16 at once, no failure tolerated", () => {
    const { specs, problems } = validate({ app: { migrations: "migrations/app" } });
    expect(problems).toEqual([]);
    expect(specs).toEqual([{ database: "app", engine: "postgres", migrations: "migrations/app", policy: { canary: ["acme"], perServer: 4, parallel: 16, maxFailures: 0 } }]);
  });

  it("refuses what cannot work, naming the path", () => {
    const { problems } = validate({
      shop: { migrations: "m/shop" },
      cache: { migrations: "m/cache" },
      nope: { migrations: "m/nope" },
      app: { migrations: "m/app", canary: ["initech"], perServer: MAX_PER_SERVER + 1, colour: "red" },
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^schemas\.shop: .*several engines \(mysql, postgres\)/),
        expect.stringMatching(/^schemas\.cache: .*redis databases have no schema/),
        expect.stringMatching(/^schemas\.nope: .*no tenant has a database named "nope"/),
        expect.stringMatching(/^schemas\.app\.canary: .*canary tenant "initech" has no "app" database/),
        expect.stringMatching(/^schemas\.app\.perServer: .*from 1 to 6/),
        expect.stringMatching(/^schemas\.app\.colour: .*unknown field "colour"/),
      ]),
    );
    expect(problems).toHaveLength(6);
  });

  it("reads the folder in order, with checksums, the seed apart; bad names, twin numbers and mixed widths are refused", () => {
    const root = mkdtempSync(path.join(os.tmpdir(), "tf-schemas-"));
    mkdirSync(path.join(root, "m"));
    writeFileSync(path.join(root, "m", "0002_orders.sql"), "create table orders ();");
    writeFileSync(path.join(root, "m", "0001_init.sql"), "create table accounts ();");
    writeFileSync(path.join(root, "m", "seed.sql"), "insert …");
    writeFileSync(path.join(root, "m", "README.md"), "not sql");
    const spec = { database: "app", engine: "postgres" as const, migrations: "m", seed: "m/seed.sql", policy: { canary: [], perServer: 4, parallel: 16, maxFailures: 0 } };
    const problems: string[] = [];
    const files = loadSchemaFiles(spec, root, (p, m) => problems.push(`${p}: ${m}`))!;
    expect(problems).toEqual([]);
    expect(files.files.map((x) => x.name)).toEqual(["0001_init", "0002_orders"]);
    expect(files.files[0]!.checksum).toMatch(/^[0-9a-f]{64}$/);
    expect(files.seed).toMatchObject({ name: "seed", sql: "insert …" });

    writeFileSync(path.join(root, "m", "0002_twin.sql"), "");
    writeFileSync(path.join(root, "m", "orders.sql"), "");
    writeFileSync(path.join(root, "m", "10_wide.sql"), "");
    const bad: string[] = [];
    expect(loadSchemaFiles({ ...spec, seed: "m/missing.sql" }, root, (p, m) => bad.push(`${p}: ${m}`))).toBeUndefined();
    expect(bad).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/schemas\.app\.migrations: .*0002_twin\.sql and 0002_orders\.sql have the same number 2/),
        expect.stringMatching(/schemas\.app\.migrations: .*m\/orders\.sql is not named <number>_<name>\.sql/),
        expect.stringMatching(/schemas\.app\.migrations: .*different widths/),
        expect.stringMatching(/schemas\.app\.seed: .*seed file m\/missing\.sql does not exist/),
      ]),
    );
    expect(loadSchemaFiles({ ...spec, migrations: "nowhere" }, root, (p, m) => bad.push(`${p}: ${m}`))).toBeUndefined();
    expect(bad.pop()).toMatch(/migrations folder nowhere does not exist/);
  });
});
