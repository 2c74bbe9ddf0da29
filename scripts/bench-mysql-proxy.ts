#!/usr/bin/env -S npx tsx
/**
 * npm run bench:proxy:mysql — sysbench (`oltp_point_select`, `oltp_read_write`) against one
 * MariaDB tenant database directly, through tenantfleet's proxy (its MySQL listener) and through
 * HAProxy in TCP mode (the floor any proxy pays: it only copies bytes), through a bare Node.js
 * byte relay (scripts/lib/node-relay-main.mjs: the least any Node.js proxy does, so the gap to
 * HAProxy that is the runtime's), in one run on the same server and tables; and through the proxy in `transaction` pool mode (a second tenant database
 * on the same server with tables of its own, pool of `--pool-size` per proxy: what lending a
 * connection per transaction costs). Targets are interleaved: each round runs every workload once per target, the
 * order rotating from round to round. Latency percentiles come from sysbench's histogram.
 * Reports medians across rounds, the proxy/HAProxy throughput ratio and the p50 the proxy adds
 * over direct.
 *
 * Progress goes to stderr, the result JSON to stdout and to bench/results/mysql-proxy-<time>.json.
 *
 * Flags: --quick (1 round of 3 s), --duration <s> (10), --rounds <n> (3), --warmup <s> (2),
 *        --threads <n> (sysbench threads, 8), --table-size <n> (10000), --pool-size <n> (pooled
 *        target's pool, default: --threads), --no-save
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs, promisify } from "node:util";
import { LocalPgFleet } from "./lib/local-pg-fleet";
import { freePort } from "./lib/free-port";
import { median } from "./lib/pgbench";
import { MysqlServers } from "./lib/local-mysql-servers";
import { setRoutePool } from "../proxy/catalog/routes";
import { startNodeRelay, type NodeRelayProcess } from "./lib/node-relay";

const execFileP = promisify(execFile);
const repoRoot = path.resolve(__dirname, "..");
const say = (line: string) => process.stderr.write(`[bench] ${line}\n`);

const WORKLOADS = ["oltp_point_select", "oltp_read_write"] as const;
const TARGETS = ["direct", "proxy", "haproxy", "relay", "pooled"] as const;
type Target = (typeof TARGETS)[number];

interface Run {
  tps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

/** sysbench's summary and its latency histogram (`value |*** count` lines, milliseconds). */
export function parseSysbench(out: string): Run {
  const tps = Number(/transactions:\s+\d+\s+\(([\d.]+) per sec\.\)/.exec(out)?.[1]);
  const errors = Number(/ignored errors:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const buckets: Array<[number, number]> = [];
  for (const m of out.matchAll(/^\s+([\d.]+) \|\**\s+(\d+)$/gm)) buckets.push([Number(m[1]), Number(m[2])]);
  const total = buckets.reduce((a, [, n]) => a + n, 0);
  const pct = (p: number) => {
    let seen = 0;
    for (const [v, n] of buckets) if ((seen += n) >= total * p) return v;
    return NaN;
  };
  if (!Number.isFinite(tps) || total === 0) throw new Error(`could not read sysbench's output:\n${out.slice(-2000)}`);
  return { tps, p50Ms: pct(0.5), p99Ms: pct(0.99), errors };
}

async function startHaproxy(dir: string, backend: { host: string; port: number }): Promise<{ port: number; child: ChildProcess }> {
  const port = await freePort();
  const cfg = path.join(dir, "haproxy.cfg");
  writeFileSync(
    cfg,
    [
      "global",
      "  maxconn 4096",
      "defaults",
      "  mode tcp",
      "  timeout connect 5s",
      "  timeout client 1h",
      "  timeout server 1h",
      "listen mysql",
      `  bind 127.0.0.1:${port}`,
      `  server db ${backend.host}:${backend.port}`,
      "",
    ].join("\n"),
  );
  const child = spawn("haproxy", ["-f", cfg, "-db"], { stdio: ["ignore", "ignore", "pipe"] });
  for (const end = Date.now() + 10_000; ; ) {
    const ok = await new Promise<boolean>((r) => {
      const c = net.connect({ host: "127.0.0.1", port }, () => (c.destroy(), r(true)));
      c.on("error", () => r(false));
    });
    if (ok) return { port, child };
    if (Date.now() > end || child.exitCode !== null) throw new Error("haproxy did not start");
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      quick: { type: "boolean", default: false },
      duration: { type: "string" },
      rounds: { type: "string" },
      warmup: { type: "string" },
      threads: { type: "string", default: "8" },
      "table-size": { type: "string", default: "10000" },
      "pool-size": { type: "string" },
      "no-save": { type: "boolean", default: false },
    },
  });
  const quick = values.quick!;
  const duration = Number(values.duration ?? (quick ? 3 : 10));
  const rounds = Number(values.rounds ?? (quick ? 1 : 3));
  const warmup = Number(values.warmup ?? (quick ? 1 : 2));
  const threads = Number(values.threads);
  const tableSize = Number(values["table-size"]);
  const poolSize = Number(values["pool-size"] ?? threads);

  say("starting the catalog, a MariaDB server, a proxy and HAProxy");
  const fleet = await LocalPgFleet.create({ stack: "bench-mysql" });
  const my = new MysqlServers(fleet);
  let haproxy: ChildProcess | undefined;
  let relay: NodeRelayProcess | undefined;
  try {
    const server = await my.server("bench-mysql");
    const t = await my.tenant({ tenant: "bench", database: "sb" }, server);
    const tp = await my.tenant({ tenant: "bench", database: "sbpool" }, server);
    await fleet.withAdmin(fleet.catalog, "tenantfleet_catalog", (c) => setRoutePool(c, tp, { poolMode: "transaction", poolSize, serverBudget: undefined }));
    const proxy = await fleet.startProxy("proxy-bench", { extraArgs: ["--mysql-listen", "127.0.0.1:0"] });
    const h = await startHaproxy(fleet.root, server);
    haproxy = h.child;
    const nodeRelay = await startNodeRelay(server);
    relay = nodeRelay;
    const port: Record<Target, number> = { direct: server.port, proxy: proxy.mysqlPort, haproxy: h.port, relay: nodeRelay.port, pooled: proxy.mysqlPort };
    const base = (target: Target, at = port[target]) => {
      const db = target === "pooled" ? tp : t;
      return ["--db-driver=mysql", "--mysql-host=127.0.0.1", `--mysql-port=${at}`, `--mysql-user=${db.user}`, `--mysql-password=${db.password}`, `--mysql-db=${db.name}`, "--tables=4", `--table-size=${tableSize}`];
    };
    // Until the proxy has the routes (set before it started, the pooled one in transaction mode).
    for (const db of [t, tp]) {
      for (const end = Date.now() + 30_000; ; ) {
        const r = await execFileP("mariadb", ["-h", "127.0.0.1", "-P", String(proxy.mysqlPort), "-u", db.user, db.name, "-e", "select 1"], { env: { ...process.env, MYSQL_PWD: db.password } }).then(() => true, () => false);
        if (r) break;
        if (Date.now() > end) throw new Error(`the proxy never served ${db.name}`);
        await new Promise((res) => setTimeout(res, 100));
      }
    }
    say(`sysbench prepare: 4 tables × ${tableSize} rows, in each of the two tenant databases`);
    await execFileP("sysbench", ["oltp_common", ...base("direct"), "prepare"], { maxBuffer: 1 << 24 });
    await execFileP("sysbench", ["oltp_common", ...base("pooled", server.port), "prepare"], { maxBuffer: 1 << 24 });
    const sysbench = async (workload: string, target: Target, seconds: number) => {
      const { stdout } = await execFileP("sysbench", [workload, ...base(target), `--threads=${threads}`, `--time=${seconds}`, "--histogram=on", "--percentile=99", "--report-interval=0", "run"], { maxBuffer: 1 << 24 });
      return parseSysbench(stdout);
    };
    const runs: Record<string, Record<Target, Run[]>> = {};
    for (const w of WORKLOADS) runs[w] = { direct: [], proxy: [], haproxy: [], relay: [], pooled: [] };
    for (let round = 0; round < rounds; round++) {
      const order = TARGETS.map((_, i) => TARGETS[(i + round) % TARGETS.length]!);
      for (const w of WORKLOADS) {
        for (const target of order) {
          if (warmup > 0) await sysbench(w, target, warmup);
          const r = await sysbench(w, target, duration);
          runs[w]![target].push(r);
          say(`round ${round + 1}/${rounds} ${w} ${target}: ${r.tps.toFixed(0)} tps, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms`);
        }
      }
    }
    const summary: Record<string, unknown> = {};
    const goals: Record<string, boolean> = {};
    for (const w of WORKLOADS) {
      const m = (target: Target, k: keyof Run) => median(runs[w]![target].map((r) => r[k]));
      const s = Object.fromEntries(TARGETS.map((target) => [target, { tps: Math.round(m(target, "tps")), p50Ms: m(target, "p50Ms"), p99Ms: m(target, "p99Ms"), errors: runs[w]![target].reduce((a, r) => a + r.errors, 0) }]));
      const ratio = m("proxy", "tps") / m("haproxy", "tps");
      const addedUs = Math.round((m("proxy", "p50Ms") - m("direct", "p50Ms")) * 1000);
      summary[w] = {
        ...s,
        proxyVsHaproxyTps: Math.round(ratio * 1000) / 1000,
        proxyVsDirectTps: Math.round((m("proxy", "tps") / m("direct", "tps")) * 1000) / 1000,
        proxyP50AddedUs: addedUs,
        relayVsHaproxyTps: Math.round((m("relay", "tps") / m("haproxy", "tps")) * 1000) / 1000,
        proxyVsRelayTps: Math.round((m("proxy", "tps") / m("relay", "tps")) * 1000) / 1000,
        pooledVsSessionTps: Math.round((m("pooled", "tps") / m("proxy", "tps")) * 1000) / 1000,
        pooledP50AddedUs: Math.round((m("pooled", "p50Ms") - m("proxy", "p50Ms")) * 1000),
      };
      goals[`${w}: proxy ≥ 0.9 × HAProxy tps`] = ratio >= 0.9;
      goals[`${w}: proxy adds ≤ 100 µs to p50 over direct`] = addedUs <= 100;
    }
    const result = {
      benchmark: "mysql-proxy",
      at: new Date().toISOString(),
      command: `npm run bench:proxy:mysql -- ${process.argv.slice(2).join(" ")}`.trim(),
      method: `sysbench 1.0 (${threads} threads, ${duration} s runs after ${warmup} s warm-up, ${rounds} rounds, targets interleaved) on one MariaDB tenant database: direct, tenantfleet proxy (MySQL listener, session mode), HAProxy TCP mode, a bare Node.js byte relay (scripts/lib/node-relay-main.mjs), and the proxy in transaction pool mode (pool of ${poolSize}; a second tenant database on the same server); latency percentiles from sysbench's histogram (bucket values)`,
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model },
      goals,
      summary,
      runs,
    };
    const json = JSON.stringify(result, null, 2);
    process.stdout.write(`${json}\n`);
    if (!values["no-save"]) {
      const dir = path.join(repoRoot, "bench", "results");
      mkdirSync(dir, { recursive: true });
      const file = path.join(dir, `mysql-proxy-${result.at.replace(/[:.]/g, "-").replace(/-\d{3}Z$/, "Z")}${quick ? "-quick" : ""}.json`);
      writeFileSync(file, `${json}\n`);
      say(`wrote ${path.relative(repoRoot, file)}`);
    }
    return 0;
  } finally {
    haproxy?.kill();
    await relay?.stop();
    await my.close();
    await fleet.close();
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`[bench] failed: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  },
);
