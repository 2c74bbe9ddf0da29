/**
 * MariaDB tenant databases end to end: the real Pulumi CLI, real MariaDB servers, two real proxies
 * with their MySQL listeners. `pulumi up` makes acme's database and login and its route; mysql2
 * clients write through both proxies with the connection string from the `fleet` output while
 * the test edits acme's placement and runs `pulumi up`: shared → dedicated → another region →
 * shared, each a live move with binlog replication. The steps build on each other.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import * as mysql from "mysql2/promise";
import { setup } from "../../scripts/setup";
import { pulumiOk, runPulumi } from "../../scripts/lib/pulumi-cli";
import { backendDir, repoRoot } from "../../scripts/lib/pulumi-env";
import { nativeVerifier } from "../../proxy/mysql/native-password";
import type { Toolchain } from "../../scripts/lib/toolchain";
import { writeLocalStackConfig } from "../../scripts/lib/local-stack-config";
import { untilMigrationPhase } from "../fixtures/migration-phase";
import { Writers } from "../../scripts/lib/local-mysql-servers";
import { endpointsOf } from "../fixtures/kill-matrix/mysql";
import type { ChildProcess } from "node:child_process";
import { Client } from "pg";
import { listServerRecords, stateRoot } from "../../dynamic-providers/local-server/state";
import { resolveLayout } from "../../dynamic-providers/local-server/provider";
import { localRuntime } from "../../dynamic-providers/engines/local-runtime";
import type { LocalServerOutputs } from "../../dynamic-providers/local-server/types";

const stack = `e2e-mysql-${randomBytes(3).toString("hex")}`;
const stackFile = path.join(repoRoot, "stacks", `Pulumi.${stack}.yaml`);
let tc: Toolchain;

type Db = { engine: string; isolation: string; region: string };
const writeConfig = (acme: Db) =>
  writeLocalStackConfig(stackFile, {
    acme: { databases: { shop: acme } },
    globex: { databases: { app: { engine: "postgres", isolation: "shared", region: "eu-west" } } },
  });
const pulumi = (args: string[]) => pulumiOk(tc, [...args, "--stack", stack, "--non-interactive"]);

interface Outputs {
  catalogUrl: string;
  proxies: { endpoints: string[]; mysql?: { endpoints: string[] } };
  tenantDatabases: Record<string, Record<string, { server: string; isolation: string; status: string; epoch: number }>>;
  fleet: { proxies: Record<string, { endpoints: string[] }>; tenants: Record<string, Record<string, { connectionString: string }>> };
  servers: Record<string, { host: string; port: number; adminUser: string; adminPassword: string }>;
}
const outputs = async (): Promise<Outputs> => JSON.parse((await pulumi(["stack", "output", "--json", "--show-secrets"])).stdout);

beforeAll(async () => {
  tc = await setup({ quiet: true });
  await writeConfig({ engine: "mysql", isolation: "shared", region: "eu-west" });
  await pulumiOk(tc, ["stack", "init", stack, "--non-interactive"]);
});

afterAll(async () => {
  await writers?.stop().catch(() => undefined);
  if (tc) {
    await runPulumi(tc, ["destroy", "--yes", "--stack", stack, "--non-interactive"]);
    await runPulumi(tc, ["stack", "rm", "--yes", "--force", stack, "--non-interactive"]);
  }
  await fs.rm(stackFile, { force: true });
}, 300_000);

let writers: Writers;
let proxies: mysql.ConnectionOptions[];
let firstUrl: string;

async function rowsOn(server: string): Promise<Set<number>> {
  const s = (await outputs()).servers[server]!;
  const c = await mysql.createConnection({ host: s.host, port: s.port, user: s.adminUser, password: s.adminPassword });
  try {
    const [rows] = await c.query<mysql.RowDataPacket[]>("select id from shop__acme.items");
    return new Set(rows.map((r) => Number(r.id)));
  } finally {
    await c.end();
  }
}

describe("MariaDB tenant database through `pulumi up`", () => {
  it("up makes acme's database, login and route; the proxies serve MySQL; the connection string names both", async () => {
    await pulumi(["up", "--yes"]);
    const out = await outputs();
    expect(out.proxies.mysql?.endpoints).toHaveLength(2);
    expect(out.fleet.proxies.mysql?.endpoints).toEqual(out.proxies.mysql!.endpoints);
    expect(out.tenantDatabases.acme!.shop).toMatchObject({ server: "shared-mysql-eu-west", status: "ready", epoch: 1 });
    const url = (firstUrl = out.fleet.tenants.acme!.shop!.connectionString);
    expect(url).toMatch(/^mysql:\/\/shop__acme:/);
    proxies = endpointsOf(url);
    expect(proxies.map((p) => `${p.host}:${p.port}`)).toEqual(out.proxies.mysql!.endpoints);
    const c = await mysql.createConnection(proxies[0]!);
    await c.query("create table items (id bigint primary key, client varchar(64) not null, payload blob not null)");
    await c.query("insert into items select seq, 'before', 'x' from seq_1_to_2000");
    // Enough data that the initial copy takes a moment (the next test stops the target during it).
    await c.query("create table blobs (id bigint primary key, body text not null)");
    await c.query("insert into blobs select seq, repeat(md5(seq), 30) from seq_1_to_60000");
    await c.end();
    writers = new Writers(100_000);
    writers.start("proxy-1 plain", () => mysql.createConnection(proxies[0]!), writers.plain);
    writers.start("proxy-2 prepared", () => mysql.createConnection(proxies[1]!), writers.prepared);
    writers.start("proxy-1 txn", () => mysql.createConnection(proxies[0]!), writers.txn);
  }, 300_000);

  it("a target stopped during the initial copy fails `up` with a clear message; acme keeps serving from its server", async () => {
    await writeConfig({ engine: "mysql", isolation: "dedicated", region: "eu-west" });
    const catalogUrl = (await outputs()).catalogUrl;
    const catalogQuery = async <T>(sql: string): Promise<T[]> => {
      const c = new Client({ connectionString: catalogUrl });
      await c.connect();
      try {
        return (await c.query(sql)).rows as T[];
      } finally {
        await c.end();
      }
    };
    let child: ChildProcess | undefined;
    const up = runPulumi(tc, ["up", "--yes", "--stack", stack, "--non-interactive"], { onSpawn: (c) => (child = c) });
    await untilMigrationPhase(catalogUrl, "acme", "sync", ["preflight", "prepare"], async () => {
      child?.kill("SIGINT");
      await up;
    });
    const rec = (await listServerRecords(stateRoot(), stack)).find((r) => r.serverName === "dedicated-acme-shop-eu-west")!;
    await (await localRuntime("mysql")).stop(await resolveLayout(rec as LocalServerOutputs));
    const r = await up;
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/migration of acme\/shop from shared-mysql-eu-west to dedicated-acme-shop-eu-west failed during sync: .*acme\/shop still serves from shared-mysql-eu-west/s);
    const route = await catalogQuery<{ server: string; status: string }>("select server, status from tenantfleet.tenant_databases where tenant = 'acme' and database = 'shop'");
    expect(route[0]).toEqual({ server: "shared-mysql-eu-west", status: "failed" });
    await new Promise((res) => setTimeout(res, 500));
    expect(writers.errors).toEqual([]);
  }, 400_000);

  for (const [isolation, region, server, epoch] of [
    ["dedicated", "eu-west", "dedicated-acme-shop-eu-west", 2],
    ["dedicated", "us-east", "dedicated-acme-shop-us-east", 3],
    ["shared", "eu-west", "shared-mysql-eu-west", 4],
  ] as const) {
    it(`acme → ${isolation} in ${region}: \`pulumi up\` moves it live; no client error, nothing lost, the same connection string; preview then shows no changes`, async () => {
      await writeConfig({ engine: "mysql", isolation, region });
      const r = await pulumi(["up", "--yes"]);
      expect(r.stdout).toMatch(/cutover: queries held \d+ ms/);
      expect(r.stdout).toMatch(/migrating_sync \d+% \(\d+\/2 tables copied\)/);
      const out = await outputs();
      expect(out.tenantDatabases.acme!.shop).toMatchObject({ server, isolation, status: "ready", epoch });
      expect(out.fleet.tenants.acme!.shop!.connectionString).toBe(firstUrl);
      await new Promise((res) => setTimeout(res, 500));
      expect(writers.errors).toEqual([]);
      const acked = [...writers.acked];
      const have = await rowsOn(server);
      expect(acked.length).toBeGreaterThan(20);
      expect(acked.filter((id) => !have.has(id))).toEqual([]);
      expect([...have].filter((id) => id <= 2000)).toHaveLength(2000);
      const p = JSON.parse((await pulumi(["preview", "--json"])).stdout) as { steps: Array<{ op: string; urn: string }> };
      expect(p.steps.filter((s) => s.op !== "same").map((s) => `${s.op} ${s.urn.split("::").pop()}`)).toEqual([]);
    }, 400_000);
  }

  it("the state file holds neither the tenant's password nor its verifier", async () => {
    const password = decodeURIComponent(/:([^:@]+)@/.exec(firstUrl)![1]!);
    const state = await fs.readFile(path.join(backendDir(), ".pulumi", "stacks", "tenantfleet", `${stack}.json`), "utf8");
    expect(state).not.toContain(password);
    expect(state).not.toContain(nativeVerifier(password).slice(1));
  });
});
