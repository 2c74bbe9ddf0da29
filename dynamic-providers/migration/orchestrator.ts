/**
 * The engine-neutral migration (DESIGN.md "A migration"): preflight → safety backup → target →
 * native replication → catch-up → cutover through the proxy fleet → fence and clean up.
 *
 * The catalog is the commit point. Before `commitRoute` (inside Coordinator.switch) nothing the
 * tenant sees has changed: any failure resumes the proxies on the source, removes replication
 * objects and the half-made target, marks the tenant `failed` with the reason and rethrows. After
 * the commit the migration has happened; what is left (cleanup, fence) is retried by the next run
 * if it fails. A process killed at any moment (stop-points.ts names every step boundary) leaves at
 * most a pause whose lease runs out, and what the next run finds: before the commit, the attempt
 * is closed as failed and its leftovers removed (`closeInterrupted`, then the engine's
 * `cleanupLeftovers`) before a fresh start; after it, `finishCommitted` completes it.
 */
import { existsSync, promises as fs } from "node:fs";
import * as path from "node:path";
import { backupStore, type BackupStore } from "../backups/store";
import { Client, type ClientBase, type ClientConfig } from "pg";
import { Coordinator } from "../../proxy/catalog/coordinator";
import { loadRoute, type TenantDbKey } from "../../proxy/catalog/routes";
import { stopPoint } from "./stop-points";
import type { BackupRecord, EngineMigration, MigrationMethod, Verification } from "./types";

export type MigrationPhase = "preflight" | "prepare" | "sync" | "catchup" | "cutover" | "fence" | "done" | "failed";

export interface MigrationRecord {
  migrationId: number;
  from: string;
  to: string;
  method: MigrationMethod;
  mechanism: string;
  status: "done" | "failed";
  error?: string;
  startedAt: string;
  finishedAt: string;
  /** Milliseconds per phase (and per cutover step: drain, lag, sequences or copy, verify, switch, resume). */
  timings: Record<string, number>;
  /** How long the tenant's queries were held: pause request → every proxy resumed. */
  pauseMs?: number;
  /**
   * What clients saw of it: the longest any proxy held the tenant's queries (from its sight of the
   * pause to its release of them), without the catalog's round trips before and after.
   */
  heldMs?: number;
  /** When the pause was requested and lifted (ms since the epoch), to line clients' latencies up with it. */
  pauseWindow?: { from: number; to: number };
  sizeBytes?: number;
  /** Initial sync throughput, MB/s of source table data. */
  syncMBps?: number;
  verification?: Verification;
  backup?: BackupRecord;
  /** Instead of a backup: the source copy kept, fenced and current, for the rollback window. */
  safetyCopy?: string;
  /** The stream keeping the old copy current for the rollback window (PostgreSQL: `tf_rev_<id>`). */
  keptCurrentBy?: string;
  notes: string[];
}

export interface MigrateRequest {
  key: TenantDbKey;
  fromServer: string;
  toServer: string;
  /** The epoch the catalog has committed now; the cutover commits epoch + 1. */
  epoch: number;
}

export interface MigrateOptions {
  catalog: ClientConfig;
  /** The platform's backup store (a folder on the local platform). */
  backupDir: string;
  /** Where a finished backup goes (the fleet's bucket on the cloud platforms); default: it stays
   * in backupDir. */
  backups?: BackupStore;
  /** One progress line (Pulumi log line on the resource, or a test's console). */
  log: (message: string, level?: "info" | "warn") => void;
  /** Drain timeout; past it the pause is lifted and the migration fails (safely). Default 60 s. */
  drainTimeoutMs?: number;
  /** Pause lease: how long proxies stay paused if this process dies. Default 10 s. */
  leaseMs?: number;
  /** Catch-up ends when the marker round trip is at most this. Default 500 ms. */
  catchUpLagMs?: number;
  /** Fail when the initial sync makes no progress for this long. Default 10 min. */
  syncStallMs?: number;
  requestedBy?: string;
}

export class MigrationError extends Error {
  override name = "MigrationError";
  constructor(
    message: string,
    readonly record: MigrationRecord,
  ) {
    super(message);
  }
}

