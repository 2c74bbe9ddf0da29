/**
 * Existing stacks upgrade in place: a stack made by the code before the state format changed
 * (commit OLD, extracted with `git archive` beside this checkout, sharing its node_modules, its
 * backend and its server data) is previewed and updated by this checkout's code. Nothing is
 * created, replaced or deleted, no server restarts, no route moves, the data and the connection
 * strings stay, and each TenantDatabase's state shrinks to the new shape.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { Client } from "pg";
import { stateSizes, type StackExport } from "../../scripts/lib/stack-state";
import { listServerRecords, stateRoot } from "../../dynamic-providers/local-server/state";
import { resolveLayout } from "../../dynamic-providers/local-server/provider";
import { localRuntime } from "../../dynamic-providers/engines/local-runtime";
import type { LocalServerOutputs } from "../../dynamic-providers/local-server/types";
import { TENANT_DATABASE_TYPE } from "../../dynamic-providers/tenant-database";
import { EarlierCode } from "../fixtures/earlier-code";
import { endpointsOf } from "../fixtures/kill-matrix/postgres";

/** The last commit whose TenantDatabase stored every input in its outputs and its secrets twice. */
const OLD = "b97b66b";

const stack = `e2e-upgrade-${randomBytes(3).toString("hex")}`;
const tenants = {
  acme: { databases: { app: { engine: "postgres", isolation: "shared", region: "eu-west" } } },
  globex: { databases: { app: { engine: "postgres", isolation: "dedicated", region: "eu-west", pool: { mode: "transaction", size: 2 } } } },
};
const earlier = new EarlierCode(OLD, stack);
const stateDir = stateRoot();
const newCode = (args: string[]) => earlier.new(args);
const exported = async (): Promise<StackExport> => JSON.parse((await newCode(["stack", "export"])).stdout);
const tenantDatabases = (e: StackExport) => e.deployment.resources!.filter((r) => r.type === TENANT_DATABASE_TYPE);

/** Each server's process id: a restarted server gets another. */
async function serverPids(): Promise<Record<string, number | undefined>> {
  const runtime = await localRuntime("postgres");
  const out: Record<string, number | undefined> = {};
  for (const r of await listServerRecords(stateDir, stack)) out[r.serverName] = await runtime.runningPid(await resolveLayout(r as LocalServerOutputs));
  return out;
}

let before: StackExport;
let oldOutputs: { tenantDatabases: Record<string, Record<string, { connectionString: string; epoch: number; server: string }>> };
let pidsBefore: Record<string, unknown>;

beforeAll(async () => {
  await earlier.create(tenants);
  oldOutputs = await earlier.outputs("old");
  const c = new Client(endpointsOf(oldOutputs.tenantDatabases.acme!.app!.connectionString)[1]!);
  await c.connect();
  await c.query("create table kept (id int primary key, body text)");
  await c.query("insert into kept select g, md5(g::text) from generate_series(1, 1000) g");
  await c.end();
  before = await exported();
  pidsBefore = await serverPids();
  expect(Object.values(pidsBefore).filter((p) => typeof p === "number")).toHaveLength(3); // shared, dedicated, catalog
  await earlier.handOver();
}, 600_000);

afterAll(async () => {
  await earlier.destroy();
}, 300_000);

