import { describe, expect, it } from "vitest";
import { median, parsePgbenchSummary, parseTxnLogLine, percentile, summarizeTxnLogs } from "../../scripts/lib/pgbench";
import { renderAuthFile, renderPgbouncerIni } from "../../scripts/lib/pgbouncer";

describe("pgbench per-transaction log", () => {
  it("parses a line: client, transaction, latency µs, script, end time", () => {
    expect(parseTxnLogLine("0 199 2241 0 1175850568 995598")).toEqual({ client: 0, txn: 199, latencyUs: 2241, status: "ok", script: 0, endUs: 1175850568995598 });
  });

  it("takes the optional schedule lag and retries columns in stride", () => {
    expect(parseTxnLogLine("3 12 810 0 1700000000 5 120 2")?.latencyUs).toBe(810);
  });

  it("reports failed and skipped transactions without a latency", () => {
    expect(parseTxnLogLine("2 5 failed 0 1700000000 10")).toMatchObject({ status: "failed", latencyUs: undefined });
    expect(parseTxnLogLine("2 6 skipped 0 1700000000 10")).toMatchObject({ status: "skipped", latencyUs: undefined });
  });

  it("rejects malformed lines", () => {
    expect(parseTxnLogLine("")).toBeUndefined();
    expect(parseTxnLogLine("0 1 2 3")).toBeUndefined();
    expect(parseTxnLogLine("0 1 fast 0 1700000000 10")).toBeUndefined();
  });

  it("summarizes several thread files: percentiles over all transactions, failures counted apart", () => {
    // 100 transactions with latencies 1..100 µs split over two thread logs, plus one failure.
    const line = (c: number, t: number, us: number | string) => `${c} ${t} ${us} 0 1700000000 ${t}`;
    const a = Array.from({ length: 50 }, (_, i) => line(0, i, 100 - 2 * i)).join("\n") + "\n";
    const b = Array.from({ length: 50 }, (_, i) => line(1, i, 99 - 2 * i)).join("\n") + "\n" + line(1, 50, "failed") + "\n\n";
    const s = summarizeTxnLogs([a, b]);
    expect(s.count).toBe(100);
    expect(s.failed).toBe(1);
    expect(s.malformed).toBe(0);
    expect(s.p50Us).toBe(50);
    expect(s.p90Us).toBe(90);
    expect(s.p99Us).toBe(99);
    expect(s.maxUs).toBe(100);
    expect(s.meanUs).toBe(50.5);
  });

  it("an empty log gives NaN figures, not a crash", () => {
    const s = summarizeTxnLogs([""]);
    expect(s.count).toBe(0);
    expect(s.p50Us).toBeNaN();
  });
});

describe("percentiles and medians", () => {
  it("nearest rank", () => {
    const v = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
    expect(percentile(v, 50)).toBe(50);
    expect(percentile(v, 99)).toBe(100);
    expect(percentile(v, 10)).toBe(10);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBeNaN();
    expect(() => percentile(v, 0)).toThrow(RangeError);
  });

  it("median of an odd and an even count, ignoring non-finite values", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([NaN, 5])).toBe(5);
    expect(median([])).toBeNaN();
  });
});

describe("pgbench summary", () => {
  it("reads the PostgreSQL 15 report", () => {
    const out = `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 10
query mode: simple
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 12 s
number of transactions actually processed: 161234
number of failed transactions: 0 (0.000%)
latency average = 0.595 ms
initial connection time = 21.345 ms
tps = 13436.214503 (without initial connection time)
`;
    expect(parsePgbenchSummary(out)).toEqual({ tps: 13436.214503, processed: 161234, failed: 0, meanLatencyMs: 0.595, initialConnectionMs: 21.345 });
  });

  it("fails loudly without a tps line", () => {
    expect(() => parsePgbenchSummary("pgbench: error: connection to server failed\n")).toThrow(/tps/);
  });
});

describe("PgBouncer config", () => {
  it("auth_file quotes and doubles quotes", () => {
    expect(renderAuthFile([{ user: "bench", secret: "SCRAM-SHA-256$4096:c2FsdA==$a:b" }, { user: 'we"ird', secret: "x" }])).toBe(
      '"bench" "SCRAM-SHA-256$4096:c2FsdA==$a:b"\n"we""ird" "x"\n',
    );
  });

  it("ini: session pool, SCRAM, files in its dir, one database line", () => {
    const ini = renderPgbouncerIni({ listenHost: "127.0.0.1", listenPort: 6544, dir: "/tmp/x", databases: [{ name: "pgbench__bench", host: "127.0.0.1", port: 5433 }] });
    expect(ini).toContain("pgbench__bench = host=127.0.0.1 port=5433 dbname=pgbench__bench\n");
    expect(ini).toContain("pool_mode = session\n");
    expect(ini).toContain("auth_type = scram-sha-256\n");
    expect(ini).toContain("auth_file = /tmp/x/userlist.txt\n");
    expect(ini).toContain("listen_port = 6544\n");
  });
});
