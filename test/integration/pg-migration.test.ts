/**
 * The PostgreSQL migration engine against real servers and two real proxy processes, without
 * Pulumi (the e2e test drives the same code through `pulumi up`): live moves with load running,
 * a move back to a server that keeps a fenced copy, the backup-and-restore fallback, and a target
 * that dies during the initial sync.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { spawn } from "node:child_process";
import * as path from "node:path";
import { Client } from "pg";
import { LocalPgFleet, serverAccess, type PgServer, type ProxyProcess, type TenantDb } from "../../scripts/lib/local-pg-fleet";
import { Coordinator } from "../../proxy/catalog/coordinator";
import { stopWayBack } from "../../dynamic-providers/engines/postgres/way-back";
import { LoadGenerator, compareIds, prepareLoadTables, storedIds } from "../../scripts/lib/load";
import { MigrationError, type MigrationRecord } from "../../dynamic-providers/migration/orchestrator";
import type { TenantDbKey } from "../../proxy/catalog/routes";

const realQuery = Client.prototype.query;
const realPause = Coordinator.prototype.pause;
const realResume = Coordinator.prototype.resume;

let fleet: LocalPgFleet;
let a: PgServer;
let b: PgServer;
let p1: ProxyProcess;
let p2: ProxyProcess;

const admin = <T>(s: PgServer, db: string, fn: (c: Client) => Promise<T>): Promise<T> => fleet.withAdmin(s, db, fn);

function endpoints(t: TenantDb) {
  return [p1, p2].map((p) => ({ host: "127.0.0.1", port: p.port, user: t.role, password: t.password, database: t.name }));
}

/** Move `key` from `from` to `to` with the real engine and orchestrator; every progress line kept. */
async function move(key: TenantDbKey, from: PgServer, to: PgServer, opts: { onLog?: (m: string) => void } = {}): Promise<{ record: MigrationRecord; logs: string[] }> {
  const logs: string[] = [];
  const record = await fleet.migrate(key, from, to, (m) => {
    logs.push(m);
    opts.onLog?.(m);
  });
  return { record, logs };
}

async function replicationLeftovers(s: PgServer): Promise<{ slots: number; roles: number }> {
  return admin(s, "postgres", async (c) => ({
    slots: (await c.query("select 1 from pg_replication_slots")).rowCount ?? 0,
    roles: (await c.query("select 1 from pg_roles where rolname like 'tf\\_repl\\_%' or rolname like 'tf\\_rev\\_%'")).rowCount ?? 0,
  }));
}

beforeAll(async () => {
  fleet = await LocalPgFleet.create({ stack: "migration" });
  a = await fleet.server("shared-a");
  b = await fleet.server("dedicated-b");
  p1 = await fleet.startProxy("proxy-1");
  p2 = await fleet.startProxy("proxy-2");
});

afterAll(async () => {
  await fleet?.close();
});

