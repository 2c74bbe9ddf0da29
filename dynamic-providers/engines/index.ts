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
