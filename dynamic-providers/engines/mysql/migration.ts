/**
 * MariaDB's side of a migration: binlog replication of one database, never of the whole server.
 * The target gets a consistent copy (`mariadb-dump --single-transaction --master-data` piped into
 * it) and a replication connection of its own (multi-source: `CHANGE MASTER 'tf_mig_<id>'`) that
 * starts at the dump's binlog position and applies only this database's events
 * (`replicate_wild_do_table`). Lag to zero is `MASTER_POS_WAIT` on the source's binlog position
 * read once the proxies hold the tenant's queries: when it returns, every acknowledged write is
 * on the target.
 *
 * GTIDs: every server starts in GTID domain 0. The target binlogs what it applies (log_slave_updates)
 * and runs gtid_strict_mode, so a source's domain-0 transaction numbered below the target's own
 * would stop replication. So each server writes in a domain of its own (its server_id: settings.ts
 * renders `gtid-domain-id`; a server started before that is given it here, `SET GLOBAL`), and
 * everything replicated comes from a domain the target never wrote.
 *
 * The database keeps its name on every server (applications qualify tables with it), so a copy
 * left on the target by an earlier move (retained for rollback, fenced) is dropped before the new
 * copy is made: the route does not point there, and the newer data is on the source.
 *
 * Names: the replication connection `tf_mig_<id>`, its login on the source `tf_repl_<id>`.
 */
import { randomBytes } from "node:crypto";
import type * as mysql from "mysql2/promise";
import type { RouteTarget } from "../../../proxy/catalog/routes";
import type { EngineMigration, MigrationMethod, PreflightResult, SyncProgress, Verification } from "../../migration/types";
import { KeptConnections } from "../kept-connections";
import {
  copyDatabase,
  databaseExists,
  type CopyProgress,
  backupSink,
  type BackupSink,
  databaseSize,
  dropTenantDatabase,
  dumpDatabase,
  ensureTenantDatabase,
  fenceDatabase,
  ident,
  literal,
  openAdmin,
  rows,
  withAdmin,
  type MysqlServerAccess,
  type MysqlTenantDatabase,
} from "./tenant-db";

const CONNECTION_PREFIX = "tf_mig_";
const LOGIN_PREFIX = "tf_repl_";

export interface MysqlMigrationArgs {
  source: MysqlServerAccess;
  target: MysqlServerAccess;
  /** The tenant database (the same name and login on both servers). */
  from: MysqlTenantDatabase;
}

/** `replicate_wild_do_table` pattern of exactly one database (`_` and `%` are wildcards there). */
export const wildPattern = (database: string) => `${database.replace(/([\\_%])/g, "\\$1")}.%`;

/** The initial copy, running in the background while the orchestrator reports its progress. */
interface InitialCopy {
  progress: CopyProgress;
  size: { bytes: number; tables: number };
  done: boolean;
  error: Error | undefined;
  abort: AbortController;
  /** Resolves when the copy (and the replication set-up after it) has ended, either way. */
  settled: Promise<void>;
}

interface SlaveStatus {
  Connection_name: string;
  Slave_IO_Running: string;
  Slave_SQL_Running: string;
  Last_IO_Error: string;
  Last_SQL_Error: string;
  Master_User: string;
  Master_Host: string;
  Master_Port: number;
  Replicate_Wild_Do_Table: string;
  Seconds_Behind_Master: number | null;
  Relay_Master_Log_File: string;
  Exec_Master_Log_Pos: number;
}

/** Binlog coordinates: `file:pos` at or after `atFile:atPos` (files are numbered, `binlog.000042`). */
function atOrAfter(file: string, pos: number, atFile: string, atPos: number): boolean {
  return file === atFile ? pos >= atPos : file > atFile;
}

export class MysqlMigration implements EngineMigration {
  readonly nativeMechanism = "MariaDB binlog replication (one replication connection per migration, filtered to the tenant's database)";
  readonly target: RouteTarget;
  private migrationId: number | undefined;
  private replPassword: string | undefined;
  /** Admin connections kept for the calls a cutover makes while the tenant is paused (lag, verify): no login inside the pause. */
  private readonly kept = new KeptConnections<MysqlServerAccess, mysql.Connection>({ open: openAdmin, destroy: (c) => c.destroy(), end: (c) => c.end().catch(() => c.destroy()) });
  private readonly onKept = <T>(s: MysqlServerAccess, fn: (c: mysql.Connection) => Promise<T>) => this.kept.on(s, fn);

