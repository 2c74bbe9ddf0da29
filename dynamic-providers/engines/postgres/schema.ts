/**
 * Schema migrations in a PostgreSQL tenant database: all pending files in one transaction, run as
 * the tenant's role (`SET LOCAL ROLE`: the objects are the tenant's, and the migration can do no
 * more than the tenant could), recorded in `tenantfleet_schema_history` in the same transaction.
 * A failure leaves the database as it was.
 */
import { escapeIdentifier as ident, escapeLiteral as literal } from "pg";
import { connectAdmin } from "./tenant-db";
import { DEFAULT_LOCK_TIMEOUT_MS, runPlan, type AppliedRow, type ApplyResult, type MigrationFile, type SchemaApplier, type SchemaTarget } from "../../schema-rollout/types";

const HISTORY = "tenantfleet_schema_history";

export const pgSchema: SchemaApplier = {
  historyTable: HISTORY,
  async apply(t: SchemaTarget, files: MigrationFile[], opts: { seed?: MigrationFile; lockTimeoutMs?: number } = {}): Promise<ApplyResult> {
    const c = await connectAdmin(t.server, t.backendDatabase);
    try {
      // Three round trips when one file is pending (a rollout visits every tenant database, and
      // their round trips add up): the preamble and the history in one, a query per file, the
      // history rows and the commit in one.
      const preamble = await c.query(`begin;
        set local role ${ident(t.role)};
        set local lock_timeout = ${Math.max(0, Math.round(opts.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS))};
        select pg_advisory_xact_lock(hashtext('tenantfleet.schema'));
        create table if not exists ${HISTORY} (
          name text primary key, checksum text not null, applied_at timestamptz not null default now(), duration_ms integer not null);
        select name, checksum from ${HISTORY} order by name`);
      const applied = (preamble as unknown as { rows: AppliedRow[] }[]).at(-1)!.rows;
      const { run, result } = runPlan(files, applied, opts.seed);
      const rows: string[] = [];
      for (const f of run) {
        const started = Date.now();
        try {
          await c.query(f.sql);
        } catch (e) {
          throw new Error(`${f.name}: ${(e as Error).message}`);
        }
        rows.push(`(${literal(f.name)}, ${literal(f.checksum)}, ${Date.now() - started})`);
      }
      await c.query(rows.length ? `insert into ${HISTORY} (name, checksum, duration_ms) values ${rows.join(", ")}; commit` : "commit");
      return result;
    } catch (e) {
      await c.query("rollback").catch(() => undefined);
      throw e;
    } finally {
      await c.end().catch(() => undefined);
    }
  },
};
