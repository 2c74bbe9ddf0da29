/**
 * Schema migrations in a MariaDB/MySQL tenant database. DDL is not transactional there (each
 * statement commits), so a file is applied statement after statement and recorded in
 * `tenantfleet_schema_history` once all of it has run. A file that fails halfway is not recorded:
 * the statements before the failure stay applied, and the next run starts the file again from
 * its first statement (README, "Schema migrations": write MySQL files so that they can run twice).
 *
 * Run by the server's admin account in the tenant's database (MariaDB cannot act as another
 * account without its password, and only the verifier is kept): privileges are not checked as the
 * tenant's, and views, triggers and routines a file creates without a DEFINER name the admin.
 */
import { ident, openAdmin } from "./tenant-db";
import { DEFAULT_LOCK_TIMEOUT_MS, runPlan, type AppliedRow, type ApplyResult, type MigrationFile, type SchemaApplier, type SchemaTarget } from "../../schema-rollout/types";

const HISTORY = "tenantfleet_schema_history";

export const mysqlSchema: SchemaApplier = {
  historyTable: HISTORY,
  async apply(t: SchemaTarget, files: MigrationFile[], opts: { seed?: MigrationFile; lockTimeoutMs?: number } = {}): Promise<ApplyResult> {
    const c = await openAdmin(t.server, { database: t.backendDatabase, multipleStatements: true });
    const lock = `tenantfleet.schema.${t.backendDatabase}`.slice(0, 64);
    try {
      const seconds = Math.max(1, Math.round((opts.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS) / 1000));
      await c.query(`set session lock_wait_timeout = ${seconds}`);
      const [got] = (await c.query("select get_lock(?, ?) as got", [lock, seconds])) as unknown as [{ got: number | null }[]];
      if (got[0]?.got !== 1) throw new Error(`another schema rollout holds ${t.backendDatabase}'s lock`);
      await c.query(`create table if not exists ${ident(HISTORY)} (
        name varchar(255) primary key, checksum char(64) not null,
        applied_at timestamp(3) not null default current_timestamp(3), duration_ms int not null)`);
      const [rows] = (await c.query(`select name, checksum from ${ident(HISTORY)} order by name`)) as unknown as [AppliedRow[]];
      const applied = rows.map((r) => ({ name: String(r.name), checksum: String(r.checksum) }));
      const { run, result } = runPlan(files, applied, opts.seed);
      for (const f of run) {
        const started = Date.now();
        try {
          await c.query(f.sql);
        } catch (e) {
          throw new Error(`${f.name}: ${(e as Error).message}${result.applied.length ? " (MySQL DDL commits statement by statement: the statements of this file before the failing one stay applied, and the next run starts the file again)" : ""}`);
        }
        await c.query(`insert into ${ident(HISTORY)} (name, checksum, duration_ms) values (?, ?, ?)`, [f.name, f.checksum, Date.now() - started]);
      }
      return result;
    } finally {
      await c.query("select release_lock(?)", [lock]).catch(() => undefined);
      await c.end().catch(() => c.destroy());
    }
  },
};