  constructor(private readonly a: MysqlMigrationArgs) {
    this.target = { server: a.target.name, host: a.target.host, port: a.target.port, backendDatabase: a.from.database };
  }

  private get connection(): string {
    return `${CONNECTION_PREFIX}${this.migrationId}`;
  }

  /**
   * Replication connections on the target for this database, from any attempt; also one from
   * the source that has lost its filter (the target restarted: the filter is set at runtime, so
   * it went with the restart; skip-slave-start keeps it from running, but it is never valid).
   */
  private async ours(c: mysql.Connection): Promise<SlaveStatus[]> {
    const all = await rows<SlaveStatus>(c, "show all slaves status");
    const fromSource = (s: SlaveStatus) => s.Master_Host === this.a.source.host && Number(s.Master_Port) === Number(this.a.source.port);
    return all.filter((s) => s.Connection_name.startsWith(CONNECTION_PREFIX) && (s.Replicate_Wild_Do_Table === wildPattern(this.a.from.database) || (!s.Replicate_Wild_Do_Table && fromSource(s))));
  }

  async cleanupLeftovers(): Promise<string[]> {
    return this.removeConnections(false);
  }

  /** `sideMayBeGone`: after a commit, the source (or the target) may be gone already; what is left there goes with it. */
  private async removeConnections(sideMayBeGone: boolean): Promise<string[]> {
    await this.stopCopy();
    const removed: string[] = [];
    const logins: string[] = [];
    const tolerate = <T>(p: Promise<T>) => (sideMayBeGone ? p.catch(() => undefined) : p);
    await tolerate(withAdmin(this.a.target, async (c) => {
      // A run that relaxed it (this one, or one interrupted before its cutover): restored. The
      // settings file's values are 1 and 1 on every tenantfleet server.
      await this.restoreTargetDurability(c);
      for (const s of await this.ours(c)) {
        await dropConnection(c, s.Connection_name);
        logins.push(s.Master_User);
        removed.push(`replication connection ${s.Connection_name} on ${this.a.target.name}`);
      }
    }));
    if (this.migrationId !== undefined) logins.push(`${LOGIN_PREFIX}${this.migrationId}`);
    const drop = [...new Set(logins.filter((l) => l.startsWith(LOGIN_PREFIX)))];
    if (drop.length) {
      await tolerate(withAdmin(this.a.source, async (c) => {
        for (const u of drop) {
          await c.query(`drop user if exists ${literal(u)}@'%'`);
          removed.push(`replication login ${u} on ${this.a.source.name}`);
        }
      }));
    }
    return removed;
  }

  async preflight(): Promise<PreflightResult> {
    const { source, target, from } = this.a;
    const notes: string[] = [];
    const src = await withAdmin(source, async (c) => {
      if (!(await databaseExists(c, from.database))) {
        throw new Error(`the source database ${from.database} does not exist on ${source.name}: the catalog and the server disagree; check \`npm run status\``);
      }
      const [v] = await rows<{ version: string; log_bin: number; format: string; server_id: number }>(c, "select @@version as version, @@log_bin as log_bin, @@binlog_format as format, @@server_id as server_id");
      const noKey = await rows<{ t: string }>(
        c,
        `select t.table_name as t from information_schema.tables t
         where t.table_schema = ? and t.table_type = 'BASE TABLE'
           and not exists (select 1 from information_schema.table_constraints k where k.table_schema = t.table_schema and k.table_name = t.table_name and k.constraint_type in ('PRIMARY KEY', 'UNIQUE'))`,
        [from.database],
      );
      return { ...v!, size: await databaseSize(c, from.database), noKey: noKey.map((r) => r.t) };
    });
    const tgt = await withAdmin(target, async (c) => (await rows<{ version: string; server_id: number }>(c, "select @@version as version, @@server_id as server_id"))[0]!);
    const major = (v: string) => v.split(".").slice(0, 2).map(Number);
    const [sa, sb] = major(src.version);
    const [ta, tb] = major(tgt.version);
    if (ta! < sa! || (ta === sa && tb! < sb!)) throw new Error(`${target.name} runs MariaDB ${tgt.version}, older than ${source.name}'s ${src.version}: the target must run the same or a newer version`);
    if (src.server_id === tgt.server_id) throw new Error(`${source.name} and ${target.name} have the same server_id ${src.server_id}: replication between them cannot work`);
    const why: string[] = [];
    if (!Number(src.log_bin)) why.push(`the binary log is off on ${source.name} (log_bin)`);
    if (src.format !== "ROW") why.push(`binlog_format is ${src.format} on ${source.name} (ROW is needed to filter one database exactly)`);
    if (src.noKey.length) notes.push(`table${src.noKey.length > 1 ? "s" : ""} ${src.noKey.join(", ")} of ${from.database} ha${src.noKey.length > 1 ? "ve" : "s"} no primary or unique key: replicated updates scan the whole table on the target`);
    if (why.length) {
      notes.push(`binlog replication cannot be used: ${why.join("; ")}. Falling back to backup-and-restore under a pause: the tenant's queries are held for the whole copy.`);
      this.method = "dump_restore";
      return { method: "dump_restore", notes, sizeBytes: src.size };
    }
    this.method = "native";
    return { method: "native", notes, sizeBytes: src.size };
  }