export async function migrate(engine: EngineMigration, req: MigrateRequest, opts: MigrateOptions): Promise<MigrationRecord> {
  const catalog = new Client(opts.catalog);
  catalog.on("error", () => undefined);
  await catalog.connect();
  const startedAt = new Date();
  const who = `${req.key.tenant}/${req.key.database}`;
  const rec = await catalog.query<{ migration_id: string }>(
    `insert into tenantfleet.migrations (tenant, database, from_server, to_server, method, phase) values ($1, $2, $3, $4, 'native', 'preflight') returning migration_id`,
    [req.key.tenant, req.key.database, req.fromServer, req.toServer],
  );
  const record: MigrationRecord = {
    migrationId: Number(rec.rows[0]!.migration_id),
    from: req.fromServer,
    to: req.toServer,
    method: "native",
    mechanism: engine.nativeMechanism,
    status: "failed",
    startedAt: startedAt.toISOString(),
    finishedAt: "",
    timings: {},
    notes: [],
  };
  let phaseStarted = Date.now();
  let phase: MigrationPhase = "preflight";
  const save = (fields: Record<string, unknown> = {}) =>
    catalog
      .query(
        `update tenantfleet.migrations set phase = $2, method = $3, record = $4, updated_at = now(),
           sync_percent = coalesce($5, sync_percent), lag_ms = coalesce($6, lag_ms), error = $7,
           finished_at = case when $2 in ('done', 'failed') then now() end where migration_id = $1`,
        [record.migrationId, phase, record.method, JSON.stringify(record), fields.syncPercent ?? null, fields.lagMs ?? null, record.error ?? null],
      )
      .catch(() => undefined);
  const setStatus = (status: string) =>
    catalog.query(`update tenantfleet.tenant_databases set status = $3, updated_at = now() where tenant = $1 and database = $2`, [req.key.tenant, req.key.database, status]).catch(() => undefined);
  const enter = async (next: MigrationPhase) => {
    record.timings[phase] = (record.timings[phase] ?? 0) + (Date.now() - phaseStarted);
    phase = next;
    phaseStarted = Date.now();
    await save();
  };
  const log = opts.log;
  /** A difference found after the commit: the tenant runs on the target; say so everywhere. */
  const reportMismatch = async (v: Verification) => {
    const what = `the copies of ${who} differed at the cutover: ${v.mismatches.join("; ")}`;
    record.notes.push(`verification after the switch failed: ${v.mismatches.join("; ")}`);
    await save();
    await setStatus("verify_failed");
    log(`${what}. ${who} now serves from ${req.toServer}. ${engine.wayBack ?? `The old copy on ${req.fromServer} is kept for the rollback window: to move back, put the tenant's previous placement back in the config and run \`pulumi up\``}; check the tables named before writing more`, "warn");
  };
  let committed = false;
  let coordinator: Coordinator | undefined;
  /** The comparison after the switch, running beside the fence. */
  let compared: Promise<void> | undefined;

  try {
    await setStatus("migrating");
    log(`migrating ${who}: ${req.fromServer} → ${req.toServer} (migration ${record.migrationId})`);
    for (const line of await closeInterrupted(catalog, req.key, record.migrationId, opts)) log(line, "warn");
    const leftovers = await engine.cleanupLeftovers();
    for (const l of leftovers) log(`removed a leftover of an earlier attempt: ${l}`);
    const pre = await engine.preflight();
    record.method = pre.method;
    record.sizeBytes = pre.sizeBytes;
    record.notes.push(...pre.notes);
    for (const n of pre.notes) log(n, "warn");
    const how = { native: engine.nativeMechanism, dump_restore: "backup and restore under a pause", standby: "a switch to the copy kept current since the last move" }[pre.method];
    log(`preflight ok: ${(pre.sizeBytes / 1024 / 1024).toFixed(1)} MB, method ${how}`);
    await stopPoint("after-preflight");

    // The safety backup runs alongside the initial sync (both only read the source) and must be
    // complete before the cutover; with dump/restore it comes first.
    const file = path.join(opts.backupDir, req.key.tenant, req.key.database, `${startedAt.toISOString().replace(/[:.]/g, "-")}-${req.fromServer}.dump`);
    const backupStarted = Date.now();
    // A switch to a kept copy copies nothing: the copy left behind is kept current in turn, and the
    // first move's backup is still kept. A source copy that stays, kept current, needs no dump: a
    // dump beside the copy would read the source twice and slow the copy down.
    if (pre.safetyCopy) {
      record.safetyCopy = pre.safetyCopy;
      log(`safety copy: ${pre.safetyCopy}`);
    }
    const backup = (pre.method === "standby" || pre.safetyCopy ? Promise.resolve(undefined) : engine.backup(file)).then(async (b) => {
      if (!b) return;
      const location = opts.backups ? await opts.backups.put(file, path.relative(opts.backupDir, file)) : file;
      record.backup = { location, bytes: b.bytes, takenAt: new Date().toISOString() };
      record.timings.backup = Date.now() - backupStarted;
      log(`safety backup: ${location} (${(b.bytes / 1024 / 1024).toFixed(1)} MB, ${record.timings.backup} ms)`);
    });
    let backupSettled = false;
    backup.then(
      () => (backupSettled = true),
      () => (backupSettled = true),
    ); // awaited below; a failure is reported there
    await stopPoint("backup", async () => backupSettled || existsSync(`${file}.partial`));
    if (pre.method !== "native") await backup;

    await enter("prepare");
    await engine.prepareTarget(pre.method, path.dirname(file));
    await stopPoint("after-prepare");

    if (pre.method === "standby") {
      await engine.startReplication(record.migrationId);
      await enter("catchup");
      await catchUp(engine, opts, log, (lag) => save({ lagMs: lag }));
    } else if (pre.method === "native") {
      await engine.startReplication(record.migrationId);
      await enter("sync");
      await setStatus("migrating_sync");
      await initialSync(engine, opts, log, (p) => save({ syncPercent: p }));
      const syncMs = Date.now() - phaseStarted;
      await backup.catch((e) => {
        throw new Error(`safety backup: ${(e as Error).message}`);
      });
      record.syncMBps = pre.sizeBytes / 1024 / 1024 / Math.max(0.001, syncMs / 1000);
      Object.assign(record.timings, engine.timings);
      await enter("catchup");
      await setStatus("migrating");
      await catchUp(engine, opts, log, (lag) => save({ lagMs: lag }));
      if (engine.verifyBeforePause) {
        const v = await engine.verifyBeforePause();
        record.verification = v;
        record.timings.verifyBeforePause = v.ms;
        if (!v.ok) throw new Error(`verification failed: ${v.mismatches.join("; ")}`);
        log(`verified before the pause: ${v.tables} tables, ${v.rows} rows equal on both servers at one point of the replication stream (${v.ms} ms)`);
        await catchUp(engine, opts, log, (lag) => save({ lagMs: lag }));
      }
    }

    await enter("cutover");
    coordinator = await Coordinator.connect(opts.catalog);
    // Announcing the target lets proxies log in there before the pause (and restore each session's
    // state on that login while they drain); only when the target already holds the schema
    // (native replication), not before a dump/restore copy.
    const announced = pre.method !== "dump_restore" ? engine.target : undefined;
    if (announced) await coordinator.announce(req.key, announced);
    await engine.readyForPause?.();
    await coordinator.warm(req.key);
    const t0 = Date.now();
    const paused = await coordinator.pause(req.key, { target: announced, timeoutMs: opts.drainTimeoutMs ?? 60_000, leaseMs: opts.leaseMs ?? 10_000, requestedBy: opts.requestedBy ?? `migration ${record.migrationId}` }).catch(async (e) => {
      await coordinator!.resume(req.key).catch(() => undefined);
      throw new Error(`the proxies could not drain ${who}: ${(e as Error).message}`);
    });
    record.timings.drain = paused.drainedMs;
    record.timings.pauseRequest = paused.requestMs;
    // How long the slowest proxy took from seeing the pause to its sessions parked (the rest of the drain is the catalog's round trips).
    record.timings.proxyDrain = Math.max(0, ...paused.proxies.map((p) => Number(p.detail.ms ?? 0)));
    await stopPoint("paused");
    try {
      let t = Date.now();
      if (pre.method !== "dump_restore") {
        const early = engine.whileDraining?.();
        early?.catch(() => undefined); // awaited below
        record.timings.finalLag = await engine.markerLag(30_000);
        t = Date.now();
        await early;
        await engine.finishWhilePaused();
        // The rest of the finishing after the lag (the part beside it is hidden in the lag).
        record.timings.sequences = Date.now() - t;
      } else {
        log(`copying ${who} (a dump of the source restored into the target) while its queries are held`);
        await engine.copyWhilePaused();
        record.timings.copy = Date.now() - t;
      }
      const v = await engine.verify();
      record.verification = v;
      record.timings.verify = v.ms;
      if (!v.ok) throw new Error(`verification failed: ${v.mismatches.join("; ")}`);
      t = Date.now();
      try {
        await coordinator.switch(req.key, engine.target, req.epoch + 1, { afterCommit: () => stopPoint("after-commit") });
        committed = true;
      } catch (e) {
        // The commit may have happened before the proxies' acknowledgements timed out.
        const route = await loadRoute(catalog, req.key);
        committed = route?.epoch === req.epoch + 1 && route.server === engine.target.server;
        if (!committed) throw e;
        log(`switch acknowledged late (${(e as Error).message}); the route is committed`, "warn");
      }
      record.timings.switch = Date.now() - t;
    } finally {
      const t = Date.now();
      const acks = await coordinator.resume(req.key).catch((e) => {
        log(`resume: ${(e as Error).message} (the pause lease lifts it)`, "warn");
        return [];
      });
      record.timings.resume = Date.now() - t;
      record.pauseMs = Date.now() - t0;
      record.pauseWindow = { from: t0, to: Date.now() };
      const held = acks.map((a) => Number(a.detail.pausedMs)).filter((ms) => Number.isFinite(ms));
      if (held.length) record.heldMs = Math.max(...held);
    }
    Object.assign(record.timings, engine.timings);
    const held = `queries held ${record.pauseMs} ms (${record.heldMs !== undefined ? `${record.heldMs} ms in the proxies; ` : ""}drain ${record.timings.drain} ms, verify ${record.timings.verify} ms`;
    // The comparison after the switch runs beside the fence and the cleanup: it reads the snapshots
    // pinned in the pause, which neither changes. Its result is in before the move is done.
    if (engine.verifyAfterSwitch) {
      log(`cutover: ${held}); route epoch ${req.epoch + 1} → ${req.toServer}; comparing the two copies as they were in the pause`);
      compared = engine
        .verifyAfterSwitch()
        .catch((e): Verification => ({ ok: false, tables: 0, rows: 0, sequences: 0, mismatches: [`the comparison failed: ${(e as Error).message}`], ms: 0 }))
        .then(async (v) => {
          record.verification = v;
          record.timings.verifyAfterSwitch = v.ms;
          if (v.ok) log(`verified: ${v.tables} tables, ${v.rows} rows equal on both servers as they were in the pause (counted after it, ${v.ms} ms)`);
          else await reportMismatch(v);
        });
      compared.catch(() => undefined); // awaited below
    } else {
      log(`cutover: ${held}: ${record.verification!.tables} tables, ${record.verification!.rows} rows); route epoch ${req.epoch + 1} → ${req.toServer}`);
    }
    await stopPoint("after-switch");

    await enter("fence");
    await finishAfterCommit(engine, log);
    await compared;
    if (engine.keptCurrentBy) record.keptCurrentBy = engine.keptCurrentBy;
    await enter("done");
    record.status = "done";
    record.finishedAt = new Date().toISOString();
    record.timings.total = Date.now() - startedAt.getTime();
    await save();
    await setStatus(record.verification?.ok === false ? "verify_failed" : "ready");
    log(`migrated ${who} to ${req.toServer} in ${(record.timings.total / 1000).toFixed(1)} s`);
    await stopPoint("done");
    return record;
  } catch (e) {
    const reason = (e as Error).message;
    if (committed) {
      // Only the fence/cleanup failed: the tenant runs on the target. The next run repeats them.
      // The comparison beside them still counts: its result (a mismatch too) stands.
      await compared?.catch(() => undefined);
      record.status = "done";
      record.notes.push(`after the commit: ${reason}`);
      record.finishedAt = new Date().toISOString();
      await save();
      await setStatus(record.verification?.ok === false ? "verify_failed" : "ready");
      log(`migrated ${who}, but cleaning up the source failed: ${reason}. The next \`pulumi up\` retries it.`, "warn");
      return record;
    }
    record.timings[phase] = (record.timings[phase] ?? 0) + (Date.now() - phaseStarted);
    record.error = `${phase}: ${reason}`;
    record.finishedAt = new Date().toISOString();
    log(`migration of ${who} failed during ${phase}: ${reason}. ${who} keeps serving from ${req.fromServer}; removing what this attempt made`, "warn");
    await coordinator?.withdraw(req.key).catch(() => undefined); // the proxies' logins to the target
    await engine.removeReplication({ committed: false }).catch((x) => log(`cleanup: ${(x as Error).message} (the next attempt removes it)`, "warn"));
    await engine.abandonTarget().catch((x) => log(`cleanup: ${(x as Error).message} (the next attempt removes it)`, "warn"));
    phase = "failed";
    await save();
    await setStatus("failed");
    throw new MigrationError(`migration of ${who} from ${req.fromServer} to ${req.toServer} failed during ${record.error}. ${who} still serves from ${req.fromServer}; fix the cause and run \`pulumi up\` again.`, record);
  } finally {
    await coordinator?.close();
    await engine.close();
    await catalog.end().catch(() => undefined);
  }
}

/**
 * After the commit: replication objects go (both sides), then the source copy is fenced. In that
 * order because the fence forbids every connection to the copy, the admin's too, and the
 * publication and marker live inside it. Both steps are idempotent and tolerate a copy already
 * fenced, so a run killed between or after them is finished by repeating them.
 */
export async function finishAfterCommit(engine: EngineMigration, log: MigrateOptions["log"]): Promise<void> {
  await engine.removeReplication({ committed: true });
  await stopPoint("after-cleanup");
  await engine.fenceSource();
  await stopPoint("after-fence");
  if (engine.keptCurrentBy) {
    log(`source copy fenced against the tenant's login and kept current by reverse replication (${engine.keptCurrentBy}) for the rollback window: moving back is a switch`);
  } else {
    log("source copy fenced (no role can connect to it); replication objects removed on both servers");
  }
}

/** The latest migration of `key` to `server` recorded in the catalog. */
export async function lastMigrationTo(catalog: ClientBase, key: TenantDbKey, server: string): Promise<StoredMigration | undefined> {
  const r = await catalog.query<StoredMigration>(`select migration_id, phase, to_server, record from tenantfleet.migrations where tenant = $1 and database = $2 and to_server = $3 order by migration_id desc limit 1`, [
    key.tenant,
    key.database,
    server,
  ]);
  return r.rows[0];
}

export interface StoredMigration {
  migration_id: string;
  phase: string;
  to_server: string;
  record: Partial<MigrationRecord> | null;
}

/**
 * Attempts of an earlier run on this tenant database that never finished and never committed (the
 * caller has checked the route): each is closed as failed, the safety backup it took and any
 * half-written backup file are removed (the new attempt takes its own), and a pause it left is
 * lifted at once rather than at the end of its lease. One line per thing found.
 */
async function closeInterrupted(catalog: Client, key: TenantDbKey, current: number, opts: MigrateOptions): Promise<string[]> {
  const lines: string[] = [];
  const open = await catalog.query<StoredMigration>(
    `select migration_id, phase, to_server, record from tenantfleet.migrations
     where tenant = $1 and database = $2 and migration_id <> $3 and phase not in ('done', 'failed') order by migration_id`,
    [key.tenant, key.database, current],
  );
  for (const m of open.rows) {
    const backup = m.record?.backup?.location;
    if (backup) {
      await (opts.backups ?? backupStore(undefined)).remove(backup).catch((e) => lines.push(`could not remove ${backup}, the safety backup of interrupted migration ${m.migration_id}: ${(e as Error).message} (remove it by hand)`));
    }
    await catalog.query(`update tenantfleet.migrations set phase = 'failed', error = $2, finished_at = now(), updated_at = now() where migration_id = $1`, [
      m.migration_id,
      `${m.phase}: interrupted (the process running it stopped before it finished)`,
    ]);
    lines.push(`found migration ${m.migration_id} (→ ${m.to_server}) interrupted during ${m.phase}, before its cutover committed: removing what it left${backup ? ` (its safety backup too)` : ""} and starting again`);
  }
  const dir = path.join(opts.backupDir, key.tenant, key.database);
  for (const f of await fs.readdir(dir).catch(() => [] as string[])) {
    if (!f.endsWith(".partial")) continue;
    await fs.rm(path.join(dir, f), { force: true });
    lines.push(`removed the unfinished backup file ${path.join(dir, f)}`);
  }
  const lifted = await catalog.query(`delete from tenantfleet.pauses where tenant = $1 and database = $2`, [key.tenant, key.database]);
  if (lifted.rowCount) lines.push(`lifted the pause an interrupted run left on ${key.tenant}/${key.database}`);
  return lines;
}

/**
 * The catalog already routes the tenant database to `engine.target`, but Pulumi was not told (the
 * run that committed was killed): lift a pause it left, finish the cleanup and the fence, and close
 * its record as done. Returns that record (timings, backup), when the catalog has it.
 */
export async function finishCommitted(engine: EngineMigration, key: TenantDbKey, opts: Pick<MigrateOptions, "catalog" | "log">): Promise<MigrationRecord | undefined> {
  const catalog = new Client(opts.catalog);
  catalog.on("error", () => undefined);
  await catalog.connect();
  try {
    const who = `${key.tenant}/${key.database}`;
    const last = await lastMigrationTo(catalog, key, engine.target.server);
    const found = last ? `migration ${last.migration_id} ${last.phase === "done" ? "finished" : `stopped during ${last.phase}`}` : "a move";
    opts.log(`found ${found} after its cutover committed (the catalog routes ${who} to ${engine.target.server}), but Pulumi was not told: finishing it`, "warn");
    const lifted = await catalog.query(`delete from tenantfleet.pauses where tenant = $1 and database = $2`, [key.tenant, key.database]);
    if (lifted.rowCount) opts.log(`lifted the pause the interrupted run left on ${who}`);
    await finishAfterCommit(engine, opts.log);
    await catalog.query(`update tenantfleet.tenant_databases set status = 'ready', updated_at = now() where tenant = $1 and database = $2`, [key.tenant, key.database]);
    if (!last) return undefined;
    const record = { ...(last.record as MigrationRecord), status: "done" as const, ...(engine.keptCurrentBy ? { keptCurrentBy: engine.keptCurrentBy } : {}) };
    if (last.phase !== "done") {
      record.notes = [...(record.notes ?? []), `interrupted during ${last.phase} after the commit; finished by a later run`];
      record.finishedAt = new Date().toISOString();
      await catalog.query(`update tenantfleet.migrations set phase = 'done', record = $2, finished_at = now(), updated_at = now() where migration_id = $1`, [last.migration_id, JSON.stringify(record)]);
    }
    return record;
  } finally {
    await catalog.end().catch(() => undefined);
  }
}

async function initialSync(engine: EngineMigration, opts: MigrateOptions, log: MigrateOptions["log"], save: (p: number) => Promise<unknown>): Promise<void> {
  const stallMs = opts.syncStallMs ?? 10 * 60_000;
  let best = -1;
  let lastProgress = Date.now();
  let lastLog = 0;
  let lastLogged = -100;
  for (;;) {
    const p = await engine.syncProgress().catch((e) => {
      throw new Error(`initial sync: ${(e as Error).message}`);
    });
    if (p.percent > best) {
      best = p.percent;
      lastProgress = Date.now();
    }
    if (p.done || Date.now() - lastLog > 3000 || p.percent - lastLogged >= 10) {
      log(`migrating_sync ${Math.floor(p.percent)}% (${p.tablesDone}/${p.tables} tables copied${p.step ? `; ${p.step}` : ""})`);
      lastLog = Date.now();
      lastLogged = p.percent;
      await save(p.percent);
      await stopPoint("sync");
    }
    if (p.done) return;
    if (Date.now() - lastProgress > stallMs) throw new Error(`initial sync made no progress for ${Math.round(stallMs / 1000)} s (stuck at ${Math.floor(best)}%)`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function catchUp(engine: EngineMigration, opts: MigrateOptions, log: MigrateOptions["log"], save: (lag: number) => Promise<unknown>): Promise<void> {
  const want = opts.catchUpLagMs ?? 500;
  for (let round = 1; ; round++) {
    const lag = await engine.markerLag(5 * 60_000);
    await save(lag);
    await stopPoint("catchup");
    if (lag <= want) {
      log(`caught up: this tenant database's lag is ${lag} ms`);
      return;
    }
    if (round % 5 === 1) log(`catching up: lag ${lag} ms`);
  }
}

/**
 * The database name a migration creates on its target: the client-facing name plus the epoch the
 * cutover will commit. A name per epoch never collides with a fenced copy kept on the same server
 * (a tenant coming back within the rollback window), and a half-made copy of a failed attempt is
 * recognisable: no route can point at an epoch that was never committed.
 */
export function targetDatabaseName(key: TenantDbKey, nextEpoch: number): string {
  const base = `${key.database}__${key.tenant}`;
  const suffix = `_e${nextEpoch}`;
  return `${base.slice(0, 63 - suffix.length)}${suffix}`;
}
