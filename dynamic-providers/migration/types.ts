/**
 * The contract between the engine-neutral orchestrator (orchestrator.ts) and each engine's
 * migration module (engines/<engine>/migration.ts). The orchestrator owns the order of the steps,
 * the pause, the commit in the catalog, the record and the failure path; the engine module is the
 * only place that knows its replication protocol.
 */
import type { RouteTarget } from "../../proxy/catalog/routes";

/** `native`: the engine's own replication (PostgreSQL logical replication, …), lag to zero, a
 * short pause. `dump_restore`: the whole copy under a pause, when native replication cannot be
 * set up (longer, but safe). */
export type MigrationMethod = "native" | "dump_restore";

export interface PreflightResult {
  method: MigrationMethod;
  /** Why the method was chosen when it is not `native`, and anything else worth a log line. */
  notes: string[];
  /** Size of the tenant database on the source, bytes. */
  sizeBytes: number;
}

export interface SyncProgress {
  /** Initial copy, 0..100. */
  percent: number;
  done: boolean;
  tables: number;
  tablesDone: number;
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
  /** Paused, native method: what replication does not carry (PostgreSQL: sequence values). */
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
  /** Paused: compare source and target (after `verifyBeforePause`: the stream's health since). */
  verify(): Promise<Verification>;
  /** Drop replication objects on both sides (the source too: no slot may keep WAL for a tenant
   * that left). Tolerates a side that is gone. */
  removeReplication(): Promise<void>;
  /** After the commit: no role can write to the source copy any more. */
  fenceSource(): Promise<void>;
  /** Before the commit, on failure: remove the target copy (no route points to it). */
  abandonTarget(): Promise<void>;
  close(): Promise<void>;
}
