/**
 * The database engines tenantfleet places and migrates. Each engine has a folder beside this file
 * holding everything that knows that engine: its server settings, how a local server process of
 * it is run, and (later) its native replication.
 */
export const ENGINES = ["postgres", "mysql", "redis", "mongodb"] as const;
export type Engine = (typeof ENGINES)[number];

export function isEngine(x: unknown): x is Engine {
  return typeof x === "string" && (ENGINES as readonly string[]).includes(x);
}

/** Default admin account created on every server (PostgreSQL superuser, MariaDB user with all
 * privileges, Redis ACL user). Its password is generated and only ever exposed as a secret. */
export const ADMIN_USER = "admin";

/** How the migration engine and the TenantDatabase provider reach a server: admin credentials,
 * never a tenant's (the same shape for every engine). */
export interface ServerAccess {
  /** Logical server name, e.g. `shared-postgres-eu-west`. */
  name: string;
  host: string;
  port: number;
  adminUser: string;
  /** Secret. */
  adminPassword: string;
  /** Where this process connects to reach the server when that is not `host:port` (a tunnel's
   * loopback end on the cloud platforms). `host:port` stays the server's own address: the one its
   * peers replicate from and the proxies route to. */
  via?: { host: string; port: number };
}
