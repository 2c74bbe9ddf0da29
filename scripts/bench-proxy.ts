#!/usr/bin/env -S npx tsx
/**
 * npm run bench:proxy — pgbench through tenantfleet's proxy, against PostgreSQL directly and
 * against PgBouncer (in the same pool mode), on the same server and the same pgbench database, in
 * one run. `--pool transaction` pools both (the proxy's route and PgBouncer's pool_mode) with
 * the same pool size; `--idle N` adds a connection-scale run: N mostly idle clients spread over
 * `--tenants` tenant databases, `--active` of them running pgbench, RSS per client for the proxy
 * and PgBouncer (and with `--migrate`, one of those tenant databases moved to another server
 * meanwhile, every idle client checked afterwards).
 *
 * Targets are interleaved: every round runs each workload once per target, the target order
 * rotating from round to round so no target always goes first (cold) or last. Latency percentiles
 * come from pgbench's per-transaction log (`--log`); pgbench's summary only has the mean.
 * Reports medians across rounds, the proxy/PgBouncer and proxy/direct throughput ratios and the
 * p50 latency the proxy adds over direct, plus the CPU each process used during each run.
 *
 * Progress goes to stderr, the result JSON to stdout and to bench/results/proxy-<time>.json.
 *
 * Flags (env in brackets; flags win):
 *   --quick                 smoke run: 1 round of 3 s, 1 s warm-up, scale 2
 *   --duration <s>          seconds per pgbench run            [BENCH_DURATION, 12]
 *   --rounds <n>            rounds                             [BENCH_ROUNDS, 3]
 *   --warmup <s>            unrecorded warm-up run per target and workload, 0 = none [BENCH_WARMUP, 3]
 *   --scale <n>             pgbench -i scale factor            [BENCH_SCALE, 10]
 *   --clients <list>        pgbench -c, one or more (e.g. 8,200) [BENCH_CLIENTS, 8]
 *   --pool <mode>           session|transaction for the proxy and PgBouncer [BENCH_POOL, session]
 *   --pool-size <n>         transaction mode: server connections per pool [BENCH_POOL_SIZE, 20]
 *   --idle <n>              connection-scale run: this many idle clients (0 = none) [BENCH_IDLE, 0]
 *   --active <n>            connection-scale run: pgbench clients among them [BENCH_ACTIVE, 200]
 *   --tenants <n>           connection-scale run: tenant databases the idle clients spread over [1]
 *   --migrate               connection-scale run: move one tenant database to a second server during it
 *   --threads <n>           pgbench -j                         [BENCH_THREADS, 2]
 *   --protocol <p>          pgbench -M simple|extended|prepared [BENCH_PROTOCOL, simple]
 *   --workloads <list>      select-only,tpcb-like
 *   --targets <list>        direct,proxy,pgbouncer,relay (relay: a bare Node.js byte relay, one
 *                           server connection per client, the ceiling of any Node.js proxy here;
 *                           with --idle, also the memory per connection of a Node.js process that
 *                           only holds them)
 *   --out <file>            result file (default bench/results/proxy-<time>[-quick].json)
 *   --no-save               print only
 *   --cpu-prof              run the proxy under `node --cpu-prof` and report where its busy time goes
 *                           (the profiler costs some throughput: compare tps from runs without it)
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync, promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs, promisify } from "node:util";
import { Client } from "pg";
import { LocalPgFleet, type ProxyProcess } from "./lib/local-pg-fleet";
import { median, parsePgbenchSummary, PGBENCH, readTxnLogs, runningChildren, runPgbench, summarizeTxnLogs, type Conn } from "./lib/pgbench";
import { pgbouncerVersion, startPgbouncer, type PgbouncerProcess } from "./lib/pgbouncer";
import { summarizeCpuProfile, type CpuProfile, type CpuProfileSummary } from "./lib/cpuprofile";
import { setRoutePool } from "../proxy/catalog/routes";
import { postgresMaxConnections } from "../dynamic-providers/engines/postgres/settings";
import { connectionBudget } from "../dynamic-providers/engines/connection-budget";
import { connectionScale, watchRss } from "./lib/connection-scale";
import { startNodeRelay, type NodeRelayProcess } from "./lib/node-relay";
import { CLK_TCK, procTicks } from "./lib/proc-cpu";

const execFileP = promisify(execFile);
const repoRoot = path.resolve(__dirname, "..");

const say = (line: string) => process.stderr.write(`[bench] ${line}\n`);

const WORKLOADS = ["select-only", "tpcb-like"] as const;
type Workload = (typeof WORKLOADS)[number];
const TARGETS = ["direct", "proxy", "pgbouncer", "relay"] as const;
type Target = (typeof TARGETS)[number];

interface Options {
  quick: boolean;
  durationSec: number;
  rounds: number;
  warmupSec: number;
  scale: number;
  clients: number[];
  threads: number;
  pool: "session" | "transaction";
  poolSize: number;
  idle: number;
  active: number;
  tenants: number;
  migrate: boolean;
  protocol: "simple" | "extended" | "prepared";
  workloads: Workload[];
  targets: Target[];
  out: string | undefined;
  save: boolean;
  cpuProf: boolean;
}

function options(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: "boolean", default: false },
      duration: { type: "string" },
      rounds: { type: "string" },
      warmup: { type: "string" },
      scale: { type: "string" },
      clients: { type: "string" },
      pool: { type: "string" },
      "pool-size": { type: "string" },
      idle: { type: "string" },
      active: { type: "string" },
      tenants: { type: "string" },
      migrate: { type: "boolean", default: false },
      threads: { type: "string" },
      protocol: { type: "string" },
      workloads: { type: "string" },
      targets: { type: "string" },
      out: { type: "string" },
      "no-save": { type: "boolean", default: false },
      "cpu-prof": { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
    strict: true,
  });
  if (values.help) {
    const head = readFileSync(__filename, "utf8").split("\n");
    process.stdout.write(head.slice(2, head.findIndex((l) => l.startsWith(" */"))).map((l) => l.replace(/^ \* ?/, "")).join("\n") + "\n");
    process.exit(0);
  }
  const quick = values.quick!;
  const int = (flag: string, v: string | undefined, env: string, dflt: number, min: number): number => {
    const s = v ?? process.env[env];
    if (s === undefined || s === "") return dflt;
    const n = Number(s);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${flag} (or ${env}) must be an integer ≥ ${min}, got "${s}"`);
    return n;
  };
  const list = <T extends string>(flag: string, v: string | undefined, all: readonly T[]): T[] => {
    if (!v) return [...all];
    const items = v.split(",").map((s) => s.trim()).filter(Boolean);
    for (const i of items) if (!all.includes(i as T)) throw new Error(`--${flag}: unknown "${i}" (choose from ${all.join(", ")})`);
    return items as T[];
  };
  const protocol = values.protocol ?? process.env.BENCH_PROTOCOL ?? "simple";
  const pool = values.pool ?? process.env.BENCH_POOL ?? "session";
  if (pool !== "session" && pool !== "transaction") throw new Error(`--pool must be session or transaction, got "${pool}"`);
  const clients = (values.clients ?? process.env.BENCH_CLIENTS ?? "8").split(",").map((c) => int("clients", c.trim(), "BENCH_CLIENTS", 8, 1));
  if (!["simple", "extended", "prepared"].includes(protocol)) throw new Error(`--protocol must be simple, extended or prepared, got "${protocol}"`);
  return {
    quick,
    durationSec: int("duration", values.duration, "BENCH_DURATION", quick ? 3 : 12, 1),
    rounds: int("rounds", values.rounds, "BENCH_ROUNDS", quick ? 1 : 3, 1),
    warmupSec: int("warmup", values.warmup, "BENCH_WARMUP", quick ? 1 : 3, 0),
    scale: int("scale", values.scale, "BENCH_SCALE", quick ? 2 : 10, 1),
    clients,
    pool,
    poolSize: int("pool-size", values["pool-size"], "BENCH_POOL_SIZE", 20, 1),
    idle: int("idle", values.idle, "BENCH_IDLE", 0, 0),
    active: int("active", values.active, "BENCH_ACTIVE", 200, 1),
    tenants: int("tenants", values.tenants, "BENCH_TENANTS", 1, 1),
    migrate: values.migrate!,
    threads: int("threads", values.threads, "BENCH_THREADS", 2, 1),
    protocol: protocol as Options["protocol"],
    workloads: list("workloads", values.workloads, WORKLOADS),
    targets: list("targets", values.targets, TARGETS),
    out: values.out,
    save: !values["no-save"],
    cpuProf: values["cpu-prof"]!,
  };
}

// ------------------------------------------------------------------ CPU accounting (/proc)

/** A process and its direct children (pid → user+system ticks), for a PostgreSQL postmaster and its backends. */
interface TreeTicks {
  own: number;
  reaped: number;
  children: Map<number, number>;
}

function treeTicks(pid: number): TreeTicks {
  const children = new Map<number, number>();
  let names: string[] = [];
  try {
    names = readdirSync("/proc");
  } catch {
    /* no /proc */
  }
  for (const n of names) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const stat = readFileSync(`/proc/${n}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(f[1]) === pid) children.set(Number(n), Number(f[11]) + Number(f[12]));
    } catch {
      /* exited meanwhile */
    }
  }
  return { own: procTicks(pid), reaped: procTicks(pid, "children"), children };
}