  private method: MigrationMethod | undefined;
  /** The safety backup the initial copy writes as it goes (native moves). */
  private backupTee: { sink: Promise<BackupSink>; resolve(r: { bytes: number }): void; reject(e: Error): void } | undefined;

  /**
   * The safety backup. With replication, the initial copy's dump is the backup too: the same
   * options, one consistent snapshot, so the source is read once, not twice side by side; the file
   * (`.partial` from now) is complete when the copy is. Backup-and-restore moves dump first.
   */
  backup(file: string): Promise<{ bytes: number }> {
    if (this.method !== "native") return dumpDatabase(this.a.source, this.a.from.database, file);
    return new Promise((resolve, reject) => {
      this.backupTee = { sink: backupSink(file), resolve, reject };
      this.backupTee.sink.catch(reject);
    });
  }

  async prepareTarget(_method: MigrationMethod, _workDir: string): Promise<void> {
    await withAdmin(this.a.target, async (c) => {
      // A copy left by an earlier move (fenced, retained for rollback) or a half-made one: the
      // route does not point here, and the source holds the newer data.
      if (await databaseExists(c, this.a.from.database)) await c.query(`drop database ${ident(this.a.from.database)}`);
    });
    await ensureTenantDatabase(this.a.target, this.a.from);
  }

  /**
   * Starts the initial copy and returns: the orchestrator follows it through `syncProgress`
   * (`migrating_sync N%`, by the dump's bytes against the database's size). When the copy is in,
   * the replication login is made on the source and the connection on the target, from the
   * copy's binlog position. The login is made only then, so a run killed during the copy leaves
   * nothing on the source (the half-made copy is dropped by the next attempt's prepareTarget).
   */
  async startReplication(migrationId: number): Promise<void> {
    this.migrationId = migrationId;
    const { source, target, from } = this.a;
    const bytes = await withAdmin(source, async (c) => {
      const [d] = await rows<{ domain: number }>(c, "select @@gtid_domain_id as domain");
      if (Number(d!.domain) === 0) await c.query("set global gtid_domain_id = @@server_id");
      return databaseSize(c, from.database);
    });
    const size = { bytes, tables: (await this.tablesOf(from.database)).length };
    await this.relaxTargetDurability();
    const progress: CopyProgress = { bytes: 0, tablesStarted: 0 };
    const abort = new AbortController();
    const copy: InitialCopy = { progress, size, done: false, error: undefined, abort, settled: Promise.resolve() };
    this.copy = copy;
    // The copy, its binlog position (and the safety backup) come from one snapshot.
    const tee = this.backupTee;
    const sink = tee ? await tee.sink : undefined;
    copy.settled = copyDatabase(source, target, from.database, { position: true, progress, signal: abort.signal, tee: sink?.stream })
      .then(async (position) => {
        if (abort.signal.aborted) throw new Error("the initial copy was stopped");
        if (tee) tee.resolve(await sink!.complete());
        return this.connectReplica(position!);
      })
      .then(
        () => void (copy.done = true),
        async (e: Error) => {
          copy.error = abort.signal.aborted ? new Error("the initial copy was stopped") : e;
          await sink?.discard();
          tee?.reject(copy.error);
        },
      );
  }

  private copy: InitialCopy | undefined;

