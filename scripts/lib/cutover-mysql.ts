/**
 * `npm run bench:cutover -- --engine mysql`: a MariaDB tenant database of a given size (built with
 * sysbench's tables) moved live shared → dedicated by the real orchestrator and engine, under a
 * steady write load through two real proxies, against `mariadb-dump | mariadb` of the same
 * database to a third server in the same run.
 */
import { execFile } from "node:child_process";
import * as path from "node:path";
import { promisify } from "node:util";
import * as mysql from "mysql2/promise";
import { MysqlMigration } from "../../dynamic-providers/engines/mysql/migration";
import { copyDatabase, databaseSize } from "../../dynamic-providers/engines/mysql/tenant-db";
import { migrate } from "../../dynamic-providers/migration/orchestrator";
import { nativeVerifier } from "../../proxy/mysql/native-password";
import { MysqlServers, mysqlFleet } from "./local-mysql-servers";
import { SteadyLoad, cutoverGoals } from "./load";

const execFileP = promisify(execFile);
/** sysbench's sbtest rows with their indexes, as InnoDB stores them (measured: about 240 bytes each). */
const BYTES_PER_ROW = 240;
const TABLES = 8;

export interface MysqlCutoverOptions {
  sizeMb: number;
  writes: number;
  clients: number;
  progress(m: string): void;
}

export async function mysqlCutover(opts: MysqlCutoverOptions): Promise<Record<string, unknown>> {
  const { fleet, my, s1: shared, s2: dedicated, p1, p2, acme } = await mysqlFleet("bench-cutover-mysql", ["shared-mysql", "dedicated-acme"]);
  try {
    const baselineServer = await my.server("dump-restore-target");
    const rowsPerTable = Math.max(1000, Math.round((opts.sizeMb * 1024 * 1024) / BYTES_PER_ROW / TABLES));
    opts.progress(`building ${acme.name}: sysbench oltp_common prepare, ${TABLES} tables × ${rowsPerTable} rows (≈${opts.sizeMb} MB)`);
    let t = Date.now();
    await execFileP(
      "sysbench",
      ["oltp_common", "--db-driver=mysql", `--mysql-host=${shared.host}`, `--mysql-port=${shared.port}`, `--mysql-user=${acme.user}`, `--mysql-password=${acme.password}`, `--mysql-db=${acme.name}`, `--tables=${TABLES}`, `--table-size=${rowsPerTable}`, "--threads=2", "prepare"],
      { maxBuffer: 1 << 26 },
    );
    const sizeBytes = await my.admin(shared, (c) => databaseSize(c, acme.name));
    opts.progress(`built ${(sizeBytes / 1024 / 1024).toFixed(0)} MB in ${((Date.now() - t) / 1000).toFixed(0)} s`);

    // Baseline: mariadb-dump | mariadb of the same database, no load, to a third server.
    await my.ensure(baselineServer, acme);
    opts.progress("baseline: mariadb-dump | mariadb of the same database");
    t = Date.now();
    await copyDatabase(MysqlServers.access(shared), MysqlServers.access(baselineServer), acme.name);
    const dumpRestoreMs = Date.now() - t;
    opts.progress(`baseline took ${(dumpRestoreMs / 1000).toFixed(1)} s`);

    const connect = (p: typeof p1) => mysql.createConnection({ host: "127.0.0.1", port: p.mysqlPort, user: acme.user, password: acme.password, database: acme.name });
    const load = new SteadyLoad<mysql.Connection, number>(
      {
        open: (i) => connect(i % 2 === 0 ? p1 : p2),
        write: async (c, n) => {
          const id = 1_000_000_000 + n;
          await c.execute("insert into items values (?, 'bench', ?)", [id, Buffer.from("w")]);
          return id;
        },
        close: (c) => c.end().catch(() => undefined),
      },
      opts.clients,
      opts.writes,
    );
    const loadStarted = Date.now();
    load.start();
    await sleep(3000);
    const beforeMax = load.maxLatencyBetween(loadStarted, Date.now());
    const migStarted = Date.now();
    let cutoverStarted = 0;
    const engine = new MysqlMigration({ source: MysqlServers.access(shared), target: MysqlServers.access(dedicated), from: { database: acme.name, user: acme.user, verifier: nativeVerifier(acme.password) } });
    const record = await migrate(engine, { key: acme, fromServer: shared.serverName, toServer: dedicated.serverName, epoch: (await fleet.route(acme)).epoch }, {
      catalog: fleet.catalogConfig,
      backupDir: path.join(fleet.root, "backups"),
      log: (m) => {
        if (/^caught up/.test(m)) cutoverStarted = Date.now();
        opts.progress(m);
      },
    });
    const migEnded = Date.now();
    await sleep(3000);
    await load.stop();
    const loadMs = Date.now() - loadStarted;
    const stored = new Set(await my.admin(dedicated, async (c) => (await c.query<mysql.RowDataPacket[]>(`select id from \`${acme.name}\`.items where id >= 1000000000`))[0].map((r) => Number(r.id))));
    const acked = new Set(load.acked);
    const missing = load.acked.filter((id) => !stored.has(id));
    const extra = [...stored].filter((id) => !acked.has(id));
    return {
      bench: "cutover",
      engine: "mysql",
      database: { sizeMB: Math.round(sizeBytes / 1024 / 1024), sysbench: { tables: TABLES, rowsPerTable } },
      load: { clients: opts.clients, targetWritesPerSecond: opts.writes, achievedWritesPerSecond: Math.round((load.samples.length * 1000) / loadMs), acknowledgedRows: load.acked.length, through: "both proxies' MySQL listeners, mysql2 prepared inserts" },
      migration: { method: record.method, status: record.status, error: record.error, totalMs: migEnded - migStarted, timings: record.timings, pauseMs: record.pauseMs, verification: record.verification },
      baseline: { dumpRestoreMs, dumpRestoreMBps: Number((sizeBytes / 1024 / 1024 / (dumpRestoreMs / 1000)).toFixed(1)) },
      ratio: { migrationOverDumpRestore: Number(((migEnded - migStarted) / dumpRestoreMs).toFixed(2)) },
      client: {
        errors: load.errors.length,
        lostWrites: missing.length,
        unacknowledgedRowsStored: extra.length,
        maxLatencyDuringCutoverMs: load.maxLatencyBetween(cutoverStarted || migStarted, migEnded),
        maxLatencyBeforeMigrationMs: beforeMax,
        latencyMs: load.latency(),
      },
      goals: cutoverGoals({ pauseMs: record.pauseMs, migrationMs: migEnded - migStarted, dumpRestoreMs, errors: load.errors.length, lostWrites: missing.length }),
      errors: load.errors.slice(0, 5),
    };
  } finally {
    await my.close();
    await fleet.close();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
