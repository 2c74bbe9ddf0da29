#!/usr/bin/env -S npx tsx
/**
 * npm run bench:proxy:ab — the PostgreSQL proxy of a git revision against the working tree's, side
 * by side in one run: both proxies follow one catalog and serve one tenant database (pooled in
 * `transaction` mode unless --pool session), and pgbench runs through each in turn, the order
 * alternating from round to round. Reports the median tps and the proxy's CPU per transaction
 * (user + system, from /proc) of each, and their ratios: what a change to the proxy costs or saves,
 * measured where noise from the machine hits both alike.
 *
 * The revision is checked out in a temporary git worktree (removed afterwards) and run with this
 * tree's node_modules. Progress goes to stderr, the result JSON to stdout and to
 * bench/results/proxy-ab-<time>.json.
 *
 * Flags:
 *   --base <rev>        the revision to compare with (default HEAD: the uncommitted change)
 *   --clients <n>       pgbench -c                      [8]
 *   --rounds <n>        rounds (each runs both proxies) [6]
 *   --duration <s>      seconds per pgbench run         [8]
 *   --workload <w>      select-only | tpcb-like         [select-only]
 *   --protocol <p>      pgbench -M simple|extended|prepared [simple]
 *   --pool <mode>       transaction | session           [transaction]
 *   --no-save           print only
 */
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync, rmSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs, promisify } from "node:util";
import { LocalPgFleet, type ProxyProcess } from "./lib/local-pg-fleet";
import { median, parsePgbenchSummary, runPgbench } from "./lib/pgbench";
import { CLK_TCK, procTicks } from "./lib/proc-cpu";
import { setRoutePool } from "../proxy/catalog/routes";

const execFileP = promisify(execFile);
const repoRoot = path.resolve(__dirname, "..");
const say = (line: string) => process.stderr.write(`[bench:ab] ${line}\n`);
const git = async (args: string[]) => (await execFileP("git", args, { cwd: repoRoot })).stdout.trim();

