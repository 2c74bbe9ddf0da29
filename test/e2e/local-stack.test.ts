/**
 * End to end through the real Pulumi CLI on a temporary stack: real engine, real dynamic-provider
 * plugin, real servers. The steps run in order and build on each other.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, promises as fs } from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import { Client } from "pg";
import * as mysql from "mysql2/promise";
import Redis from "ioredis";
import { setup } from "../../scripts/setup";
import { pulumiOk, runPulumi } from "../../scripts/lib/pulumi-cli";
import { backendDir, repoRoot } from "../../scripts/lib/pulumi-env";
import type { Toolchain } from "../../scripts/lib/toolchain";
import { portOpen } from "../../dynamic-providers/local-server/process";
import { stateRoot } from "../../dynamic-providers/local-server/state";
import { resolveLayout } from "../../dynamic-providers/local-server/provider";
import { localRuntime } from "../../dynamic-providers/engines/local-runtime";
import type { LocalServerOutputs } from "../../dynamic-providers/local-server/types";
import { writeLocalStackConfig } from "../../scripts/lib/local-stack-config";

const stack = `e2e-${randomBytes(3).toString("hex")}`;
const stackFile = path.join(repoRoot, "stacks", `Pulumi.${stack}.yaml`);
const LOCAL_SERVER = "pulumi-nodejs:dynamic/tenantfleet:LocalServer";
let tc: Toolchain;

interface ServerOut {
  engine: "postgres" | "mysql" | "redis";
  region: string;
  role: string;
  tenantDatabase?: string;
  host: string;
  port: number;
  adminUser: string;
  adminPassword: string;
}

const tenants: Record<string, { databases: Record<string, { engine: string; isolation: string; region: string }> }> = {
  acme: {
    databases: {
      app: { engine: "postgres", isolation: "shared", region: "eu-west" },
      cache: { engine: "redis", isolation: "shared", region: "eu-west" },
    },
  },
  globex: { databases: { shop: { engine: "mysql", isolation: "shared", region: "us-east" } } },
  initech: { databases: { app: { engine: "postgres", isolation: "dedicated", region: "eu-west" } } },
};

/** Rewrite the config of the temporary stack, keeping the encryption salt Pulumi added. */
async function writeConfig(t: typeof tenants): Promise<void> {
  await writeLocalStackConfig(stackFile, t);
}

const pulumi = (args: string[]) => pulumiOk(tc, [...args, "--stack", stack, "--non-interactive"]);

async function outputs(showSecrets: boolean): Promise<{ servers: Record<string, ServerOut> }> {
  const r = await pulumi(["stack", "output", "--json", ...(showSecrets ? ["--show-secrets"] : [])]);
  return JSON.parse(r.stdout);
}

interface PreviewStep {
  op: string;
  urn: string;
  newState?: { type: string };
  oldState?: { type: string };
}

async function preview(): Promise<{ steps: PreviewStep[]; changeSummary: Record<string, number> }> {
  const r = await pulumi(["preview", "--json"]);
  return JSON.parse(r.stdout);
}

async function localServerIds(): Promise<Map<string, string>> {
  const r = await pulumi(["stack", "export"]);
  const resources = JSON.parse(r.stdout).deployment.resources as Array<{ urn: string; type: string; id: string }>;
  return new Map(resources.filter((x) => x.type === LOCAL_SERVER).map((x) => [x.urn.split("::").pop()!, x.id]));
}

async function query(s: ServerOut): Promise<string> {
  switch (s.engine) {
    case "postgres": {
      const c = new Client({ host: s.host, port: s.port, user: s.adminUser, password: s.adminPassword, database: "postgres" });
      await c.connect();
      const r = await c.query("SHOW wal_level");
      await c.end();
      return `wal_level=${r.rows[0].wal_level}`;
    }
    case "mysql": {
      const c = await mysql.createConnection({ host: s.host, port: s.port, user: s.adminUser, password: s.adminPassword });
      const [rows] = await c.query("SELECT @@binlog_format AS f");
      await c.end();
      return `binlog_format=${(rows as Array<{ f: string }>)[0]!.f}`;
    }
    case "redis": {
      const r = new Redis({ host: s.host, port: s.port, username: s.adminUser, password: s.adminPassword, lazyConnect: true });
      await r.connect();
      const pong = await r.ping();
      await r.quit();
      return pong;
    }
  }
}

const expectedAnswer = { postgres: "wal_level=logical", mysql: "binlog_format=ROW", redis: "PONG" };

beforeAll(async () => {
  tc = await setup({ quiet: true });
  await writeConfig(tenants);
  await pulumiOk(tc, ["stack", "init", stack, "--non-interactive"]);
});

afterAll(async () => {
  if (!tc) return;
  await runPulumi(tc, ["destroy", "--yes", "--stack", stack, "--non-interactive"]);
  await runPulumi(tc, ["stack", "rm", "--yes", "--force", "--stack", stack, "--non-interactive"]);
  await fs.rm(stackFile, { force: true });
  await fs.rm(path.join(stateRoot(), stack), { recursive: true, force: true });
});

