/**
 * Schema rollouts end to end: the real Pulumi CLI, real PostgreSQL and MariaDB servers. Tenants on
 * shared and dedicated servers with an `app` (PostgreSQL) and a `shop` (MariaDB) database, each
 * with a migrations folder and a seed. The steps build on each other: the first `up` creates every
 * tenant database at the head with its seed; a new migration (with a move in the same run) reaches
 * every tenant database, the moved one on its new server; a migration that fails on one tenant's
 * data fails `up` naming it while the canary and the others stay migrated, and the next `up` after
 * the data is fixed converges; one that fails on the canary touches no other tenant, and its file
 * (applied nowhere) may be fixed; a new tenant starts at the head; an edited applied migration is
 * refused at preview.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { Client } from "pg";
import * as mysql from "mysql2/promise";
import { setup } from "../../scripts/setup";
import { pulumiOk, runPulumi } from "../../scripts/lib/pulumi-cli";
import { repoRoot } from "../../scripts/lib/pulumi-env";
import type { Toolchain } from "../../scripts/lib/toolchain";
import { writeLocalStackConfig } from "../../scripts/lib/local-stack-config";

const stack = `e2e-schema-${randomBytes(3).toString("hex")}`;
const stackFile = path.join(repoRoot, "stacks", `Pulumi.${stack}.yaml`);
let tc: Toolchain;
let dir: string;

type Db = { engine: string; isolation: string; region: string };
const pg = (isolation = "shared"): Db => ({ engine: "postgres", isolation, region: "eu-west" });
const my = (isolation = "shared"): Db => ({ engine: "mysql", isolation, region: "eu-west" });
let tenants: Record<string, { databases: Record<string, Db> }> = {
  acme: { databases: { app: pg(), shop: my() } },
  globex: { databases: { app: pg("dedicated"), shop: my("dedicated") } },
  initech: { databases: { app: pg() } },
};
const writeConfig = () =>
  writeLocalStackConfig(stackFile, tenants, [
    `tenantfleet:schemas: ${JSON.stringify({
      app: { migrations: path.join(dir, "app"), seed: path.join(dir, "app-seed.sql"), canary: ["acme"] },
      shop: { migrations: path.join(dir, "shop"), seed: path.join(dir, "shop-seed.sql") },
    })}`,
  ]);
const pulumi = (args: string[]) => pulumiOk(tc, [...args, "--stack", stack, "--non-interactive"]);

interface Outputs {
  catalogUrl: string;
  servers: Record<string, { host: string; port: number; adminUser: string; adminPassword: string }>;
}
const outputs = async (): Promise<Outputs> => JSON.parse((await pulumi(["stack", "output", "--json", "--show-secrets"])).stdout);

async function catalog<T>(sql: string): Promise<T[]> {
  const c = new Client({ connectionString: (await outputs()).catalogUrl });
  await c.connect();
  try {
    return (await c.query(sql)).rows as T[];
  } finally {
    await c.end();
  }
}

/** Run `sql` in a tenant database where its route says it lives, as the server's admin. */
async function inTenantDb(tenant: string, database: string, sql: string): Promise<Record<string, unknown>[]> {
  const [route] = await catalog<{ server: string; engine: string; backend_database: string }>(`select server, engine, backend_database from tenantfleet.tenant_databases where tenant = '${tenant}' and database = '${database}'`);
  const s = (await outputs()).servers[route!.server]!;
  if (route!.engine === "postgres") {
    const c = new Client({ host: s.host, port: s.port, user: s.adminUser, password: s.adminPassword, database: route!.backend_database });
    await c.connect();
    try {
      return (await c.query(sql)).rows;
    } finally {
      await c.end();
    }
  }
  const c = await mysql.createConnection({ host: s.host, port: s.port, user: s.adminUser, password: s.adminPassword, database: route!.backend_database });
  try {
    return (await c.query(sql))[0] as Record<string, unknown>[];
  } finally {
    await c.end();
  }
}

const history = async (tenant: string, database: string) => (await inTenantDb(tenant, database, "select name from tenantfleet_schema_history order by name")).map((r) => r.name);

interface StatusRow {
  tenant: string;
  database: string;
  server: string;
  schema?: { version: string | null; head: string | null; behind: boolean; error?: string };
}
async function status(): Promise<StatusRow[]> {
  const r = await promisify(execFile)("npx", ["tsx", "scripts/status.ts", "--stack", stack, "--json"], { cwd: repoRoot, maxBuffer: 10 << 20 });
  return JSON.parse(r.stdout);
}

