/**
 * pgbench helpers for the proxy benchmark: running it with argument arrays (never a shell string),
 * parsing its per-transaction log (`--log`) and its summary, and percentiles.
 *
 * Per-transaction log lines (PostgreSQL 15 docs, "Per-Transaction Logging"):
 *
 *   client_id transaction_no time script_no time_epoch time_us [ schedule_lag ] [ retries ]
 *
 * `time` is the transaction's latency in microseconds, or `skipped` (--latency-limit with --rate)
 * or `failed` (serialization/deadlock failure, PostgreSQL 15+). pgbench's own summary only gives
 * the mean latency, so the percentiles are computed here from these lines.
 */
import { spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import * as path from "node:path";

export const PGBENCH = process.env.PGBENCH ?? "/usr/lib/postgresql/15/bin/pgbench";

export interface TxnLogLine {
  client: number;
  txn: number;
  /** Latency in µs; undefined for skipped or failed transactions. */
  latencyUs: number | undefined;
  status: "ok" | "skipped" | "failed";
  script: number;
  /** End time of the transaction, in µs since the epoch. */
  endUs: number;
}

/** One line of a per-transaction log, or undefined for a blank or malformed line. */
export function parseTxnLogLine(line: string): TxnLogLine | undefined {
  const f = line.trim().split(/\s+/);
  if (f.length < 6) return undefined;
  const client = Number(f[0]);
  const txn = Number(f[1]);
  const script = Number(f[3]);
  const endUs = Number(f[4]) * 1e6 + Number(f[5]);
  if (![client, txn, script, endUs].every(Number.isFinite)) return undefined;
  const t = f[2]!;
  if (t === "skipped" || t === "failed") return { client, txn, latencyUs: undefined, status: t, script, endUs };
  const latencyUs = Number(t);
  if (!Number.isFinite(latencyUs) || latencyUs < 0) return undefined;
  return { client, txn, latencyUs, status: "ok", script, endUs };
}

export interface LatencySummary {
  /** Transactions with a latency (status ok). */
  count: number;
  failed: number;
  skipped: number;
  /** Lines that did not parse. */
  malformed: number;
  meanUs: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  maxUs: number;
}

/**
 * Nearest-rank percentile of an ascending array: the smallest value with at least p% of the values
 * at or below it (p in (0, 100]). NaN for an empty array.
 */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  if (!(p > 0 && p <= 100)) throw new RangeError(`percentile must be in (0, 100], got ${p}`);
  const rank = Math.ceil((p / 100) * n);
  return sorted[Math.min(n, Math.max(1, rank)) - 1]!;
}

/** Median of unsorted values (mean of the two middle ones for an even count). NaN when empty. */
export function median(values: number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  const n = v.length;
  if (n === 0) return NaN;
  return n % 2 === 1 ? v[(n - 1) / 2]! : (v[n / 2 - 1]! + v[n / 2]!) / 2;
}

/** Latency summary of the text of one or more per-transaction log files. */
export function summarizeTxnLogs(texts: string[]): LatencySummary {
  let failed = 0;
  let skipped = 0;
  let malformed = 0;
  let count = 0;
  let sum = 0;
  // Two passes would need the lines twice; grow a typed array instead (sorting it is numeric and fast).
  let lat = new Float64Array(1024);
  for (const text of texts) {
    let start = 0;
    while (start < text.length) {
      let end = text.indexOf("\n", start);
      if (end === -1) end = text.length;
      const line = text.slice(start, end);
      start = end + 1;
      if (line.trim() === "") continue;
      const l = parseTxnLogLine(line);
      if (!l) {
        malformed++;
        continue;
      }
      if (l.status === "failed") failed++;
      else if (l.status === "skipped") skipped++;
      else {
        if (count === lat.length) {
          const bigger = new Float64Array(lat.length * 2);
          bigger.set(lat);
          lat = bigger;
        }
        lat[count++] = l.latencyUs!;
        sum += l.latencyUs!;
      }
    }
  }
  const sorted = lat.subarray(0, count).sort();
  return {
    count,
    failed,
    skipped,
    malformed,
    meanUs: count ? sum / count : NaN,
    p50Us: percentile(sorted, 50),
    p90Us: percentile(sorted, 90),
    p99Us: percentile(sorted, 99),
    maxUs: count ? sorted[count - 1]! : NaN,
  };
}

export interface PgbenchSummary {
  /** "tps = … (without initial connection time)". */
  tps: number;
  processed: number | undefined;
  failed: number | undefined;
  meanLatencyMs: number | undefined;
  initialConnectionMs: number | undefined;
}

/** The figures of pgbench's end-of-run report (PostgreSQL 14/15 wording). */
export function parsePgbenchSummary(stdout: string): PgbenchSummary {
  const num = (re: RegExp): number | undefined => {
    const m = re.exec(stdout);
    return m ? Number(m[1]) : undefined;
  };
  const tps = num(/^tps = ([\d.]+) \(without initial connection time\)/m) ?? num(/^tps = ([\d.]+) \(excluding connections establishing\)/m) ?? num(/^tps = ([\d.]+)/m);
  if (tps === undefined) throw new Error(`no "tps = …" line in pgbench's output:\n${stdout}`);
  return {
    tps,
    processed: num(/^number of transactions actually processed: (\d+)/m),
    failed: num(/^number of failed transactions: (\d+)/m),
    meanLatencyMs: num(/^latency average = ([\d.]+) ms/m),
    initialConnectionMs: num(/^initial connection time = ([\d.]+) ms/m),
  };
}

/** The files pgbench wrote for one run with `--log-prefix=<dir>/<prefix>`: `<prefix>.<pid>[.<thread>]`. */
export async function readTxnLogs(dir: string, prefix: string): Promise<string[]> {
  const names = (await fs.readdir(dir)).filter((n) => n.startsWith(`${prefix}.`)).sort();
  return Promise.all(names.map((n) => fs.readFile(path.join(dir, n), "utf8")));
}

export interface Conn {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

/** libpq environment for pgbench: the password never goes on a command line. */
export function pgEnv(c: Conn): NodeJS.ProcessEnv {
  return {
    ...process.env,
    PGHOST: c.host,
    PGPORT: String(c.port),
    PGUSER: c.user,
    PGPASSWORD: c.password,
    PGDATABASE: c.database,
    // Same handshake for every target: no SSL or GSS encryption probe first.
    PGSSLMODE: "disable",
    PGGSSENCMODE: "disable",
    PGAPPNAME: "tenantfleet-bench",
  };
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  wallMs: number;
}

/** Children still running, so a signal handler can stop them. */
export const runningChildren = new Set<import("node:child_process").ChildProcess>();

/** Run pgbench with an argument array; kills it after `timeoutMs`. */
export function runPgbench(args: string[], conn: Conn, opts: { timeoutMs: number; cwd?: string }): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(PGBENCH, args, { env: pgEnv(conn), cwd: opts.cwd, stdio: ["ignore", "pipe", "pipe"] });
    runningChildren.add(child);
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => {
      stderr += `\n[bench] pgbench did not finish within ${opts.timeoutMs} ms: killed\n`;
      child.kill("SIGKILL");
    }, opts.timeoutMs);
    child.once("error", (e) => {
      clearTimeout(timer);
      runningChildren.delete(child);
      reject(e);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      runningChildren.delete(child);
      resolve({ code, signal, stdout, stderr, wallMs: Date.now() - started });
    });
  });
}
