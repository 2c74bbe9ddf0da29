/**
 * A stack made before MariaDB tenant databases had a TenantDatabase (commit OLD: the MySQL proxy
 * existed, but a `mysql` database was only placed on a server), updated by this checkout's code.
 * The first `up` starts managing the MariaDB database where it is: it creates its TenantDatabase
 * (the database, the login, the route) on the same server, turns the proxies' MySQL listener on
 * (each proxy restarts once, on the same ports) and touches nothing else: no server is created,
 * replaced or restarted, the PostgreSQL database keeps its route and connection string, and data
 * already in the MariaDB database stays.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import * as mysql from "mysql2/promise";
import { EarlierCode, type UpgradeOutputs as Outputs } from "../fixtures/earlier-code";

/** The last commit where a `mysql` tenant database had no TenantDatabase. */
const OLD = "6e912af";

const stack = `e2e-upmy-${randomBytes(3).toString("hex")}`;
const tenants = {
  acme: { databases: { app: { engine: "postgres", isolation: "shared", region: "eu-west" } } },
  globex: { databases: { shop: { engine: "mysql", isolation: "shared", region: "eu-west" } } },
};
const earlier = new EarlierCode(OLD, stack);
const newCode = (args: string[]) => earlier.new(args);

let oldOutputs: Outputs;

const mariadb = (o: Outputs) => o.servers["shared-mysql-eu-west"]!;

beforeAll(async () => {
  await earlier.create(tenants);
  oldOutputs = await earlier.outputs<Outputs>("old");
  // What a user of the earlier code did by hand: the tenant's database on its server, with data.
  const s = mariadb(oldOutputs);
  const c = await mysql.createConnection({ host: s.host, port: s.port, user: s.adminUser, password: s.adminPassword });
  await c.query("create database shop__globex");
  await c.query("create table shop__globex.kept (id int primary key, body text)");
  await c.query("insert into shop__globex.kept select seq, md5(seq) from shop__globex.seq_1_to_1000");
  await c.end();
  await earlier.handOver();
}, 600_000);

afterAll(() => earlier.destroy(), 300_000);

describe("a stack with a MariaDB tenant database from before it was managed, updated by this code", () => {
  it("the earlier code placed it only: no MySQL endpoint, no connection string", () => {
    expect(oldOutputs.fleet.proxies.mysql).toBeUndefined();
    expect(oldOutputs.fleet.tenants.globex!.shop!.connectionString).toBeUndefined();
  });

  it("preview plans its TenantDatabase and the proxies' MySQL listener, nothing else", async () => {
    const changes = await earlier.plannedChanges();
    // The catalog's schema gains the proxies' MySQL port (v5): an update in place, adding a column.
    expect(changes).toEqual(["create globex-shop", "update control-catalog", "update proxy-1", "update proxy-2"]);
  });

  it("up starts managing it where it is: same server, the data kept, served through the proxies; the PostgreSQL database untouched", async () => {
    await newCode(["up", "--yes", "--skip-preview"]);
    const out = await earlier.outputs<Outputs>("new");
    expect(out.tenantDatabases.globex!.shop).toMatchObject({ server: "shared-mysql-eu-west", status: "ready", epoch: 1 });
    expect(out.tenantDatabases.acme!.app).toEqual(oldOutputs.tenantDatabases.acme!.app);
    expect(out.fleet.tenants.acme!.app!.connectionString).toBe(oldOutputs.fleet.tenants.acme!.app!.connectionString);
    expect(mariadb(out).port).toBe(mariadb(oldOutputs).port);
    const url = /^mysql:\/\/([^:]+):([^@]+)@([^:,]+):(\d+)[^/]*\/(.+)$/.exec(out.fleet.tenants.globex!.shop!.connectionString!)!;
    const c = await mysql.createConnection({ host: url[3], port: Number(url[4]), user: decodeURIComponent(url[1]!), password: decodeURIComponent(url[2]!), database: decodeURIComponent(url[5]!) });
    const [rows] = await c.query<mysql.RowDataPacket[]>("select count(*) as n from kept");
    await c.end();
    expect(Number(rows[0]!.n)).toBe(1000);
    expect(await earlier.plannedChanges()).toEqual([]);
  }, 300_000);
});
