/**
 * The connection-scale run of `npm run bench:proxy -- --idle N`: N client connections, mostly
 * idle, spread over `--tenants` tenant databases on one shared server (max_connections 100), with
 * `--active` pgbench clients running select-only on one of them — through tenantfleet's proxy
 * and through PgBouncer, one after the other, in the same pool mode. Measures the process's
 * resident memory before and after each batch of clients (memory per client: the growth over the
 * second half, i.e. what one more client costs; and the average, which also counts what the
 * process grew by once, such as a runtime's heap sized for the load), pgbench's tps and latency,
 * and client errors; with `--migrate`, one tenant database with idle clients on it is moved to a
 * second server (the real orchestrator) while pgbench runs, and afterwards every idle client
 * must still answer.
 */
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { Client } from "pg";
import type { LocalPgFleet, PgServer, ProxyProcess, TenantDb } from "./local-pg-fleet";
import { parsePgbenchSummary, readTxnLogs, runPgbench, summarizeTxnLogs, type Conn } from "./pgbench";
import { startPgbouncer, type PgbouncerProcess } from "./pgbouncer";
import { setRoutePool, type Route } from "../../proxy/catalog/routes";
import * as net from "node:net";
import { startNodeRelay } from "./node-relay";

const say = (line: string) => process.stderr.write(`[bench] ${line}\n`);