describe("a stack made by the earlier code, updated by this code", () => {
  it("the earlier code's state is the old shape (the test starts where users are)", () => {
    for (const r of tenantDatabases(before)) {
      expect(r.outputs).toHaveProperty("scramVerifier");
      expect(r.outputs).toHaveProperty("serverAdminPassword");
      expect(r.outputs).not.toHaveProperty("access");
    }
  });

  it("preview plans no create or replace, and deletes only the empty Tenant components: updates of TenantDatabases (state rewrites) and of the dynamic provider (no config)", async () => {
    const r = JSON.parse((await newCode(["preview", "--json"])).stdout) as { steps: Array<{ op: string; urn: string; type?: string }> };
    const formerTenant = (urn: string) => urn.endsWith("$tenantfleet:index:Tenant::acme") || urn.endsWith("$tenantfleet:index:Tenant::globex");
    const risky = r.steps.filter((s) => !["same", "update"].includes(s.op) && !(s.op === "delete" && formerTenant(s.urn)));
    expect(risky.map((s) => `${s.op} ${s.urn.split("::").pop()}`)).toEqual([]);
    expect(r.steps.filter((s) => s.op === "delete").map((s) => s.urn.split("::").pop()).sort()).toEqual(["acme", "globex"]);
    // The provider the engine configured with the whole stack config is now the program's, configured with nothing.
    expect(r.steps.filter((s) => s.urn.endsWith("::pulumi:providers:pulumi-nodejs::tenantfleet")).map((s) => s.op)).toEqual(["update"]);
    // The TenantDatabases are children of the Fleet now, found through their former parent.
    expect(r.steps.filter((s) => s.urn.endsWith("::tenantfleet:index:Fleet$pulumi-nodejs:dynamic/tenantfleet:TenantDatabase::acme-app"))).toHaveLength(1);
    // Both TenantDatabases hold the earlier shape: each is an update that rewrites it.
    expect(r.steps.filter((s) => s.op === "update" && s.urn.endsWith("::tenantfleet:index:Fleet$pulumi-nodejs:dynamic/tenantfleet:TenantDatabase::acme-app"))).toHaveLength(1);
  }, 300_000);

  it("up moves nothing: same epochs and servers, servers not restarted, the data and connection strings kept", async () => {
    await newCode(["up", "--yes", "--skip-preview"]);
    const out = JSON.parse((await newCode(["stack", "output", "--json", "--show-secrets"])).stdout) as {
      tenantDatabases: Record<string, Record<string, { epoch: number; server: string }>>;
      fleet: { tenants: Record<string, Record<string, { connectionString: string }>> };
    };
    for (const t of ["acme", "globex"]) {
      expect(out.tenantDatabases[t]!.app!.epoch).toBe(oldOutputs.tenantDatabases[t]!.app!.epoch);
      expect(out.tenantDatabases[t]!.app!.server).toBe(oldOutputs.tenantDatabases[t]!.app!.server);
      expect(out.fleet.tenants[t]!.app!.connectionString).toBe(oldOutputs.tenantDatabases[t]!.app!.connectionString);
    }
    expect(await serverPids()).toEqual(pidsBefore);
    const c = new Client(endpointsOf(out.fleet.tenants.acme!.app!.connectionString)[0]!);
    await c.connect();
    expect(Number((await c.query("select count(*) as n from kept")).rows[0].n)).toBe(1000);
    await c.end();
  }, 300_000);

  it("the state is the new shape and smaller; the next preview plans nothing", async () => {
    const after = await exported();
    for (const r of tenantDatabases(after)) {
      expect(r.outputs).toHaveProperty("access");
      expect(r.outputs).not.toHaveProperty("scramVerifier");
      expect(r.outputs).toHaveProperty("access.ciphertext"); // one secret: the credentials and the role's password, which the connection string held before
      expect(r.outputs).not.toHaveProperty("password");
      expect(r.inputs).not.toHaveProperty("serverAdminPassword");
      expect(r.outputs).not.toHaveProperty("connectionString");
      expect(r.outputs).not.toHaveProperty("proxyEndpoints");
      expect(((r as { dependencies?: string[] }).dependencies ?? []).some((d) => d.includes("LocalProxy"))).toBe(false);
    }
    expect(after.deployment.resources!.filter((r) => r.type === "tenantfleet:index:Tenant")).toEqual([]);
    const provider = after.deployment.resources!.find((r) => r.type === "pulumi:providers:pulumi-nodejs")!;
    expect(provider.urn).toMatch(/::pulumi:providers:pulumi-nodejs::tenantfleet$/);
    expect(JSON.stringify(provider)).not.toContain("tenantfleet:tenants");
    const [was, now] = [stateSizes(before).byType[TENANT_DATABASE_TYPE]!, stateSizes(after).byType[TENANT_DATABASE_TYPE]!];
    console.log(JSON.stringify({ tenantDatabaseBytes: { before: was.medianBytes, after: now.medianBytes }, totalBytes: { before: stateSizes(before).totalBytes, after: stateSizes(after).totalBytes } }));
    expect(now.medianBytes).toBeLessThan(was.medianBytes * 0.75);
    await newCode(["preview", "--expect-no-changes"]);
  }, 300_000);
});
