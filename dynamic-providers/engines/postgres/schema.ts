/**
 * Schema migrations in a PostgreSQL tenant database: all pending files in one transaction, run as
 * the tenant's role (`SET LOCAL ROLE`: the objects are the tenant's, and the migration can do no
 * more than the tenant could), recorded in `tenantfleet_schema_history` in the same transaction.
 * A failure leaves the database as it was.
 */
import { escapeIdentifier as ident } from "pg";
import { connectAdmin } from "./tenant-db";
import { DEFAULT_LOCK_TIMEOUT_MS, SEED_NAME, headOf, pendingFiles, type AppliedRow, type ApplyResult, type MigrationFile, type SchemaApplier, type SchemaTarget } from "../../schema-rollout/types";

const HISTORY = "tenantfleet_schema_history";

export const pgSchema: SchemaApplier = {
  historyTable: HISTORY,
  async apply(t: SchemaTarget, files: MigrationFile[], opts: { seed?: MigrationFile; lockTimeoutMs?: number } = {}): Promise<ApplyResult> {
    const c = await connectAdmin(t.server, t.backendDatabase);
    try {
      await c.query("begin");
      await c.query(`set local role ${ident(t.role)}`);
      await c.query(`set local lock_timeout = ${Math.max(0, Math.round(opts.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS))}`);
      // One rollout at a time per database (a second `up` of another stack on the same catalog).
      await c.query("select pg_advisory_xact_lock(hashtext('tenantfleet.schema'))");
      await c.query(`create table if not exists ${HISTORY} (
        name text primary key, checksum text not null, applied_at timestamptz not null default now(), duration_ms integer not null)`);
      const applied = (await c.query<AppliedRow>(`select name, checksum from ${HISTORY} order by name`)).rows;
      const pending = pendingFiles(files, applied);
      const run = [...pending, ...(opts.seed && !applied.some((a) => a.name === SEED_NAME) ? [{ ...opts.seed, name: SEED_NAME }] : [])];
      for (const f of run) {
        const started = Date.now();
        try {
          await c.query(f.sql);
        } catch (e) {
          throw new Error(`${f.name}: ${(e as Error).message}`);
        }
        await c.query(`insert into ${HISTORY} (name, checksum, duration_ms) values ($1, $2, $3)`, [f.name, f.checksum, Date.now() - started]);
      }
      await c.query("commit");
      const last = headOf(files, applied, pending);
      return { applied: pending.map((f) => f.name), head: last, seeded: run.length > pending.length };
    } catch (e) {
      await c.query("rollback").catch(() => undefined);
      throw e;
    } finally {
      await c.end().catch(() => undefined);
    }
  },
};