describe("PostgreSQL migration with live load through two proxies", () => {
  const key = { tenant: "acme", database: "app" };
  let acme: TenantDb;

  beforeAll(async () => {
    acme = await fleet.tenantDatabase(a, { ...key, role: "app__acme" });
    await prepareLoadTables(endpoints(acme)[0]!);
    const c = new Client(endpoints(acme)[0]!);
    await c.connect();
    // Some bulk data with its own sequence, so the initial copy has work to do.
    await c.query("create table documents (id bigserial primary key, body text not null)");
    await c.query("insert into documents (body) select repeat(md5(g::text), 8) from generate_series(1, 50000) g");
    await c.end();
  });

  it("moves acme shared → dedicated and back while clients run: zero errors, every acknowledged row on the final server, nothing extra; the way back is a switch to the old copy, kept current since", async () => {
    // Every statement the migration sends, and when the pause was held: nothing that reads every
    // row may run inside it (the row counts come after the switch, on snapshots pinned in it).
    const sent: { at: number; text: string; user: string }[] = [];
    const held: { from: number; to: number }[] = [];
    const query = vi.spyOn(Client.prototype, "query").mockImplementation(function (this: Client, ...args: unknown[]) {
      const q = args[0] as string | { text?: string };
      sent.push({ at: performance.now(), text: typeof q === "string" ? q : (q?.text ?? ""), user: String((this as unknown as { user?: string }).user) });
      return realQuery.apply(this, args as never);
    } as never);
    const pause = vi.spyOn(Coordinator.prototype, "pause").mockImplementation(async function (this: Coordinator, ...args) {
      const r = await realPause.apply(this, args);
      held.push({ from: performance.now(), to: Infinity });
      return r;
    });
    const resume = vi.spyOn(Coordinator.prototype, "resume").mockImplementation(async function (this: Coordinator, ...args) {
      const last = held[held.length - 1];
      if (last && last.to === Infinity) last.to = performance.now();
      return realResume.apply(this, args);
    });
    const load = new LoadGenerator({ endpoints: endpoints(acme), clients: 6 });
    const other = await fleet.tenantDatabase(a, { tenant: "globex", database: "app", role: "app__globex" });
    await prepareLoadTables(endpoints(other)[0]!);
    const otherLoad = new LoadGenerator({ endpoints: endpoints(other), clients: 2, mix: ["insert", "read"] });
    load.start();
    otherLoad.start();
    await sleep(500);

    const there = await move(key, a, b);
    expect(there.record.status).toBe("done");
    expect(there.record.method).toBe("native");
    expect(there.record.keptCurrentBy).toMatch(/^tf_rev_\d+$/);
    // The old copy is fenced against the tenant's login, and kept current: a write acknowledged
    // after the cutover reaches it.
    await expect(new Client({ ...a.admin("app__acme"), user: acme.role, password: acme.password }).connect()).rejects.toThrow(/not permitted to log in|permission denied/);
    await sleep(500);
    const afterCutover = load.acknowledgedIds().at(-1)!;
    await expect.poll(() => admin(a, "app__acme", async (c) => (await c.query("select count(*)::int as n from load_items where id = $1", [afterCutover])).rows[0].n), { timeout: 10_000 }).toBe(1);
    const back = await move(key, b, a); // a switch to app__acme on a, current since the first cutover
    await sleep(300);

    const report = await load.stop();
    const otherReport = await otherLoad.stop();
    expect(report.errors).toEqual([]);
    expect(otherReport.errors).toEqual([]);
    expect(report.acknowledged).toBeGreaterThan(50);

    query.mockRestore();
    pause.mockRestore();
    resume.mockRestore();
    const route = await fleet.route(key);
    expect(route).toMatchObject({ server: a.serverName, epoch: 3, backendDatabase: "app__acme" });
    expect(back.record.method).toBe("standby");
    expect(back.record.backup).toBeUndefined();
    expect(back.record.timings.sync).toBeUndefined();
    expect(back.logs.some((l) => /kept current by reverse replication since: moving back is a switch, no copy/.test(l))).toBe(true);
    const stored = await storedIds(a.admin(route.backendDatabase));
    const { missing, extra } = compareIds(load.acknowledgedIds(), stored);
    expect(missing).toEqual([]);
    expect(extra).toEqual([]);
    // Sequences followed: the next value on the final copy is past every value handed out.
    const seq = await admin(a, route.backendDatabase, async (c) => ({
      docs: Number((await c.query("select nextval('documents_id_seq') as n")).rows[0].n),
      tx: Number((await c.query("select last_value from load_tx_seq")).rows[0].last_value),
    }));
    expect(seq.docs).toBeGreaterThan(50000);
    expect(seq.tx).toBeGreaterThan(0);

    for (const r of [there.record, back.record]) {
      expect(r.verification?.ok).toBe(true);
      expect(r.verification!.tables).toBeGreaterThanOrEqual(3);
      expect(r.verification!.at).toBeDefined(); // counted on the snapshots pinned in the pause
      expect(r.pauseMs).toBeGreaterThan(0);
      expect(Object.keys(r.timings)).toEqual(expect.arrayContaining(["preflight", "prepare", "catchup", "drain", "finalLag", "sequences", "verify", "switch", "resume", "verifyAfterSwitch", "fence", "total"]));
    }
    // The old copy, kept current on the shared server, is the move's safety copy: no dump read the
    // source a second time beside the initial copy (a move without a way back takes one: backup-store).
    expect(there.record.backup).toBeUndefined();
    expect(there.record.timings.backup).toBeUndefined();
    expect(there.record.safetyCopy).toMatch(/^app__acme stays on \S+ after the cutover, fenced and kept current by reverse replication/);
    expect(there.logs).toContain(`safety copy: ${there.record.safetyCopy}`);
    expect(Object.keys(there.record.timings)).toEqual(expect.arrayContaining(["sync", "copyRows", "buildIndexes"]));
    expect(there.logs.some((l) => /^migrating_sync \d+%/.test(l))).toBe(true);
    expect(there.logs.some((l) => /caught up: this tenant database's lag is \d+ ms/.test(l))).toBe(true);
    // The pauses: two, each with its statements, none of them reading a table's rows; the counts
    // ran, after the pause.
    expect(held).toHaveLength(2);
    // The migration's statements (the clients' own are held by the proxies, and are not its).
    const mine = sent.filter((q) => q.user !== acme.role && q.user !== other.role);
    const inPause = mine.filter((q) => held.some((h) => q.at >= h.from && q.at <= h.to));
    expect(inPause.length).toBeGreaterThan(3);
    expect(inPause.filter((q) => /count\(|^\s*copy\b|pg_dump|from\s+(public\.)?"?(load_items|load_counters|documents)"?/i.test(q.text))).toEqual([]);
    expect(mine.filter((q) => /select count\(\*\) as n from public\.documents/.test(q.text) && held.every((h) => q.at > h.to || q.at < h.from)).length).toBeGreaterThanOrEqual(4);
    // The copy left on b at the way back is kept current in turn; its stream is all that is left of
    // the replication, and ending it (the window's end) leaves nothing.
    expect(back.record.keptCurrentBy).toMatch(/^tf_rev_\d+$/);
    expect(await replicationLeftovers(a)).toEqual({ slots: 1, roles: 1 });
    expect(await replicationLeftovers(b)).toEqual({ slots: 0, roles: 0 });
    const problems = await stopWayBack(back.record.keptCurrentBy!, { copy: { server: serverAccess(b), database: "app__acme_e2" }, live: { server: serverAccess(a), database: "app__acme" } });
    expect(problems).toEqual([]);
    expect(await replicationLeftovers(a)).toEqual({ slots: 0, roles: 0 });
    await expect(new Client({ ...b.admin("app__acme_e2"), user: acme.role, password: acme.password }).connect()).rejects.toThrow(/not permitted to log in|permission denied/);
    // The other tenant on the shared server was never paused.
    const metrics = await (await fetch(`http://127.0.0.1:${p1.adminPort}/metrics`)).text();
    expect(metrics).not.toMatch(/tenantfleet_proxy_pauses_total\{[^}]*tenant="globex"[^}]*\} [1-9]/);
    expect(metrics).toMatch(/tenantfleet_proxy_pauses_total\{[^}]*tenant="acme"[^}]*\} [1-9]/);
    console.log(JSON.stringify({ moves: 2, acknowledged: report.acknowledged, longestStallMs: report.longest.ms, pauseMs: [there.record.pauseMs, back.record.pauseMs], otherTenantMaxMs: otherReport.latencyMs.max }));
  });
});

