/**
 * A test and benchmark fixture: one PostgreSQL migration in a process of its own, as `pulumi up`
 * runs it (in the provider's process, not beside the application's clients), so a benchmark's load
 * does not share its event loop and a test can SIGKILL it at any moment. Arguments come as JSON in
 * MIGRATION_ARGS (a MigrationPlan; credentials included: local throwaway servers only). Prints
 * each log line as `log <level> <text>`, then `record <json>` when the move succeeds; on failure,
 * the reason on stderr and exit code 1.
 */
import { PgMigration } from "../../dynamic-providers/engines/postgres/migration";
import { migrate } from "../../dynamic-providers/migration/orchestrator";
import type { MigrationPlan } from "./local-pg-fleet";

const a = JSON.parse(process.env.MIGRATION_ARGS!) as MigrationPlan;
migrate(new PgMigration(a.engine), a.req, { catalog: a.catalog, backupDir: a.backupDir, log: (m, level = "info") => console.log(`log ${level} ${m.replace(/\n/g, " ")}`) }).then(
  (record) => {
    console.log(`record ${JSON.stringify(record)}`);
    process.exit(0);
  },
  (e) => {
    console.error((e as Error).message);
    process.exit(1);
  },
);
