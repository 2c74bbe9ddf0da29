/**
 * The mission end to end: the real Pulumi CLI, real servers, two real proxies. Clients run against
 * acme (and globex) through both proxies while the test edits the stack config and runs
 * `pulumi up`: a first attempt whose target dies during the initial sync, then acme shared →
 * dedicated, back to shared within the rollback window (a switch to the copy kept current), →
 * dedicated again, → another region, → shared. The steps run in order and build on each other.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, promises as fs } from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import type { ChildProcess } from "node:child_process";
import { Client } from "pg";
import { setup } from "../../scripts/setup";
import { pulumiOk, runPulumi } from "../../scripts/lib/pulumi-cli";
import { backendDir, repoRoot } from "../../scripts/lib/pulumi-env";
import type { Toolchain } from "../../scripts/lib/toolchain";
import { LoadGenerator, compareIds, prepareLoadTables, storedIds } from "../../scripts/lib/load";
import { listServerRecords, stateRoot } from "../../dynamic-providers/local-server/state";
import { resolveLayout } from "../../dynamic-providers/local-server/provider";
import { localRuntime } from "../../dynamic-providers/engines/local-runtime";
import type { LocalServerOutputs } from "../../dynamic-providers/local-server/types";
import { writeLocalStackConfig } from "../../scripts/lib/local-stack-config";
import { untilMigrationPhase } from "../fixtures/migration-phase";
import { endpointsOf } from "../fixtures/kill-matrix/postgres";

// Every step twice: with the tenant databases in `session` pool mode, then in `transaction` mode
// (a pool of 2 per proxy under 4 load clients: sessions share server connections, and each move
// replaces the pool).
for (const mode of ["session", "transaction"] as const) describe(`${mode} pool mode`, () => {
  const stack = `e2e-mig-${mode[0]}-${randomBytes(3).toString("hex")}`;
  const stackFile = path.join(repoRoot, "stacks", `Pulumi.${stack}.yaml`);
  let tc: Toolchain;

  type Db = { engine: string; isolation: string; region: string };
  const tenants: Record<string, { databases: Record<string, Db> }> = {
    acme: { databases: { app: { engine: "postgres", isolation: "shared", region: "eu-west" } } },
    globex: { databases: { app: { engine: "postgres", isolation: "shared", region: "eu-west" } } },
    initech: { databases: { app: { engine: "postgres", isolation: "shared", region: "us-east" } } },
  };
  const pool = mode === "transaction" ? { pool: { mode: "transaction", size: 2 } } : {};

  async function writeConfig(acme: Db): Promise<void> {
    const all = { ...tenants, acme: { databases: { app: acme } } };
    await writeLocalStackConfig(stackFile, Object.fromEntries(Object.entries(all).map(([t, v]) => [t, { databases: { app: { ...v.databases.app, ...pool } } }])));
  }

  const pulumi = (args: string[]) => pulumiOk(tc, [...args, "--stack", stack, "--non-interactive"]);

  interface Outputs {
    proxies: { endpoints: string[]; adminEndpoints: string[] };
    tenantDatabases: Record<string, Record<string, { server: string; isolation: string; region: string; status: string; epoch: number }>>;
    fleet: { tenants: Record<string, Record<string, { connectionString: string }>> };
    servers: Record<string, { host: string; port: number; adminUser: string; adminPassword: string }>;
    catalogUrl: string;
  }

  async function outputs(): Promise<Outputs> {
    return JSON.parse((await pulumi(["stack", "output", "--json", "--show-secrets"])).stdout);
  }

  /** `pulumi preview` plans nothing: every step is "same". */
  async function expectNoChanges(): Promise<void> {
    const r = JSON.parse((await pulumi(["preview", "--json"])).stdout) as { steps: Array<{ op: string; urn: string }> };
    expect(r.steps.filter((s) => s.op !== "same").map((s) => `${s.op} ${s.urn.split("::").pop()}`)).toEqual([]);
  }

  async function catalogQuery<T>(sql: string, params: unknown[] = []): Promise<T[]> {
    const c = new Client({ connectionString: out0.catalogUrl });
    await c.connect();
    try {
      return (await c.query(sql, params)).rows as T[];
    } finally {
      await c.end();
    }
  }

  let out0: Outputs;
  let acmeLoad: LoadGenerator;
  let globexLoad: LoadGenerator;
  const upOutputs: string[] = [];

  beforeAll(async () => {
    tc = await setup({ quiet: true });
    await writeConfig(tenants.acme!.databases.app!);
    await pulumiOk(tc, ["stack", "init", stack, "--non-interactive"]);
  });

  afterAll(async () => {
    await acmeLoad?.stop().catch(() => undefined);
    await globexLoad?.stop().catch(() => undefined);
    if (tc) {
      await runPulumi(tc, ["destroy", "--yes", "--stack", stack, "--non-interactive"]);
      await runPulumi(tc, ["stack", "rm", "--yes", "--force", stack, "--non-interactive"]);
    }
    await fs.rm(stackFile, { force: true });
  });

  describe("tier changes through `pulumi up` with clients running", () => {
    it("up creates the catalog, two proxies and the tenant databases; clients connect through both proxies", async () => {
      await pulumi(["up", "--yes"]);
      out0 = await outputs();
      expect(out0.proxies.endpoints).toHaveLength(2);
      expect(out0.tenantDatabases.acme!.app!).toMatchObject({ server: "shared-postgres-eu-west", status: "ready", epoch: 1 });
      expect(out0.tenantDatabases.acme!.app!).not.toHaveProperty("connectionString"); // once, in `fleet`
      const acme = out0.fleet.tenants.acme!.app!;
      expect(endpointsOf(acme.connectionString).map((e) => `${e.host}:${e.port}`)).toEqual(out0.proxies.endpoints);
      await prepareLoadTables(endpointsOf(acme.connectionString)[0]!);
      await prepareLoadTables(endpointsOf(out0.fleet.tenants.globex!.app!.connectionString)[1]!);
      // Enough data that the initial sync takes a few seconds (the failure step stops the target during it).
      const c = new Client(endpointsOf(acme.connectionString)[1]!);
      await c.connect();
      await c.query("create table blobs (id bigserial primary key, body text not null)");
      await c.query("insert into blobs (body) select repeat(md5(g::text), 30) from generate_series(1, 100000) g");
      await c.end();
      acmeLoad = new LoadGenerator({ endpoints: endpointsOf(acme.connectionString), clients: 4 });
      globexLoad = new LoadGenerator({ endpoints: endpointsOf(out0.fleet.tenants.globex!.app!.connectionString), clients: 2, mix: ["insert", "read"] });
      acmeLoad.start();
      globexLoad.start();
    }, 300_000);

    it("a target stopped during the initial sync fails `up` with a clear message; acme keeps serving", async () => {
      await writeConfig({ engine: "postgres", isolation: "dedicated", region: "eu-west" });
      let child: ChildProcess | undefined;
      const up = runPulumi(tc, ["up", "--yes", "--stack", stack, "--non-interactive"], { onSpawn: (c) => (child = c) });
      // Wait for the sync phase in the catalog, then stop the new dedicated server under it.
      await untilMigrationPhase(out0.catalogUrl, "acme", "sync", ["preflight", "prepare"], async () => {
        child?.kill("SIGINT");
        await up;
      });
      const rec = (await listServerRecords(stateRoot(), stack)).find((r) => r.serverName === "dedicated-acme-app-eu-west")!;
      await (await localRuntime("postgres")).stop(await resolveLayout(rec as LocalServerOutputs));
      const r = await up;
      upOutputs.push(r.stdout + r.stderr);
      expect(r.code).not.toBe(0);
      expect(r.stdout + r.stderr).toMatch(/migration of acme\/app from shared-postgres-eu-west to dedicated-acme-app-eu-west failed during sync: .*acme\/app still serves from shared-postgres-eu-west/s);
      const route = await catalogQuery<{ server: string; status: string }>("select server, status from tenantfleet.tenant_databases where tenant = 'acme'");
      expect(route[0]).toEqual({ server: "shared-postgres-eu-west", status: "failed" });
      await sleep(500);
      expect(acmeLoad.report().errors).toEqual([]);
    }, 300_000);

    it("the next `up` (target back) moves acme shared → dedicated; preview then shows no changes", async () => {
      const r = await pulumi(["up", "--yes"]);
      upOutputs.push(r.stdout);
      expect(r.stdout).toMatch(/migrating_sync \d+%/);
      expect(r.stdout).toMatch(/cutover: queries held \d+ ms/);
      const out = await outputs();
      expect(out.tenantDatabases.acme!.app).toMatchObject({ server: "dedicated-acme-app-eu-west", isolation: "dedicated", status: "ready", epoch: 2 });
      await expectNoChanges();
      // The rows were counted after the switch, on snapshots pinned in the pause: the pause's own
      // steps (the record's timings) hold no count, and the verification says when it was pinned.
      const [m] = await catalogQuery<{ record: { verification: { ok: boolean; at?: string; tables: number }; timings: Record<string, number>; keptCurrentBy?: string } }>(
        "select record from tenantfleet.migrations where tenant = 'acme' and phase = 'done' order by migration_id desc limit 1",
      );
      expect(m!.record.verification).toMatchObject({ ok: true, at: expect.any(String) });
      expect(m!.record.verification.tables).toBeGreaterThanOrEqual(3);
      expect(Object.keys(m!.record.timings)).toEqual(expect.arrayContaining(["drain", "finalLag", "sequences", "verify", "switch", "resume", "verifyAfterSwitch"]));
      expect(m!.record.keptCurrentBy).toMatch(/^tf_rev_\d+$/);
    }, 300_000);

    it("within the rollback window the copy left on the shared server is kept current; `up` with the config back is a switch to it (no copy), and forward again", async () => {
      const out = await outputs();
      const shared = out.servers["shared-postgres-eu-west"]!;
      const copy = { host: shared.host, port: shared.port, user: shared.adminUser, password: shared.adminPassword, database: "app__acme" };
      // A write acknowledged after the cutover is on the old copy.
      await sleep(500);
      const last = acmeLoad.acknowledgedIds().at(-1)!;
      await expect.poll(async () => (await storedIds(copy)).includes(last), { timeout: 15_000 }).toBe(true);
      await writeConfig({ engine: "postgres", isolation: "shared", region: "eu-west" });
      const back = await pulumi(["up", "--yes"]);
      upOutputs.push(back.stdout);
      expect(back.stdout).toMatch(/method a switch to the copy kept current since the last move/);
      expect(back.stdout).toMatch(/moving back is a switch, no copy/);
      expect(back.stdout).not.toMatch(/migrating_sync/);
      const [route] = await catalogQuery<{ server: string; backend_database: string }>("select server, backend_database from tenantfleet.tenant_databases where tenant = 'acme'");
      expect(route).toEqual({ server: "shared-postgres-eu-west", backend_database: "app__acme" });
      await expectNoChanges();
      // And forward again: a new dedicated server, a full move.
      await writeConfig({ engine: "postgres", isolation: "dedicated", region: "eu-west" });
      const forward = await pulumi(["up", "--yes"]);
      upOutputs.push(forward.stdout);
      expect(forward.stdout).toMatch(/migrating_sync \d+%/);
      expect((await outputs()).tenantDatabases.acme!.app).toMatchObject({ server: "dedicated-acme-app-eu-west", epoch: 4 });
      await expectNoChanges();
    }, 600_000);

    it("preview --diff shows a region change as an update of acme's TenantDatabase with a readable plan, and nothing of other tenants", async () => {
      await writeConfig({ engine: "postgres", isolation: "dedicated", region: "us-east" });
      const r = await pulumi(["preview", "--diff"]);
      expect(r.stdout).toMatch(/~ pulumi-nodejs:dynamic\/tenantfleet:TenantDatabase: \(update\)[\s\S]*::acme-app\]/);
      expect(r.stdout).toMatch(/~ plan\s+: ".*" => "migrate dedicated-acme-app-eu-west \(dedicated, eu-west\) → dedicated-acme-app-us-east \(dedicated, us-east\): PostgreSQL logical replication, lag to zero, drain-and-switch in every proxy/);
      expect(r.stdout).toMatch(/~ serverName\s+: "dedicated-acme-app-eu-west" => "dedicated-acme-app-us-east"/);
      const steps = (JSON.parse((await pulumi(["preview", "--json"])).stdout) as { steps: Array<{ op: string; urn: string }> }).steps.filter((s) => s.op !== "same");
      expect(steps.map((s) => `${s.op} ${s.urn.split("::").pop()}`).sort()).toEqual(["create dedicated-acme-app-us-east", "create dedicated-acme-app-us-east", "delete dedicated-acme-app-eu-west", "delete dedicated-acme-app-eu-west", "update acme-app"].sort());
    }, 300_000);

    it("`up` moves acme to another region, then back to a shared server; preview shows no changes after each", async () => {
      upOutputs.push((await pulumi(["up", "--yes"])).stdout);
      expect((await outputs()).tenantDatabases.acme!.app).toMatchObject({ server: "dedicated-acme-app-us-east", epoch: 5 });
      await expectNoChanges();
      await writeConfig({ engine: "postgres", isolation: "shared", region: "us-east" });
      upOutputs.push((await pulumi(["up", "--yes"])).stdout);
      expect((await outputs()).tenantDatabases.acme!.app).toMatchObject({ server: "shared-postgres-us-east", isolation: "shared", epoch: 6 });
      await expectNoChanges();
    }, 600_000);

    it("clients saw zero errors; every acknowledged write is on the final server and nothing else; globex was never paused", async () => {
      await sleep(500);
      const acme = await acmeLoad.stop();
      const globex = await globexLoad.stop();
      expect(acme.errors).toEqual([]);
      expect(globex.errors).toEqual([]);
      expect(acme.acknowledged).toBeGreaterThan(100);
      const out = await outputs();
      const [route] = await catalogQuery<{ server: string; backend_database: string; epoch: string }>("select server, backend_database, epoch from tenantfleet.tenant_databases where tenant = 'acme'");
      expect(route!.server).toBe("shared-postgres-us-east");
      const s = out.servers["shared-postgres-us-east"]!;
      const stored = await storedIds({ host: s.host, port: s.port, user: s.adminUser, password: s.adminPassword, database: route!.backend_database });
      const { missing, extra } = compareIds(acmeLoad.acknowledgedIds(), stored);
      expect(missing).toEqual([]);
      expect(extra).toEqual([]);
      for (const admin of out.proxies.adminEndpoints) {
        const metrics = await (await fetch(`http://${admin}/metrics`)).text();
        expect(metrics).toMatch(/tenantfleet_proxy_pauses_total\{[^}]*tenant="acme"[^}]*\} [1-9]/);
        expect(metrics).not.toMatch(/tenantfleet_proxy_pauses_total\{[^}]*tenant="globex"[^}]*\} [1-9]/);
      }
      if (mode === "transaction") {
        // The stack config reached the catalog, and the proxies really pooled: 4 clients, ≤ 2 server connections each.
        const [pooled] = await catalogQuery<{ pool_mode: string; pool_size: number; server_budget: number }>("select pool_mode, pool_size, server_budget from tenantfleet.tenant_databases where tenant = 'acme'");
        expect(pooled).toEqual({ pool_mode: "transaction", pool_size: 2, server_budget: 45 });
        for (const admin of out.proxies.adminEndpoints) {
          const metrics = await (await fetch(`http://${admin}/metrics`)).text();
          const open = Number(/tenantfleet_proxy_pool_server_connections\{[^}]*tenant="acme"[^}]*\} (\d+)/.exec(metrics)?.[1]);
          expect(open).toBeLessThanOrEqual(2);
        }
      }
      // The connection string never changed.
      for (const t of ["acme", "globex", "initech"]) expect(out.fleet.tenants[t]!.app!.connectionString).toBe(out0.fleet.tenants[t]!.app!.connectionString);
      console.log(JSON.stringify({ acme: { acknowledged: acme.acknowledged, longestMs: acme.longest.ms, p99: acme.latencyMs.p99 }, globex: { acknowledged: globex.acknowledged, longestMs: globex.longest.ms } }));
    }, 120_000);

    it("`npm run status` shows acme ready on its server with its last migration", async () => {
      const { execFile } = await import("node:child_process");
      const text = await new Promise<string>((resolve, reject) =>
        execFile(process.execPath, ["--import", "tsx", path.join(repoRoot, "scripts/status.ts"), "acme", "--stack", stack], { cwd: repoRoot }, (err, stdout, stderr) => (err ? reject(new Error(stderr)) : resolve(stdout))),
      );
      expect(text).toMatch(/^TENANT\/DATABASE\s+ENGINE\s+ISOLATION\s+REGION\s+SERVER\s+STATUS/m);
      expect(text).toMatch(/acme\/app\s+postgres\s+shared\s+us-east\s+shared-postgres-us-east\s+ready\s+6\s+#\d+ dedicated-acme-app-us-east → shared-postgres-us-east \(replication\): [\d.]+ s, queries held \d+ ms/);
      expect(text).not.toContain("globex");
    }, 120_000);

    it("the state file holds no tenant password, admin password or catalog password in plain text", async () => {
      const out = await outputs();
      const secrets = [
        ...Object.values(out.fleet.tenants).flatMap((dbs) => Object.values(dbs).map((d) => decodeURIComponent(/:([^:@]+)@/.exec(d.connectionString)![1]!))),
        ...Object.values(out.servers).map((s) => s.adminPassword),
        decodeURIComponent(/:([^:@]+)@/.exec(out.catalogUrl)![1]!),
      ];
      expect(secrets.length).toBeGreaterThanOrEqual(6);
      const dir = path.join(backendDir(), ".pulumi", "stacks", "tenantfleet");
      const state = await fs.readFile(path.join(dir, `${stack}.json`), "utf8");
      for (const s of secrets) expect(state).not.toContain(s);
      expect(state).not.toMatch(/SCRAM-SHA-256\$/);
    });
  });

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
});
