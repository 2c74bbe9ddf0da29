/**
 * Schema rollouts (DESIGN.md, "Schema across tenants"): per database name (`app`, `shop`), one
 * ordered folder of migration files applied to every tenant database of that name.
 *
 * Two resources per database name: a SchemaSet (the files, kept in the control catalog, where a
 * TenantDatabase being created reads them to start at the head) and a SchemaRollout (applies the
 * pending files to every existing tenant database of the name, after their moves of this run).
 */
import type { ServerAccess } from "../engines";
import type { CatalogRef } from "../tenant-database/types";
import type { BastionInputs } from "../tunnel/ssh-tunnel";

/** The engines with a schema (Redis has none). */
export type SchemaEngine = "postgres" | "mysql";
export const SCHEMA_ENGINES: readonly SchemaEngine[] = ["postgres", "mysql"];

/** One migration file: its name without `.sql` (`0002_orders`), sha256 of its bytes (hex), its text. */
export interface MigrationFile {
  name: string;
  checksum: string;
  sql: string;
}

export type MigrationRef = Omit<MigrationFile, "sql">;

/** How a rollout proceeds (stack config `tenantfleet:schemas.<database>`). */
export interface RolloutPolicy {
  /** Tenants migrated first; a failure among them stops the rollout before any other tenant. */
  canary: string[];
  /** Tenant databases migrated at once on one server (connections taken from its reserve). */
  perServer: number;
  /** Tenant databases migrated at once over all servers. */
  parallel: number;
  /** Failures after the canary the rollout tolerates before it stops starting others. */
  maxFailures: number;
}

/** A tenant database as a schema engine reaches it: the server's admin, the database, the tenant's role. */
export interface SchemaTarget {
  server: ServerAccess;
  backendDatabase: string;
  role: string;
}

export interface ApplyResult {
  /** Files applied now, in order. */
  applied: string[];
  /** The last file applied, now or before (null: none). */
  head: string | null;
  /** The seed was applied now. */
  seeded: boolean;
}

/** What each engine does for schemas: apply pending files (and a seed once) as the tenant. */
export interface SchemaApplier {
  /** The table each tenant database records its applied files in. */
  readonly historyTable: string;
  apply(t: SchemaTarget, files: MigrationFile[], opts?: { seed?: MigrationFile; lockTimeoutMs?: number }): Promise<ApplyResult>;
}

/** A file applied in a tenant database as recorded there. */
export interface AppliedRow {
  name: string;
  checksum: string;
}

/** Name the seed is recorded under in the history table. */
export const SEED_NAME = "seed";

/** Default wait for a lock a migration needs (an application's long transaction holds it): the
 * migration fails for that tenant instead of queueing the application's queries behind it. */
export const DEFAULT_LOCK_TIMEOUT_MS = 10_000;

/** Files in `files` not yet in `applied`, in order; refuses a history the files contradict. */
export function pendingFiles(files: MigrationFile[], applied: AppliedRow[]): MigrationFile[] {
  const byName = new Map(applied.filter((a) => a.name !== SEED_NAME).map((a) => [a.name, a.checksum]));
  for (const f of files) {
    const had = byName.get(f.name);
    if (had !== undefined && had !== f.checksum) throw new ChecksumError(f.name, had, f.checksum);
  }
  const known = new Set(files.map((f) => f.name));
  const unknown = [...byName.keys()].filter((n) => !known.has(n));
  if (unknown.length) throw new Error(`applied migration${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")} ${unknown.length > 1 ? "are" : "is"} not in the migrations folder any more: a file that has run must stay`);
  return files.filter((f) => !byName.has(f.name));
}

/**
 * What a tenant database whose history is `applied` runs: the pending files in order, then the seed
 * when given and not applied yet; and the result once all of it has run.
 */
export function runPlan(files: MigrationFile[], applied: AppliedRow[], seed?: MigrationFile): { run: MigrationFile[]; result: ApplyResult } {
  const pending = pendingFiles(files, applied);
  const seeded = !!seed && !applied.some((a) => a.name === SEED_NAME);
  return {
    run: [...pending, ...(seeded ? [{ ...seed!, name: SEED_NAME }] : [])],
    result: { applied: pending.map((f) => f.name), head: headOf(files, applied, pending), seeded },
  };
}

/** The last of `files` applied before or now (null: none). */
export function headOf(files: MigrationFile[], applied: AppliedRow[], now: MigrationFile[]): string | null {
  const done = new Set([...applied.map((a) => a.name), ...now.map((f) => f.name)]);
  return [...files].reverse().find((f) => done.has(f.name))?.name ?? null;
}

export class ChecksumError extends Error {
  constructor(
    readonly file: string,
    readonly applied: string,
    readonly now: string,
  ) {
    super(`migration ${file} was applied with checksum ${applied.slice(0, 12)} but the file now has ${now.slice(0, 12)}: an applied migration must not change; revert the edit and add a new migration`);
  }
}

/** Inputs of a SchemaSet. */
export interface SchemaSetInputs extends BastionInputs {
  database: string;
  engine: SchemaEngine;
  files: MigrationFile[];
  seed?: MigrationFile;
  catalog: CatalogRef;
  /** Secret. */
  catalogPassword: string;
}

/** Inputs of a SchemaRollout. */
export interface SchemaRolloutInputs extends BastionInputs {
  database: string;
  engine: SchemaEngine;
  /** Names and checksums (the text is in the catalog, written by the SchemaSet). */
  files: MigrationRef[];
  /** Tenants that have this database, by name. */
  tenants: string[];
  policy: RolloutPolicy;
  /** The servers those tenant databases live on (after this run's moves): address by server name. */
  servers: Record<string, { host: string; port: number; adminUser: string }>;
  /** Secret: admin password by server name. */
  serverPasswords: Record<string, string>;
  catalog: CatalogRef;
  catalogPassword: string;
  resourceUrn?: string;
  /** Set by check: what `pulumi up` will do, in words (shown by `preview --diff`). */
  plan?: string;
}

export interface SchemaRolloutOutputs extends SchemaRolloutInputs {
  /** The head every tenant database reached (null: no files). */
  head: string | null;
}