  /**
   * A target that serves nothing else (a dedicated server: no database but this one) loads the copy
   * and applies the replication stream without an fsync per commit (`innodb_flush_log_at_trx_commit
   * = 2`, `sync_binlog = 0`): until the cutover nobody's writes are acknowledged there, and a crash
   * meanwhile fails the move, which starts over. Durability is back before the pause
   * (`verifyBeforePause`), at every cleanup, and at any restart (the settings file has 1 and 1).
   * A shared target keeps full durability: other tenants' acknowledged writes are on it.
   */
  private async relaxTargetDurability(): Promise<void> {
    await withAdmin(this.a.target, async (c) => {
      const others = await rows<{ s: string }>(
        c,
        "select schema_name as s from information_schema.schemata where schema_name not in ('mysql', 'information_schema', 'performance_schema', 'sys') and schema_name <> ?",
        [this.a.from.database],
      );
      if (others.length > 0) return;
      await c.query("set global innodb_flush_log_at_trx_commit = 2, sync_binlog = 0");
    });
  }

  /** Full durability on the target again: the settings file's values (idempotent; a target never relaxed already has them). */
  private async restoreTargetDurability(c: mysql.Connection): Promise<void> {
    await c.query("set global innodb_flush_log_at_trx_commit = 1, sync_binlog = 1");
  }

  /** A copy still running (the move failed meanwhile): stop it, so that nothing is made after the cleanup. */
  private async stopCopy(): Promise<void> {
    if (this.backupTee && !this.copy) {
      // Stopped before its copy began: the backup it was to write never will be.
      const tee = this.backupTee;
      this.backupTee = undefined;
      await tee.sink.then((s) => s.discard(), () => undefined);
      tee.reject(new Error("the move stopped before its initial copy"));
    }
    const copy = this.copy;
    if (!copy || copy.done || copy.error) return;
    copy.abort.abort();
    await copy.settled;
  }

  /** The replication login on the source, and this database's replication connection on the target from `position`. */
  private async connectReplica(position: { file: string; pos: number }): Promise<void> {
    const { source, target, from } = this.a;
    const login = `${LOGIN_PREFIX}${this.migrationId}`;
    this.replPassword = randomBytes(18).toString("base64url");
    await withAdmin(source, async (c) => {
      await c.query(`create or replace user ${literal(login)}@'%' identified by ${literal(this.replPassword!)}`);
      await c.query(`grant replication slave on *.* to ${literal(login)}@'%'`);
    });
    await withAdmin(target, async (c) => {
      const name = this.connection;
      await c.query(
        `change master ${literal(name)} to master_host = ${literal(source.host)}, master_port = ${Number(source.port)}, master_user = ${literal(login)}, master_password = ${literal(this.replPassword!)},
         master_log_file = ${literal(position.file)}, master_log_pos = ${Number(position.pos)}, master_use_gtid = no`,
      );
      await c.query(`set global ${name}.replicate_wild_do_table = ${literal(wildPattern(from.database))}`);
      await c.query(`start slave ${literal(name)}`);
    });
  }

  /** This migration's replication connection on the target, as it is now. */
  private async statusRow(c: mysql.Connection): Promise<SlaveStatus> {
    const s = (await rows<SlaveStatus>(c, "show all slaves status")).find((x) => x.Connection_name === this.connection);
    if (!s) throw new Error(`replication connection ${this.connection} is gone from ${this.a.target.name}`);
    return s;
  }

  /** The same, running without an error (else it throws saying why). */
  private async status(c: mysql.Connection): Promise<SlaveStatus> {
    const s = await this.statusRow(c);
    if (s.Slave_SQL_Running !== "Yes" || s.Slave_IO_Running === "No") {
      throw new Error(`replication of ${this.a.from.database} to ${this.a.target.name} stopped: ${s.Last_SQL_Error || s.Last_IO_Error || "not running"}`);
    }
    return s;
  }

  async syncProgress(): Promise<SyncProgress> {
    const copy = this.copy;
    if (!copy) throw new Error("the initial copy was not started");
    if (copy.error) throw copy.error;
    const tables = copy.size.tables;
    if (!copy.done) {
      // mariadb-dump's text (hex for binary columns) is not the size on disk: a bound, not a promise.
      // Past 95% of the size it creeps toward 99: still rising while bytes come (the orchestrator's
      // stall check watches it), never 100 before the copy is in.
      const r = copy.size.bytes > 0 ? copy.progress.bytes / copy.size.bytes : 0;
      const percent = r <= 0.95 ? 100 * r : 99 - (4 * 0.95) / r;
      return { percent, done: false, tables, tablesDone: Math.max(0, Math.min(tables, copy.progress.tablesStarted - 1)) };
    }
    // Copied; replication runs from the copy's position: what remains is catch-up.
    await withAdmin(this.a.target, (c) => this.status(c));
    return { percent: 100, done: true, tables, tablesDone: tables };
  }