/**
 * Ticks a process tree used between two samples: its own, its live children's, and those of the
 * children that exited and were reaped meanwhile (cutime), minus what those had used before.
 */
function treeDelta(a: TreeTicks, b: TreeTicks): number {
  let d = b.own - a.own + (b.reaped - a.reaped);
  for (const [pid, t] of b.children) d += t - (a.children.get(pid) ?? 0);
  for (const [pid, t] of a.children) if (!b.children.has(pid)) d -= t;
  return d;
}

/** Ticks of the whole machine (all CPUs) from /proc/stat: busy (without steal), interrupts, steal. */
function machineTicks(): { busy: number; irq: number; steal: number } {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, _idle, _iowait, irq, softirq, steal] = f as number[];
    return { busy: user! + nice! + system! + irq! + softirq!, irq: irq! + softirq!, steal: steal ?? 0 };
  } catch {
    return { busy: NaN, irq: NaN, steal: NaN };
  }
}

interface CpuSample {
  at: number;
  machine: number;
  irq: number;
  steal: number;
  proxy: number;
  proxySystem: number;
  pgbouncer: number;
  pgbouncerSystem: number;
  relay: number;
  relaySystem: number;
  pgbench: number;
  postgres: TreeTicks | undefined;
}

interface CpuCores {
  /** CPU-seconds per wall second (1.0 = one core busy) during the run. */
  machine: number;
  /** Part of `machine` in hard and soft interrupts (loopback TCP delivery); this kernel also counts it in the interrupted process's time, so it is not subtracted from `rest`. */
  irq: number;
  /** Time the hypervisor ran something else while this VM wanted the CPU (not in `machine`). */
  steal: number;
  proxy: number;
  /** The part of `proxy` spent in the kernel (socket reads and writes, epoll). */
  proxySystem: number;
  pgbouncer: number;
  pgbouncerSystem: number;
  /** The Node.js byte relay (baseline). */
  relay: number;
  relaySystem: number;
  pgbench: number;
  /** The benchmark's PostgreSQL server: postmaster, backends (also those that exited), its helpers. */
  postgres: number;
  /** machine − the above: this script, interrupts, and anything else running on the machine. */
  rest: number;
}

