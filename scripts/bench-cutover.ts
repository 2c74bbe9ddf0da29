#!/usr/bin/env -S npx tsx
/**
 * npm run bench:cutover — a live migration shared → dedicated of a tenant database of a given size
 * under a steady write load through two real proxies, against `pg_dump | pg_restore` of the same
 * database in the same run (the baseline a migration must not be slower than). The migration runs
 * in a process of its own (as in `pulumi up`: the provider's process), the load in this one.
 *
 *   --engine <e>       postgres (default) or mysql: a MariaDB tenant database built with sysbench's
 *                      tables, moved by binlog replication, against `mariadb-dump | mariadb`; or
 *                      redis: an instance filled with 1 KB values, moved by REPLICAOF, under
 *                      5,000 SETs/s from 16 clients by default, against an RDB dump-and-load
 *   --size <s>         tenant database size to build with pgbench -i: 1GB (default), 10GB, 500MB, …
 *   --size-mb <n>      the same in MB
 *   --back             (postgres) then move back within the rollback window, timed: a switch to the
 *                      old copy, kept current by reverse replication since the cutover
 *   --writes <n>       steady writes per second through the proxies during the migration (default 500)
 *   --clients <n>      load clients (default 4)
 *   --quick            --size-mb 100
 *   --no-save          do not write bench/results/cutover-<time>.json
 *
 * Progress goes to stderr; the result JSON to stdout (and the results file).
 */
import { execFile } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { parseArgs, promisify } from "node:util";
import { Client } from "pg";

import { LocalPgFleet, serverAccess, type PgServer } from "./lib/local-pg-fleet";
import { LoadGenerator, compareIds, cutoverGoals, prepareLoadTables, storedIds } from "./lib/load";
import { pgBinary } from "../dynamic-providers/engines/postgres/local";
import { copyDatabase, databaseSize, ensureTenantDatabase, withAdmin } from "../dynamic-providers/engines/postgres/tenant-db";
import { repoRoot } from "./lib/pulumi-env";
import { mysqlCutover } from "./lib/cutover-mysql";
import { redisCutover } from "./lib/cutover-redis";

const execFileP = promisify(execFile);
/** pgbench: about 15 MB of table and index per unit of scale. */
const MB_PER_SCALE = 15;

const { values } = parseArgs({
  options: {
    engine: { type: "string", default: "postgres" },
    size: { type: "string" },
    "size-mb": { type: "string" },
    back: { type: "boolean", default: false },
    writes: { type: "string" },
    clients: { type: "string" },
    quick: { type: "boolean", default: false },
    "no-save": { type: "boolean", default: false },
  },
});
const sizeMb = values.quick ? 100 : values.size ? parseSize(values.size) : Number(values["size-mb"] ?? 1024);

/** `10GB`, `1.5GB`, `500MB` (or a number of MB) → MB. */
function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(GB|G|MB|M)?$/i.exec(s.trim());
  if (!m) throw new Error(`--size: expected a size like 10GB or 500MB, got "${s}"`);
  return Number(m[1]) * (/^g/i.test(m[2] ?? "M") ? 1024 : 1);
}
const writes = Number(values.writes ?? (values.engine === "redis" ? 5000 : 500));
const clients = Number(values.clients ?? (values.engine === "redis" ? 16 : 4));
const progress = (m: string) => process.stderr.write(`[bench:cutover ${new Date().toISOString().slice(11, 23)}] ${m}\n`);

function save(result: { at?: string }, suffix: string): void {
  if (values["no-save"]) return;
  const dir = path.join(repoRoot, "bench", "results");
  mkdirSync(dir, { recursive: true });
  const at = result.at ?? new Date().toISOString();
  const file = path.join(dir, `cutover-${suffix}${at.replace(/[:]/g, "-").replace(/\.\d+Z$/, "Z")}${values.quick ? "-quick" : ""}.json`);
  writeFileSync(file, JSON.stringify(result, null, 2) + "\n");
  progress(`wrote ${path.relative(repoRoot, file)}`);
}

