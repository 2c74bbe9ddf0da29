/**
 * The contract between the engine-neutral orchestrator (orchestrator.ts) and each engine's
 * migration module (engines/<engine>/migration.ts). The orchestrator owns the order of the steps,
 * the pause, the commit in the catalog, the record and the failure path; the engine module is the
 * only place that knows its replication protocol.
 */
import type { RouteTarget } from "../../proxy/catalog/routes";

/** `native`: the engine's own replication (PostgreSQL logical replication, …), lag to zero, a
 * short pause. `dump_restore`: the whole copy under a pause, when native replication cannot be
 * set up (longer, but safe). `standby`: the target holds a copy an earlier move left there and
 * kept current since (a move back within the rollback window): no backup, no copy, a switch. */
export type MigrationMethod = "native" | "dump_restore" | "standby";

export interface PreflightResult {
  method: MigrationMethod;
  /** Why the method was chosen when it is not `native`, and anything else worth a log line. */
  notes: string[];
  /** Size of the tenant database on the source, bytes. */
  sizeBytes: number;
  /**
   * Native method: the source copy stays where it is after the cutover, fenced and kept current
   * by the engine's reverse replication for the rollback window. That copy is the safety copy
   * (current to the last write, a switch away, on another server than the new one), so no dump is
   * taken beside the initial copy. Says where it stays, for the log and the record.
   */
  safetyCopy?: string;
}

export interface SyncProgress {
  /** Initial copy, 0..100. */
  percent: number;
  done: boolean;
  tables: number;
  tablesDone: number;
  /** What the copy does now, when it has steps (copying rows, building indexes, streaming). */
  step?: string;
}

export interface Verification {
  ok: boolean;
  /** Tables compared and rows counted on each side. */
  tables: number;
  rows: number;
  sequences: number;
  /** Tables whose row counts differ: `schema.table: source N, target M`. */
  mismatches: string[];
  ms: number;
  /** When the compared state was taken, if not when the comparison ran (a snapshot pinned in the pause). */
  at?: string;
}

export interface BackupRecord {
  /** Where the safety backup lives (a path on the local platform, a bucket URL in the cloud). */
  location: string;
  bytes: number;
  takenAt: string;
}

export interface EngineMigration {
  /** Human name of the native mechanism, for the plan and the log. */
  readonly nativeMechanism: string;
  /** How to go back after the cutover, for a message (default: the rollback window's config edit). */
  readonly wayBack?: string;
  /** Milliseconds of the engine's own steps (parts of a phase), copied into the record's timings. */
  readonly timings?: Record<string, number>;
  /** Where the route points once the migration commits. */
  readonly target: RouteTarget;
  /** Remove what an earlier, interrupted attempt left behind (replication objects, a half-made
   * target copy that no route points to). Returns one line per thing removed. */
  cleanupLeftovers(): Promise<string[]>;
  /** Checks that touch nothing. Throws with what to fix when no method can work. */
  preflight(): Promise<PreflightResult>;
  /** The safety backup, written to `${file}.partial` and renamed to `file` when complete (so a
   * killed run leaves only a `.partial` the next one removes, never a truncated `file`). */
  backup(file: string): Promise<{ bytes: number }>;
  /** Target database and role; for `native`, the schema too. `workDir` holds temporary files. */
  prepareTarget(method: MigrationMethod, workDir: string): Promise<void>;
  startReplication(migrationId: number): Promise<void>;
  syncProgress(): Promise<SyncProgress>;
  /** Write a marker into the tenant database on the source; resolve with the ms until the target
   * shows it. This tenant's lag, not the server's: other tenants' writes do not move it. */
  markerLag(timeoutMs: number): Promise<number>;
  /** Paused, native method, as soon as the source is drained, alongside the final lag (optional):
   * what needs only the source frozen. */
  whileDraining?(): Promise<void>;
  /** Paused, native method, after the final lag: what replication does not carry (PostgreSQL:
   * sequence values). */
  finishWhilePaused(): Promise<{ sequences: number }>;
  /** Paused, dump_restore method: the whole copy. */
  copyWhilePaused(): Promise<void>;
  /**
   * Native method, before the pause (optional): compare source and target exactly at one point of
   * the replication stream while the tenant keeps running, so nothing that reads every row runs
   * inside the pause. The orchestrator catches up again afterwards; `verify` then only has to
   * show that the stream went on, without error, to the pause.
   */
  verifyBeforePause?(): Promise<Verification>;
  /** Before the pause (optional): open what the pause will need, so it does not wait for logins. */
  readyForPause?(): Promise<void>;
  /** Paused: compare source and target (after `verifyBeforePause`: the stream's health since;
   * with `verifyAfterSwitch`: the stream's health, and a snapshot of each side pinned). */
  verify(): Promise<Verification>;
  /**
   * After the switch and the resume (optional): compare the two snapshots `verify` pinned in the
   * pause, so reading every row costs the tenant no pause. A mismatch found here cannot undo the
   * switch: the orchestrator reports it (log, record, status) and names the way back.
   */
  verifyAfterSwitch?(): Promise<Verification>;
  /** Drop replication objects on both sides (the source too: no slot may keep WAL for a tenant
   * that left). Tolerates a side that is gone. `committed`: called after the cutover's commit
   * (else on the failure path before it). */
  removeReplication(opts?: { committed?: boolean }): Promise<void>;
  /** After the fence: the stream keeping the old copy current for the rollback window, if any. */
  readonly keptCurrentBy?: string;
  /** After the commit: no role can write to the source copy any more. */
  fenceSource(): Promise<void>;
  /** Before the commit, on failure: remove the target copy (no route points to it). */
  abandonTarget(): Promise<void>;
  close(): Promise<void>;
}
