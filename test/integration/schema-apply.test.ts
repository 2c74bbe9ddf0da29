/**
 * The per-engine schema appliers against real servers: what a failure leaves behind, what a rerun
 * does, and the history's checksums (README, "Schema migrations").
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { Client } from "pg";
import { LocalPgFleet, serverAccess, type PgServer } from "../../scripts/lib/local-pg-fleet";
import { MysqlServers } from "../../scripts/lib/local-mysql-servers";
import { pgSchema } from "../../dynamic-providers/engines/postgres/schema";
import { mysqlSchema } from "../../dynamic-providers/engines/mysql/schema";
import type { MigrationFile } from "../../dynamic-providers/schema-rollout/types";
import type { LocalServerOutputs } from "../../dynamic-providers/local-server/types";

const file = (name: string, sql: string): MigrationFile => ({ name, checksum: createHash("sha256").update(sql).digest("hex"), sql });

let fleet: LocalPgFleet;
let pg: PgServer;
let mysqls: MysqlServers;
let my: LocalServerOutputs;

beforeAll(async () => {
  fleet = await LocalPgFleet.create({ stack: "schema-apply" });
  pg = await fleet.server("pg");
  mysqls = new MysqlServers(fleet);
  my = await mysqls.server("my");
}, 240_000);

afterAll(async () => {
  await mysqls?.close();
  await fleet?.close();
}, 120_000);

describe("PostgreSQL: all pending files in one transaction, as the tenant's role", () => {
  const init = file("0001_init", "create table items (id bigint primary key, price numeric not null);\ninsert into items values (1, -3);");
  const query = async (sql: string) => {
    const c = new Client(pg.admin("app__acme"));
    await c.connect();
    try {
      return (await c.query(sql)).rows;
    } finally {
      await c.end();
    }
  };

  it("a file that fails rolls back every pending file of the run; a rerun after the fix applies them all", async () => {
    const t = await fleet.tenantDatabase(pg, { tenant: "acme", database: "app", role: "app__acme" });
    const target = { server: serverAccess(pg), backendDatabase: t.name, role: t.role };
    const bad = file("0002_positive", "alter table items add column note text;\nalter table items add constraint positive check (price >= 0);");
    await expect(pgSchema.apply(target, [init, bad])).rejects.toThrow(/^0002_positive: check constraint "positive" .* is violated by some row/);
    // Nothing of the run is left: not 0001's table, not 0002's first statement, no history.
    expect(await query("select to_regclass('items') as t, to_regclass('tenantfleet_schema_history') as h")).toEqual([{ t: null, h: null }]);

    const fixed = file("0002_positive", "update items set price = 0 where price < 0;\nalter table items add column note text;\nalter table items add constraint positive check (price >= 0);");
    expect(await pgSchema.apply(target, [init, fixed])).toEqual({ applied: ["0001_init", "0002_positive"], head: "0002_positive", seeded: false });
    expect(await query("select tableowner from pg_tables where tablename = 'items'")).toEqual([{ tableowner: "app__acme" }]);
    expect(await pgSchema.apply(target, [init, fixed])).toEqual({ applied: [], head: "0002_positive", seeded: false });
    // A file whose text changed after it ran is refused, naming it.
    await expect(pgSchema.apply(target, [init, file("0002_positive", "select 1")])).rejects.toThrow(/migration 0002_positive was applied with checksum .* but the file now has/);
  }, 120_000);

  it("the role cannot do what the tenant could not: a file touching another tenant's database objects fails", async () => {
    const other = await fleet.tenantDatabase(pg, { tenant: "globex", database: "app", role: "app__globex" });
    const target = { server: serverAccess(pg), backendDatabase: other.name, role: other.role };
    // pg_authid is readable by superusers only: run as the tenant's role, the migration is refused.
    await expect(pgSchema.apply(target, [file("0001_peek", "create table stolen as select rolname from pg_authid;")])).rejects.toThrow(/0001_peek: permission denied/);
  }, 60_000);
});

describe("MariaDB: statement by statement; a half-applied file is run again from its start", () => {
  it("the statements before the failing one stay applied, the file is not recorded; a re-runnable file converges on the rerun", async () => {
    const t = await mysqls.tenant({ tenant: "acme", database: "shop" }, my);
    const target = { server: MysqlServers.access(my), backendDatabase: t.name, role: t.user };
    const half = file("0001_products", "create table if not exists products (id bigint primary key);\nalter table products add column if not exists sku varchar(32);\ninsert into missing_table values (1);");
    await expect(mysqlSchema.apply(target, [half])).rejects.toThrow(/^0001_products: Table '.*missing_table' doesn't exist \(MySQL DDL commits statement by statement/);
    const state = async () =>
      mysqls.admin(my, async (c) => {
        const [cols] = (await c.query(`select column_name as c from information_schema.columns where table_schema = ? and table_name = 'products' order by ordinal_position`, [t.name])) as unknown as [{ c: string }[]];
        const [hist] = (await c.query(`select name from \`${t.name}\`.tenantfleet_schema_history`)) as unknown as [{ name: string }[]];
        return { columns: cols.map((r) => r.c), history: hist.map((r) => r.name) };
      });
    expect(await state()).toEqual({ columns: ["id", "sku"], history: [] });

    // The fix, re-runnable as the README asks: the rerun starts the file again and records it.
    const fixed = file("0001_products", "create table if not exists products (id bigint primary key);\nalter table products add column if not exists sku varchar(32);\ncreate table if not exists missing_table (id int);\ninsert into missing_table values (1);");
    expect(await mysqlSchema.apply(target, [fixed], { seed: file("seed", "insert into products (id, sku) values (1, 'gift');") })).toEqual({ applied: ["0001_products"], head: "0001_products", seeded: true });
    expect(await state()).toEqual({ columns: ["id", "sku"], history: ["0001_products", "seed"] });
    expect(await mysqlSchema.apply(target, [fixed], { seed: file("seed", "insert into products (id, sku) values (1, 'gift');") })).toEqual({ applied: [], head: "0001_products", seeded: false });
  }, 120_000);
});
