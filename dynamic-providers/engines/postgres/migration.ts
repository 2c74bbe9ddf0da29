/**
 * PostgreSQL's side of a migration: per-database logical replication (a publication in the tenant
 * database on the source, a subscription with initial copy in the target database), never
 * whole-cluster physical streaming, which would copy every other tenant's data along.
 *
 * Lag is measured per tenant database: a marker row in `tenantfleet_migration.marker` is updated
 * on the source and polled on the target. Apply preserves commit order, so once the marker
 * written after the pause is visible on the target, every write acknowledged before it is too.
 *
 * Names: publication, subscription and slot are `tf_mig_<migration id>`; the replication login
 * on the source is `tf_repl_<migration id>` (commented with the tenant database, so leftovers of
 * an interrupted attempt are found and dropped by the next one, and never another tenant's).
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { escapeIdentifier as ident, escapeLiteral as literal, type Client } from "pg";
import type { RouteTarget } from "../../../proxy/catalog/routes";
import type { EngineMigration, MigrationMethod, PreflightResult, SyncProgress, Verification } from "../../migration/types";
import {
  connectAdmin,
  copyDatabase,
  databaseExists,
  dropSubscriptionsIn,
  dumpDatabase,
  ensureTenantDatabase,
  fenceDatabase,
  restoreDatabase,
  withAdmin,
  type PgServerAccess,
  type PgTenantDatabase,
} from "./tenant-db";

export const MARKER_SCHEMA = "tenantfleet_migration";
const OBJECT_PREFIX = "tf_mig_";
const ROLE_PREFIX = "tf_repl_";

export interface PgMigrationArgs {
  source: PgServerAccess;
  target: PgServerAccess;
  /** The tenant database on the source (as routed now). */
  from: PgTenantDatabase;
  /** Its name on the target; the role and verifier are the same. */
  targetDatabase: string;
  /** Free bytes where the target (and the backup) would be written, when the platform can tell. */
  freeBytes?: () => Promise<number | undefined>;
}

/** User tables (partitions included, partitioned parents excluded: their rows live in the leaves). */
const USER_TABLES = `
  select n.nspname as schema, c.relname as name, format('%I.%I', n.nspname, c.relname) as qname, c.relreplident as ident,
         c.relpersistence as persistence, pg_relation_size(c.oid) as bytes,
         exists (select 1 from pg_index i where i.indrelid = c.oid and i.indisprimary) as has_pk
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
  where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema', '${MARKER_SCHEMA}')
    and n.nspname not like 'pg_toast%' and n.nspname not like 'pg_temp%'`;

interface TableRow {
  schema: string;
  name: string;
  qname: string;
  ident: string;
  persistence: string;
  bytes: string;
  has_pk: boolean;
}

export class PgMigration implements EngineMigration {
  readonly nativeMechanism = "PostgreSQL logical replication (publication + subscription, per database)";
  readonly target: RouteTarget;
  private migrationId: number | undefined;
  private sourceDb: Client | undefined;
  private targetDb: Client | undefined;

  constructor(private readonly a: PgMigrationArgs) {
    this.target = { server: a.target.name, host: a.target.host, port: a.target.port, backendDatabase: a.targetDatabase };
  }

  private get name(): string {
    return `${OBJECT_PREFIX}${this.migrationId}`;
  }

  private async source(): Promise<Client> {
    if (!this.sourceDb) this.sourceDb = await connectAdmin(this.a.source, this.a.from.backendDatabase);
    return this.sourceDb;
  }

  private async targetClient(): Promise<Client> {
    if (!this.targetDb) this.targetDb = await connectAdmin(this.a.target, this.a.targetDatabase);
    return this.targetDb;
  }

  async cleanupLeftovers(): Promise<string[]> {
    const removed: string[] = [];
    const { target, targetDatabase } = this.a;
    // On the target: a half-made copy (no route points to it: its name carries the next epoch).
    await withAdmin(target, "postgres", async (c) => {
      if (await databaseExists(c, targetDatabase)) {
        await dropSubscriptionsIn(target, targetDatabase);
        await c.query(`drop database ${ident(targetDatabase)} with (force)`);
        removed.push(`database ${targetDatabase} on ${target.name}`);
      }
    });
    const problems: string[] = [];
    await this.dropSourceReplication(removed, problems);
    if (problems.length) throw new Error(problems.join("; "));
    return removed;
  }