describe("fallback and failure", () => {
  it("falls back to backup-and-restore under a pause when a table cannot be replicated, and says so", async () => {
    const key = { tenant: "initech", database: "app" };
    const t = await fleet.tenantDatabase(a, { ...key, role: "app__initech" });
    await prepareLoadTables(endpoints(t)[0]!);
    const c = new Client(endpoints(t)[0]!);
    await c.connect();
    await c.query("create table audit (at timestamptz default now(), what text)"); // no primary key
    await c.query("insert into audit (what) select 'event ' || g from generate_series(1, 1000) g");
    await c.end();
    const load = new LoadGenerator({ endpoints: endpoints(t), clients: 3 });
    load.start();
    await sleep(300);
    const { record, logs } = await move(key, a, b);
    await sleep(200);
    const report = await load.stop();
    expect(record.method).toBe("dump_restore");
    expect(logs.join("\n")).toMatch(/public\.audit has no primary key or replica identity.*Falling back to backup-and-restore under a pause/s);
    expect(report.errors).toEqual([]);
    const route = await fleet.route(key);
    const { missing, extra } = compareIds(load.acknowledgedIds(), await storedIds(b.admin(route.backendDatabase)));
    expect(missing).toEqual([]);
    expect(extra).toEqual([]);
    expect(await admin(b, route.backendDatabase, async (x) => Number((await x.query("select count(*) as n from audit")).rows[0].n))).toBe(1000);
  });

  it("a target that dies during the initial sync fails the migration with the reason; the tenant keeps serving; a retry succeeds", async () => {
    const key = { tenant: "hooli", database: "app" };
    const t = await fleet.tenantDatabase(a, { ...key, role: "app__hooli" });
    await prepareLoadTables(endpoints(t)[0]!);
    const c = new Client(endpoints(t)[0]!);
    await c.connect();
    await c.query("create table blobs (id bigserial primary key, body text not null)");
    await c.query("insert into blobs (body) select repeat(md5(g::text), 30) from generate_series(1, 150000) g"); // ~150 MB
    await c.end();
    const target = await fleet.server("dedicated-c");
    const load = new LoadGenerator({ endpoints: endpoints(t), clients: 2, mix: ["insert", "read"] });
    load.start();
    let stopped = false;
    const err = await move(key, a, target, {
      onLog: (m) => {
        if (!stopped && /^migrating_sync/.test(m)) {
          stopped = true;
          void fleet.stopServer(target);
        }
      },
    }).catch((e) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect((err as MigrationError).message).toMatch(/failed during sync: .*still serves from shared-a; fix the cause and run `pulumi up` again/s);
    expect((err as MigrationError).record.status).toBe("failed");
    const route = await fleet.route(key);
    expect(route).toMatchObject({ server: a.serverName, epoch: 1, status: "failed" });
    // The source keeps no slot or login for the target that went away.
    expect(await replicationLeftovers(a)).toMatchObject({ slots: 0, roles: 0 });
    await sleep(300);

    await fleet.startServer(target);
    const retry = await move(key, a, target);
    expect(retry.record.status).toBe("done");
    expect(retry.logs.join("\n")).toMatch(/removed a leftover of an earlier attempt: database app__hooli_e2/);
    const report = await load.stop();
    expect(report.errors).toEqual([]);
    const after = await fleet.route(key);
    expect(after).toMatchObject({ server: target.serverName, epoch: 2, status: "ready" });
    const { missing, extra } = compareIds(load.acknowledgedIds(), await storedIds(target.admin(after.backendDatabase)));
    expect(missing).toEqual([]);
    expect(extra).toEqual([]);
  });
});

describe("what logical replication does not carry", () => {
  it("a column added on the source during the move stops it before the pause, naming the table and what to do; the next attempt copies the new schema", async () => {
    const key = { tenant: "umbrella", database: "app" };
    const t = await fleet.tenantDatabase(a, { ...key, role: "app__umbrella" });
    await prepareLoadTables(endpoints(t)[0]!);
    const owner = new Client(endpoints(t)[0]!);
    await owner.connect();
    await owner.query("create table notes (id bigserial primary key, body text not null)");
    await owner.query("insert into notes (body) select 'note ' || g from generate_series(1, 20000) g");
    const load = new LoadGenerator({ endpoints: endpoints(t), clients: 2, mix: ["insert", "read"] });
    load.start();
    let altered = false;
    const err = await move(key, a, b, {
      onLog: (m) => {
        // During the copy: the target's tables were made from the schema before it.
        if (!altered && /^migrating_sync/.test(m)) {
          altered = true;
          void owner.query("alter table notes add column pinned boolean not null default false").then(() => owner.query("insert into notes (body, pinned) values ('after the change', true)"));
        }
      },
    }).catch((e) => e);
    expect(altered).toBe(true);
    expect(err).toBeInstanceOf(MigrationError);
    expect((err as MigrationError).message).toMatch(/public\.notes (changed|.*failed)/);
    expect((err as MigrationError).message).toMatch(/Logical replication carries rows only|schema change/);
    expect((err as MigrationError).record.timings.drain).toBeUndefined(); // never paused
    expect(await fleet.route(key)).toMatchObject({ server: a.serverName, epoch: 1, status: "failed" });

    const retry = await move(key, a, b);
    expect(retry.record.status).toBe("done");
    const report = await load.stop();
    await owner.end();
    expect(report.errors).toEqual([]);
    const route = await fleet.route(key);
    expect(await admin(b, route.backendDatabase, async (c) => (await c.query("select count(*)::int as n from notes where pinned")).rows[0].n)).toBe(1);
    const { missing } = compareIds(load.acknowledgedIds(), await storedIds(b.admin(route.backendDatabase)));
    expect(missing).toEqual([]);
  });

  it("copies that differ at the cutover are reported after the switch (log, record, status) with the way back; nothing is hidden", async () => {
    const key = { tenant: "wonka", database: "app" };
    const t = await fleet.tenantDatabase(a, { ...key, role: "app__wonka" });
    const owner = new Client(endpoints(t)[0]!);
    await owner.connect();
    await owner.query("create table bars (id int primary key)");
    await owner.query("insert into bars select generate_series(1, 100)");
    await owner.end();
    const target = await fleet.server("dedicated-w");
    let planted = false;
    const { record, logs } = await move(key, a, target, {
      onLog: (m) => {
        // Once streaming: a row written into the target behind replication's back.
        if (!planted && /^caught up/.test(m)) {
          planted = true;
          void admin(target, "app__wonka_e2", (c) => c.query("insert into bars values (1000)"));
        }
      },
    });
    expect(planted).toBe(true);
    expect(record.status).toBe("done"); // the switch happened: the tenant is on the target
    expect(record.verification?.ok).toBe(false);
    expect(record.verification?.mismatches).toEqual(["public.bars: source 100, target 101"]);
    expect(record.notes.join("\n")).toMatch(/verification after the switch failed: public\.bars: source 100, target 101/);
    expect(logs.join("\n")).toMatch(/the copies of wonka\/app differed at the cutover: public\.bars: source 100, target 101\. wonka\/app now serves from dedicated-w\. The old copy is kept current by reverse replication/);
    expect(await fleet.route(key)).toMatchObject({ server: target.serverName, status: "verify_failed" });
  });
});

describe("a migration process killed with SIGKILL (a killed `pulumi up`)", () => {
  /** Start the migration of `key` from → to in a child process; SIGKILL it when the catalog shows `phase`. */
  async function killDuring(key: TenantDbKey, from: PgServer, to: PgServer, phase: string): Promise<void> {
    const args = await fleet.migrationPlan(key, from, to);
    const child = spawn(process.execPath, ["--import", "tsx", path.join(__dirname, "../../scripts/lib/migration-process.ts")], { env: { ...process.env, MIGRATION_ARGS: JSON.stringify(args) }, stdio: "ignore" });
    const exited = new Promise((r) => child.once("exit", r));
    const c = new Client(fleet.catalogConfig);
    await c.connect();
    try {
      for (;;) {
        const r = await c.query("select phase from tenantfleet.migrations where tenant = $1 and database = $2 order by migration_id desc limit 1", [key.tenant, key.database]);
        if (r.rows[0]?.phase === phase) break;
        if (child.exitCode !== null) throw new Error(`the migration ended before phase ${phase}`);
        await sleep(5);
      }
    } finally {
      await c.end();
    }
    child.kill("SIGKILL");
    await exited;
  }

  /** What the next `pulumi up` does: TenantDatabase's update step, with the previous outputs. */
  async function nextUp(key: TenantDbKey, from: PgServer, to: PgServer, route: { backendDatabase: string; role: string; scramVerifier: string }) {
    const { migrateTo } = await import("../../dynamic-providers/tenant-database/provider");
    const ref = (s: PgServer) => ({ host: s.host, port: s.port, adminUser: s.adminUser });
    const cat = fleet.catalogConfig;
    const common = { tenant: key.tenant, database: key.database, engine: "postgres" as const, region: "local", catalog: { host: cat.host!, port: cat.port!, adminUser: cat.user!, database: cat.database! }, catalogPassword: String(cat.password), stack: fleet.stack, platform: "local" as const, rollbackWindowHours: 24, resourceUrn: "", plan: "" };
    const olds = { ...common, isolation: "shared" as const, serverName: from.serverName, server: ref(from), serverAdminPassword: from.adminPassword, role: route.role, password: "", scramVerifier: route.scramVerifier, backendDatabase: route.backendDatabase, epoch: 1, connectionString: "", status: "ready", lastMigration: null, retained: [] };
    const news = { ...common, isolation: "dedicated" as const, serverName: to.serverName, server: ref(to), serverAdminPassword: to.adminPassword };
    const logs: string[] = [];
    const out = await migrateTo(olds, news, (m) => logs.push(m));
    return { out, logs };
  }

  for (const phase of ["sync", "cutover"]) {
    it(`killed during ${phase}: no pause outlives its lease, nothing is lost, the next run converges`, async () => {
      const key = { tenant: `kill_${phase}`, database: "app" };
      const t = await fleet.tenantDatabase(a, { ...key, role: `app__kill_${phase}` });
      await prepareLoadTables(endpoints(t)[0]!);
      const c = new Client(endpoints(t)[0]!);
      await c.connect();
      await c.query("create table blobs (id bigserial primary key, body text not null)");
      await c.query("insert into blobs (body) select repeat(md5(g::text), 30) from generate_series(1, 30000) g");
      await c.end();
      const before = await fleet.route(key);
      const load = new LoadGenerator({ endpoints: endpoints(t), clients: 3 });
      load.start();
      await sleep(300);
      await killDuring(key, a, b, phase);
      const killedAt = Date.now();
      // Within the lease (10 s) every proxy serves again, on whatever route is committed.
      const acked = load.report().acknowledged;
      await sleep(11_000);
      expect(load.report().acknowledged).toBeGreaterThan(acked + 10);
      expect(load.maxLatencyBetween(killedAt + 10_500, Date.now())).toBeLessThan(2000);

      const { out, logs } = await nextUp(key, a, b, before);
      await sleep(300);
      const report = await load.stop();
      expect(report.errors).toEqual([]);
      const after = await fleet.route(key);
      expect(after).toMatchObject({ server: b.serverName, status: "ready" });
      expect(out.backendDatabase).toBe(after.backendDatabase);
      const { missing, extra } = compareIds(load.acknowledgedIds(), await storedIds(b.admin(after.backendDatabase)));
      expect(missing).toEqual([]);
      expect(extra).toEqual([]);
      expect(await replicationLeftovers(a)).toEqual({ slots: 0, roles: 0 });
      if (after.epoch === before.epoch + 1 && logs.some((l) => /after its cutover committed/.test(l))) {
        console.log(`killed during ${phase}: the cutover had committed; the next run finished its cleanup`);
      } else {
        expect(logs.join("\n")).toMatch(/removed a leftover of an earlier attempt/);
      }
    }, 120_000);
  }
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
