#!/usr/bin/env -S npx tsx
/**
 * npm run bench:schema [-- --tenants 1000 --rounds 3 --no-save]
 *
 * One schema change (`ALTER TABLE … ADD COLUMN` + `CREATE INDEX`) across N tenant databases split
 * over two shared PostgreSQL servers (real servers, as LocalServer makes them; max_connections
 * 100), two ways in the same run, alternating which goes first:
 *   - baseline: a plain sequential loop, `psql -f <file> <database>` for each database in turn;
 *   - rollout: the SchemaRollout provider's update (catalog routes, the policy's defaults: canary
 *     first, 4 per server, 16 in all; each tenant database in one transaction as its role, with its
 *     history table), exactly what `pulumi up` runs.
 * Each round applies a fresh change of the same shape to each side (columns base_<k> / roll_<k>).
 * Every tenant database holds an `orders` table of 2,000 rows (made by a first rollout, not timed).
 * While each side runs, the connections to tenant databases on each server are sampled every
 * 20 ms: the rollout must stay within the server's reserve (CONNECTION_RESERVE), which its
 * per-server cap is taken from, so the proxies' budget is never touched.
 *
 * Prints JSON (medians, ratio, peaks, goals) and writes it to bench/results/schema-<time>.json.
 */
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs, promisify } from "node:util";
import { createHash } from "node:crypto";
import { Client } from "pg";
import { LocalPgFleet, type PgServer } from "./lib/local-pg-fleet";
import { median } from "./lib/pgbench";
import { pgBinary } from "../dynamic-providers/engines/postgres/local";
import { provider as rolloutProvider } from "../dynamic-providers/schema-rollout/provider";
import { saveSchemaSet } from "../dynamic-providers/schema-rollout/catalog";
import { ref } from "../dynamic-providers/schema-rollout/plan";
import type { MigrationFile, SchemaRolloutInputs, SchemaRolloutOutputs } from "../dynamic-providers/schema-rollout/types";
import { SCHEMA_DEFAULTS } from "../stacks/schemas";
import { CONNECTION_RESERVE } from "../dynamic-providers/engines/connection-budget";
import { repoRoot } from "./lib/pulumi-env";
import { CLK_TCK, procTicks } from "./lib/proc-cpu";

const { values } = parseArgs({ options: { tenants: { type: "string", default: "1000" }, rounds: { type: "string", default: "3" }, "per-server": { type: "string" }, "no-save": { type: "boolean", default: false } } });
// The provider's progress lines go to stderr with the bench's own: stdout is the result JSON.
console.log = (...a: unknown[]) => process.stderr.write(`${a.join(" ")}\n`);
const N = Number(values.tenants);
const ROUNDS = Number(values.rounds);
const log = (m: string) => process.stderr.write(`[bench:schema] ${m}\n`);
const sha = (s: string) => createHash("sha256").update(s).digest("hex");
const file = (name: string, sql: string): MigrationFile => ({ name, checksum: sha(sql), sql });
/** CPU seconds of process `pid` and of the children it has reaped. */
function cpuSeconds(pid: number | "self"): number {
  const s = (procTicks(pid) + procTicks(pid, "children")) / CLK_TCK;
  if (Number.isNaN(s)) throw new Error(`no /proc/${pid}/stat`);
  return s;
}
const change = (col: string) => `alter table orders add column ${col} text;\ncreate index orders_${col} on orders (account_id, ${col});\n`;