  /**
   * On the source: this tenant database's publications and marker schema, its slots, its
   * replication logins. Each of the two connections that fails is reported in `problems`, so a
   * source that is gone does not stop the rest; what was dropped is named in `removed`.
   */
  private async dropSourceReplication(removed: string[], problems: string[]): Promise<void> {
    const { source, from } = this.a;
    // A fenced copy (a run killed after the fence, finished now) admits no connection, and needs
    // none: its publication and marker went before the fence (finishAfterCommit's order).
    const admits = await withAdmin(source, "postgres", async (c) => (await c.query("select 1 from pg_database where datname = $1 and datallowconn", [from.backendDatabase])).rowCount! > 0).catch((e) => {
      problems.push((e as Error).message);
      return false;
    });
    if (admits) await withAdmin(source, from.backendDatabase, async (c) => {
      for (const { pubname } of (await c.query<{ pubname: string }>("select pubname from pg_publication where pubname like 'tf\\_mig\\_%'")).rows) {
        await c.query(`drop publication ${ident(pubname)}`);
        removed.push(`publication ${pubname} on ${source.name}`);
      }
      if ((await c.query("select 1 from pg_namespace where nspname = $1", [MARKER_SCHEMA])).rowCount) {
        await c.query(`drop schema ${ident(MARKER_SCHEMA)} cascade`);
        removed.push(`schema ${MARKER_SCHEMA} in ${from.backendDatabase} on ${source.name}`);
      }
    }).catch((e) => problems.push((e as Error).message));
    await withAdmin(source, "postgres", async (c) => {
      // Our subscription's slot, and the table-sync slots its workers made (`pg_<sub oid>_sync_<rel
      // oid>_<system id>`, permanent since PostgreSQL 14): a target that died mid-copy leaves them,
      // and nothing else would ever drop them. Only this tenant database's slots are considered,
      // and only our migrations subscribe to a tenant database.
      const slots = await c.query<{ slot_name: string }>(
        "select slot_name from pg_replication_slots where database = $1 and (slot_name like 'tf\\_mig\\_%' or slot_name ~ '^pg_[0-9]+_sync_[0-9]+_[0-9]+$')",
        [from.backendDatabase],
      );
      for (const { slot_name } of slots.rows) {
        await dropSlot(c, slot_name);
        removed.push(`replication slot ${slot_name} on ${source.name}`);
      }
      for (const role of await replicationRoles(c, from.backendDatabase)) {
        await dropRole(c, role);
        removed.push(`role ${role} on ${source.name}`);
      }
    }).catch((e) => problems.push((e as Error).message));
  }