  async markerLag(timeoutMs: number): Promise<number> {
    const started = Date.now();
    const at = await this.onKept(this.a.source, async (c) => (await rows<{ File: string; Position: number }>(c, "show master status"))[0]);
    if (!at) throw new Error(`${this.a.source.name} reports no binlog position (is log_bin on?)`);
    await this.onKept(this.a.target, async (c) => {
      await this.status(c);
      const [r] = await rows<{ r: number | null }>(c, "select master_pos_wait(?, ?, ?, ?) as r", [at.File, Number(at.Position), Math.max(1, Math.ceil(timeoutMs / 1000)), this.connection]);
      if (r?.r === null || r?.r === undefined) await this.status(c); // stopped: say why
      if (Number(r!.r) === -1) throw new Error(`replication of ${this.a.from.database} to ${this.a.target.name} did not reach ${at.File}:${at.Position} within ${timeoutMs} ms`);
    });
    return Date.now() - started;
  }

  async finishWhilePaused(): Promise<{ sequences: number }> {
    // Rows carry AUTO_INCREMENT values and InnoDB moves each counter past them; sequences
    // (CREATE SEQUENCE) are tables whose changes replicate too.
    return { sequences: 0 };
  }

  async copyWhilePaused(): Promise<void> {
    await copyDatabase(this.a.source, this.a.target, this.a.from.database);
  }

  /**
   * Row counts per table on both servers at one point of the binlog, while the tenant runs: the
   * target's applier stops; the source opens a consistent snapshot, which MariaDB pins to a binlog
   * position (`binlog_snapshot_file/position`) and counts in it; the applier runs `UNTIL` that
   * position and stops there; the target counts; the applier goes on. Both counts then describe
   * the same transactions, however long they take, and nothing of this is inside the pause: there,
   * `markerLag` waits for the stream to reach the source's last position and `verify` checks that
   * it did so without error (an applier error stops replication and fails the move before the
   * commit). Why not count in the pause: the counts read every row, so the pause would grow with
   * the database (1 GB: seconds).
   */
  async verifyBeforePause(): Promise<Verification> {
    const started = Date.now();
    const db = this.a.from.database;
    const name = this.connection;
    // Caught up: from here on the target must keep what it applies as the source does.
    await this.onKept(this.a.target, (c) => this.restoreTargetDurability(c));
    const tables = await this.tablesOf(db);
    let source: number[];
    let target: number[];
    await this.onKept(this.a.target, (c) => c.query(`stop slave ${literal(name)} sql_thread`));
    try {
      const snap = await openAdmin(this.a.source);
      let file: string;
      let pos: number;
      try {
        await snap.query("start transaction with consistent snapshot");
        const st = new Map((await rows<{ Variable_name: string; Value: string }>(snap, "show status like 'binlog_snapshot_%'")).map((r) => [r.Variable_name.toLowerCase(), r.Value]));
        file = st.get("binlog_snapshot_file") ?? "";
        pos = Number(st.get("binlog_snapshot_position"));
        if (!file || !Number.isFinite(pos)) throw new Error(`${this.a.source.name} reports no binlog snapshot position`);
        source = await countRows(snap, db, tables);
        await snap.query("commit");
      } finally {
        await snap.end().catch(() => snap.destroy());
      }
      target = await this.onKept(this.a.target, async (c) => {
        await c.query(`start slave ${literal(name)} sql_thread until master_log_file = ${literal(file)}, master_log_pos = ${Number(pos)}`);
        // NULL: the applier is not running — it stopped at once, the position being reached already.
        const [r] = await rows<{ r: number | null }>(c, "select master_pos_wait(?, ?, ?, ?) as r", [file, pos, 300, name]);
        if (Number(r?.r) === -1) throw new Error(`replication of ${db} to ${this.a.target.name} did not reach ${file}:${pos} within 300 s`);
        // The applier stops at the first transaction boundary at or after the position: wait for it,
        // and make sure that is why it stopped. It checks the UNTIL condition before it applies an
        // event, so once it has applied up to the position it waits for the next event to stop: on a
        // tenant that wrote nothing since, none comes. It can apply nothing past the position, so
        // stopping it there is the same stop.
        for (const end = Date.now() + 30_000; ; await new Promise((res) => setTimeout(res, 20))) {
          const s = await this.statusRow(c);
          if (s.Slave_SQL_Running === "Yes" && !s.Last_SQL_Error && atOrAfter(s.Relay_Master_Log_File, Number(s.Exec_Master_Log_Pos), file, pos)) {
            await c.query(`stop slave ${literal(name)} sql_thread`);
            continue;
          }
          if (s.Slave_SQL_Running === "No") {
            if (s.Last_SQL_Error) throw new Error(`replication of ${db} to ${this.a.target.name} stopped: ${s.Last_SQL_Error}`);
            if (!atOrAfter(s.Relay_Master_Log_File, Number(s.Exec_Master_Log_Pos), file, pos)) {
              throw new Error(`replication of ${db} to ${this.a.target.name} stopped at ${s.Relay_Master_Log_File}:${s.Exec_Master_Log_Pos}, before ${file}:${pos}`);
            }
            break;
          }
          if (Date.now() > end) throw new Error(`replication of ${db} to ${this.a.target.name} did not stop at ${file}:${pos}`);
        }
        return countRows(c, db, tables);
      });
    } finally {
      await this.onKept(this.a.target, (c) => c.query(`start slave ${literal(name)} sql_thread`));
    }
    const v = compareCounts(db, tables, source, target, Date.now() - started);
    this.verifiedBeforePause = v;
    return v;
  }

