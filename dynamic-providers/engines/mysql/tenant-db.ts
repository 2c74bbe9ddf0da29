/**
 * A tenant database on a MariaDB/MySQL server: its login (one per tenant database, carrying the
 * catalog's native verifier, so the proxy can log in with what the client's reply proves), the
 * database of the same name on every server, privileges on it only, the fence, the drop, and
 * the dumps. Every call connects as the server's admin and closes its connection before returning.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, promises as fs, type WriteStream } from "node:fs";
import { once } from "node:events";
import { finished } from "node:stream/promises";
import * as path from "node:path";
import * as mysql from "mysql2/promise";
import type { ServerAccess } from "../index";

/** How the migration engine reaches a MariaDB server (engines/index.ts). */
export type MysqlServerAccess = ServerAccess;

/** A tenant database as it lives on a server. */
export interface MysqlTenantDatabase {
  /** The database: the same name on every server (applications qualify tables with it). */
  database: string;
  /** The tenant database's login. */
  user: string;
  /** `*<40 hex>`: the login's password as the server stores it. */
  verifier: string;
}

export const ident = (name: string) => `\`${name.replace(/`/g, "``")}\``;
export const literal = (v: string) => `'${v.replace(/\\/g, "\\\\").replace(/'/g, "''")}'`;
const account = (user: string) => `${literal(user)}@'%'`;

/** An admin connection to `s` (through its tunnel end when it has one), in `opts.database` when
 * given; the caller ends it. Connection errors name the server (and the database). */
export async function openAdmin(s: MysqlServerAccess, opts: { database?: string; multipleStatements?: boolean } = {}): Promise<mysql.Connection> {
  const at = s.via ?? s;
  let c: mysql.Connection;
  try {
    c = await mysql.createConnection({ host: at.host, port: at.port, user: s.adminUser, password: s.adminPassword, connectTimeout: 10_000, multipleStatements: opts.multipleStatements ?? false, ...(opts.database ? { database: opts.database } : {}) });
  } catch (e) {
    throw new Error(`cannot reach MariaDB server ${s.name} at ${s.host}:${s.port}${opts.database ? ` (database ${opts.database})` : ""}: ${(e as Error).message}`);
  }
  c.on("error", () => undefined);
  return c;
}

/** Run `fn` on an admin connection to `s`, closed afterwards; connection errors name the server. */
export async function withAdmin<T>(s: MysqlServerAccess, fn: (c: mysql.Connection) => Promise<T>): Promise<T> {
  const c = await openAdmin(s);
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => c.destroy());
  }
}

export async function rows<T = Record<string, unknown>>(c: mysql.Connection, sql: string, params: unknown[] = []): Promise<T[]> {
  const [r] = await c.query(sql, params);
  return r as T[];
}

export async function databaseExists(c: mysql.Connection, name: string): Promise<boolean> {
  return (await rows(c, "select 1 from information_schema.schemata where schema_name = ?", [name])).length > 0;
}

/** The login (with the verifier, unlocked) and its database, privileges on that database only. Idempotent. */
export async function ensureTenantDatabase(s: MysqlServerAccess, t: MysqlTenantDatabase): Promise<void> {
  await withAdmin(s, async (c) => {
    await c.query(`create database if not exists ${ident(t.database)}`);
    await c.query(`create user if not exists ${account(t.user)} identified with mysql_native_password as ${literal(t.verifier)}`);
    await c.query(`alter user ${account(t.user)} identified with mysql_native_password as ${literal(t.verifier)} account unlock`);
    await c.query(`grant all privileges on ${ident(t.database)}.* to ${account(t.user)}`);
  });
}

/** End every session of `user` on the server. */
async function killSessions(c: mysql.Connection, user: string): Promise<number> {
  const ids = await rows<{ id: number }>(c, "select id from information_schema.processlist where user = ? and id <> connection_id()", [user]);
  for (const { id } of ids) await c.query(`kill connection ${Number(id)}`).catch(() => undefined);
  return ids.length;
}

/** Fence a copy against writes: its login is locked and its sessions ended. */
export async function fenceDatabase(s: MysqlServerAccess, t: Pick<MysqlTenantDatabase, "user">): Promise<void> {
  await withAdmin(s, async (c) => {
    if ((await rows(c, "select 1 from mysql.user where user = ? and host = '%'", [t.user])).length === 0) return;
    await c.query(`alter user ${account(t.user)} account lock`);
    await killSessions(c, t.user);
  });
}

/** Drop the database and the login. Idempotent. */
export async function dropTenantDatabase(s: MysqlServerAccess, t: Pick<MysqlTenantDatabase, "database" | "user">): Promise<void> {
  await withAdmin(s, async (c) => {
    await c.query(`alter user if exists ${account(t.user)} account lock`);
    await killSessions(c, t.user);
    await c.query(`drop database if exists ${ident(t.database)}`);
    await c.query(`drop user if exists ${account(t.user)}`);
  });
}

/** Bytes of data and indexes of a database. */
export async function databaseSize(c: mysql.Connection, database: string): Promise<number> {
  const r = await rows<{ n: string | null }>(c, "select sum(data_length + index_length) as n from information_schema.tables where table_schema = ?", [database]);
  return Number(r[0]?.n ?? 0);
}

function clientArgs(s: MysqlServerAccess): string[] {
  const at = s.via ?? s;
  return ["-h", at.host, "-P", String(at.port), "-u", s.adminUser, "--protocol=TCP"];
}