function options() {
  const { values } = parseArgs({
    options: {
      base: { type: "string", default: "HEAD" },
      clients: { type: "string", default: "8" },
      rounds: { type: "string", default: "6" },
      duration: { type: "string", default: "8" },
      workload: { type: "string", default: "select-only" },
      protocol: { type: "string", default: "simple" },
      pool: { type: "string", default: "transaction" },
      "no-save": { type: "boolean", default: false },
    },
    strict: true,
  });
  const int = (flag: "clients" | "rounds" | "duration") => {
    const n = Number(values[flag]);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${flag} must be a positive integer, got "${values[flag]}"`);
    return n;
  };
  const oneOf = <T extends string>(flag: "workload" | "protocol" | "pool", all: readonly T[]): T => {
    if (!all.includes(values[flag] as T)) throw new Error(`--${flag} must be one of ${all.join(", ")}, got "${values[flag]}"`);
    return values[flag] as T;
  };
  return {
    base: values.base!,
    clients: int("clients"),
    rounds: int("rounds"),
    durationSec: int("duration"),
    workload: oneOf("workload", ["select-only", "tpcb-like"] as const),
    protocol: oneOf("protocol", ["simple", "extended", "prepared"] as const),
    pool: oneOf("pool", ["transaction", "session"] as const),
    save: !values["no-save"],
  };
}

async function main(): Promise<void> {
  const opts = options();
  const startedAt = new Date().toISOString();
  const baseCommit = await git(["rev-parse", "--verify", `${opts.base}^{commit}`]).catch(() => {
    throw new Error(`--base ${opts.base}: not a revision of this repository`);
  });
  const headCommit = await git(["rev-parse", "HEAD"]);
  const changed = await git(["diff", "--stat", baseCommit, "--", "proxy"]);
  if (!changed) say(`warning: proxy/ is the same at ${opts.base} and in the working tree (an A/A run: the spread is the noise)`);
  const tmp = mkdtempSync(path.join(os.tmpdir(), "tf-proxy-ab-"));
  const worktree = path.join(tmp, "base");
  await git(["worktree", "add", "--detach", worktree, baseCommit]);
  symlinkSync(path.join(repoRoot, "node_modules"), path.join(worktree, "node_modules"));
  let fleet: LocalPgFleet | undefined;
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      await fleet?.close().catch((e: Error) => say(`cleanup: ${e.message}`));
      await git(["worktree", "remove", "--force", worktree]).catch((e: Error) => say(`could not remove the worktree ${worktree}: ${e.message}`));
      rmSync(tmp, { recursive: true, force: true });
    })());
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(sig, () => {
      say(`${sig}: stopping the proxies and the servers, removing the worktree`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  try {
    say(`base ${opts.base} (${baseCommit.slice(0, 10)}) vs the working tree; starting the catalog and a PostgreSQL server`);
    fleet = await LocalPgFleet.create({ stack: "bench" });
    const server = await fleet.server("bench-pg");
    const tdb = await fleet.tenantDatabase(server, { tenant: "bench", database: "pgbench" });
    if (opts.pool === "transaction") {
      // Two proxies: each may use half of what one proxy could (max_connections 100 less the reserve).
      await fleet.withAdmin(fleet.catalog, "tenantfleet_catalog", (c) => setRoutePool(c, { tenant: "bench", database: "pgbench" }, { poolMode: "transaction", poolSize: 20, serverBudget: 45 }));
    }
    const direct = { host: server.host, port: server.port, user: tdb.role, password: tdb.password, database: tdb.name };
    say("pgbench -i -s 10");
    const init = await runPgbench(["-i", "-q", "-s", "10", tdb.name], direct, { timeoutMs: 600_000 });
    if (init.code !== 0) throw new Error(`pgbench -i failed: ${init.stderr}`);
    const proxies: Record<"base" | "new", ProxyProcess> = {
      base: await fleet.startProxy("ab-base", { nodeArgs: ["--import", "tsx"], entry: path.join(worktree, "proxy/main.ts") }),
      new: await fleet.startProxy("ab-new"),
    };
    const runs: { round: number; proxy: "base" | "new"; tps: number; cpuUsPerTxn: number }[] = [];
    const args = ["-n", ...(opts.workload === "select-only" ? ["-S"] : []), "-c", String(opts.clients), "-j", "2", "-M", opts.protocol];
    for (let round = 1; round <= opts.rounds; round++) {
      for (const which of round % 2 ? (["base", "new"] as const) : (["new", "base"] as const)) {
        const p = proxies[which];
        const t0 = procTicks(p.child.pid!);
        const r = await runPgbench([...args, "-T", String(opts.durationSec), tdb.name], { ...direct, host: "127.0.0.1", port: p.port }, { timeoutMs: (opts.durationSec + 60) * 1000 });
        if (r.code !== 0) throw new Error(`pgbench through the ${which} proxy exited ${r.code}: ${r.stderr.trim()}`);
        const used = (procTicks(p.child.pid!) - t0) / CLK_TCK;
        const { tps } = parsePgbenchSummary(r.stdout);
        const run = { round, proxy: which, tps: Math.round(tps), cpuUsPerTxn: Math.round((used / (tps * opts.durationSec)) * 1e7) / 10 };
        runs.push(run);
        say(`round ${round}/${opts.rounds} ${which}: ${run.tps} tps, ${run.cpuUsPerTxn} µs of proxy CPU per transaction`);
      }
    }
    const of = (which: "base" | "new") => runs.filter((r) => r.proxy === which);
    const medians = {
      base: { tps: median(of("base").map((r) => r.tps)), cpuUsPerTxn: median(of("base").map((r) => r.cpuUsPerTxn)) },
      new: { tps: median(of("new").map((r) => r.tps)), cpuUsPerTxn: median(of("new").map((r) => r.cpuUsPerTxn)) },
    };
    const ratios = {
      newVsBaseTps: Math.round((medians.new.tps / medians.base.tps) * 1000) / 1000,
      newVsBaseCpuPerTxn: Math.round((medians.new.cpuUsPerTxn / medians.base.cpuUsPerTxn) * 1000) / 1000,
    };
    const result = {
      benchmark: "proxy-ab",
      startedAt,
      config: { ...opts, baseCommit, headCommit, workingTreeProxyDiff: (await git(["diff", "--stat", "HEAD", "--", "proxy"])) || null, pgbench: args.join(" ") },
      machine: { cpus: os.cpus().length, node: process.version },
      medians,
      ratios,
      runs,
      goals: {
        newNoMoreCpuPerTransaction: ratios.newVsBaseCpuPerTxn <= 1,
        newNoFewerTransactions: ratios.newVsBaseTps >= 1,
      },
    };
    const json = JSON.stringify(result, null, 2);
    process.stdout.write(json + "\n");
    if (opts.save) {
      const dir = path.join(repoRoot, "bench", "results");
      mkdirSync(dir, { recursive: true });
      const file = path.join(dir, `proxy-ab-${startedAt.replace(/[:.]/g, "-").replace(/-\d{3}Z$/, "Z")}.json`);
      writeFileSync(file, json + "\n");
      say(`wrote ${path.relative(repoRoot, file)}`);
    }
  } finally {
    await cleanup();
  }
}

main().catch((e: Error) => {
  process.stderr.write(`bench:proxy:ab: ${e.message}\n`);
  process.exit(1);
});