/** Resident memory of a process now, in KiB (NaN when it is gone). */
function rssKiB(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** RSS growth per connection over the second half of them (samples in the order taken): what one more costs. NaN without two points. */
function marginalKiB(samples: { n: number; rssKiB: number }[]): number {
  const last = samples[samples.length - 1];
  const half = last && samples.find((s) => s.n >= last.n / 2);
  return half && last && last.n > half.n ? (last.rssKiB - half.rssKiB) / (last.n - half.n) : NaN;
}

/** Resident memory of a process now, in MiB (NaN when it is gone). */
export function rssMiB(pid: number | undefined): number {
  return Math.round((rssKiB(pid) / 1024) * 10) / 10;
}

/** Sample a process's RSS every 250 ms until `stop()`, which returns the peak (MiB). */
export function watchRss(pid: number | undefined): { stop(): number } {
  let peak = rssMiB(pid);
  const t = setInterval(() => (peak = Math.max(peak, rssMiB(pid))), 250);
  return {
    stop() {
      clearInterval(t);
      return Math.max(peak, rssMiB(pid));
    },
  };
}

interface ScaleArgs {
  opts: { idle: number; active: number; tenants: number; migrate: boolean; pool: "session" | "transaction"; poolSize: number; threads: number; durationSec: number; save: boolean };
  fleet: LocalPgFleet;
  server: PgServer;
  conns: Partial<Record<"direct" | "proxy" | "pgbouncer", Conn>>;
  proxy: ProxyProcess | undefined;
  bouncer: PgbouncerProcess | undefined;
  route: Route;
  serverBudget: number;
  /** Also measure a Node.js process that only holds as many connections (the runtime's floor). */
  nodeFloor?: boolean;
}

interface TargetResult {
  clients: number;
  openMs: number;
  rssBeforeMiB: number;
  rssWithClientsMiB: number;
  rssPeakMiB: number;
  /** (RSS with every client − RSS before) / clients: includes what the process grew by once (a runtime's heap sized for the load). */
  kibPerClient: number;
  /** (RSS with every client − RSS with half of them) / the second half: what one more client costs. */
  kibPerClientMarginal: number;
  /** RSS after each batch of clients had connected and run its first query. */
  rssByClients: { clients: number; rssKiB: number }[];
  pgbench: { clients: number; tps: number | null; p50Us: number; p99Us: number; failed: number; error?: string };
  clientErrors: string[];
  idleChecked: number;
  migration?: { ms: number; pauseMs: number | undefined; from: string; to: string };
  /** Why the run stopped opening clients early, if it did. */
  abandoned?: string;
  serverConnectionsPeak: number;
}

export async function connectionScale(a: ScaleArgs): Promise<{ result: Record<string, unknown>; goals: Record<string, unknown> & { met: boolean } }> {
  try {
    return await scale(a);
  } catch (e) {
    // Say who holds the servers' connections: the usual cause of a failed scale run.
    const who = async (s: PgServer) =>
      a.fleet.withAdmin(s, "postgres", async (c) => (await c.query("select usename, application_name, state, count(*)::int as n from pg_stat_activity where backend_type = 'client backend' group by 1, 2, 3 order by n desc limit 8")).rows).catch((x: Error) => x.message);
    throw new Error(`connection scale run: ${(e as Error).message}\n  bench server: ${JSON.stringify(await who(a.server))}\n  catalog: ${JSON.stringify(await who(a.fleet.catalog))}`);
  }
}

async function scale(a: ScaleArgs): Promise<{ result: Record<string, unknown>; goals: Record<string, unknown> & { met: boolean } }> {
  const { opts, fleet, server } = a;
  const perPool = Math.max(1, Math.floor(a.serverBudget / opts.tenants));
  say(`connection scale: ${opts.idle} clients over ${opts.tenants} tenant database(s), ${opts.active} running pgbench -S, ${opts.pool} mode${opts.pool === "transaction" ? ` (pools of ${perPool}, server budget ${a.serverBudget})` : ""}`);
  // The bench database is tenant 0 (it has pgbench's tables); the others are empty.
  const dbs: TenantDb[] = [{ tenant: a.route.tenant, database: a.route.database, role: a.route.role, password: a.conns.direct!.password!, name: a.route.backendDatabase }];
  for (let i = 1; i < opts.tenants; i++) dbs.push(await fleet.tenantDatabase(server, { tenant: `t${i}`, database: "app" }));
  // The same pool sizes for both: the pgbench database a larger share, the others what is left.
  const poolOf = (d: TenantDb) => (d === dbs[0] ? Math.max(perPool, Math.min(20, a.serverBudget - (opts.tenants - 1) * perPool)) : perPool);
  if (opts.pool === "transaction") {
    await fleet.withAdmin(fleet.catalog, "tenantfleet_catalog", async (c) => {
      for (const d of dbs) await setRoutePool(c, d, { poolMode: "transaction", poolSize: poolOf(d), serverBudget: a.serverBudget });
    });
  }
  // Neither target may hold server connections left from the main runs while the other runs.
  await a.bouncer?.stop();
  const quiet = async () => {
    for (const end = Date.now() + 30_000; Date.now() < end; await new Promise((r) => setTimeout(r, 500))) {
      const n = await fleet.withAdmin(server, "postgres", async (c) => Number((await c.query("select count(*) as n from pg_stat_activity where backend_type = 'client backend' and usename <> current_user")).rows[0].n));
      if (n === 0) return;
    }
    say("warning: server connections from the previous phase are still open");
  };
  const target2 = opts.migrate ? await fleet.server("bench-pg-2") : undefined;
  const out: Record<string, TargetResult> = {};

  for (const target of ["pgbouncer", "proxy"] as const) {
    await quiet();
    let bouncer: PgbouncerProcess | undefined;
    let host: { host: string; port: number; pid: number | undefined };
    if (target === "proxy") {
      if (!a.proxy) continue;
      host = { host: "127.0.0.1", port: a.proxy.port, pid: a.proxy.child.pid };
    } else {
      if (!a.bouncer) continue; // (the main runs' PgBouncer, stopped above: this phase starts its own)
      // Its own PgBouncer with every tenant database (the main runs' one knows only the bench database).
      const routes: Route[] = [];
      for (const d of dbs) routes.push(await fleet.route(d)); // one at a time: the catalog has 100 connections too
      bouncer = await startPgbouncer(
        {
          dir: path.join(fleet.root, "pgbouncer-scale"),
          listenHost: "127.0.0.1",
          databases: dbs.map((d) => ({ name: d.name, host: server.host, port: server.port, ...(opts.pool === "transaction" ? { poolSize: poolOf(d) } : {}) })),
          poolMode: opts.pool,
          authType: "scram-sha-256",
          maxClientConn: opts.idle + opts.active + 100,
          defaultPoolSize: opts.pool === "transaction" ? perPool : 2,
          // As the proxy's --pool-idle-timeout 2: PgBouncer has no budget across databases, so a
          // database's server connection must close soon after its clients are opened for the
          // next databases' to fit in the server's max_connections.
          serverIdleTimeout: 2,
        },
        routes.map((r) => ({ user: r.role, secret: r.scramVerifier })),
      );
      host = { host: bouncer.host, port: bouncer.port, pid: bouncer.child.pid };
    }
    try {
      out[target] = await onTarget(target, host, dbs, a, target2);
    } finally {
      await bouncer?.stop();
    }
  }

  const floor = a.nodeFloor ? await nodeFloor(opts.idle) : undefined;
  const p = out.proxy;
  const b = out.pgbouncer;
  const goals = {
    proxyClients: { goal: `${opts.idle} client connections on one proxy process, no client error`, clients: p?.clients, errors: p?.clientErrors.length, met: !!p && p.clients >= opts.idle && p.clientErrors.length === 0 && !p.pgbench.error },
    proxyRssAtMost1GiB: { goal: "proxy RSS ≤ 1 GiB with every client connected", peakMiB: p?.rssPeakMiB, met: !!p && p.rssPeakMiB <= 1024 },
    memoryPerClientAtMostPgbouncer: {
      goal: "proxy KiB per client ≤ PgBouncer's: what one more client costs (RSS growth over the second half of the clients); the average over all clients, which also counts what each process grew by once, beside it",
      proxy: p?.kibPerClientMarginal,
      pgbouncer: b?.kibPerClientMarginal,
      proxyAverage: p?.kibPerClient,
      pgbouncerAverage: b?.kibPerClient,
      ...(floor ? { nodeJsFloor: floor.kibPerConnectionMarginal } : {}),
      met: !!p && !!b && p.kibPerClientMarginal <= b.kibPerClientMarginal,
    },
    throughputAtLeastPgbouncer: { goal: "pgbench tps among the idle clients ≥ PgBouncer's", proxy: p?.pgbench.tps, pgbouncer: b?.pgbench.tps, met: !!p?.pgbench.tps && !!b?.pgbench.tps && p.pgbench.tps >= b.pgbench.tps },
    ...(opts.migrate ? { survivesMigration: { goal: "every idle client answers after one tenant database moved under load", checked: p?.idleChecked, met: !!p?.migration && p.idleChecked === opts.idle && p.clientErrors.length === 0 } } : {}),
  };
  const met = Object.values(goals).every((g) => g.met);
  return { result: { tenants: opts.tenants, idle: opts.idle, active: opts.active, poolPerTenantDatabase: perPool, serverMaxConnections: 100, targets: out, ...(floor ? { nodeFloor: floor } : {}) }, goals: { ...goals, met } };
}

async function onTarget(target: "proxy" | "pgbouncer", host: { host: string; port: number; pid: number | undefined }, dbs: TenantDb[], a: ScaleArgs, target2: PgServer | undefined): Promise<TargetResult> {
  const { opts, fleet, server } = a;
  const errors: string[] = [];
  const rssBefore = rssMiB(host.pid);
  const watch = watchRss(host.pid);
  const clients: { c: Client; db: TenantDb }[] = [];
  const rssByClients: { clients: number; rssKiB: number }[] = [];
  const started = Date.now();
  say(`${target}: opening ${opts.idle} clients`);
  let abandoned: string | undefined;
  for (let i = 0; i < opts.idle; i += 250) {
    if (errors.length >= 500) {
      // It cannot serve this layout (PgBouncer has no budget across databases: the server refuses
      // it connections); opening the rest would only take long. Recorded as the result.
      abandoned = `stopped opening clients after ${errors.length} failed: ${errors[0]}`;
      say(`${target}: ${abandoned}`);
      break;
    }
    await Promise.all(
      Array.from({ length: Math.min(250, opts.idle - i) }, async (_, k) => {
        // Grouped by tenant database (its clients one after another), so a few databases at a time
        // need a server connection for the first query: as clients of one application connect.
        const db = dbs[Math.floor(((i + k) * dbs.length) / opts.idle)]!;
        const c = new Client({ host: host.host, port: host.port, user: db.role, password: db.password, database: db.name });
        c.on("error", (e) => errors.push(`${db.name}: ${e.message}`));
        try {
          await c.connect();
          clients.push({ c, db });
          // Each client runs one query (a pooled client holds nothing until it does).
          await c.query("select 1").catch((e: Error) => errors.push(`first query ${db.name}: ${e.message}`));
        } catch (e) {
          errors.push(`connect ${db.name}: ${(e as Error).message}`);
        }
      }),
    );
    rssByClients.push({ clients: clients.length, rssKiB: rssKiB(host.pid) });
    if ((i / 250) % 8 === 7) say(`  ${clients.length} connected, RSS ${rssMiB(host.pid)} MiB`);
  }
  const openMs = Date.now() - started;
  const rssWith = rssMiB(host.pid);
  const marginal = marginalKiB(rssByClients.map((s) => ({ n: s.clients, rssKiB: s.rssKiB })));
  say(`${target}: ${clients.length} clients in ${openMs} ms; RSS ${rssBefore} → ${rssWith} MiB`);

  let serverPeak = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      serverPeak = Math.max(serverPeak, await fleet.withAdmin(server, "postgres", async (c) => Number((await c.query("select count(*) as n from pg_stat_activity where backend_type = 'client backend'")).rows[0].n)).catch(() => 0));
      await new Promise((r) => setTimeout(r, 500));
    }
  })();

  const conn: Conn = { host: host.host, port: host.port, user: dbs[0]!.role, password: dbs[0]!.password, database: dbs[0]!.name };
  const logDir = path.join(fleet.root, "pgbench-logs");
  const prefix = `scale-${target}`;
  const bench = runPgbench(["-n", "-S", "-c", String(opts.active), "-j", String(opts.threads), "-T", String(Math.max(opts.durationSec, 10)), "--log", `--log-prefix=${path.join(logDir, prefix)}`, conn.database], conn, { timeoutMs: 600_000 });
  let migration: TargetResult["migration"];
  if (opts.migrate && target2 && target === "proxy" && dbs.length > 1) {
    await new Promise((r) => setTimeout(r, 3000));
    const moved = dbs[1]!;
    say(`${target}: moving ${moved.name} (${clients.filter((c) => c.db === moved).length} idle clients on it) to ${target2.serverName} under load`);
    const t = Date.now();
    const rec = await fleet.migrate(moved, server, target2, () => undefined);
    migration = { ms: Date.now() - t, pauseMs: rec.pauseMs, from: server.serverName, to: target2.serverName };
    say(`${target}: moved in ${migration.ms} ms`);
  }
  const r = await bench;
  sampling = false;
  await sampler;
  const lat = summarizeTxnLogs(await readTxnLogs(logDir, prefix));
  let tps: number | null = null;
  try {
    tps = Math.round(parsePgbenchSummary(r.stdout).tps * 10) / 10;
  } catch {
    /* reported below */
  }
  const benchError = r.code !== 0 ? `pgbench exited ${r.code}: ${r.stderr.trim().split("\n").slice(-5).join(" | ")}` : undefined;

  // Every idle client still answers (after the move, those of the moved database on its new server).
  let checked = 0;
  for (let i = 0; i < clients.length; i += 500) {
    await Promise.all(
      clients.slice(i, i + 500).map(async ({ c, db }) => {
        try {
          await c.query("select 1");
          checked++;
        } catch (e) {
          errors.push(`after ${db.name}: ${(e as Error).message}`);
        }
      }),
    );
  }
  const peak = watch.stop();
  await Promise.all(clients.map(({ c }) => c.end().catch(() => undefined)));
  const res: TargetResult = {
    clients: clients.length,
    openMs,
    rssBeforeMiB: rssBefore,
    rssWithClientsMiB: rssWith,
    rssPeakMiB: peak,
    kibPerClient: clients.length ? Math.round(((rssWith - rssBefore) * 1024) / clients.length * 10) / 10 : NaN,
    kibPerClientMarginal: Math.round(marginal * 10) / 10,
    rssByClients,
    pgbench: { clients: opts.active, tps, p50Us: lat.p50Us, p99Us: lat.p99Us, failed: lat.failed, ...(benchError ? { error: benchError } : {}) },
    clientErrors: errors.slice(0, 20),
    idleChecked: checked,
    serverConnectionsPeak: serverPeak,
    ...(migration ? { migration } : {}),
    ...(abandoned ? { abandoned } : {}),
  };
  if (errors.length > 20) res.clientErrors.push(`… and ${errors.length - 20} more`);
  say(`${target}: ${JSON.stringify({ tps, p50Us: lat.p50Us, p99Us: lat.p99Us, kibPerClient: res.kibPerClient, kibPerClientMarginal: res.kibPerClientMarginal, rssPeakMiB: peak, errors: errors.length, checked, serverConnectionsPeak: serverPeak })}`);
  return res;
}