beforeAll(async () => {
  tc = await setup({ quiet: true });
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "tf-schema-"));
  await fs.mkdir(path.join(dir, "app"));
  await fs.mkdir(path.join(dir, "shop"));
  await fs.writeFile(path.join(dir, "app", "0001_init.sql"), "create table accounts (id bigint primary key, name text not null);\ncreate table orders (id bigserial primary key, account_id bigint not null references accounts, amount numeric not null);\n");
  await fs.writeFile(path.join(dir, "app-seed.sql"), "insert into accounts (id, name) values (1, 'owner');\n");
  await fs.writeFile(path.join(dir, "shop", "0001_init.sql"), "create table products (id bigint primary key, title varchar(100) not null);\n");
  await fs.writeFile(path.join(dir, "shop-seed.sql"), "insert into products (id, title) values (1, 'gift card');\n");
  await writeConfig();
  await pulumiOk(tc, ["stack", "init", stack, "--non-interactive"]);
});

afterAll(async () => {
  if (tc) {
    await runPulumi(tc, ["destroy", "--yes", "--stack", stack, "--non-interactive"]);
    await runPulumi(tc, ["stack", "rm", "--yes", "--force", stack, "--non-interactive"]);
  }
  await fs.rm(stackFile, { force: true });
  if (dir) await fs.rm(dir, { recursive: true, force: true });
}, 300_000);