// ------------------------------------------------------------------ the run

interface RunRecord {
  round: number;
  workload: Workload;
  clients: number;
  /** Peak resident memory of the proxy or PgBouncer process during the run (MiB; 0 for direct). */
  rssMiB: number;
  target: Target;
  /** pgbench's "tps = … (without initial connection time)". */
  tps: number;
  transactions: number;
  failed: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  meanUs: number;
  maxUs: number;
  wallMs: number;
  cpuCores: CpuCores;
  error?: string;
}

const round1 = (x: number, digits = 1) => (Number.isFinite(x) ? Math.round(x * 10 ** digits) / 10 ** digits : null);

async function git(args: string[]): Promise<string | undefined> {
  try {
    return (await execFileP("git", args, { cwd: repoRoot })).stdout.trim();
  } catch {
    return undefined;
  }
}

async function firstLine(cmd: string, args: string[]): Promise<string | undefined> {
  try {
    const { stdout } = await execFileP(cmd, args);
    return stdout.split("\n")[0]!.trim();
  } catch {
    return undefined;
  }
}

function osRelease(): string | undefined {
  try {
    return /^PRETTY_NAME="?([^"\n]*)"?/m.exec(readFileSync("/etc/os-release", "utf8"))?.[1];
  } catch {
    return undefined;
  }
}

async function queryOne(conn: Conn, sql: string): Promise<string> {
  const c = new Client({ host: conn.host, port: conn.port, user: conn.user, password: conn.password, database: conn.database });
  await c.connect();
  try {
    const r = await c.query<{ v: string }>(sql);
    return String(r.rows[0]?.v);
  } finally {
    await c.end();
  }
}