  async preflight(): Promise<PreflightResult> {
    const { source, target, from } = this.a;
    const notes: string[] = [];
    const src = await withAdmin(source, "postgres", async (c) => {
      if (!(await databaseExists(c, from.backendDatabase))) {
        throw new Error(`the source database ${from.backendDatabase} does not exist on ${source.name}: the catalog and the server disagree; check \`npm run status\``);
      }
      const r = await c.query(`select current_setting('server_version_num')::int as version, current_setting('wal_level') as wal_level,
          current_setting('max_replication_slots')::int - (select count(*) from pg_replication_slots) as free_slots,
          current_setting('max_wal_senders')::int - (select count(*) from pg_stat_replication) as free_senders,
          pg_database_size($1) as size`, [from.backendDatabase]);
      return r.rows[0] as { version: number; wal_level: string; free_slots: number; free_senders: number; size: string };
    });
    const tgt = await withAdmin(target, "postgres", async (c) => {
      const r = await c.query(`select current_setting('server_version_num')::int as version,
          current_setting('max_logical_replication_workers')::int as workers`);
      return r.rows[0] as { version: number; workers: number };
    });
    const major = (v: number) => Math.floor(v / 10000);
    if (major(tgt.version) < major(src.version)) {
      throw new Error(`${target.name} runs PostgreSQL ${major(tgt.version)}, older than ${source.name}'s ${major(src.version)}: the target must run the same or a newer major version`);
    }
    const sizeBytes = Number(src.size);
    const free = await this.a.freeBytes?.();
    if (free !== undefined && free < sizeBytes * 2 + 64 * 1024 * 1024) {
      throw new Error(`not enough disk: the backup and the target copy of ${from.backendDatabase} need about ${mb(sizeBytes * 2)} MB, ${mb(free)} MB are free. Free some space and run \`pulumi up\` again`);
    }
    const why: string[] = [];
    if (src.wal_level !== "logical") why.push(`wal_level is '${src.wal_level}' on ${source.name} (set wal_level = logical and restart it)`);
    if (src.free_slots < 1) why.push(`${source.name} has no free replication slot (raise max_replication_slots)`);
    if (src.free_senders < 1) why.push(`${source.name} has no free WAL sender (raise max_wal_senders)`);
    if (tgt.workers < 1) why.push(`${target.name} allows no logical replication worker (raise max_logical_replication_workers)`);
    const tables = await withAdmin(source, from.backendDatabase, async (c) => (await c.query<TableRow>(USER_TABLES)).rows);
    const noIdentity = tables.filter((t) => t.ident === "n" || (t.ident === "d" && !t.has_pk)).map((t) => t.qname);
    if (noIdentity.length) {
      why.push(`table${noIdentity.length > 1 ? "s" : ""} ${noIdentity.join(", ")} ha${noIdentity.length > 1 ? "ve" : "s"} no primary key or replica identity, so updates and deletes on ${noIdentity.length > 1 ? "them" : "it"} cannot be replicated (add a primary key, or ALTER TABLE … REPLICA IDENTITY FULL)`);
    }
    const unlogged = tables.filter((t) => t.persistence === "u").map((t) => t.qname);
    if (unlogged.length) why.push(`unlogged table${unlogged.length > 1 ? "s" : ""} ${unlogged.join(", ")} cannot be replicated`);
    if (why.length) {
      notes.push(`logical replication cannot be used: ${why.join("; ")}. Falling back to backup-and-restore under a pause: the tenant's queries are held for the whole copy.`);
      return { method: "dump_restore", notes, sizeBytes };
    }
    return { method: "native", notes, sizeBytes };
  }

  async backup(file: string): Promise<{ bytes: number }> {
    return dumpDatabase(this.a.source, this.a.from.backendDatabase, file);
  }

  async prepareTarget(method: MigrationMethod, workDir: string): Promise<void> {
    const { source, target, from, targetDatabase } = this.a;
    await ensureTenantDatabase(target, { ...from, backendDatabase: targetDatabase });
    if (method !== "native") return;
    // Schema only (tables, indexes, constraints); the rows come with the subscription's initial copy.
    const schema = path.join(workDir, `${targetDatabase}.schema.dump`);
    try {
      await dumpDatabase(source, from.backendDatabase, schema, { schemaOnly: true });
      await restoreDatabase(target, targetDatabase, schema, { schemaOnly: true });
    } finally {
      await fs.rm(schema, { force: true });
    }
    const markerDdl = `create schema ${MARKER_SCHEMA};
      revoke all on schema ${MARKER_SCHEMA} from public;
      create table ${MARKER_SCHEMA}.marker (id int primary key, token text not null, written_at timestamptz not null default clock_timestamp())`;
    await (await this.targetClient()).query(markerDdl);
    // The source's row arrives with the initial copy.
    await (await this.source()).query(`${markerDdl}; insert into ${MARKER_SCHEMA}.marker (id, token) values (1, 'initial')`);
  }