/**
 * What a Node.js process costs per connection it only holds (accepted, a data listener, nothing
 * else): the floor under any Node.js proxy's memory per client. Raw TCP connections, no protocol.
 */
async function nodeFloor(n: number): Promise<{ connections: number; kibPerConnection: number; kibPerConnectionMarginal: number; rssByConnections: { connections: number; rssKiB: number }[] }> {
  const hold = await startNodeRelay();
  const sockets: net.Socket[] = [];
  try {
    const pid = hold.child.pid;
    const before = rssKiB(pid);
    const samples: { connections: number; rssKiB: number }[] = [];
    for (let i = 0; i < n; i += 250) {
      await Promise.all(
        Array.from({ length: Math.min(250, n - i) }, () =>
          new Promise<void>((resolve, reject) => {
            const s = net.connect({ host: hold.host, port: hold.port }, () => resolve());
            s.once("error", reject);
            sockets.push(s);
          }),
        ),
      );
      await new Promise((r) => setTimeout(r, 20)); // let it accept the last ones
      samples.push({ connections: sockets.length, rssKiB: rssKiB(pid) });
    }
    const last = samples[samples.length - 1]!;
    const res = {
      connections: last.connections,
      kibPerConnection: Math.round(((last.rssKiB - before) / last.connections) * 10) / 10,
      kibPerConnectionMarginal: Math.round(marginalKiB(samples.map((s) => ({ n: s.connections, rssKiB: s.rssKiB }))) * 10) / 10,
      rssByConnections: samples,
    };
    say(`node floor: ${JSON.stringify({ connections: res.connections, kibPerConnection: res.kibPerConnection, kibPerConnectionMarginal: res.kibPerConnectionMarginal })}`);
    return res;
  } finally {
    for (const s of sockets) s.destroy();
    await hold.stop();
  }
}