  private verifiedBeforePause: Verification | undefined;

  private async tablesOf(db: string): Promise<string[]> {
    return this.onKept(this.a.source, async (c) =>
      (await rows<{ t: string }>(c, "select table_name as t from information_schema.tables where table_schema = ? and table_type = 'BASE TABLE' order by table_name", [db])).map((r) => r.t),
    );
  }

  async verify(): Promise<Verification> {
    const started = Date.now();
    const db = this.a.from.database;
    const before = this.verifiedBeforePause;
    if (before) {
      // Counted before the pause; markerLag has just seen the stream reach the source's last
      // position. What is left to show: it got there without an error.
      await this.onKept(this.a.target, (c) => this.status(c));
      return { ...before, ms: Date.now() - started };
    }
    const tables = await this.tablesOf(db);
    const [a, b] = await Promise.all([this.onKept(this.a.source, (c) => countRows(c, db, tables)), this.onKept(this.a.target, (c) => countRows(c, db, tables))]);
    return compareCounts(db, tables, a, b, Date.now() - started);
  }

  /** Every replication connection of this database on the target and its login on the source
   * (a run that finishes an interrupted move does not know the migration id: it finds them). */
  async removeReplication(): Promise<void> {
    await this.removeConnections(true);
  }

  async fenceSource(): Promise<void> {
    await fenceDatabase(this.a.source, this.a.from);
  }

  async abandonTarget(): Promise<void> {
    await dropTenantDatabase(this.a.target, this.a.from);
  }

  async close(): Promise<void> {
    await this.stopCopy();
    await this.kept.closeAll();
  }
}

/** Exact row counts of `tables` (an unreadable table counts as -1: a mismatch, never equal). */
async function countRows(c: mysql.Connection, db: string, tables: string[]): Promise<number[]> {
  const out: number[] = [];
  for (const t of tables) out.push(await rows<{ n: number }>(c, `select count(*) as n from ${ident(db)}.${ident(t)}`).then((r) => Number(r[0]!.n), () => -1));
  return out;
}

function compareCounts(db: string, tables: string[], source: number[], target: number[], ms: number): Verification {
  const mismatches: string[] = [];
  let total = 0;
  tables.forEach((t, i) => {
    if (source[i] !== target[i] || source[i]! < 0) mismatches.push(`${db}.${t}: source ${source[i]! < 0 ? "unreadable" : source[i]}, target ${target[i]! < 0 ? "unreadable" : target[i]}`);
    total += Math.max(0, source[i]!);
  });
  return { ok: mismatches.length === 0, tables: tables.length, rows: total, sequences: 0, mismatches, ms };
}

async function dropConnection(c: mysql.Connection, name: string): Promise<void> {
  await c.query(`stop slave ${literal(name)}`).catch(() => undefined);
  await c.query(`reset slave ${literal(name)} all`);
}
