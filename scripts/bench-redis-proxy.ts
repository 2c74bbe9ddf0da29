/**
 * npm run bench:proxy -- --engine redis — `redis-benchmark` GET and SET at 50 clients, without
 * pipelining and with `-P 16`, against one Redis tenant database's instance directly, through
 * tenantfleet's proxy (its Redis listener: sessions sharing lanes, the default, and a second proxy
 * with `--redis-multiplex off`, a server connection per session) and through twemproxy (Debian's `nutcracker`, the
 * baseline the issue names) and through a bare Node.js byte relay (scripts/lib/node-relay-main.mjs:
 * the least any Node.js proxy does, so the gap between it and twemproxy is the runtime's), in one
 * run on the same instance. Targets are interleaved: each round
 * runs every workload once per target, the order rotating from round to round. Reports medians
 * across rounds of rps, p50 and p99, and the proxy/twemproxy throughput ratios.
 *
 * twemproxy 0.5 logs in with `AUTH <password>` (Redis's `default` user), so the instance's default
 * user gets a password for the benchmark (tenant instances have it off).
 *
 * Progress goes to stderr, the result JSON to stdout and to bench/results/redis-proxy-<time>.json.
 *
 * Flags: --quick (1 round, 20,000 requests), --requests <n> per run (200000), --rounds <n> (3),
 *        --clients <n> (50), --no-save
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs, promisify } from "node:util";
import { LocalPgFleet } from "./lib/local-pg-fleet";
import { freePort } from "./lib/free-port";
import { median } from "./lib/pgbench";
import { RedisServers } from "./lib/local-redis-servers";
import { startNodeRelay, type NodeRelayProcess } from "./lib/node-relay";

const execFileP = promisify(execFile);
const repoRoot = path.resolve(__dirname, "..");
const say = (line: string) => process.stderr.write(`[bench] ${line}\n`);

const WORKLOADS = [
  { name: "get", test: "get", pipeline: 1 },
  { name: "set", test: "set", pipeline: 1 },
  { name: "get -P 16", test: "get", pipeline: 16 },
  { name: "set -P 16", test: "set", pipeline: 16 },
] as const;
const TARGETS = ["direct", "proxy", "proxyOwnConnections", "twemproxy", "relay"] as const;
type Target = (typeof TARGETS)[number];

interface Run {
  rps: number;
  p50Ms: number;
  p99Ms: number;
}

/** redis-benchmark --csv: `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"`. */
export function parseRedisBenchmarkCsv(out: string): Run {
  const line = out
    .split("\n")
    .map((l) => l.trim())
    .find((l) => /^"(GET|SET)/.test(l));
  if (!line) throw new Error(`could not read redis-benchmark's output:\n${out.slice(-2000)}`);
  const f = line.split(",").map((x) => Number(x.replace(/"/g, "")));
  return { rps: f[1]!, p50Ms: f[4]!, p99Ms: f[6]! };
}

async function waitPort(port: number, ms = 10_000): Promise<void> {
  for (const end = Date.now() + ms; ; ) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, "127.0.0.1", () => (s.destroy(), r(true)));
      s.on("error", () => r(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing listens on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: process.argv.slice(2), // bench-proxy.ts took --engine out
    options: {
      quick: { type: "boolean", default: false },
      requests: { type: "string" },
      rounds: { type: "string" },
      clients: { type: "string", default: "50" },
      "no-save": { type: "boolean", default: false },
    },
  });
  const requests = Number(values.requests ?? (values.quick ? 20_000 : 200_000));
  const rounds = Number(values.rounds ?? (values.quick ? 1 : 3));
  const clients = Number(values.clients);

  say("starting a catalog, one Redis instance and a proxy");
  const fleet = await LocalPgFleet.create({ stack: "bench-redis-proxy" });
  const rs = new RedisServers(fleet);
  let twem: ChildProcess | undefined;
  let relay: NodeRelayProcess | undefined;
  try {
    const s = await rs.server("bench-cache");
    const t = await rs.tenant({ tenant: "bench", database: "cache" }, s);
    const defaultPassword = "bench-default-pw";
    await rs.admin(s, (c) => c.call("ACL", "SETUSER", "default", "on", `>${defaultPassword}`, "~*", "&*", "+@all"));
    const proxy = await fleet.startProxy("proxy-1", { extraArgs: ["--redis-listen", "127.0.0.1:0"] });
    const proxyOwn = await fleet.startProxy("proxy-2", { extraArgs: ["--redis-listen", "127.0.0.1:0", "--redis-multiplex", "off"] });
    const twemPort = await freePort();
    const dir = mkdtempSync(path.join(os.tmpdir(), "tf-twem-"));
    const conf = path.join(dir, "nutcracker.yml");
    writeFileSync(conf, `bench:\n  listen: 127.0.0.1:${twemPort}\n  redis: true\n  redis_auth: ${defaultPassword}\n  server_connections: 1\n  servers:\n    - 127.0.0.1:${s.port}:1\n`);
    twem = spawn("nutcracker", ["-c", conf, "-o", path.join(dir, "nutcracker.log"), "-s", String(await freePort())], { stdio: "ignore" });
    await waitPort(twemPort);
    const { stdout: twemVersion } = await execFileP("nutcracker", ["--version"]).catch(() => ({ stdout: "?" }));

    relay = await startNodeRelay({ host: "127.0.0.1", port: s.port });
    const auth: Record<Target, string[]> = {
      relay: ["-p", String(relay.port), "--user", t.user, "-a", t.password],
      direct: ["-p", String(s.port), "--user", t.user, "-a", t.password],
      proxy: ["-p", String(proxy.redisPort), "--user", t.user, "-a", t.password],
      proxyOwnConnections: ["-p", String(proxyOwn.redisPort), "--user", t.user, "-a", t.password],
      twemproxy: ["-p", String(twemPort), "-a", defaultPassword],
    };
    const run = async (target: Target, w: (typeof WORKLOADS)[number]): Promise<Run> => {
      const { stdout } = await execFileP("redis-benchmark", ["-h", "127.0.0.1", ...auth[target], "-c", String(clients), "-n", String(requests), "-t", w.test, "-P", String(w.pipeline), "-r", "100000", "-d", "64", "--csv", "-q"], { maxBuffer: 1 << 24, env: { ...process.env } });
      return parseRedisBenchmarkCsv(stdout);
    };
    const results: Record<string, Record<Target, Run[]>> = {};
    for (const w of WORKLOADS) results[w.name] = { direct: [], proxy: [], proxyOwnConnections: [], twemproxy: [], relay: [] };
    for (let r = 0; r < rounds; r++) {
      const order = TARGETS.map((_, i) => TARGETS[(i + r) % TARGETS.length]!);
      for (const w of WORKLOADS) {
        for (const target of order) {
          const res = await run(target, w);
          results[w.name]![target].push(res);
          say(`round ${r + 1}/${rounds} ${w.name} ${target}: ${Math.round(res.rps)} rps, p50 ${res.p50Ms} ms, p99 ${res.p99Ms} ms`);
        }
      }
    }
    const summary: Record<string, Record<string, unknown>> = {};
    const goals: Record<string, boolean> = {};
    for (const w of WORKLOADS) {
      const m = (target: Target) => ({
        rps: Math.round(median(results[w.name]![target].map((x) => x.rps))),
        p50Ms: median(results[w.name]![target].map((x) => x.p50Ms)),
        p99Ms: median(results[w.name]![target].map((x) => x.p99Ms)),
      });
      const d = m("direct");
      const p = m("proxy");
      const tw = m("twemproxy");
      const rl = m("relay");
      const own = m("proxyOwnConnections");
      const ratio = Number((p.rps / tw.rps).toFixed(3));
      summary[w.name] = { direct: d, proxy: p, proxyOwnConnections: own, twemproxy: tw, relay: rl, proxyOverTwemproxy: ratio, lanesOverOwnConnections: Number((p.rps / own.rps).toFixed(3)), proxyOverRelay: Number((p.rps / rl.rps).toFixed(3)), relayOverTwemproxy: Number((rl.rps / tw.rps).toFixed(3)), proxyOverDirect: Number((p.rps / d.rps).toFixed(3)) };
      goals[`${w.name}: proxy ≥ twemproxy rps`] = ratio >= 1;
    }
    const out = {
      benchmark: "redis-proxy",
      at: new Date().toISOString(),
      command: `npm run bench:proxy -- --engine redis ${process.argv.slice(2).join(" ")}`.trim(),
      settings: { requests, rounds, clients, valueBytes: 64, keyspace: 100_000 },
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model },
      versions: { redis: s.version, twemproxy: twemVersion.trim() },
      summary,
      goals,
    };
    const json = JSON.stringify(out, null, 2);
    process.stdout.write(`${json}\n`);
    if (!values["no-save"]) {
      const resultsDir = path.join(repoRoot, "bench", "results");
      mkdirSync(resultsDir, { recursive: true });
      const file = path.join(resultsDir, `redis-proxy-${out.at.replace(/[:.]/g, "-").replace(/-\d+Z$/, "Z")}.json`);
      writeFileSync(file, `${json}\n`);
      say(`wrote ${path.relative(repoRoot, file)}`);
    }
    return 0;
  } finally {
    twem?.kill();
    await relay?.stop();
    await rs.close();
    await fleet.close();
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`${(e as Error).stack}\n`);
    process.exit(1);
  },
);