  async startReplication(migrationId: number): Promise<void> {
    this.migrationId = migrationId;
    const { source, from } = this.a;
    const role = `${ROLE_PREFIX}${migrationId}`;
    const password = randomBytes(24).toString("base64url");
    await withAdmin(source, "postgres", async (c) => {
      await c.query(`create role ${ident(role)} login replication password ${literal(password)}`);
      await c.query(`comment on role ${ident(role)} is ${literal(roleComment(from.backendDatabase))}`);
      await c.query(`grant pg_read_all_data to ${ident(role)}`);
      await c.query(`grant connect on database ${ident(from.backendDatabase)} to ${ident(role)}`);
    });
    // FOR ALL TABLES is scoped to this database: other tenants' databases are not published.
    await (await this.source()).query(`create publication ${ident(this.name)} for all tables`);
    const conninfo = `host=${connValue(source.host)} port=${source.port} user=${connValue(role)} password=${connValue(password)} dbname=${connValue(from.backendDatabase)} connect_timeout=10`;
    await (await this.targetClient()).query(
      `create subscription ${ident(this.name)} connection ${literal(conninfo)} publication ${ident(this.name)}
       with (copy_data = true, create_slot = true, slot_name = ${literal(this.name)})`,
    );
  }

  async syncProgress(): Promise<SyncProgress> {
    const rel = await (await this.targetClient()).query<{ qname: string; state: string }>(
      `select format('%I.%I', n.nspname, c.relname) as qname, r.srsubstate as state
       from pg_subscription_rel r join pg_subscription s on s.oid = r.srsubid
       join pg_class c on c.oid = r.srrelid join pg_namespace n on n.oid = c.relnamespace where s.subname = $1`,
      [this.name],
    );
    const src = await this.source();
    const sizes = new Map((await src.query<TableRow>(USER_TABLES)).rows.map((t) => [t.qname, Number(t.bytes)]));
    const copying = await src.query<{ qname: string; bytes: string }>(
      `select format('%I.%I', n.nspname, c.relname) as qname, p.bytes_processed as bytes
       from pg_stat_progress_copy p join pg_class c on c.oid = p.relid join pg_namespace n on n.oid = c.relnamespace
       where p.datid = (select oid from pg_database where datname = current_database())`,
    );
    const inFlight = new Map(copying.rows.map((r) => [r.qname, Number(r.bytes)]));
    let total = 0;
    let done = 0;
    let tablesDone = 0;
    for (const r of rel.rows) {
      const size = sizes.get(r.qname) ?? 0;
      total += size;
      if (r.state === "r" || r.state === "s") {
        done += size;
        tablesDone++;
      } else {
        done += Math.min(size, inFlight.get(r.qname) ?? 0);
      }
    }
    const ready = rel.rows.length > 0 && rel.rows.every((r) => r.state === "r");
    const percent = ready ? 100 : total > 0 ? Math.min(99, (100 * done) / total) : 0;
    return { percent, done: ready, tables: rel.rows.length, tablesDone };
  }

  async markerLag(timeoutMs: number): Promise<number> {
    const token = randomBytes(8).toString("hex");
    const started = Date.now();
    await (await this.source()).query(`update ${MARKER_SCHEMA}.marker set token = $1, written_at = clock_timestamp() where id = 1`, [token]);
    const tgt = await this.targetClient();
    for (let wait = 2; ; wait = Math.min(wait * 2, 50)) {
      const r = await tgt.query(`select token from ${MARKER_SCHEMA}.marker where id = 1`);
      if (r.rows[0]?.token === token) return Date.now() - started;
      if (Date.now() - started > timeoutMs) {
        throw new Error(`replication of ${this.a.from.backendDatabase} to ${this.a.target.name} stalled: a marker written on ${this.a.source.name} was not seen on the target within ${timeoutMs} ms`);
      }
      await sleep(wait);
    }
  }

  async finishWhilePaused(): Promise<{ sequences: number }> {
    // Logical replication does not carry sequence values: copy each one's position.
    const seqs = await (await this.source()).query<{ qname: string; last_value: string | null }>(
      `select format('%I.%I', schemaname, sequencename) as qname, last_value from pg_sequences where schemaname <> '${MARKER_SCHEMA}'`,
    );
    const set = seqs.rows.filter((s) => s.last_value !== null);
    if (set.length) {
      const sql = set.map((s) => `select setval(${literal(s.qname)}::regclass, ${BigInt(s.last_value!)}, true)`).join(";\n");
      await (await this.targetClient()).query(sql);
    }
    return { sequences: seqs.rows.length };
  }

