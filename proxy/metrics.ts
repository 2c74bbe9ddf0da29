/**
 * Per tenant database counters, exposed in Prometheus text format on the admin endpoint.
 * The hot path bumps plain numbers in a TenantStats; prom-client reads them at scrape time.
 */
import * as http from "node:http";
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";

export class TenantStats {
  connections = 0;
  active = 0;
  queries = 0;
  bytesIn = 0;
  bytesOut = 0;
  heldMs = 0;
  authFailures = 0;
  switches = 0;
  switchFailures = 0;
  pauses = 0;
  /** Transaction mode: clients that waited longer than the queue timeout for a server connection. */
  poolTimeouts = 0;
  /** Transaction mode: sessions pinned to a server connection by session state. */
  pinned = 0;
  /** Redis: lanes (server connections sessions share) open now. */
  lanes = 0;
  /** Transaction mode: the pool of the committed route (server connections open, lent, clients waiting). */
  pool: { open(): number; lent(): number; waiting(): number } | undefined;
  constructor(
    readonly tenant: string,
    readonly database: string,
  ) {}
}

export class Metrics {
  readonly registry = new Registry();
  private readonly byKey = new Map<string, TenantStats>();

  constructor(proxyId: string) {
    this.registry.setDefaultLabels({ proxy: proxyId });
    collectDefaultMetrics({ register: this.registry, prefix: "tenantfleet_proxy_" });
    const labelNames = ["tenant", "database"] as const;
    const stats = () => this.byKey.values();
    const counter = (name: string, help: string, read: (s: TenantStats) => number) =>
      new Counter({
        name,
        help,
        labelNames,
        registers: [this.registry],
        collect() {
          this.reset();
          for (const s of stats()) this.inc({ tenant: s.tenant, database: s.database }, read(s));
        },
      });
    counter("tenantfleet_proxy_connections_total", "Client sessions that reached the tenant database's server.", (s) => s.connections);
    counter("tenantfleet_proxy_queries_total", "Queries (simple Query, extended-protocol Sync, FunctionCall) from clients.", (s) => s.queries);
    counter("tenantfleet_proxy_client_bytes_total", "Bytes from clients to the tenant database's server.", (s) => s.bytesIn);
    counter("tenantfleet_proxy_server_bytes_total", "Bytes from the tenant database's server to clients.", (s) => s.bytesOut);
    counter("tenantfleet_proxy_held_seconds_total", "Time client messages spent held by a pause, summed over sessions.", (s) => s.heldMs / 1000);
    counter("tenantfleet_proxy_auth_failures_total", "Failed logins.", (s) => s.authFailures);
    counter("tenantfleet_proxy_pauses_total", "Pauses of the tenant database on this proxy.", (s) => s.pauses);
    counter("tenantfleet_proxy_session_switches_total", "Sessions moved to a new server by a switch.", (s) => s.switches);
    counter("tenantfleet_proxy_session_switch_failures_total", "Sessions that could not follow a switch and were closed.", (s) => s.switchFailures);
    counter("tenantfleet_proxy_pool_timeouts_total", "Clients that waited longer than the queue timeout for a pooled server connection.", (s) => s.poolTimeouts);
    counter("tenantfleet_proxy_pinned_sessions_total", "Sessions of transaction-mode databases pinned to a server connection by session state.", (s) => s.pinned);
    /** A gauge per tenant database; `read` undefined: no sample for it. */
    const gauge = (name: string, help: string, read: (s: TenantStats) => number | undefined) =>
      new Gauge({
        name,
        help,
        labelNames,
        registers: [this.registry],
        collect() {
          this.reset();
          for (const s of stats()) {
            const v = read(s);
            if (v !== undefined) this.set({ tenant: s.tenant, database: s.database }, v);
          }
        },
      });
    gauge("tenantfleet_proxy_pool_server_connections", "Transaction mode: server connections the pool holds (idle and lent).", (s) => s.pool?.open());
    gauge("tenantfleet_proxy_pool_lent_connections", "Transaction mode: server connections lent to a client now.", (s) => s.pool?.lent());
    gauge("tenantfleet_proxy_pool_waiting_clients", "Transaction mode: clients waiting for a server connection.", (s) => s.pool?.waiting());
    gauge("tenantfleet_proxy_active_connections", "Client sessions open now.", (s) => s.active);
    gauge("tenantfleet_proxy_redis_lanes", "Redis: server connections that sessions share (lanes), open now.", (s) => (s.lanes ? s.lanes : undefined));
  }

  /** Stats for a known tenant database (unknown names are never labels: no cardinality blow-up). */
  stats(key: string, tenant: string, database: string): TenantStats {
    let s = this.byKey.get(key);
    if (!s) {
      s = new TenantStats(tenant, database);
      this.byKey.set(key, s);
    }
    return s;
  }

  /** /metrics (Prometheus text) and /healthz on one small HTTP server. */
  serve(host: string, port: number, health: () => Record<string, unknown>): Promise<http.Server> {
    const server = http.createServer((req, res) => {
      if (req.url === "/metrics") {
        this.registry
          .metrics()
          .then((text) => {
            res.writeHead(200, { "content-type": this.registry.contentType });
            res.end(text);
          })
          .catch((e: Error) => {
            res.writeHead(500);
            res.end(e.message);
          });
      } else if (req.url === "/healthz") {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(health()));
      } else {
        res.writeHead(404);
        res.end("not found: try /metrics or /healthz\n");
      }
    });
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve(server));
    });
  }
}