describe("schema rollouts through `pulumi up`", () => {
  it("the first up creates every tenant database at the head, with its seed, before its route is published", async () => {
    await pulumi(["up", "--yes"]);
    for (const t of ["acme", "globex", "initech"]) {
      expect(await history(t, "app")).toEqual(["0001_init", "seed"]);
      expect(await inTenantDb(t, "app", "select name from accounts")).toEqual([{ name: "owner" }]);
      // The tables are the tenant's own (run as its role), so the application can use them.
      expect(await inTenantDb(t, "app", "select tableowner from pg_tables where tablename = 'orders'")).toEqual([{ tableowner: `app__${t}` }]);
    }
    for (const t of ["acme", "globex"]) {
      expect(await history(t, "shop")).toEqual(["0001_init", "seed"]);
      expect(await inTenantDb(t, "shop", "select title from products")).toEqual([{ title: "gift card" }]);
    }
    const rows = await status();
    expect(rows.filter((r) => r.schema).map((r) => [r.tenant, r.database, r.schema!.version, r.schema!.behind])).toEqual([
      ["acme", "app", "0001_init", false],
      ["acme", "shop", "0001_init", false],
      ["globex", "app", "0001_init", false],
      ["globex", "shop", "0001_init", false],
      ["initech", "app", "0001_init", false],
    ]);
  }, 600_000);

  it("a new migration (and a move in the same run): the preview names the plan; up brings every tenant database to it, the moved one on its new server", async () => {
    await fs.writeFile(path.join(dir, "app", "0002_order_notes.sql"), "alter table orders add column note text;\ncreate index orders_by_account on orders (account_id);\n");
    await fs.writeFile(path.join(dir, "shop", "0002_sku.sql"), "alter table products add column if not exists sku varchar(32);\n");
    tenants = { ...tenants, initech: { databases: { app: pg("dedicated") } } };
    await writeConfig();
    const preview = await pulumi(["preview", "--diff"]);
    expect(preview.stdout).toContain("app: 0001_init → 0002_order_notes on 3 tenant databases (canary: acme)");
    expect(preview.stdout).toContain("shop: 0001_init → 0002_sku on 2 tenant databases (canary: acme)");
    const up = await pulumi(["up", "--yes"]);
    expect(up.stdout).toMatch(/app: 3\/3 tenant databases at 0002_order_notes/);
    for (const t of ["acme", "globex", "initech"]) expect(await history(t, "app")).toEqual(["0001_init", "0002_order_notes", "seed"]);
    for (const t of ["acme", "globex"]) expect(await history(t, "shop")).toEqual(["0001_init", "0002_sku", "seed"]);
    const [moved] = await catalog<{ server: string }>("select server from tenantfleet.tenant_databases where tenant = 'initech' and database = 'app'");
    expect(moved!.server).toBe("dedicated-initech-app-eu-west");
    expect(await inTenantDb("initech", "app", "select indexname from pg_indexes where indexname = 'orders_by_account'")).toHaveLength(1);
  }, 600_000);

  it("a migration that fails on one tenant's data fails up naming it; the canary and the others stay migrated; the next up after the fix converges", async () => {
    await inTenantDb("globex", "app", "insert into orders (account_id, amount) values (1, -5)");
    await fs.writeFile(path.join(dir, "app", "0003_positive_amounts.sql"), "alter table orders add constraint amount_not_negative check (amount >= 0);\n");
    const failed = await runPulumi(tc, ["up", "--yes", "--stack", stack, "--non-interactive"]);
    expect(failed.code).not.toBe(0);
    const out = failed.stdout + failed.stderr;
    expect(out).toMatch(/schema rollout of app to 0003_positive_amounts failed on 1 tenant database:\s+globex: 0003_positive_amounts: check constraint "amount_not_negative" .* is violated by some row/);
    // The canary went first and stays migrated; initech ran beside globex and finished.
    expect(await history("acme", "app")).toContain("0003_positive_amounts");
    expect(await history("initech", "app")).toContain("0003_positive_amounts");
    // globex's transaction rolled back whole.
    expect(await history("globex", "app")).toEqual(["0001_init", "0002_order_notes", "seed"]);
    expect(await inTenantDb("globex", "app", "select conname from pg_constraint where conname = 'amount_not_negative'")).toEqual([]);
    const g = (await status()).find((r) => r.tenant === "globex" && r.database === "app")!;
    expect(g.schema).toMatchObject({ version: "0002_order_notes", head: "0003_positive_amounts", behind: true });
    expect(g.schema!.error).toMatch(/violated by some row/);

    await inTenantDb("globex", "app", "update orders set amount = 5 where amount < 0");
    await pulumi(["up", "--yes"]);
    for (const t of ["acme", "globex", "initech"]) expect(await history(t, "app")).toContain("0003_positive_amounts");
    expect((await status()).filter((r) => r.schema?.behind)).toEqual([]);
    // Converged: nothing left to do.
    const again = await pulumi(["preview", "--diff"]);
    expect(again.stdout).not.toMatch(/SchemaRollout/);
  }, 600_000);

  it("a migration that fails on the canary stops the rollout before any other tenant; the fixed file (never applied) is accepted and converges", async () => {
    const file = path.join(dir, "app", "0004_discounts.sql");
    await fs.writeFile(file, "create table discounts (id bigint primary key, percent numeric not null check (percent between 0 and 100);\n");
    const failed = await runPulumi(tc, ["up", "--yes", "--stack", stack, "--non-interactive"]);
    expect(failed.code).not.toBe(0);
    expect(failed.stdout + failed.stderr).toMatch(/failed on 1 tenant database:\s+acme: 0004_discounts: syntax error .*\n.*2 not started \(globex, initech\); the canary failed \(acme\): no other tenant database was touched/);
    for (const t of ["acme", "globex", "initech"]) expect(await history(t, "app")).not.toContain("0004_discounts");
    await fs.writeFile(file, "create table discounts (id bigint primary key, percent numeric not null check (percent between 0 and 100));\n");
    const preview = await pulumi(["preview", "--diff"]);
    expect(preview.stdout).toContain("app: 0003_positive_amounts → 0004_discounts on 3 tenant databases (canary: acme)");
    await pulumi(["up", "--yes"]);
    for (const t of ["acme", "globex", "initech"]) expect(await history(t, "app")).toContain("0004_discounts");
  }, 600_000);

  it("a new tenant gets the head and the seed", async () => {
    tenants = { ...tenants, hooli: { databases: { app: pg(), shop: my() } } };
    await writeConfig();
    await pulumi(["up", "--yes"]);
    expect(await history("hooli", "app")).toEqual(["0001_init", "0002_order_notes", "0003_positive_amounts", "0004_discounts", "seed"]);
    expect(await inTenantDb("hooli", "app", "select name from accounts")).toEqual([{ name: "owner" }]);
    expect(await history("hooli", "shop")).toEqual(["0001_init", "0002_sku", "seed"]);
    expect(await inTenantDb("hooli", "shop", "select title, sku from products")).toEqual([{ title: "gift card", sku: null }]);
  }, 600_000);

  it("an edited applied migration is refused at preview, naming it", async () => {
    const file = path.join(dir, "app", "0002_order_notes.sql");
    const original = await fs.readFile(file, "utf8");
    await fs.writeFile(file, original.replace("note text", "note varchar(200)"));
    const r = await runPulumi(tc, ["preview", "--stack", stack, "--non-interactive"]);
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/migration 0002_order_notes has been applied .* and its file has changed/);
    await fs.writeFile(file, original);
    const ok = await pulumi(["preview", "--diff"]);
    expect(ok.stdout).not.toMatch(/SchemaRollout|SchemaSet/);
  }, 300_000);
});