  async copyWhilePaused(): Promise<void> {
    await copyDatabase(this.a.source, this.a.from.backendDatabase, this.a.target, this.a.targetDatabase);
  }

  async verify(): Promise<Verification> {
    const started = Date.now();
    const src = await this.source();
    const tgt = await this.targetClient();
    const tables = (await src.query<TableRow>(USER_TABLES)).rows;
    const count = async (c: Client, t: TableRow) => {
      try {
        return Number((await c.query(`select count(*) as n from ${t.qname}`)).rows[0].n);
      } catch (e) {
        return `error: ${(e as Error).message}`;
      }
    };
    // Both servers count at once; each side's tables one after the other on its connection.
    const side = async (c: Client) => {
      const out: (number | string)[] = [];
      for (const t of tables) out.push(await count(c, t));
      return out;
    };
    const [a, b] = await Promise.all([side(src), side(tgt)]);
    const mismatches: string[] = [];
    let rows = 0;
    tables.forEach((t, i) => {
      if (a[i] !== b[i]) mismatches.push(`${t.qname}: source ${a[i]}, target ${b[i]}`);
      if (typeof a[i] === "number") rows += a[i] as number;
    });
    const seq = await src.query("select count(*)::int as n from pg_sequences");
    return { ok: mismatches.length === 0, tables: tables.length, rows, sequences: seq.rows[0].n, mismatches, ms: Date.now() - started };
  }

  async removeReplication(): Promise<void> {
    const { target, targetDatabase } = this.a;
    const problems: string[] = [];
    // Dropping the subscription drops its slot on the source too; if the source is unreachable the
    // slot is dropped below (or by the next attempt's cleanup).
    await dropSubscriptionsIn(target, targetDatabase).catch((e) => problems.push((e as Error).message));
    await withAdmin(target, targetDatabase, (c) => c.query(`drop schema if exists ${ident(MARKER_SCHEMA)} cascade`)).catch((e) => problems.push((e as Error).message));
    await this.dropSourceReplication([], problems);
    if (problems.length) throw new Error(`removing replication objects: ${problems.join("; ")}`);
  }

  async fenceSource(): Promise<void> {
    await fenceDatabase(this.a.source, this.a.from);
  }

  async abandonTarget(): Promise<void> {
    await this.closeConnections();
    const { target, targetDatabase } = this.a;
    await dropSubscriptionsIn(target, targetDatabase);
    await withAdmin(target, "postgres", (c) => c.query(`drop database if exists ${ident(targetDatabase)} with (force)`));
  }

  private async closeConnections(): Promise<void> {
    await this.sourceDb?.end().catch(() => undefined);
    await this.targetDb?.end().catch(() => undefined);
    this.sourceDb = undefined;
    this.targetDb = undefined;
  }

  async close(): Promise<void> {
    await this.closeConnections();
  }
}

function roleComment(database: string): string {
  return `tenantfleet migration of ${database}`;
}

async function replicationRoles(c: Client, database: string): Promise<string[]> {
  const r = await c.query<{ rolname: string }>(
    `select r.rolname from pg_roles r join pg_shdescription d on d.objoid = r.oid and d.classoid = 'pg_authid'::regclass
     where r.rolname like 'tf\\_repl\\_%' and d.description = $1`,
    [roleComment(database)],
  );
  return r.rows.map((x) => x.rolname);
}

async function dropRole(c: Client, role: string): Promise<void> {
  // DROP OWNED also revokes its privileges on shared objects (the database's CONNECT).
  await c.query(`drop owned by ${ident(role)}`);
  await c.query(`drop role ${ident(role)}`);
}

/** Drop a slot, ending the WAL sender that holds it first. */
async function dropSlot(c: Client, slot: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    await c.query("select pg_terminate_backend(active_pid) from pg_replication_slots where slot_name = $1 and active_pid is not null", [slot]);
    try {
      await c.query("select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = $1", [slot]);
      return;
    } catch (e) {
      if (attempt >= 20) throw e;
      await sleep(100);
    }
  }
}

/** A libpq conninfo value, quoted. */
function connValue(v: string): string {
  return `'${v.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

function mb(bytes: number): number {
  return Math.ceil(bytes / 1024 / 1024);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
