/**
 * A tenant database on a PostgreSQL server: its role (one per tenant database, carrying the
 * catalog's SCRAM verifier byte for byte, so the proxy can log in with the client's ClientKey),
 * the database it owns, the safety backup, the fence and the drop. Every call connects as the
 * server's admin and closes its connection before returning.
 */
import { spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { Client, escapeIdentifier as ident, escapeLiteral as literal, type ClientConfig } from "pg";
import { pgBinary } from "./local";
import type { ServerAccess } from "../index";

/** How the migration engine reaches a PostgreSQL server (engines/index.ts). */
export type PgServerAccess = ServerAccess;

/** A tenant database as it lives on one server. */
export interface PgTenantDatabase {
  /** Database name on the server (the proxy maps `<database>__<tenant>` to it). */
  backendDatabase: string;
  /** Login role of the tenant database, owner of `backendDatabase`. */
  role: string;
  /** `SCRAM-SHA-256$…`: the role's password as the server stores it. */
  verifier: string;
}

export function adminConfig(s: PgServerAccess, database = "postgres"): ClientConfig {
  const at = s.via ?? s;
  return { host: at.host, port: at.port, user: s.adminUser, password: s.adminPassword, database, connectionTimeoutMillis: 10_000 };
}

/** An open admin connection to `database` on `s`; connection errors name the server. The caller ends it. */
export async function connectAdmin(s: PgServerAccess, database: string): Promise<Client> {
  const c = new Client(adminConfig(s, database));
  // An error event on an idle client (server stopped under us) must not crash the process: the
  // next query rejects with it instead.
  c.on("error", () => undefined);
  try {
    await c.connect();
  } catch (e) {
    throw new Error(`cannot reach PostgreSQL server ${s.name} at ${s.host}:${s.port} (database ${database}): ${(e as Error).message}`);
  }
  return c;
}

/** Run `fn` on an admin connection to `database` on `s`, closed afterwards. */
export async function withAdmin<T>(s: PgServerAccess, database: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = await connectAdmin(s, database);
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

export async function databaseExists(c: Client, name: string): Promise<boolean> {
  return ((await c.query("select 1 from pg_database where datname = $1", [name])).rowCount ?? 0) > 0;
}

/**
 * The role (LOGIN, with the verifier) and the database it owns. Idempotent. Other roles lose the
 * default CONNECT privilege: on a shared server, tenants cannot reach each other's databases.
 */
export async function ensureTenantDatabase(s: PgServerAccess, t: PgTenantDatabase): Promise<void> {
  await withAdmin(s, "postgres", async (c) => {
    const exists = ((await c.query("select 1 from pg_roles where rolname = $1", [t.role])).rowCount ?? 0) > 0;
    await c.query(`${exists ? "alter" : "create"} role ${ident(t.role)} login password ${literal(t.verifier)}`);
    if (!(await databaseExists(c, t.backendDatabase))) {
      await c.query(`create database ${ident(t.backendDatabase)} owner ${ident(t.role)}`);
    }
    await c.query(`revoke connect, temporary on database ${ident(t.backendDatabase)} from public`);
    await c.query(`grant connect, temporary on database ${ident(t.backendDatabase)} to ${ident(t.role)}`);
  });
}

async function terminateSessions(c: Client, database: string): Promise<void> {
  await c.query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()", [database]);
}

/**
 * Fence a copy against writes by any role: nobody (superusers included) can connect until an
 * admin re-allows it, the sessions still there are ended, and the role cannot log in here.
 * `keepReplication`: the tenant's role only (its CONNECT revoked, its sessions ended, no login
 * here), so the subscription that keeps the copy current (way-back.ts) goes on applying.
 */
export async function fenceDatabase(s: PgServerAccess, t: Pick<PgTenantDatabase, "backendDatabase" | "role">, opts: { keepReplication?: boolean } = {}): Promise<void> {
  await withAdmin(s, "postgres", async (c) => {
    if (!(await databaseExists(c, t.backendDatabase))) return;
    if (opts.keepReplication) {
      await c.query(`revoke connect, temporary on database ${ident(t.backendDatabase)} from ${ident(t.role)}`);
      await c.query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and usename = $2", [t.backendDatabase, t.role]);
    } else {
      await c.query(`alter database ${ident(t.backendDatabase)} with allow_connections false`);
      await terminateSessions(c, t.backendDatabase);
    }
    // The role logs in nowhere on this server unless it still owns a live database here.
    const live = await c.query("select 1 from pg_database d join pg_roles r on r.oid = d.datdba where r.rolname = $1 and d.datallowconn and d.datname <> $2 and has_database_privilege(r.oid, d.oid, 'connect')", [t.role, t.backendDatabase]);
    if (!live.rowCount) await c.query(`alter role ${ident(t.role)} nologin`).catch(() => undefined);
  });
}

/** Drop the database (and the role when it owns nothing else here). Idempotent. */
export async function dropTenantDatabase(s: PgServerAccess, t: Pick<PgTenantDatabase, "backendDatabase" | "role">): Promise<void> {
  await withAdmin(s, "postgres", async (c) => {
    if (await databaseExists(c, t.backendDatabase)) {
      await c.query(`alter database ${ident(t.backendDatabase)} with allow_connections false`);
      await terminateSessions(c, t.backendDatabase);
      await dropSubscriptionsIn(s, t.backendDatabase).catch(() => undefined);
      // A logical slot of the database (a way back out of it) would block the drop.
      for (const { slot_name } of (await c.query<{ slot_name: string }>("select slot_name from pg_replication_slots where database = $1", [t.backendDatabase])).rows) await dropSlot(c, slot_name);
      await c.query(`drop database ${ident(t.backendDatabase)} with (force)`);
    }
    const owns = await c.query("select 1 from pg_database d join pg_roles r on r.oid = d.datdba where r.rolname = $1", [t.role]);
    if (!owns.rowCount) await c.query(`drop role if exists ${ident(t.role)}`);
  });
}

/**
 * Subscriptions are cluster objects tied to a database: one left in a database blocks its drop.
 * Each is dropped with its slot on the publisher when that answers; else (the publisher is gone)
 * detached from its slot first and dropped.
 */
export async function dropSubscriptionsIn(s: PgServerAccess, database: string): Promise<void> {
  const subs = await withAdmin(s, "postgres", async (c) =>
    (await c.query<{ subname: string }>("select subname from pg_subscription s join pg_database d on d.oid = s.subdbid where d.datname = $1", [database])).rows,
  );
  if (subs.length === 0) return;
  // allow_connections may already be off (a fenced or half-dropped copy): turn it on briefly.
  await withAdmin(s, "postgres", (c) => c.query(`alter database ${ident(database)} with allow_connections true`));
  await withAdmin(s, database, async (c) => {
    for (const { subname } of subs) await dropSubscription(c, subname);
  });
}

/** Drop subscription `name` of `c`'s database with its slot on the publisher when that answers;
 * else (the publisher is gone) detached from the slot first. */
export async function dropSubscription(c: Client, name: string): Promise<void> {
  await c.query(`alter subscription ${ident(name)} disable`);
  try {
    await c.query(`drop subscription ${ident(name)}`);
  } catch {
    await c.query(`alter subscription ${ident(name)} set (slot_name = none)`);
    await c.query(`drop subscription ${ident(name)}`);
  }
}

/** Drop a slot, ending the WAL sender that holds it first. */
export async function dropSlot(c: Client, slot: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    await c.query("select pg_terminate_backend(active_pid) from pg_replication_slots where slot_name = $1 and active_pid is not null", [slot]);
    try {
      await c.query("select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = $1", [slot]);
      return;
    } catch (e) {
      if (attempt >= 20) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** Size of a database in bytes. */
export async function databaseSize(s: PgServerAccess, database: string): Promise<number> {
  return withAdmin(s, "postgres", async (c) => Number((await c.query("select pg_database_size($1) as n", [database])).rows[0].n));
}

function pgEnv(s: PgServerAccess): NodeJS.ProcessEnv {
  // The password goes through the environment of the child, never argv (which `ps` shows).
  return { ...process.env, PGPASSWORD: s.adminPassword, PGCONNECT_TIMEOUT: "10" };
}

function connArgs(s: PgServerAccess, database: string): string[] {
  const at = s.via ?? s;
  return ["-h", at.host, "-p", String(at.port), "-U", s.adminUser, "-d", database];
}

function waitExit(child: ReturnType<typeof spawn>, what: string, stderr: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    child.once("error", (e) => reject(new Error(`${what}: ${e.message}`)));
    child.once("close", (code) => (code === 0 ? resolve() : reject(new Error(`${what} exited with ${code}: ${stderr().trim().split("\n").slice(-5).join(" | ")}`))));
  });
}

/** `pg_dump -Fc` of one database into `file` (custom format: pg_restore can take parts of it). */
export async function dumpDatabase(s: PgServerAccess, database: string, file: string, opts: { schemaOnly?: boolean } = {}): Promise<{ bytes: number }> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const partial = `${file}.partial`;
  // The fastest zlib level: a safety backup runs beside a migration's copy on the same cores, and
  // level 1 costs a fraction of the default's CPU for most of its ratio.
  const args = [...connArgs(s, database), "-Fc", "-Z", "1", ...(opts.schemaOnly ? ["--schema-only"] : []), "-f", partial];
  const child = spawn(await pgBinary("pg_dump"), args, { env: pgEnv(s), stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  await waitExit(child, `pg_dump of ${database} on ${s.name}`, () => err);
  await fs.rename(partial, file);
  return { bytes: (await fs.stat(file)).size };
}

/**
 * pg_restore from a custom-format file into an existing database: all of it in one transaction,
 * or one section (`pre-data`: tables, types, functions; `post-data`: indexes, constraints,
 * triggers), with `jobs` parallel connections (then not in one transaction: a failure leaves a
 * part, and the caller drops the database).
 */
export async function restoreDatabase(s: PgServerAccess, database: string, file: string, opts: { section?: "pre-data" | "post-data"; jobs?: number } = {}): Promise<void> {
  const jobs = opts.jobs && opts.jobs > 1 ? ["--jobs", String(opts.jobs)] : ["--single-transaction"];
  const args = [...connArgs(s, database), "--exit-on-error", ...jobs, "--no-publications", "--no-subscriptions", ...(opts.section ? ["--section", opts.section] : []), file];
  const child = spawn(await pgBinary("pg_restore"), args, { env: pgEnv(s), stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  await waitExit(child, `pg_restore into ${database} on ${s.name}`, () => err);
}

/** `pg_dump -Fc source | pg_restore target`: a full copy through a pipe, nothing on disk. */
export async function copyDatabase(from: PgServerAccess, fromDb: string, to: PgServerAccess, toDb: string): Promise<void> {
  const dump = spawn(await pgBinary("pg_dump"), [...connArgs(from, fromDb), "-Fc"], { env: pgEnv(from), stdio: ["ignore", "pipe", "pipe"] });
  const restore = spawn(
    await pgBinary("pg_restore"),
    [...connArgs(to, toDb), "--exit-on-error", "--single-transaction", "--no-publications", "--no-subscriptions"],
    { env: pgEnv(to), stdio: ["pipe", "ignore", "pipe"] },
  );
  dump.stdout!.pipe(restore.stdin!);
  let e1 = "";
  let e2 = "";
  dump.stderr!.on("data", (d) => (e1 += d));
  restore.stderr!.on("data", (d) => (e2 += d));
  restore.stdin!.on("error", () => undefined);
  await Promise.all([waitExit(dump, `pg_dump of ${fromDb} on ${from.name}`, () => e1), waitExit(restore, `pg_restore into ${toDb} on ${to.name}`, () => e2)]);
}

