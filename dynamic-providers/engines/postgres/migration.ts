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
import { Client, escapeIdentifier as ident, escapeLiteral as literal, type ClientConfig, type QueryResult } from "pg";
import type { RouteTarget } from "../../../proxy/catalog/routes";
import type { EngineMigration, MigrationMethod, PreflightResult, SyncProgress, Verification } from "../../migration/types";
import { SnapshotCopy } from "./snapshot-copy";
import { connValue, dropWayBacksFrom, markWayBack, prepareWayBack, preparedWayBack, startWayBack, stopWayBack, subscriptionHealth, wayBackName, wayBackProblems, wayBacksInto, type PgSide } from "./way-back";
import {
  adminConfig,
  connectAdmin,
  dropSlot,
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
/** The marker table, made if missing (a database that was moved before keeps its own). */
const MARKER_DDL = `create schema if not exists ${MARKER_SCHEMA};
  revoke all on schema ${MARKER_SCHEMA} from public;
  create table if not exists ${MARKER_SCHEMA}.marker (id int primary key, token text not null, written_at timestamptz not null default clock_timestamp())`;
/** The source's marker row (the target's arrives with the copy or the stream). */
const MARKER_ROW = `insert into ${MARKER_SCHEMA}.marker (id, token) values (1, 'initial') on conflict (id) do nothing`;
/** How long a stream may wait for its apply worker's process: over wal_retrieve_retry_interval (5 s), after which the launcher restarts one. */
const WORKER_START_GRACE_MS = 12_000;
/** Parallel COPY streams of the initial copy, and pg_restore jobs building the indexes. */
const COPY_WORKERS = 2;
const INDEX_JOBS = 2;
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
  /**
   * The copy this tenant database left on the target at an earlier move, kept current since by
   * the way-back stream `stream` (way-back.ts): moving there is a switch, not a copy, if the
   * stream is healthy; else the move copies into `targetDatabase` as any other.
   */
  standby?: { backendDatabase: string; stream: string };
  /**
   * Keep the old copy current after the cutover (default true). Not when its server goes away
   * with the move (a dedicated server the tenant leaves): a stream into it would only hold WAL
   * on the new server. When kept, that copy is the move's safety copy: no dump is taken.
   */
  wayBack?: boolean;
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
  readonly wayBack = "The old copy is kept current by reverse replication for the rollback window: to move back, put the tenant's previous placement back in the config and run `pulumi up` (a switch, no copy)";
  private migrationId: number | undefined;
  /** The kept copy this move switches to; cleared by preflight when its stream cannot carry it. */
  private standby: PgMigrationArgs["standby"];
  /** The way back this move prepared (before the pause) or started (after the commit). */
  private wayBackPrepared: string | undefined;
  /** The target's ANALYZE after the initial copy, beside the catch-up. */
  private analyzing: Promise<void> | undefined;
  /** After the fence: the stream that keeps the old copy current, if one does. */
  keptCurrentBy: string | undefined;
  private sourceDb: Client | undefined;
  private targetDb: Client | undefined;
  /** The schema dump of the source: pre-data restored before the copy, post-data after it. */
  private schemaFile: string | undefined;
  /** The replication connection that made the slot, open until the copy has imported its snapshot. */
  private exporting: Client | undefined;
  private sync: { copy: SnapshotCopy; step: string; done: boolean; error?: Error; running?: Promise<void> } | undefined;
  /** The two snapshots pinned during the pause, counted after the switch. */
  private pins: { src: Client; tgt: Client } | undefined;
  private pinnedAt: string | undefined;
  /** Sequences copied in this pause (whileDraining). */
  private sequences: number | undefined;
  private method: MigrationMethod | undefined;
  /** The initial copy's steps, ms (copyRows, buildIndexes, analyze), for the migration record. */
  readonly timings: Record<string, number> = {};

  constructor(private readonly a: PgMigrationArgs) {
    this.standby = a.standby;
  }

  /** The kept copy's name when the move switches to it, else the new copy's. */
  private get targetDatabase(): string {
    return this.standby?.backendDatabase ?? this.a.targetDatabase;
  }

  get target(): RouteTarget {
    const { target } = this.a;
    return { server: target.name, host: target.host, port: target.port, backendDatabase: this.targetDatabase };
  }

  private get name(): string {
    return `${OBJECT_PREFIX}${this.migrationId}`;
  }

  /** The forward stream: this move's subscription, or the kept copy's way back. */
  private get streamName(): string {
    return this.standby?.stream ?? this.name;
  }

  private get sourceSide(): PgSide {
    return { server: this.a.source, database: this.a.from.backendDatabase };
  }

  private get targetSide(): PgSide {
    return { server: this.a.target, database: this.targetDatabase };
  }

  private async source(): Promise<Client> {
    if (!this.sourceDb) this.sourceDb = await connectAdmin(this.a.source, this.a.from.backendDatabase);
    return this.sourceDb;
  }

  private async targetClient(): Promise<Client> {
    if (!this.targetDb) this.targetDb = await connectAdmin(this.a.target, this.targetDatabase);
    return this.targetDb;
  }

  async cleanupLeftovers(): Promise<string[]> {
    const removed: string[] = [];
    const problems: string[] = [];
    const { target, targetDatabase } = this.a;
    // A way back an attempt prepared into the live database and never started (a live database
    // subscribes to nothing of ours).
    for (const name of await wayBacksInto(this.sourceSide)) {
      problems.push(...(await stopWayBack(name, { copy: this.sourceSide })));
      removed.push(`way-back subscription ${name} in ${this.a.from.backendDatabase} on ${this.a.source.name}`);
    }
    // On the target: a half-made copy (no route points to it: its name carries the next epoch).
    await withAdmin(target, "postgres", async (c) => {
      if (await databaseExists(c, targetDatabase)) {
        removed.push(...(await dropWayBacksFrom({ server: target, database: targetDatabase })));
        await dropSubscriptionsIn(target, targetDatabase);
        await c.query(`drop database ${ident(targetDatabase)} with (force)`);
        removed.push(`database ${targetDatabase} on ${target.name}`);
      }
    });
    // The kept copy: what an interrupted move back prepared out of it.
    if (this.standby) removed.push(...(await dropWayBacksFrom(this.targetSide)));
    await this.dropSourceReplication(removed, problems, { markers: false });
    if (problems.length) throw new Error(problems.join("; "));
    return removed;
  }

  /**
   * On the source: this tenant database's publications and marker schema, its slots, its
   * replication logins. Each of the two connections that fails is reported in `problems`, so a
   * source that is gone does not stop the rest; what was dropped is named in `removed`.
   */
  private async dropSourceReplication(removed: string[], problems: string[], opts: { markers: boolean }): Promise<void> {
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
      if (opts.markers && (await c.query("select 1 from pg_namespace where nspname = $1", [MARKER_SCHEMA])).rowCount) {
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
    if (this.standby) {
      const kept = { server: target, database: this.standby.backendDatabase };
      const why = await wayBackProblems(this.standby.stream, this.sourceSide, kept).catch((e) => [(e as Error).message]);
      if (!why.length) why.push(...(await this.schemaDrift(kept)));
      if (!why.length) {
        notes.push(`${kept.database} on ${target.name}, the copy left there by the last move, has been kept current by reverse replication since: moving back is a switch, no copy`);
        return { method: "standby", notes, sizeBytes };
      }
      notes.push(`the copy ${kept.database} on ${target.name} cannot be switched to (${why.join("; ")}): moving into a new copy instead; the old one stays until its rollback window ends`);
      this.standby = undefined;
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
    // With native replication the source copy stays (a shared server keeps it, fenced) and the way
    // back keeps it current for the rollback window: that copy is the safety copy, not a dump.
    const keepsSource = !why.length && this.a.wayBack !== false;
    const free = await this.a.freeBytes?.();
    const need = sizeBytes * (keepsSource ? 1 : 2);
    if (free !== undefined && free < need + 64 * 1024 * 1024) {
      throw new Error(`not enough disk: ${keepsSource ? "the target copy" : "the backup and the target copy"} of ${from.backendDatabase} need${keepsSource ? "s" : ""} about ${mb(need)} MB, ${mb(free)} MB are free. Free some space and run \`pulumi up\` again`);
    }
    if (why.length) {
      notes.push(`logical replication cannot be used: ${why.join("; ")}. Falling back to backup-and-restore under a pause: the tenant's queries are held for the whole copy.`);
      return { method: "dump_restore", notes, sizeBytes };
    }
    if (!keepsSource) return { method: "native", notes, sizeBytes };
    const safetyCopy = `${from.backendDatabase} stays on ${source.name} after the cutover, fenced and kept current by reverse replication for the rollback window (a switch away, newer than any dump): no dump is taken beside the copy`;
    return { method: "native", notes, sizeBytes, safetyCopy };
  }

  async backup(file: string): Promise<{ bytes: number }> {
    return dumpDatabase(this.a.source, this.a.from.backendDatabase, file);
  }

  async prepareTarget(method: MigrationMethod, workDir: string): Promise<void> {
    const { source, target, from, targetDatabase } = this.a;
    this.method = method;
    await ensureTenantDatabase(target, { ...from, backendDatabase: this.targetDatabase });
    if (method === "standby") {
      // Both sides have the marker table since the move that made the kept copy.
      await (await this.source()).query(`${MARKER_DDL}; ${MARKER_ROW}`);
      return;
    }
    if (method !== "native") return;
    // The tables now, without their indexes and constraints: those are built once the rows are in
    // (startReplication), from the same schema dump.
    this.schemaFile = path.join(workDir, `${targetDatabase}.schema.dump`);
    await dumpDatabase(source, from.backendDatabase, this.schemaFile, { schemaOnly: true });
    await restoreDatabase(target, targetDatabase, this.schemaFile, { section: "pre-data" });
    await (await this.targetClient()).query(MARKER_DDL);
    // The source's row arrives with the initial copy.
    await (await this.source()).query(`${MARKER_DDL}; ${MARKER_ROW}`);
  }

  /**
   * The slot first, made on a replication connection that exports its snapshot; the rows of that
   * snapshot copied (snapshot-copy.ts); the indexes and constraints built; then the subscription,
   * made without a copy of its own, streams from the slot's position: every transaction after the
   * snapshot, none before it. The copy runs in the background; `syncProgress` reports it.
   */
  async startReplication(migrationId: number): Promise<void> {
    this.migrationId = migrationId;
    if (this.method === "standby") return; // the kept copy's stream runs already
    const { source, target, from, targetDatabase } = this.a;
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
    const repl = new Client({ ...adminConfig(source, from.backendDatabase), replication: "database" } as ClientConfig);
    repl.on("error", () => undefined);
    await repl.connect();
    this.exporting = repl;
    const slot = await repl.query<{ snapshot_name: string; consistent_point: string }>(`CREATE_REPLICATION_SLOT ${ident(this.name)} LOGICAL pgoutput EXPORT_SNAPSHOT`);
    const { snapshot_name: snapshot, consistent_point: at } = slot.rows[0]!;
    const versions = await Promise.all([this.source(), this.targetClient()].map(async (c) => Number((await (await c).query("select current_setting('server_version_num') as v")).rows[0].v)));
    const sameMajor = Math.floor(versions[0]! / 10000) === Math.floor(versions[1]! / 10000);
    const copy = new SnapshotCopy({
      source, sourceDatabase: from.backendDatabase, target, targetDatabase, snapshot, workers: COPY_WORKERS, binary: sameMajor,
      // The snapshot lives as long as the connection that exported it does nothing else.
      onSnapshotImported: () => void this.closeExporting(),
    });
    const conninfo = `host=${connValue(source.host)} port=${source.port} user=${connValue(role)} password=${connValue(password)} dbname=${connValue(from.backendDatabase)} connect_timeout=10`;
    this.sync = { copy, step: `copying rows (snapshot at ${at})`, done: false };
    const sync = this.sync;
    const run = async () => {
      let t = Date.now();
      await copy.run();
      this.timings.copyRows = Date.now() - t;
      sync.step = "building indexes and constraints";
      t = Date.now();
      await restoreDatabase(target, targetDatabase, this.schemaFile!, { section: "post-data", jobs: INDEX_JOBS });
      this.timings.buildIndexes = Date.now() - t;
      await (await this.targetClient()).query(
        `create subscription ${ident(this.name)} connection ${literal(conninfo)} publication ${ident(this.name)}
         with (copy_data = false, create_slot = false, slot_name = ${literal(this.name)})`,
      );
      // Fresh tables have no statistics: without them the tenant's first queries on the target
      // could get bad plans. A sampled ANALYZE, beside the catch-up (it blocks no applied row);
      // readyForPause waits for it.
      const analyzeStarted = Date.now();
      this.analyzing = withAdmin(target, targetDatabase, (c) => c.query("analyze")).then(() => {
        this.timings.analyze = Date.now() - analyzeStarted;
      });
      this.analyzing.catch(() => undefined); // awaited before the pause
      sync.done = true;
    };
    sync.running = run().catch((e) => {
      sync.error = e as Error;
    });
  }

  private async closeExporting(): Promise<void> {
    const c = this.exporting;
    this.exporting = undefined;
    await c?.end().catch(() => undefined);
  }

  async syncProgress(): Promise<SyncProgress> {
    const sync = this.sync;
    if (!sync) throw new Error("the initial copy has not started");
    if (sync.error) throw sync.error;
    const p = sync.copy.progress();
    const copied = p.bytesTotal > 0 ? (100 * p.bytesDone) / p.bytesTotal : sync.step.startsWith("copying") ? 0 : 100;
    // The index build is the last tenth of the way.
    const percent = sync.done ? 100 : sync.step.startsWith("copying") ? Math.min(90, copied * 0.9) : 95;
    return { percent, done: sync.done, tables: p.tables, tablesDone: p.tablesDone, step: sync.done ? "streaming" : sync.step };
  }

  async markerLag(timeoutMs: number): Promise<number> {
    const token = randomBytes(8).toString("hex");
    const started = Date.now();
    await (await this.source()).query(`update ${MARKER_SCHEMA}.marker set token = $1, written_at = clock_timestamp() where id = 1`, [token]);
    const tgt = await this.targetClient();
    let checked = started;
    // Every millisecond at first (the pause's final lag is a few), then backing off.
    for (let wait = 1; ; wait = Date.now() - started < 30 ? 1 : Math.min(wait * 2, 50)) {
      const r = await tgt.query(`select token from ${MARKER_SCHEMA}.marker where id = 1`);
      if (r.rows[0]?.token === token) return Date.now() - started;
      // A stream that has stopped on an error (a row that no longer fits the target's schema)
      // fails now, saying why, rather than at the timeout.
      if (Date.now() - checked > 2000) {
        checked = Date.now();
        const problems = await this.streamChecks({ idleOk: Date.now() - started < WORKER_START_GRACE_MS });
        if (problems.length) throw new Error(problems.join("; "));
      }
      if (Date.now() - started > timeoutMs) {
        throw new Error(`replication of ${this.a.from.backendDatabase} to ${this.a.target.name} stalled: a marker written on ${this.a.source.name} was not seen on the target within ${timeoutMs} ms`);
      }
      await sleep(wait);
    }
  }

  /**
   * Paused, as soon as the source is drained (its writes are over), alongside the final lag: the
   * source's snapshot pinned and the sequences copied, on the pin connections (the lag's polling
   * has the others to itself).
   */
  async whileDraining(): Promise<void> {
    if (!this.pins) await this.readyForPause();
    const { src, tgt } = this.pins!;
    await pin(src);
    this.sequences = await copySequences(src, tgt);
  }

  /**
   * After the final lag: the target's snapshot pinned, and the target's WAL position then made
   * the way back's starting point (the forward stream's rows are all before it).
   */
  async finishWhilePaused(): Promise<{ sequences: number }> {
    if (this.sequences === undefined) await this.whileDraining();
    const lsn = await pin(this.pins!.tgt);
    this.pinnedAt = new Date().toISOString();
    if (this.wayBackPrepared) await markWayBack(await this.source(), this.wayBackPrepared, lsn);
    return { sequences: this.sequences! };
  }

  async copyWhilePaused(): Promise<void> {
    await copyDatabase(this.a.source, this.a.from.backendDatabase, this.a.target, this.a.targetDatabase);
  }

  /**
   * Before the pause: the target's dirty buffers flushed, the stream's health and the schema
   * checked (a failure here costs the tenant nothing), and two connections opened for the
   * pause's pinned snapshots, so the pause does not wait for their logins.
   */
  async readyForPause(): Promise<void> {
    await this.unpin();
    await this.analyzing?.catch((e) => {
      throw new Error(`analyzing ${this.targetDatabase} on ${this.a.target.name} after the copy: ${(e as Error).message}`);
    });
    const streaming = this.method === "native" || this.method === "standby";
    // The copy left the target's buffers dirty: flush them now, not while the tenant waits on
    // commits that queue behind the checkpointer's writes. On a connection of its own, beside the
    // checks and the way back's preparation (neither waits for it).
    const checkpoint = (async () => {
      if (this.method !== "native") return;
      const t = Date.now();
      await withAdmin(this.a.target, "postgres", (c) => c.query("checkpoint"));
      this.timings.checkpoint = Date.now() - t;
    })();
    checkpoint.catch(() => undefined); // awaited below
    if (streaming) {
      const problems = await this.streamChecks();
      if (problems.length) throw new Error(problems.join("; "));
    }
    if (streaming && this.a.wayBack !== false) {
      // The way back, ready to be marked in the pause and started after the commit.
      const t = Date.now();
      const name = wayBackName(this.migrationId!);
      await prepareWayBack(name, this.targetSide, this.sourceSide);
      this.wayBackPrepared = name;
      this.timings.prepareWayBack = Date.now() - t;
    }
    await checkpoint;
    const [src, tgt] = await Promise.all([connectAdmin(this.a.source, this.a.from.backendDatabase), connectAdmin(this.a.target, this.targetDatabase)]);
    this.pins = { src, tgt };
    // The pause's statements once now, on the connections that will run them: a new session
    // loads its catalog caches at its first statements (tens of ms), which must not be in the
    // pause. Copying the sequences now is harmless (the pause copies them again). Not before a copy
    // under the pause: the target has no tables yet.
    if (this.method !== "dump_restore") await copySequences(src, tgt);
    await Promise.all([pin(src), pin(tgt)]);
    await Promise.all([src.query("rollback"), tgt.query("rollback")]);
    if (this.wayBackPrepared) await (await this.source()).query("select 'pg_' || oid from pg_subscription where subname = $1", [this.wayBackPrepared]);
  }

  /** The forward stream's problems, then the schema's differences (a drift is the usual cause of
   * a stopped stream, and it shows before the stream's error count does). */
  private async streamChecks(opts: { idleOk?: boolean } = {}): Promise<string[]> {
    const drift = await this.schemaDrift(this.targetSide);
    return [...(await this.streamProblems(opts)), ...drift];
  }

  /** The forward stream: its apply worker alive and without errors during the move. `idleOk`: a
   * worker without a process is not (yet) a problem: the launcher starts a new subscription's
   * worker, and restarts one that exited, within wal_retrieve_retry_interval (5 s). */
  private async streamProblems(opts: { idleOk?: boolean } = {}): Promise<string[]> {
    const h = await subscriptionHealth(await this.targetClient(), this.streamName);
    if (!h) return [`the subscription ${this.streamName} is gone from ${this.a.target.name}`];
    if (h.errors > 0) return [`replication of ${this.a.from.backendDatabase} into ${this.a.target.name} failed ${h.errors} time(s) applying a change (the target server's log says why)`];
    if (h.pid === null && !opts.idleOk) return [`the subscription's apply worker on ${this.a.target.name} is not running`];
    return [];
  }

  /**
   * Logical replication carries rows, not DDL: a table, column or type changed on the source
   * during the move leaves the target with the old shape (and stops the stream at the first row
   * that does not fit). Both sides' user schemas compared; each difference named.
   */
  private async schemaDrift(other: PgSide): Promise<string[]> {
    const [a, b] = await Promise.all([schemaOf(await this.source()), withAdmin(other.server, other.database, schemaOf)]);
    const diff: string[] = [];
    for (const [table, cols] of a) {
      const other = b.get(table);
      if (other === undefined) diff.push(`${table} is new`);
      else if (other !== cols) diff.push(`${table} changed (source: ${cols}; target: ${other})`);
    }
    for (const table of b.keys()) if (!a.has(table)) diff.push(`${table} was dropped`);
    if (!diff.length) return [];
    return [
      `the schema of ${this.a.from.backendDatabase} on ${this.a.source.name} differs from ${other.database} on ${other.server.name}'s (changed during the move, or since the cutover that made that copy): ${diff.slice(0, 5).join("; ")}${diff.length > 5 ? ` (and ${diff.length - 5} more)` : ""}. ` +
        `Logical replication carries rows only: no switch to a copy of another shape; run \`pulumi up\` again when the schema change is done: the next attempt copies the new schema`,
    ];
  }

  /** After a copy under the pause: both snapshots pinned at once. */
  private async pinSnapshots(): Promise<void> {
    if (!this.pins) await this.readyForPause();
    await Promise.all([pin(this.pins!.src), pin(this.pins!.tgt)]);
    this.pinnedAt = new Date().toISOString();
  }

  /**
   * In the pause, nothing that reads every row: with native replication the target has applied
   * the last write (markerLag) and finishWhilePaused pinned a snapshot on each side, which see the
   * same rows; after a copy under the pause they are pinned here. `verifyAfterSwitch` counts them
   * after the switch, while the tenant runs on the target.
   */
  async verify(): Promise<Verification> {
    const started = Date.now();
    if (!this.pinnedAt) await this.pinSnapshots();
    return { ok: true, tables: 0, rows: 0, sequences: 0, mismatches: [], ms: Date.now() - started };
  }

  /**
   * After the switch: every table's rows counted in the two snapshots pinned during the pause
   * (both at the cutover), both servers at once. The source is frozen in its snapshot whatever
   * happens to it since; the target's writes since the switch are not in its snapshot.
   */
  async verifyAfterSwitch(): Promise<Verification> {
    const started = Date.now();
    if (!this.pins) throw new Error("no snapshot was pinned during the pause");
    const { src, tgt } = this.pins;
    try {
      const tables = (await src.query<TableRow>(USER_TABLES)).rows;
      const count = async (c: Client, t: TableRow) => {
        try {
          return Number((await c.query(`select count(*) as n from ${t.qname}`)).rows[0].n);
        } catch (e) {
          return `error: ${(e as Error).message}`;
        }
      };
      // Each side's tables one after the other on its pinned connection, both sides at once.
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
      return { ok: mismatches.length === 0, tables: tables.length, rows, sequences: seq.rows[0].n, mismatches, ms: Date.now() - started, at: this.pinnedAt };
    } finally {
      await this.unpin();
    }
  }

  private async unpin(): Promise<void> {
    const p = this.pins;
    this.pins = undefined;
    this.pinnedAt = undefined;
    this.sequences = undefined;
    await Promise.all([p?.src, p?.tgt].map((c) => c?.end().catch(() => undefined)));
  }

  /**
   * The forward stream's objects on both sides. Before the commit a kept copy's stream stays (the
   * copy stays current). After it, the stream that fed a kept copy from the source goes too (the
   * source is the old copy now), and the marker tables stay when a way back will use them.
   */
  async removeReplication(opts: { committed?: boolean } = {}): Promise<void> {
    const problems: string[] = [];
    const fail = (e: unknown) => problems.push((e as Error).message);
    const keepsStream = this.standby && !opts.committed;
    const wayBack = opts.committed ? (await wayBacksInto(this.sourceSide).catch(() => [])).length > 0 : false;
    // Dropping the subscription drops its slot on the source too; if the source is unreachable the
    // slot is dropped below (or by the next attempt's cleanup).
    // The marker tables stay while a stream will use them: the way back after the commit, the kept
    // copy's stream before it.
    const keepMarkers = opts.committed ? wayBack : !!this.standby;
    if (!keepsStream) await dropSubscriptionsIn(this.a.target, this.targetDatabase).catch(fail);
    if (!keepMarkers) await withAdmin(this.a.target, this.targetDatabase, (c) => c.query(`drop schema if exists ${ident(MARKER_SCHEMA)} cascade`)).catch(fail);
    await this.dropSourceReplication([], problems, { markers: !keepMarkers });
    if (opts.committed) await dropWayBacksFrom(this.sourceSide).catch(fail);
    if (problems.length) throw new Error(`removing replication objects: ${problems.join("; ")}`);
  }

  /**
   * After the commit. With a way back prepared: the tenant's login fenced out of the old copy
   * (the subscription's worker still applies), then the way back started. Without one (a copy
   * made under the pause, or a run of an earlier version): nobody can connect to the old copy.
   */
  async fenceSource(): Promise<void> {
    const name = await preparedWayBack(this.sourceSide).catch(() => undefined);
    if (!name) {
      await fenceDatabase(this.a.source, this.a.from);
      return;
    }
    await fenceDatabase(this.a.source, this.a.from, { keepReplication: true });
    await startWayBack(this.sourceSide, name);
    this.keptCurrentBy = name;
  }

  async abandonTarget(): Promise<void> {
    await this.closeConnections();
    const problems: string[] = [];
    for (const name of await wayBacksInto(this.sourceSide).catch(() => [])) problems.push(...(await stopWayBack(name, { copy: this.sourceSide })));
    const { target } = this.a;
    if (this.standby) {
      // The kept copy stays, current, fenced again against the tenant's login.
      await dropWayBacksFrom(this.targetSide).catch((e) => problems.push((e as Error).message));
      await fenceDatabase(target, { backendDatabase: this.targetDatabase, role: this.a.from.role }, { keepReplication: true });
    } else {
      // Slots of the half-made copy would block its drop.
      await dropWayBacksFrom(this.targetSide).catch(() => undefined);
      await dropSubscriptionsIn(target, this.targetDatabase);
      await withAdmin(target, "postgres", (c) => c.query(`drop database if exists ${ident(this.targetDatabase)} with (force)`));
    }
    if (problems.length) throw new Error(problems.join("; "));
  }

  private async closeConnections(): Promise<void> {
    await this.unpin();
    await this.closeExporting();
    if (this.schemaFile) await fs.rm(this.schemaFile, { force: true });
    await this.sourceDb?.end().catch(() => undefined);
    await this.targetDb?.end().catch(() => undefined);
    this.sourceDb = undefined;
    this.targetDb = undefined;
  }

  async close(): Promise<void> {
    await this.closeConnections();
  }
}

/** A repeatable-read transaction kept open: its snapshot is the database as of now. Returns the
 * server's WAL position then. */
async function pin(c: Client): Promise<string> {
  const r = (await c.query("begin transaction isolation level repeatable read read only; select pg_current_wal_lsn()::text as lsn")) as unknown as QueryResult<{ lsn: string }>[];
  return r[1]!.rows[0]!.lsn;
}

/** Logical replication does not carry sequence values: copy each one's position. */
async function copySequences(source: Client, target: Client): Promise<number> {
  const seqs = await source.query<{ qname: string; last_value: string | null }>(
    `select format('%I.%I', schemaname, sequencename) as qname, last_value from pg_sequences where schemaname <> '${MARKER_SCHEMA}'`,
  );
  const set = seqs.rows.filter((s) => s.last_value !== null);
  if (set.length) await target.query(set.map((s) => `select setval(${literal(s.qname)}::regclass, ${BigInt(s.last_value!)}, true)`).join(";\n"));
  return seqs.rows.length;
}

/** Each user table's columns (name, type, not null), one string per table: what rows must fit. */
async function schemaOf(c: Client): Promise<Map<string, string>> {
  const r = await c.query<{ t: string; cols: string }>(
    `select format('%I.%I', n.nspname, c.relname) as t,
            string_agg(format('%I %s%s', a.attname, format_type(a.atttypid, a.atttypmod), case when a.attnotnull then ' not null' else '' end), ', ' order by a.attnum) as cols
     from pg_class c join pg_namespace n on n.oid = c.relnamespace
     join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
     where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema', '${MARKER_SCHEMA}')
       and n.nspname not like 'pg_toast%' and n.nspname not like 'pg_temp%'
     group by 1`,
  );
  return new Map(r.rows.map((x) => [x.t, x.cols]));
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

function mb(bytes: number): number {
  return Math.ceil(bytes / 1024 / 1024);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