/** The password through the child's environment, never argv (which `ps` shows). */
const clientEnv = (s: MysqlServerAccess): NodeJS.ProcessEnv => ({ ...process.env, MYSQL_PWD: s.adminPassword });

function waitExit(child: ChildProcess, what: string, stderr: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    child.once("error", (e) => reject(new Error(`${what}: ${e.message}`)));
    child.once("close", (code) => (code === 0 ? resolve() : reject(new Error(`${what} exited with ${code}: ${stderr().trim().split("\n").slice(-5).join(" | ")}`))));
  });
}

/** mariadb-dump's comment before each table's rows. */
const DATA_MARKER = "\n-- Dumping data for table ";

/** Options of every dump: one consistent snapshot, the schema's code too, binary as hex. */
const DUMP_OPTIONS = ["--single-transaction", "--routines", "--triggers", "--events", "--hex-blob", "--skip-add-locks", "--skip-lock-tables"];

/** A backup file that another stream fills (a copy's dump): `file.partial` from now on, `file` once complete. */
export interface BackupSink {
  stream: WriteStream;
  complete(): Promise<{ bytes: number }>;
  discard(): Promise<void>;
}

export async function backupSink(file: string): Promise<BackupSink> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const partial = `${file}.partial`;
  const stream = createWriteStream(partial);
  await once(stream, "open");
  return {
    stream,
    async complete() {
      if (!stream.writableFinished) await finished(stream);
      await fs.rename(partial, file);
      return { bytes: (await fs.stat(file)).size };
    },
    async discard() {
      stream.destroy();
      await fs.rm(partial, { force: true });
    },
  };
}

/** `mariadb-dump` of one database into `file` (written to `file.partial`, renamed when complete). */
export async function dumpDatabase(s: MysqlServerAccess, database: string, file: string): Promise<{ bytes: number }> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const partial = `${file}.partial`;
  const out = await fs.open(partial, "w");
  try {
    const child = spawn("mariadb-dump", [...clientArgs(s), ...DUMP_OPTIONS, database], { env: clientEnv(s), stdio: ["ignore", out.fd, "pipe"] });
    let err = "";
    child.stderr!.on("data", (d) => (err += d));
    await waitExit(child, `mariadb-dump of ${database} on ${s.name}`, () => err);
  } finally {
    await out.close();
  }
  await fs.rename(partial, file);
  return { bytes: (await fs.stat(file)).size };
}

/** Where a dump's snapshot is in the source's binlog (`--master-data=2`): replication starts there. */
export interface BinlogPosition {
  file: string;
  pos: number;
}

/**
 * `mariadb-dump source | mariadb target`, nothing on disk. With `position`, the dump also says
 * where its snapshot is in the source's binlog (read off the stream as it passes).
 */
/** How far a copy has got: dump bytes loaded, and tables whose rows have started (mariadb-dump's comments). */
export interface CopyProgress {
  bytes: number;
  tablesStarted: number;
}

export async function copyDatabase(
  from: MysqlServerAccess,
  to: MysqlServerAccess,
  database: string,
  opts: { position?: boolean; progress?: CopyProgress; signal?: AbortSignal; tee?: WriteStream } = {},
): Promise<BinlogPosition | undefined> {
  const dump = spawn("mariadb-dump", [...clientArgs(from), ...DUMP_OPTIONS, ...(opts.position ? ["--master-data=2"] : []), database], { env: clientEnv(from), stdio: ["ignore", "pipe", "pipe"], signal: opts.signal });
  const load = spawn("mariadb", [...clientArgs(to), "--binary-mode", database], { env: clientEnv(to), stdio: ["pipe", "ignore", "pipe"], signal: opts.signal });
  let position: BinlogPosition | undefined;
  let head = "";
  const progress = opts.progress;
  let tail = "";
  dump.stdout!.on("data", (chunk: Buffer) => {
    if (progress) {
      progress.bytes += chunk.length;
      // A marker cut by a chunk boundary is found in the tail kept from the previous chunk.
      const text = tail + chunk.toString("latin1");
      progress.tablesStarted += text.split(DATA_MARKER).length - 1;
      tail = chunk.length >= DATA_MARKER.length ? chunk.toString("latin1", chunk.length - DATA_MARKER.length + 1) : "";
    }
    if (position || head.length > 1 << 16) return;
    head += chunk.toString("latin1");
    const m = /CHANGE MASTER TO MASTER_LOG_FILE='([^']+)', MASTER_LOG_POS=(\d+)/.exec(head);
    if (m) position = { file: m[1]!, pos: Number(m[2]) };
  });
  dump.stdout!.pipe(load.stdin!);
  if (opts.tee) dump.stdout!.pipe(opts.tee);
  load.stdin!.on("error", () => undefined);
  let e1 = "";
  let e2 = "";
  dump.stderr!.on("data", (d) => (e1 += d));
  load.stderr!.on("data", (d) => (e2 += d));
  await Promise.all([
    waitExit(dump, `mariadb-dump of ${database} on ${from.name}`, () => e1),
    waitExit(load, `loading ${database} into ${to.name}`, () => e2),
    ...(opts.tee ? [finished(opts.tee)] : []),
  ]);
  if (opts.position && !position) throw new Error(`mariadb-dump of ${database} on ${from.name} gave no binlog position (is log_bin on?)`);
  return position;
}