async function main(): Promise<void> {
  if (values.engine === "mysql" || values.engine === "redis") {
    const at = new Date().toISOString();
    const run = values.engine === "mysql" ? mysqlCutover : redisCutover;
    const r = { ...(await run({ sizeMb, writes, clients, progress })), at, command: `npm run bench:cutover -- ${process.argv.slice(2).join(" ")}`.trim(), machine: { cpus: (await import("node:os")).cpus().length } };
    console.log(JSON.stringify(r, null, 2));
    save(r, `${values.engine}-`);
    return;
  }
  if (values.engine !== "postgres") throw new Error(`--engine must be postgres, mysql or redis, got "${values.engine}"`);
  const fleet = await LocalPgFleet.create({ stack: "bench-cutover" });
  try {
    const shared = await fleet.server("shared-postgres");
    const dedicated = await fleet.server("dedicated-acme");
    const baselineTarget = await fleet.server("dump-restore-target");
    const key = { tenant: "acme", database: "app" };
    const acme = await fleet.tenantDatabase(shared, { ...key, role: "app__acme" });
    const p1 = await fleet.startProxy("proxy-1");
    const p2 = await fleet.startProxy("proxy-2");
    const endpoints = [p1, p2].map((p) => ({ host: "127.0.0.1", port: p.port, user: acme.role, password: acme.password, database: acme.name }));

    const scale = Math.max(1, Math.round(sizeMb / MB_PER_SCALE));
    progress(`building ${acme.name}: pgbench -i -s ${scale} (≈${scale * MB_PER_SCALE} MB)`);
    let t = Date.now();
    await execFileP(await pgBinary("pgbench"), ["-i", "-s", String(scale), "-q", "-h", "127.0.0.1", "-p", String(shared.port), "-U", acme.role, acme.name], {
      env: { ...process.env, PGPASSWORD: acme.password },
      maxBuffer: 1 << 24,
    });
    await prepareLoadTables(endpoints[0]!);
    // pgbench_history has no primary key: logical replication could not carry updates or deletes
    // of it, so the migration would fall back to dump/restore. Real schemas give every table one.
    const owner = new Client(endpoints[0]!);
    await owner.connect();
    await owner.query("alter table pgbench_history add column id bigserial primary key");
    await owner.end();
    const sizeBytes = await databaseSize(serverAccess(shared), acme.name);
    progress(`built ${(sizeBytes / 1024 / 1024).toFixed(0)} MB in ${((Date.now() - t) / 1000).toFixed(0)} s`);

    // Baseline: pg_dump | pg_restore of the same database, no load, to a third server.
    const route = await fleet.route(key);
    await ensureTenantDatabase(serverAccess(baselineTarget), { backendDatabase: "baseline", role: route.role, verifier: route.scramVerifier });
    // Each timed part starts with the disk settled: the writes of the part before it (the build, a
    // baseline's restore) would otherwise be flushed by the kernel in the middle of the next one.
    const settle = () => execFileP("sync");
    await settle();
    progress("baseline: pg_dump | pg_restore of the same database");
    t = Date.now();
    await copyDatabase(serverAccess(shared), acme.name, serverAccess(baselineTarget), "baseline");
    const dumpRestoreMs = Date.now() - t;
    progress(`baseline took ${(dumpRestoreMs / 1000).toFixed(1)} s`);
    await dropDatabase(baselineTarget, "baseline");
    // What parallel jobs would give: a directory dump with 2 jobs, restored with 2 jobs.
    await settle();
    progress("baseline: pg_dump -Fd -j 2, then pg_restore -j 2");
    const parallel = await parallelDumpRestore(shared, acme.name, baselineTarget, route);
    progress(`pg_dump -j 2 took ${(parallel.dumpMs / 1000).toFixed(1)} s, pg_restore -j 2 ${(parallel.restoreMs / 1000).toFixed(1)} s`);

    await settle();
    // The load, steady before, during and after the migration.
    const load = new LoadGenerator({ endpoints, clients, writesPerSecond: writes, mix: ["insert", "transaction", "read"] });
    load.start();
    await sleep(3000);
    const beforeMax = load.report().latencyMs.max;
    const logs: string[] = [];
    const migStarted = Date.now();
    let cutoverStarted = 0;
    // The migration runs in a process of its own, as `pulumi up` runs it (in the provider's
    // process), not on the event loop of this process's load clients.
    const record = await fleet.migrate(
      key,
      shared,
      dedicated,
      (m) => {
        logs.push(m);
        if (/^caught up/.test(m)) cutoverStarted = Date.now();
        progress(m);
      },
      { ownProcess: true },
    );
    const migEnded = Date.now();
    /** The longest client operation that overlapped a migration's pause. */
    const inPause = (r: { pauseWindow?: { from: number; to: number } }) => (r.pauseWindow ? Math.round(load.maxLatencyBetween(r.pauseWindow.from, r.pauseWindow.to)) : undefined);
    await sleep(3000);
    let back: { method: string; totalMs: number; pauseMs: number | undefined; heldMs: number | undefined; maxLatencyInPauseMs: number | undefined; timings: Record<string, number>; verification: unknown } | undefined;
    if (values.back) {
      progress("moving back within the rollback window");
      const started = Date.now();
      const r = await fleet.migrate(key, dedicated, shared, (m) => progress(m), { ownProcess: true });
      back = { method: r.method, totalMs: Date.now() - started, pauseMs: r.pauseMs, heldMs: r.heldMs, maxLatencyInPauseMs: inPause(r), timings: r.timings, verification: r.verification };
      await sleep(3000);
    }
    const report = await load.stop();
    const final = await fleet.route(key);
    const { missing, extra } = compareIds(load.acknowledgedIds(), await storedIds((back ? shared : dedicated).admin(final.backendDatabase)));

    const result = {
      bench: "cutover",
      at: new Date().toISOString(),
      machine: { cpus: (await import("node:os")).cpus().length },
      command: `npm run bench:cutover -- ${process.argv.slice(2).join(" ")}`.trim(),
      database: { sizeMB: Math.round(sizeBytes / 1024 / 1024), pgbenchScale: scale },
      load: { clients, targetWritesPerSecond: writes, achievedOpsPerSecond: Math.round((report.ops * 1000) / report.durationMs), acknowledgedRows: report.acknowledged },
      migration: {
        method: record.method,
        totalMs: migEnded - migStarted,
        timings: record.timings,
        initialSyncMBps: Number(record.syncMBps?.toFixed(1)),
        pauseMs: record.pauseMs,
        heldMs: record.heldMs,
        verification: record.verification,
      },
      ...(back ? { back } : {}),
      baseline: {
        dumpRestoreMs,
        dumpRestoreMBps: Number((sizeBytes / 1024 / 1024 / (dumpRestoreMs / 1000)).toFixed(1)),
        parallelJobs2: { dumpMs: parallel.dumpMs, restoreMs: parallel.restoreMs, totalMs: parallel.dumpMs + parallel.restoreMs },
      },
      ratio: {
        migrationOverDumpRestore: Number(((migEnded - migStarted) / dumpRestoreMs).toFixed(2)),
        migrationOverParallelDumpRestore: Number(((migEnded - migStarted) / (parallel.dumpMs + parallel.restoreMs)).toFixed(2)),
        ...(back ? { backOverMigration: Number((back.totalMs / (migEnded - migStarted)).toFixed(3)) } : {}),
      },
      client: {
        errors: report.errors.length,
        lostWrites: missing.length,
        unexpectedRows: extra.length,
        maxLatencyDuringCutoverMs: Math.round(load.maxLatencyBetween(cutoverStarted, migEnded)),
        // The cutover's parts: before the pause (checkpoint, way back prepared), the pause, after it
        // (the copies counted, the source fenced).
        maxLatencyInPauseMs: inPause(record),
        ...(record.pauseWindow
          ? {
              maxLatencyInCutoverBeforePauseMs: Math.round(load.maxLatencyBetween(cutoverStarted, record.pauseWindow.from - 1)),
              maxLatencyAfterPauseMs: Math.round(load.maxLatencyBetween(record.pauseWindow.to + 1, migEnded)),
            }
          : {}),
        maxLatencyBeforeMigrationMs: beforeMax,
        latencyMs: report.latencyMs,
        longest: { ...report.longest, time: new Date(report.longest.at).toISOString() },
      },
      goals: {
        ...cutoverGoals({ pauseMs: record.pauseMs, migrationMs: migEnded - migStarted, dumpRestoreMs, errors: report.errors.length, lostWrites: missing.length }),
        ...(back ? { backIsASwitchWithoutCopy: back.method === "standby" && back.timings.sync === undefined, backPauseAtMost100ms: (back.pauseMs ?? Infinity) <= 100, backVerified: (back.verification as { ok?: boolean } | undefined)?.ok === true } : {}),
      },
      errors: report.errors.slice(0, 5),
    };
    console.log(JSON.stringify(result, null, 2));
    save(result, back ? "back-" : "");
  } finally {
    await fleet.close();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function dropDatabase(s: PgServer, db: string): Promise<void> {
  await withAdmin(serverAccess(s), "postgres", (c) => c.query(`drop database if exists "${db}" with (force)`));
}

/** `pg_dump -Fd -j 2` into a temporary folder, then `pg_restore -j 2` into a new database; each timed. */
async function parallelDumpRestore(from: PgServer, db: string, to: PgServer, route: { role: string; scramVerifier: string }): Promise<{ dumpMs: number; restoreMs: number }> {
  const dir = await mkdtemp(path.join(tmpdir(), "tf-bench-dump-"));
  try {
    const conn = (s: PgServer, d: string) => ["-h", "127.0.0.1", "-p", String(s.port), "-U", s.adminUser, "-d", d];
    let t = Date.now();
    await execFileP(await pgBinary("pg_dump"), [...conn(from, db), "-Fd", "-j", "2", "-f", path.join(dir, "dump")], { env: { ...process.env, PGPASSWORD: from.adminPassword } });
    const dumpMs = Date.now() - t;
    await ensureTenantDatabase(serverAccess(to), { backendDatabase: "baseline_j", role: route.role, verifier: route.scramVerifier });
    t = Date.now();
    await execFileP(await pgBinary("pg_restore"), [...conn(to, "baseline_j"), "-j", "2", "--no-publications", "--no-subscriptions", path.join(dir, "dump")], { env: { ...process.env, PGPASSWORD: to.adminPassword } });
    const restoreMs = Date.now() - t;
    await dropDatabase(to, "baseline_j");
    return { dumpMs, restoreMs };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  progress(`failed: ${e.stack ?? e.message}`);
  process.exit(1);
});