async function main(): Promise<number> {
  const opts = options(process.argv.slice(2));
  const startedAt = new Date();
  let fleet: LocalPgFleet | undefined;
  let proxy: ProxyProcess | undefined;
  let bouncer: PgbouncerProcess | undefined;
  let relay: NodeRelayProcess | undefined;
  let cleaning: Promise<void> | undefined;
  let interrupted: string | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      for (const c of runningChildren) c.kill("SIGKILL");
      await bouncer?.stop().catch(() => undefined);
      await relay?.stop().catch(() => undefined);
      await fleet?.close().catch((e: Error) => say(`cleanup: ${e.message}`));
    })());
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(sig, () => {
      interrupted = sig;
      say(`${sig}: stopping pgbench, PgBouncer, the proxy and the servers`);
      void cleanup().finally(() => process.exit(130));
    });
  }

  try {
    // Other work on the machine skews every figure: measure it before starting (it is in the result).
    const b0 = machineTicks().busy;
    await new Promise((r) => setTimeout(r, 1000));
    const busyBefore = round1((machineTicks().busy - b0) / CLK_TCK, 2)!;
    if (busyBefore > 0.25) say(`warning: the machine is already busy (${busyBefore} cores over the last second, load average ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}): figures will be skewed`);
    // PostgreSQL itself takes at most max_connections less its superuser slots: more clients than
    // that run through the poolers only (direct is left out of those combinations, and says so).
    const directMax = postgresMaxConnections("local", "shared") - 3;
    const combos = opts.workloads.flatMap((workload) =>
      opts.clients.map((clients) => ({ workload, clients, key: `${workload}/c${clients}`, targets: opts.targets.filter((t) => (t !== "direct" && t !== "relay") || clients <= directMax) })),
    );
    for (const c of combos) if (c.targets.length < opts.targets.length) say(`${c.key}: not run directly nor through the relay (more clients than the server's ${directMax} connections)`);
    const expected = opts.rounds * combos.length * opts.targets.length * opts.durationSec + (opts.warmupSec ? combos.length * opts.targets.length * opts.warmupSec : 0);
    say(`${opts.rounds} round(s) × ${combos.map((c) => c.key).join(", ")} × ${opts.targets.join(", ")}, ${opts.durationSec} s each, -j ${opts.threads} -M ${opts.protocol}, scale ${opts.scale}, ${opts.pool} pool mode${opts.pool === "transaction" ? ` (${opts.poolSize} server connections)` : ""}: about ${Math.ceil(expected / 60)} min of pgbench`);

    say("starting the catalog and a PostgreSQL server");
    fleet = await LocalPgFleet.create({ stack: "bench" });
    const server = await fleet.server("bench-pg");
    const tdb = await fleet.tenantDatabase(server, { tenant: "bench", database: "pgbench" });
    const key = { tenant: "bench", database: "pgbench" };
    // One proxy here: it may use the server's whole budget (max_connections 100 less the reserve).
    const serverBudget = connectionBudget(postgresMaxConnections("local", "shared"), 1).perProxy;
    if (opts.pool === "transaction") await fleet.withAdmin(fleet.catalog, "tenantfleet_catalog", (c) => setRoutePool(c, key, { poolMode: "transaction", poolSize: opts.poolSize, serverBudget }));
    const route = await fleet.route(key);
    const direct: Conn = { host: server.host, port: server.port, user: tdb.role, password: tdb.password, database: tdb.name };

    say(`pgbench -i -s ${opts.scale} on ${tdb.name} (as ${tdb.role}, directly)`);
    const init = await runPgbench(["-i", "-q", "-s", String(opts.scale), tdb.name], direct, { timeoutMs: 600_000 });
    if (init.code !== 0) throw new Error(`pgbench -i failed (${init.code}):\n${init.stderr}${init.stdout}`);

    const conns = {} as Record<Target, Conn>;
    conns.direct = direct;
    if (opts.targets.includes("proxy")) {
      say("starting tenantfleet's proxy");
      proxy = await fleet.startProxy("bench-1", {
        ...(opts.cpuProf ? { nodeArgs: ["--cpu-prof", "--cpu-prof-dir", path.join(fleet.root, "cpu-prof")] } : {}),
        // The connection-scale run needs the server's connections free between its phases.
        ...(opts.idle > 0 ? { extraArgs: ["--pool-idle-timeout", "2"] } : {}),
      });
      conns.proxy = { ...direct, host: "127.0.0.1", port: proxy.port };
    }
    if (opts.targets.includes("pgbouncer")) {
      say(`starting PgBouncer (${opts.pool} mode, SCRAM verifier in auth_file)`);
      bouncer = await startPgbouncer(
        {
          dir: path.join(fleet.root, "pgbouncer"),
          listenHost: "127.0.0.1",
          databases: [{ name: tdb.name, host: server.host, port: server.port }],
          poolMode: opts.pool,
          authType: "scram-sha-256",
          maxClientConn: Math.max(100, Math.max(...opts.clients) * 2),
          defaultPoolSize: opts.pool === "transaction" ? opts.poolSize : Math.max(20, Math.max(...opts.clients) + 4),
        },
        [{ user: tdb.role, secret: route.scramVerifier }],
      );
      conns.pgbouncer = { ...direct, host: bouncer.host, port: bouncer.port };
    }
    if (opts.targets.includes("relay")) {
      say("starting the Node.js byte relay (baseline)");
      relay = await startNodeRelay({ host: server.host, port: server.port });
      conns.relay = { ...direct, host: relay.host, port: relay.port };
    }

    // Every target answers before anything is timed (and the versions go into the result).
    const pgVersion = await queryOne(direct, "select version() as v");
    for (const t of opts.targets) {
      const v = await queryOne(conns[t], "select current_setting('server_version') as v");
      say(`${t}: ${conns[t].host}:${conns[t].port} answers (server ${v})`);
    }

    const postmaster = (() => {
      try {
        return Number(readFileSync(path.join(server.dir, "data", "postmaster.pid"), "utf8").split("\n")[0]) || undefined;
      } catch {
        return undefined;
      }
    })();
    if (!postmaster) say("warning: no postmaster.pid under the server's data dir; PostgreSQL's CPU is not measured");
    const logRoot = path.join(fleet.root, "pgbench-logs");
    mkdirSync(logRoot, { recursive: true });
    let runNo = 0;

    const vacuum = async () => {
      // What pgbench does before a run unless -n; done here, directly, so the timed window and the
      // CPU accounting cover only the benchmark traffic on the target.
      const c = new Client({ host: direct.host, port: direct.port, user: direct.user, password: direct.password, database: direct.database });
      await c.connect();
      try {
        await c.query("vacuum pgbench_branches");
        await c.query("vacuum pgbench_tellers");
        await c.query("truncate pgbench_history");
      } finally {
        await c.end();
      }
    };

    const sample = (): CpuSample => ({
      at: performance.now(),
      ...(({ busy, irq, steal }) => ({ machine: busy, irq, steal }))(machineTicks()),
      proxy: proxy?.child.pid ? procTicks(proxy.child.pid) : 0,
      proxySystem: proxy?.child.pid ? procTicks(proxy.child.pid, "system") : 0,
      pgbouncer: bouncer?.child.pid ? procTicks(bouncer.child.pid) : 0,
      pgbouncerSystem: bouncer?.child.pid ? procTicks(bouncer.child.pid, "system") : 0,
      relay: relay?.child.pid ? procTicks(relay.child.pid) : 0,
      relaySystem: relay?.child.pid ? procTicks(relay.child.pid, "system") : 0,
      pgbench: procTicks("self", "children"),
      postgres: postmaster ? treeTicks(postmaster) : undefined,
    });

    const rssOf = (target: Target) => (target === "proxy" ? proxy?.child.pid : target === "pgbouncer" ? bouncer?.child.pid : target === "relay" ? relay?.child.pid : undefined);
    const run = async (round: number, workload: Workload, clients: number, target: Target, seconds: number): Promise<RunRecord> => {
      if (interrupted) throw new Error(`interrupted by ${interrupted}`);
      await vacuum();
      const prefix = `run${++runNo}`;
      const args = ["-n", "-c", String(clients), "-j", String(opts.threads), "-T", String(seconds), "-M", opts.protocol, "--log", `--log-prefix=${path.join(logRoot, prefix)}`];
      if (workload === "select-only") args.push("-S");
      args.push(conns[target].database);
      const before = sample();
      const peak = watchRss(rssOf(target));
      const r = await runPgbench(args, conns[target], { timeoutMs: (seconds + 60) * 1000 });
      const rssMiB = peak.stop();
      const after = sample();
      const wallS = (after.at - before.at) / 1000;
      const cores = (k: keyof Omit<CpuSample, "at" | "postgres">) => (after[k] - before[k]) / CLK_TCK / wallS;
      const p = target === "proxy";
      const b = target === "pgbouncer";
      const nr = target === "relay";
      const cpu: CpuCores = {
        machine: cores("machine"),
        irq: cores("irq"),
        steal: cores("steal"),
        proxy: p ? cores("proxy") : 0,
        proxySystem: p ? cores("proxySystem") : 0,
        pgbouncer: b ? cores("pgbouncer") : 0,
        pgbouncerSystem: b ? cores("pgbouncerSystem") : 0,
        relay: nr ? cores("relay") : 0,
        relaySystem: nr ? cores("relaySystem") : 0,
        pgbench: cores("pgbench"),
        postgres: before.postgres && after.postgres ? treeDelta(before.postgres, after.postgres) / CLK_TCK / wallS : NaN,
        rest: 0,
      };
      cpu.rest = cpu.machine - cpu.proxy - cpu.pgbouncer - cpu.relay - cpu.pgbench - (Number.isFinite(cpu.postgres) ? cpu.postgres : 0);
      for (const k of Object.keys(cpu) as (keyof CpuCores)[]) cpu[k] = round1(cpu[k], 2)!;
      const logs = await readTxnLogs(logRoot, prefix);
      await Promise.all((await fs.readdir(logRoot)).filter((n) => n.startsWith(`${prefix}.`)).map((n) => fs.rm(path.join(logRoot, n))));
      const lat = summarizeTxnLogs(logs);
      const rec: RunRecord = { round, workload, clients, rssMiB, target, tps: NaN, transactions: lat.count, failed: lat.failed, p50Us: lat.p50Us, p90Us: lat.p90Us, p99Us: lat.p99Us, meanUs: round1(lat.meanUs)!, maxUs: lat.maxUs, wallMs: r.wallMs, cpuCores: cpu };
      if (r.code !== 0) {
        const detail = [`pgbench exited ${r.code ?? r.signal}`, r.stderr.trim().split("\n").slice(-15).join("\n")];
        if (target === "proxy" && proxy) detail.push("proxy log tail:", ...proxy.logs.slice(-15).map((l) => JSON.stringify(l)));
        if (target === "pgbouncer" && bouncer) detail.push("pgbouncer log tail:", ...(await bouncer.log()).trim().split("\n").slice(-15));
        rec.error = detail.join("\n");
        say(`ERROR ${workload} via ${target}:\n${rec.error}`);
      }
      try {
        rec.tps = round1(parsePgbenchSummary(r.stdout).tps)!;
      } catch (e) {
        if (!rec.error) rec.error = (e as Error).message;
      }
      if (r.stderr.trim() && !rec.error) {
        // pgbench reports client errors on stderr even when the run completes.
        const lines = r.stderr.trim().split("\n").filter((l) => !/^pgbench \(/.test(l));
        if (lines.length) rec.error = `pgbench stderr: ${lines.slice(0, 10).join("\n")}`;
      }
      return rec;
    };

    const fmt = (r: RunRecord) =>
      r.error && !Number.isFinite(r.tps)
        ? "FAILED"
        : `${r.tps} tps, p50 ${r.p50Us} µs, p99 ${r.p99Us} µs${r.rssMiB ? `, RSS ${r.rssMiB} MiB` : ""}; cores: ${r.target === "direct" ? "" : `${r.target} ${r.cpuCores[r.target]} (sys ${r.cpuCores[`${r.target}System`]}), `}pgbench ${r.cpuCores.pgbench}, postgres ${r.cpuCores.postgres}, irq ${r.cpuCores.irq}, rest ${r.cpuCores.rest}, steal ${r.cpuCores.steal} of ${os.cpus().length}${r.failed ? `; ${r.failed} failed` : ""}`;

    if (opts.warmupSec > 0) {
      for (const c of combos) {
        for (const target of c.targets) {
          const r = await run(0, c.workload, c.clients, target, opts.warmupSec);
          say(`warm-up ${c.key} via ${target}: ${fmt(r)}`);
          if (r.error) throw new Error(`warm-up ${c.key} via ${target} failed:\n${r.error}`);
        }
      }
    }

    const runs: RunRecord[] = [];
    for (let round = 1; round <= opts.rounds; round++) {
      for (const [wi, c] of combos.entries()) {
        const shift = (round - 1 + wi) % c.targets.length;
        const order = [...c.targets.slice(shift), ...c.targets.slice(0, shift)];
        for (const target of order) {
          say(`round ${round}/${opts.rounds} ${c.key} via ${target} (${opts.durationSec} s)`);
          const r = await run(round, c.workload, c.clients, target, opts.durationSec);
          runs.push(r);
          say(`  ${fmt(r)}`);
        }
      }
    }

    const scaleRun = opts.idle > 0 ? await connectionScale({ opts, fleet, server, conns, proxy, bouncer, route, serverBudget, nodeFloor: opts.targets.includes("relay") }) : undefined;

    // ---------------------------------------------------------------- report
    const workloads: Record<string, unknown> = {};
    const goalsThroughput: Record<string, { proxyVsPgbouncerTps: number | null; met: boolean }> = {};
    const goalsLatency: Record<string, { proxyAddedP50Us: number | null; met: boolean }> = {};
    for (const { workload, clients, key: comboKey, targets: comboTargets } of combos) {
      const targets: Record<string, { tps: number | null; p50Us: number | null; p99Us: number | null; meanUs: number | null; rssMiB: number | null; cpuCores: Record<string, number | null>; failedRuns: number; rounds: RunRecord[] }> = {};
      for (const target of comboTargets) {
        const rs = runs.filter((r) => r.workload === workload && r.clients === clients && r.target === target);
        const ok = rs.filter((r) => !r.error);
        const m = (f: (r: RunRecord) => number, d = 1) => round1(median(ok.map(f)), d);
        targets[target] = {
          tps: m((r) => r.tps),
          p50Us: m((r) => r.p50Us),
          p99Us: m((r) => r.p99Us),
          meanUs: m((r) => r.meanUs),
          rssMiB: m((r) => r.rssMiB),
          cpuCores: Object.fromEntries((Object.keys(ok[0]?.cpuCores ?? {}) as (keyof CpuCores)[]).map((k) => [k, m((r) => r.cpuCores[k], 2)])),
          failedRuns: rs.length - ok.length,
          rounds: rs,
        };
      }
      const t = (name: Target) => targets[name];
      const ratio = (a: Target, b: Target) => (t(a)?.tps && t(b)?.tps ? round1(t(a)!.tps! / t(b)!.tps!, 3) : null);
      const added = (a: Target) => (t(a)?.p50Us != null && t("direct")?.p50Us != null ? round1(t(a)!.p50Us! - t("direct")!.p50Us!) : null);
      const ratios = {
        proxyVsPgbouncerTps: ratio("proxy", "pgbouncer"),
        proxyVsDirectTps: ratio("proxy", "direct"),
        pgbouncerVsDirectTps: ratio("pgbouncer", "direct"),
        relayVsPgbouncerTps: ratio("relay", "pgbouncer"),
        proxyVsRelayTps: ratio("proxy", "relay"),
        proxyAddedP50Us: added("proxy"),
        pgbouncerAddedP50Us: added("pgbouncer"),
        proxyAddedP99Us: t("proxy")?.p99Us != null && t("direct")?.p99Us != null ? round1(t("proxy")!.p99Us! - t("direct")!.p99Us!) : null,
      };
      workloads[comboKey] = { medians: Object.fromEntries(Object.entries(targets).map(([k, v]) => [k, { tps: v.tps, p50Us: v.p50Us, p99Us: v.p99Us, meanUs: v.meanUs, rssMiB: v.rssMiB, cpuCores: v.cpuCores, failedRuns: v.failedRuns }])), ratios, runs: Object.fromEntries(Object.entries(targets).map(([k, v]) => [k, v.rounds])) };
      goalsThroughput[comboKey] = { proxyVsPgbouncerTps: ratios.proxyVsPgbouncerTps, met: ratios.proxyVsPgbouncerTps !== null && ratios.proxyVsPgbouncerTps >= 1 };
      if (comboTargets.includes("direct")) goalsLatency[comboKey] = { proxyAddedP50Us: ratios.proxyAddedP50Us, met: ratios.proxyAddedP50Us !== null && ratios.proxyAddedP50Us <= 100 };
    }
    const throughputMet = Object.values(goalsThroughput).every((g) => g.met);
    const latencyMet = Object.values(goalsLatency).every((g) => g.met);
    const scaleGoals = scaleRun?.goals;

    let proxyCpuProfile: CpuProfileSummary | undefined;
    if (opts.cpuProf && proxy && fleet) {
      await proxy.stop(); // the profile is written as the process exits
      const dir = path.join(fleet.root, "cpu-prof");
      const file = readdirSync(dir).find((f) => f.endsWith(".cpuprofile"));
      if (file) proxyCpuProfile = summarizeCpuProfile(JSON.parse(readFileSync(path.join(dir, file), "utf8")) as CpuProfile);
    }
    const proxyLogs = proxy?.logs ?? [];
    const noisy = proxyLogs.filter((l) => Number(l.level) >= 40);
    const errors = runs.filter((r) => r.error);
    const cpus = os.cpus();
    const result = {
      benchmark: "proxy",
      quick: opts.quick,
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      config: {
        durationSec: opts.durationSec,
        rounds: opts.rounds,
        warmupSec: opts.warmupSec,
        scale: opts.scale,
        clients: opts.clients,
        threads: opts.threads,
        pool: opts.pool,
        poolSize: opts.pool === "transaction" ? opts.poolSize : undefined,
        serverBudget: opts.pool === "transaction" ? serverBudget : undefined,
        protocol: opts.protocol,
        workloads: opts.workloads,
        targets: opts.targets,
        order: "each round runs each workload on every target, the target order rotating by one per round and workload",
        latency: "per-transaction pgbench --log over all clients of a run, nearest-rank percentiles; medians across rounds",
        tps: "pgbench's 'tps … (without initial connection time)'; one connection per client for the whole run",
        cpuCores: "CPU-seconds per wall second during each run from /proc: the proxy, PgBouncer or Node.js relay process (…System: its kernel part), pgbench (reaped children), the PostgreSQL server (postmaster and backends, exited ones by cutime), machine total (irq: its interrupt part, also inside the processes' figures; steal: taken by the hypervisor, not in machine); rest = machine − those processes (this script, interrupts, anything else on the machine: a high rest means a noisy run)",
        pgbouncer: bouncer ? { poolMode: opts.pool, defaultPoolSize: opts.pool === "transaction" ? opts.poolSize : undefined, auth: "scram-sha-256: auth_file holds the role's SCRAM verifier from the catalog route; PgBouncer logs in to the server by SCRAM pass-through", runsAs: bouncer.user } : undefined,
        relay: opts.targets.includes("relay") ? "scripts/lib/node-relay-main.mjs: a bare Node.js byte relay (one server connection per client, no parsing), the most a Node.js proxy can do on this machine; not run with more clients than the server's connections" : undefined,
        postgres: "LocalServer settings (fsync on, synchronous_commit on), TCP on 127.0.0.1; the catalog runs on a separate server",
      },
      machine: {
        cpus: cpus.length,
        busyCoresBeforeStart: busyBefore,
        loadAverageAtEnd: os.loadavg().map((l) => round1(l, 2)),
        cpuModel: cpus[0]?.model,
        memoryGiB: round1(os.totalmem() / 2 ** 30),
        os: osRelease(),
        kernel: os.release(),
        node: process.version,
        postgres: pgVersion,
        pgbench: await firstLine(PGBENCH, ["--version"]),
        pgbouncer: await pgbouncerVersion().catch(() => undefined),
        commit: await git(["rev-parse", "HEAD"]),
        // Uncommitted changes under proxy/ at run time: a digest of `git diff HEAD -- proxy` (null = clean).
        proxyUncommittedDiff: await git(["diff", "HEAD", "--", "proxy"]).then((d) => (d ? createHash("sha256").update(d).digest("hex").slice(0, 16) : null)),
      },
      workloads,
      connectionScale: scaleRun?.result,
      proxyCpuProfile,
      goals: {
        throughputAtLeastPgbouncer: { goal: "proxy tps ≥ PgBouncer tps (median of rounds)", ...goalsThroughput, met: throughputMet },
        p50AtMost100usOverDirect: { goal: "proxy p50 − direct p50 ≤ 100 µs (medians of rounds)", ...goalsLatency, met: latencyMet },
        ...(scaleGoals ? { connectionScale: scaleGoals } : {}),
        met: throughputMet && latencyMet && (scaleGoals?.met ?? true),
      },
      problems: {
        failedRuns: errors.map((r) => ({ round: r.round, workload: r.workload, target: r.target, error: r.error })),
        proxyWarnings: noisy.length,
        proxyLogSample: noisy.slice(0, 10),
      },
    };

    const json = JSON.stringify(result, null, 2);
    process.stdout.write(json + "\n");
    if (opts.save) {
      const stamp = startedAt.toISOString().slice(0, 19).replace(/:/g, "-") + "Z";
      const out = opts.out ?? path.join(repoRoot, "bench", "results", `proxy-${stamp}${opts.quick ? "-quick" : ""}.json`);
      mkdirSync(path.dirname(out), { recursive: true });
      writeFileSync(out, json + "\n");
      say(`wrote ${path.relative(process.cwd(), out) || out}`);
    }
    for (const { key: w } of combos) {
      const r = (workloads[w] as { ratios: Record<string, number | null> }).ratios;
      say(`${w}: proxy/pgbouncer ${r.proxyVsPgbouncerTps}, proxy/direct ${r.proxyVsDirectTps}, proxy adds ${r.proxyAddedP50Us} µs p50`);
    }
    say(`goals: throughput ${throughputMet ? "met" : "NOT met"}, latency ${latencyMet ? "met" : "NOT met"}${errors.length ? `; ${errors.length} run(s) failed` : ""}`);
    return errors.length ? 1 : 0;
  } finally {
    await cleanup();
  }
}

/** `--engine redis`: the Redis proxy benchmark (scripts/bench-redis-proxy.ts); `--engine postgres` (or none): this one. */
const engineFlag = process.argv.indexOf("--engine");
const engine = engineFlag >= 0 ? process.argv[engineFlag + 1] : "postgres";
if (engineFlag >= 0) process.argv.splice(engineFlag, 2);
if (engine === "redis") {
  void import("./bench-redis-proxy");
} else if (engine !== "postgres") {
  process.stderr.write(`--engine must be postgres or redis (MariaDB: npm run bench:proxy:mysql), got ${JSON.stringify(engine)}\n`);
  process.exit(2);
} else if (!existsSync(PGBENCH)) {
  process.stderr.write(`pgbench not found at ${PGBENCH} (set PGBENCH, or install postgresql-client / postgresql)\n`);
  process.exit(2);
} else main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`[bench] failed: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  },
);
