/**
 * The connections a server lends to the proxies' pools (DESIGN.md, "Connections and pooling"):
 * its max_connections, from the engine's settings (the one source the servers are configured
 * from), less a reserve kept out of the pools; each proxy gets an even share.
 */
import { postgresMaxConnections } from "./postgres/settings";
import { MYSQL_MAX_CONNECTIONS } from "./mysql/settings";

/** The engines whose proxies pool server connections. */
export type PooledEngine = "postgres" | "mysql";

/** Connections of every server kept out of the pools: superuser slots, the providers' admin and migration sessions, replication. */
export const CONNECTION_RESERVE = 10;

/** A server's connection budget (max_connections less the reserve), and each proxy's share of it. */
export function connectionBudget(maxConnections: number, proxies: number): { server: number; perProxy: number } {
  const server = Math.max(0, maxConnections - CONNECTION_RESERVE);
  return { server, perProxy: Math.max(1, Math.floor(server / Math.max(1, proxies))) };
}

/** The budget of a tenantfleet server of `engine` on a platform (local servers are small; cloud VMs larger). */
export function platformConnectionBudget(
  engine: PooledEngine,
  platform: "local" | "aws" | "gcp",
  isolation: "shared" | "dedicated",
  proxies: number,
): { maxConnections: number; server: number; perProxy: number } {
  const maxConnections = engine === "mysql" ? MYSQL_MAX_CONNECTIONS : postgresMaxConnections(platform === "local" ? "local" : "vm", isolation);
  return { maxConnections, ...connectionBudget(maxConnections, proxies) };
}