/** Peak connections to tenant databases (`app__…`) on each server while `fn` runs, sampled every 20 ms. */
async function peakConnections<T>(servers: PgServer[], fn: () => Promise<T>): Promise<{ result: T; peaks: number[]; cpu: { bench: number; servers: number } }> {
  const clients = await Promise.all(servers.map(async (s) => { const c = new Client(s.admin()); await c.connect(); return c; }));
  // The postmasters reap the backends: their children's CPU is the servers' work.
  const postmasters = await Promise.all(clients.map(async (c) => {
    const pid = Number((await c.query("select pid from pg_stat_activity where backend_type = 'checkpointer'")).rows[0].pid);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  }));
  const cpu0 = { bench: cpuSeconds("self"), servers: postmasters.reduce((a, p) => a + cpuSeconds(p), 0) };
  const peaks = servers.map(() => 0);
  let on = true;
  const sampling = (async () => {
    while (on) {
      await Promise.all(clients.map(async (c, i) => {
        const n = Number((await c.query("select count(*) as n from pg_stat_activity where datname like 'app\\_\\_%'")).rows[0].n);
        peaks[i] = Math.max(peaks[i]!, n);
      }));
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  try {
    const result = await fn();
    const cpu = { bench: cpuSeconds("self") - cpu0.bench, servers: postmasters.reduce((a, p) => a + cpuSeconds(p), 0) - cpu0.servers };
    return { result, peaks, cpu: { bench: Number(cpu.bench.toFixed(2)), servers: Number(cpu.servers.toFixed(2)) } };
  } finally {
    on = false;
    await sampling;
    await Promise.all(clients.map((c) => c.end()));
  }
}

async function main(): Promise<void> {
  const fleet = await LocalPgFleet.create({ stack: "bench-schema" });
  const tmp = mkdtempSync(path.join(os.tmpdir(), "tf-bench-schema-"));
  try {
    const servers = [await fleet.server("shared-a"), await fleet.server("shared-b")];
    const maxConnections = Number((await queryOne(servers[0]!, "show max_connections")).max_connections);
    log(`${N} tenant databases on ${servers.map((s) => `${s.serverName} (:${s.port})`).join(" and ")}, max_connections ${maxConnections}`);
    const tenants = Array.from({ length: N }, (_, i) => `t${String(i).padStart(4, "0")}`);
    const placed = tenants.map((t, i) => ({ tenant: t, server: servers[i % 2]! }));
    let made = 0;
    const started = Date.now();
    await Promise.all(servers.map(async (s) => {
      for (const p of placed.filter((x) => x.server === s)) {
        await fleet.tenantDatabase(s, { tenant: p.tenant, database: "app", role: `app__${p.tenant}` });
        if (++made % 200 === 0) log(`created ${made}/${N} tenant databases (${((Date.now() - started) / 1000).toFixed(0)} s)`);
      }
    }));

    const catalog = fleet.catalog;
    const files: MigrationFile[] = [file("0001_orders", "create table orders (id bigserial primary key, account_id bigint not null, amount numeric not null, created_at timestamptz not null default now());\ninsert into orders (account_id, amount) select g % 50, g from generate_series(1, 2000) g;\n")];
    const base: Omit<SchemaRolloutInputs, "files"> = {
      database: "app",
      engine: "postgres",
      tenants,
      policy: { canary: tenants.slice(0, SCHEMA_DEFAULTS.canary), perServer: values["per-server"] ? Number(values["per-server"]) : SCHEMA_DEFAULTS.perServer, parallel: SCHEMA_DEFAULTS.parallel, maxFailures: SCHEMA_DEFAULTS.maxFailures },
      servers: Object.fromEntries(servers.map((s) => [s.serverName, { host: s.host, port: s.port, adminUser: s.adminUser }])),
      serverPasswords: Object.fromEntries(servers.map((s) => [s.serverName, s.adminPassword])),
      catalog: { host: catalog.host, port: catalog.port, adminUser: catalog.adminUser, database: "tenantfleet_catalog" },
      catalogPassword: catalog.adminPassword,
    };
    let state: SchemaRolloutOutputs | undefined;
    /** What `pulumi up` does: the SchemaSet's catalog write, then the SchemaRollout's update. */
    const rollout = async () => {
      const c = new Client(fleet.catalogConfig);
      await c.connect();
      try {
        await saveSchemaSet(c, { database: "app", engine: "postgres", files });
      } finally {
        await c.end();
      }
      const inputs = { ...base, files: files.map(ref) };
      const t0 = performance.now();
      const r = state ? await rolloutProvider.update!("app", state, inputs) : await rolloutProvider.create(inputs);
      state = r.outs as SchemaRolloutOutputs;
      return performance.now() - t0;
    };
    const t0 = Date.now();
    await rollout();
    log(`setup: every tenant database has orders (2,000 rows), ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    const psql = await pgBinary("psql");
    const baseline = async (k: number) => {
      const f = path.join(tmp, `base_${k}.sql`);
      writeFileSync(f, change(`base_${k}`));
      const t = performance.now();
      for (const p of placed) {
        await promisify(execFile)(psql, ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", p.server.host, "-p", String(p.server.port), "-U", p.server.adminUser, "-d", `app__${p.tenant}`, "-f", f], { env: { ...process.env, PGPASSWORD: p.server.adminPassword } });
      }
      return performance.now() - t;
    };

    const rounds: { round: number; baselineMs: number; rolloutMs: number; baselinePeaks: number[]; rolloutPeaks: number[]; cpuSeconds: { loop: object; rollout: object } }[] = [];
    for (let k = 1; k <= ROUNDS; k++) {
      files.push(file(`${String(k + 1).padStart(4, "0")}_roll_${k}`, change(`roll_${k}`)));
      const runBase = () => peakConnections(servers, () => baseline(k));
      const runRoll = () => peakConnections(servers, rollout);
      let loop: Awaited<ReturnType<typeof runBase>>;
      let roll: Awaited<ReturnType<typeof runRoll>>;
      if (k % 2) {
        loop = await runBase();
        roll = await runRoll();
      } else {
        roll = await runRoll();
        loop = await runBase();
      }
      rounds.push({ round: k, baselineMs: Math.round(loop.result), rolloutMs: Math.round(roll.result), baselinePeaks: loop.peaks, rolloutPeaks: roll.peaks, cpuSeconds: { loop: loop.cpu, rollout: roll.cpu } });
      log(`round ${k}: psql loop ${(loop.result / 1000).toFixed(1)} s, rollout ${(roll.result / 1000).toFixed(1)} s (${(roll.result / loop.result).toFixed(3)}×), peak connections per server ${roll.peaks.join("/")} (loop ${loop.peaks.join("/")}); CPU s bench/servers: rollout ${roll.cpu.bench}/${roll.cpu.servers}, loop ${loop.cpu.bench}/${loop.cpu.servers}`);
    }
    // Every tenant database got every change.
    const check = await queryOne(servers[1]!, "select count(*) as n from pg_database where datname like 'app\\_\\_%'");
    const last = placed[N - 1]!;
    const cols = await queryOne(last.server, `select count(*) as n from information_schema.columns where table_name = 'orders' and (column_name like 'base\\_%' or column_name like 'roll\\_%')`, `app__${last.tenant}`);
    if (Number(cols.n) !== 2 * ROUNDS) throw new Error(`app__${last.tenant} has ${cols.n} of the ${2 * ROUNDS} columns the rounds added`);

    const baselineMs = median(rounds.map((r) => r.baselineMs));
    const rolloutMs = median(rounds.map((r) => r.rolloutMs));
    const ratio = rolloutMs / baselineMs;
    const rolloutPeak = Math.max(...rounds.flatMap((r) => r.rolloutPeaks));
    const result = {
      benchmark: "schema",
      command: `npm run bench:schema -- --tenants ${N} --rounds ${ROUNDS}`,
      at: new Date().toISOString(),
      machine: { cpus: os.cpus().length, memGiB: Math.round(os.totalmem() / 2 ** 30) },
      tenants: N,
      servers: 2,
      tenantDatabasesOnSecondServer: Number(check.n),
      maxConnections,
      policy: { perServer: base.policy.perServer, parallel: base.policy.parallel, canary: base.policy.canary, maxFailures: base.policy.maxFailures },
      change: change("<col>").trim(),
      rounds,
      medians: { baselineMs, rolloutMs, ratio: Number(ratio.toFixed(3)), perTenantBaselineMs: Number((baselineMs / N).toFixed(2)), perTenantRolloutMs: Number((rolloutMs / N).toFixed(2)) },
      // Sampled from pg_stat_activity: a backend whose client has closed stays there until it has
      // exited, so the strictly sequential loop shows 2 at times; the rollout's cap is perServer.
      peakConnectionsPerServer: { rollout: rolloutPeak, loop: Math.max(...rounds.flatMap((r) => r.baselinePeaks)) },
      goals: {
        rolloutAtMostQuarterOfPsqlLoop: ratio <= 0.25,
        // The rollout's connections come out of each server's reserve (max_connections less the
        // proxies' budget): staying within it leaves every pool its connections.
        withinServerReserve: rolloutPeak <= CONNECTION_RESERVE,
      },
    };
    const json = JSON.stringify(result, null, 2);
    process.stdout.write(json + "\n");
    if (!values["no-save"]) {
      const dir = path.join(repoRoot, "bench", "results");
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, `schema-${result.at.replace(/[:.]/g, "-").replace(/-\d+Z$/, "Z")}.json`), json + "\n");
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
    await fleet.close();
  }
}

async function queryOne(s: PgServer, sql: string, database = "postgres"): Promise<Record<string, string>> {
  const c = new Client(s.admin(database));
  await c.connect();
  try {
    return (await c.query(sql)).rows[0];
  } finally {
    await c.end();
  }
}

main().catch((e: Error) => {
  console.error(`[bench:schema] ${e.stack ?? e.message}`);
  process.exit(1);
});