describe(`local stack through the real CLI (${stack})`, () => {
  const passwords: string[] = [];
  let serverDirs: string[] = [];
  let ports: number[] = [];

  it("pulumi up creates every server, and each answers its engine's client", async () => {
    await pulumi(["up", "--yes", "--skip-preview"]);
    const { servers } = await outputs(true);
    expect(Object.keys(servers).sort()).toEqual([
      "dedicated-initech-app-eu-west",
      "shared-mysql-us-east",
      "shared-postgres-eu-west",
      "shared-redis-eu-west",
      "shared-redis-eu-west--acme-cache",
    ]);
    // Redis: the shared host's own instance, and acme's cache's instance on it.
    expect(servers["shared-redis-eu-west--acme-cache"]).toMatchObject({ engine: "redis", role: "shared", tenantDatabase: "acme/cache", region: "eu-west" });
    expect(servers["dedicated-initech-app-eu-west"]).toMatchObject({ engine: "postgres", role: "dedicated", tenantDatabase: "initech/app", region: "eu-west" });
    for (const s of Object.values(servers)) {
      expect(await query(s)).toBe(expectedAnswer[s.engine]);
      passwords.push(s.adminPassword);
    }
  });

  it("stack outputs keep admin passwords secret and everything else plain", async () => {
    const { servers } = await outputs(false);
    for (const s of Object.values(servers)) {
      expect(s.adminPassword).toBe("[secret]");
      expect(s.host).toBe("127.0.0.1");
      expect(typeof s.port).toBe("number");
    }
  });

  it("adding a dedicated tenant database makes preview plan exactly one new server", async () => {
    await writeConfig({ ...tenants, hooli: { databases: { app: { engine: "postgres", isolation: "dedicated", region: "us-east" } } } });
    const p = await preview();
    const creates = p.steps.filter((s) => s.op === "create" && s.newState?.type === LOCAL_SERVER).map((s) => s.urn.split("::").pop());
    expect(creates).toEqual(["dedicated-hooli-app-us-east"]);
    expect(p.steps.filter((s) => !["same", "create"].includes(s.op))).toEqual([]);
  });

  it("pulumi up then creates only that server and leaves the others untouched", async () => {
    const before = await localServerIds();
    await pulumi(["up", "--yes", "--skip-preview"]);
    const after = await localServerIds();
    expect([...after.keys()].filter((k) => !before.has(k))).toEqual(["dedicated-hooli-app-us-east"]);
    for (const [name, id] of before) expect(after.get(name)).toBe(id);
    const { servers } = await outputs(true);
    const hooli = servers["dedicated-hooli-app-us-east"]!;
    expect(await query(hooli)).toBe("wal_level=logical");
    passwords.push(hooli.adminPassword);
  });

  it("a second preview shows no changes", async () => {
    const p = await preview();
    expect(Object.keys(p.changeSummary)).toEqual(["same"]);
  });

  it("a server whose process died shows as an update in preview, and up restarts it", async () => {
    const r = await pulumi(["stack", "export", "--show-secrets"]);
    const res = (JSON.parse(r.stdout).deployment.resources as Array<{ type: string; urn: string; outputs: LocalServerOutputs }>).find(
      (x) => x.type === LOCAL_SERVER && x.urn.endsWith("::shared-mysql-us-east"),
    )!;
    const o = res.outputs;
    await (await localRuntime(o.engine)).stop(await resolveLayout(o));
    expect(await portOpen(o.port)).toBe(false);

    const p = await preview();
    expect(p.steps.filter((s) => s.op !== "same").map((s) => [s.op, s.urn.split("::").pop()])).toEqual([["update", "shared-mysql-us-east"]]);
    await pulumi(["up", "--yes", "--skip-preview"]);
    const { servers } = await outputs(true);
    expect(servers["shared-mysql-us-east"]!.port).toBe(o.port);
    expect(await query(servers["shared-mysql-us-east"]!)).toBe("binlog_format=ROW");
    expect(Object.keys((await preview()).changeSummary)).toEqual(["same"]);
  }, 300_000); // three Pulumi runs and a server restart: over 120 s when the other e2e files run beside it

  it("the state file holds no admin password in plain text", async () => {
    const stateFile = path.join(backendDir(), ".pulumi", "stacks", "tenantfleet", `${stack}.json`);
    const state = await fs.readFile(stateFile, "utf8");
    expect(passwords.length).toBe(6);
    for (const pw of passwords) expect(state).not.toContain(pw);
    expect(state).toContain("ciphertext");
  });

  it("a bad config fails the preview before touching anything, naming tenant, database and field", async () => {
    await writeConfig({ ...tenants, hooli: { databases: { app: { engine: "oracle", isolation: "dedicated", region: "us-east" } } } });
    const r = await runPulumi(tc, ["preview", "--stack", stack, "--non-interactive"]);
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toContain(
      'tenantfleet:tenants.hooli.databases.app.engine: tenant "hooli", database "app": engine must be one of',
    );
    await writeConfig({ ...tenants, hooli: { databases: { app: { engine: "postgres", isolation: "dedicated", region: "us-east" } } } });
  });

  it("pulumi destroy leaves no server or proxy process and no data dir", async () => {
    const { servers, proxies } = (await outputs(false)) as unknown as { servers: Record<string, ServerOut>; proxies: { endpoints: string[]; adminEndpoints: string[] } };
    ports = [...Object.values(servers).map((s) => s.port), ...[...proxies.endpoints, ...proxies.adminEndpoints].map((e) => Number(e.split(":")[1]))];
    const root = path.join(stateRoot(), stack, "servers");
    serverDirs = (await fs.readdir(root)).map((d) => path.join(root, d));
    expect(serverDirs.length).toBe(7); // six tenant servers (a Redis host and its instance among them) and the control catalog's
    expect(ports.length).toBe(10);
    await pulumi(["destroy", "--yes", "--skip-preview"]);
    for (const d of serverDirs) expect(existsSync(d)).toBe(false);
    for (const p of ports) expect(await portOpen(p)).toBe(false);
    expect(await fs.readdir(root)).toEqual([]);
    expect(await fs.readdir(path.join(stateRoot(), stack, "proxies"))).toEqual([]);
  });
});
