/**
 * LocalServer's provider against real PostgreSQL, MariaDB and Redis processes, checked with the
 * real client libraries: create → connect → settings migrations need → kill → diff/read notice →
 * update repairs on the same port with the data intact → delete leaves nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Client } from "pg";
import * as mysql from "mysql2/promise";
import Redis from "ioredis";
import { provider } from "../../dynamic-providers/local-server/provider";
import { localRuntime } from "../../dynamic-providers/engines/local-runtime";
import { resolveLayout } from "../../dynamic-providers/local-server/provider";
import { pidAlive, portOpen } from "../../dynamic-providers/local-server/process";
import type { LocalServerInputs, LocalServerOutputs } from "../../dynamic-providers/local-server/types";
import type { Engine } from "../../dynamic-providers/engines";

const root = mkdtempSync(path.join(os.tmpdir(), "tf-it-"));
// Servers run as unprivileged accounts when we are root: like a real state dir, ours is traversable.
chmodSync(root, 0o755);
const savedStateDir = process.env.TENANTFLEET_STATE_DIR;
process.env.TENANTFLEET_STATE_DIR = root;
const created: LocalServerOutputs[] = [];

afterAll(async () => {
  for (const o of created) await provider.delete!(`${o.stack}/${o.dirName}`, o).catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
  if (savedStateDir === undefined) delete process.env.TENANTFLEET_STATE_DIR;
  else process.env.TENANTFLEET_STATE_DIR = savedStateDir;
});

function inputs(engine: Engine): LocalServerInputs {
  return { engine, serverName: `it-${engine}`, stack: "it", region: "eu-west", role: "shared" };
}

async function create(engine: Engine): Promise<LocalServerOutputs> {
  const checked = await provider.check!({}, inputs(engine));
  expect(checked.failures ?? []).toEqual([]);
  const r = await provider.create(checked.inputs as LocalServerInputs);
  created.push(r.outs);
  return r.outs as LocalServerOutputs;
}

/** One admin connection, always closed, even when the query fails. */
async function withPg<T>(o: LocalServerOutputs, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ host: o.host, port: o.port, user: o.adminUser, password: o.adminPassword, database: "postgres" });
  c.on("error", () => undefined); // a server stopping under an idle client is not a test failure
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Write a marker through the engine's own client, read it back: the server really serves. */
const clients: Record<"postgres" | "mysql" | "redis", {
  write(o: LocalServerOutputs, value: string): Promise<void>;
  read(o: LocalServerOutputs): Promise<string | undefined>;
  settings(o: LocalServerOutputs): Promise<Record<string, string>>;
  wrongPassword(o: LocalServerOutputs): Promise<unknown>;
}> = {
  postgres: {
    write: (o, value) =>
      withPg(o, async (c) => {
        await c.query("CREATE TABLE IF NOT EXISTS marker (v text)");
        await c.query("INSERT INTO marker VALUES ($1)", [value]);
      }),
    read: (o) => withPg(o, async (c) => (await c.query("SELECT v FROM marker")).rows[0]?.v),
    settings: (o) =>
      withPg(o, async (c) => {
        const out: Record<string, string> = {};
        for (const k of ["wal_level", "password_encryption", "max_replication_slots", "max_wal_senders"]) {
          out[k] = (await c.query(`SHOW ${k}`)).rows[0][k];
        }
        return out;
      }),
    wrongPassword: (o) => withPg({ ...o, adminPassword: "wrong" }, async () => undefined),
  },
  mysql: {
    async write(o, value) {
      const c = await mysql.createConnection({ host: o.host, port: o.port, user: o.adminUser, password: o.adminPassword });
      await c.query("CREATE DATABASE IF NOT EXISTS it");
      await c.query("CREATE TABLE IF NOT EXISTS it.marker (v text)");
      await c.query("INSERT INTO it.marker VALUES (?)", [value]);
      await c.end();
    },
    async read(o) {
      const c = await mysql.createConnection({ host: o.host, port: o.port, user: o.adminUser, password: o.adminPassword });
      const [rows] = await c.query("SELECT v FROM it.marker");
      await c.end();
      return (rows as Array<{ v: string }>)[0]?.v;
    },
    async settings(o) {
      const c = await mysql.createConnection({ host: o.host, port: o.port, user: o.adminUser, password: o.adminPassword });
      const [rows] = await c.query("SELECT @@log_bin AS log_bin, @@binlog_format AS binlog_format, @@gtid_strict_mode AS gtid_strict_mode, @@server_id AS server_id");
      await c.end();
      const r = (rows as Array<Record<string, unknown>>)[0]!;
      return Object.fromEntries(Object.entries(r).map(([k, v]) => [k, String(v)]));
    },
    wrongPassword: (o) => mysql.createConnection({ host: o.host, port: o.port, user: o.adminUser, password: "wrong" }),
  },
  redis: {
    async write(o, value) {
      const r = new Redis({ host: o.host, port: o.port, username: o.adminUser, password: o.adminPassword, lazyConnect: true });
      await r.connect();
      await r.set("marker", value);
      await r.quit();
    },
    async read(o) {
      const r = new Redis({ host: o.host, port: o.port, username: o.adminUser, password: o.adminPassword, lazyConnect: true });
      await r.connect();
      const v = await r.get("marker");
      await r.quit();
      return v ?? undefined;
    },
    async settings(o) {
      const r = new Redis({ host: o.host, port: o.port, username: o.adminUser, password: o.adminPassword, lazyConnect: true });
      await r.connect();
      const aof = (await r.config("GET", "appendonly")) as string[];
      const users = (await r.acl("LIST")) as string[];
      await r.quit();
      return { appendonly: aof[1]!, defaultUser: users.find((u) => u.startsWith("user default"))! };
    },
    async wrongPassword(o) {
      const r = new Redis({ host: o.host, port: o.port, username: o.adminUser, password: "wrong", lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      r.on("error", () => undefined); // the rejection below is what we assert
      try {
        await r.connect();
      } finally {
        r.disconnect();
      }
    },
  },
};

const expectedSettings: Record<"postgres" | "mysql" | "redis", (o: LocalServerOutputs) => Record<string, unknown>> = {
  postgres: () => ({ wal_level: "logical", password_encryption: "scram-sha-256", max_replication_slots: "32", max_wal_senders: "32" }),
  mysql: (o) => ({ log_bin: "1", binlog_format: "ROW", gtid_strict_mode: "1", server_id: String(o.serverId) }),
  redis: () => ({ appendonly: "yes", defaultUser: expect.stringMatching(/^user default off/) }),
};

describe.each(["postgres", "mysql", "redis"] as const)("LocalServer %s", (engine) => {
  let o: LocalServerOutputs;
  const c = clients[engine];

  beforeAll(async () => {
    o = await create(engine);
  });

  it("serves the admin account with the generated password, and refuses a wrong one", async () => {
    expect(o.adminPassword.length).toBeGreaterThanOrEqual(24);
    await c.write(o, "before-restart");
    expect(await c.read(o)).toBe("before-restart");
    await expect(c.wrongPassword(o)).rejects.toThrow();
  });

  it("is configured for native replication", async () => {
    expect(await c.settings(o)).toEqual(expectedSettings[engine](o));
  });

  it("runs as the engine's unprivileged account when we are root", async () => {
    const rt = await localRuntime(engine);
    const pid = await rt.runningPid(await resolveLayout(o));
    const uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
    if (process.getuid?.() === 0) expect(uid).not.toBe(0);
    else expect(uid).toBe(process.getuid?.());
  });

  it("a dead process is noticed by read and diff, and update restarts it on the same port with its data", async () => {
    const rt = await localRuntime(engine);
    const l = await resolveLayout(o);
    await rt.stop(l);
    expect((await provider.read!(`it/${o.dirName}`, o)).props).toMatchObject({ state: "stopped" });
    expect(await provider.diff!(`it/${o.dirName}`, o, inputs(engine))).toMatchObject({ changes: true, replaces: [] });

    const updated = (await provider.update!(`it/${o.dirName}`, o, inputs(engine))).outs as LocalServerOutputs;
    expect(updated).toMatchObject({ port: o.port, state: "running", adminPassword: o.adminPassword });
    expect(await c.read(updated)).toBe("before-restart");
    expect(await provider.diff!(`it/${o.dirName}`, updated, inputs(engine))).toMatchObject({ changes: false });
  });

  it("delete stops the process and removes every file", async () => {
    const rt = await localRuntime(engine);
    const l = await resolveLayout(o);
    const pid = await rt.runningPid(l);
    expect(pidAlive(pid)).toBe(true);
    await provider.delete!(`it/${o.dirName}`, o);
    created.splice(created.indexOf(o), 1);
    expect(pidAlive(pid)).toBe(false);
    expect(await portOpen(o.port)).toBe(false);
    expect(existsSync(l.dir)).toBe(false);
  });
});

describe("LocalServer check", () => {
  it("rejects an unknown engine naming the field", async () => {
    const r = await provider.check!({}, { ...inputs("postgres"), engine: "oracle" });
    expect(r.failures).toEqual([{ property: "engine", reason: expect.stringContaining('got "oracle"') }]);
  });

  it("rejects mongodb with a clear message when no mongod is installed", async () => {
    const r = await provider.check!({}, inputs("mongodb"));
    expect(r.failures).toEqual([{ property: "engine", reason: expect.stringContaining("needs a mongod binary on PATH") }]);
  });
});

it("server folders live under the state dir given by TENANTFLEET_STATE_DIR", async () => {
  const o = await create("redis");
  expect(o.dir.startsWith(path.join(root, "it", "servers", "it-redis-"))).toBe(true);
  expect(JSON.parse(readFileSync(path.join(o.dir, "server.json"), "utf8"))).not.toHaveProperty("adminPassword");
});

it("npm run servers:restart's logic brings stopped servers back on their ports with their data", async () => {
  const { restartServers } = await import("../../dynamic-providers/local-server/restart");
  const pg = await create("postgres");
  await clients.postgres.write(pg, "survives-reboot");
  const rt = await localRuntime("postgres");
  await rt.stop(await resolveLayout(pg));
  expect(await portOpen(pg.port)).toBe(false);

  const results = await restartServers("it");
  expect(results.find((r) => r.serverName === "it-postgres")).toMatchObject({ outcome: "started", port: pg.port });
  expect(await clients.postgres.read(pg)).toBe("survives-reboot");
  // A second run finds it running and leaves it alone.
  expect((await restartServers("it")).find((r) => r.serverName === "it-postgres")).toMatchObject({ outcome: "already running" });
});

it("a server whose data dir was removed is reported missing and re-initialised on the same port with the same admin password", async () => {
  const o = await create("postgres");
  await clients.postgres.write(o, "lost-with-the-data-dir");
  const l = await resolveLayout(o);
  await (await localRuntime("postgres")).stop(l);
  rmSync(l.dataDir, { recursive: true, force: true });

  expect((await provider.read!(`it/${o.dirName}`, o)).props).toMatchObject({ state: "missing" });
  expect(await provider.diff!(`it/${o.dirName}`, o, inputs("postgres"))).toMatchObject({ changes: true, replaces: [] });
  const updated = (await provider.update!(`it/${o.dirName}`, o, inputs("postgres"))).outs as LocalServerOutputs;
  expect(updated).toMatchObject({ port: o.port, state: "running", adminPassword: o.adminPassword });
  await expect(clients.postgres.read(updated)).rejects.toThrow(/relation "marker" does not exist/);
  await clients.postgres.write(updated, "fresh");
  expect(await clients.postgres.read(updated)).toBe("fresh");
});
