/**
 * What the TenantDatabase provider needs of each engine with live migration: the login's verifier,
 * the database and login on a server, the drop, the dump, the migration engine, and the name the
 * database takes on the target. The provider itself is engine-neutral.
 */
import type { EngineMigration } from "../migration/types";
import type { LiveEngine } from "./types";
import type { ServerAccess } from "../engines";
import { targetDatabaseName } from "../migration/orchestrator";
import type { TenantDbKey } from "../../proxy/catalog/routes";
import { makeVerifier } from "../../proxy/postgres/scram";
import { nativeVerifier } from "../../proxy/mysql/native-password";
import { PgMigration } from "../engines/postgres/migration";
import * as pg from "../engines/postgres/tenant-db";
import { stopWayBack } from "../engines/postgres/way-back";
import { MysqlMigration } from "../engines/mysql/migration";
import * as my from "../engines/mysql/tenant-db";
import { RedisMigration } from "../engines/redis/migration";
import * as rd from "../engines/redis/tenant-db";
import { redisVerifier } from "../../proxy/redis/verifier";

export type { ServerAccess };

export interface TenantDbOnServer {
  backendDatabase: string;
  role: string;
  verifier: string;
}

export interface TenantDbEngine {
  /** Connection string scheme. */
  scheme: "postgresql" | "mysql" | "redis";
  /** The verifier the catalog and the server hold for `password`. */
  verifier(password: string): string;
  ensure(s: ServerAccess, t: TenantDbOnServer): Promise<void>;
  drop(s: ServerAccess, t: Omit<TenantDbOnServer, "verifier">): Promise<void>;
  dump(s: ServerAccess, backendDatabase: string, file: string): Promise<{ bytes: number }>;
  /** The database's name on the target of the move to `epoch`. */
  targetDatabase(key: TenantDbKey, epoch: number, current: string): string;
  migration(a: {
    source: ServerAccess;
    target: ServerAccess;
    from: TenantDbOnServer;
    targetDatabase: string;
    freeBytes?: () => Promise<number | undefined>;
    /** A copy on the target kept current by `stream` since the last move (a move back). */
    standby?: { backendDatabase: string; stream: string };
    /** Keep the old copy current after the cutover (its server stays). */
    wayBack?: boolean;
  }): EngineMigration;
  /**
   * End the stream that keeps a retained copy current (the window is over, or the tenant moved on
   * and the copy reads from a copy that is old now): on the copy's side and, when given, the live
   * side. Returns what could not be reached.
   */
  stopKeepingCurrent?(stream: string, sides: { copy?: { server: ServerAccess; database: string }; live?: { server: ServerAccess; database: string } }): Promise<string[]>;
  /** Fence a copy fully (nobody connects), once nothing keeps it current. */
  fence?(s: ServerAccess, t: Omit<TenantDbOnServer, "verifier">): Promise<void>;
}


const mysqlDb = (t: Omit<TenantDbOnServer, "verifier"> & { verifier?: string }) => ({ database: t.backendDatabase, user: t.role, verifier: t.verifier ?? "" });

export const ENGINES: Record<LiveEngine, TenantDbEngine> = {
  postgres: {
    scheme: "postgresql",
    verifier: makeVerifier,
    ensure: pg.ensureTenantDatabase,
    drop: pg.dropTenantDatabase,
    dump: (s, db, file) => pg.dumpDatabase(s, db, file),
    // A new name per epoch: the fenced copy of a move back stays next to the live one.
    targetDatabase: (key, epoch) => targetDatabaseName(key, epoch),
    migration: (a) => new PgMigration(a),
    stopKeepingCurrent: (stream, sides) => stopWayBack(stream, sides),
    fence: (s, t) => pg.fenceDatabase(s, t),
  },
  mysql: {
    scheme: "mysql",
    verifier: nativeVerifier,
    ensure: (s, t) => my.ensureTenantDatabase(s, mysqlDb(t)),
    drop: (s, t) => my.dropTenantDatabase(s, mysqlDb(t)),
    dump: my.dumpDatabase,
    // The same name on every server: applications qualify tables with it.
    targetDatabase: (_key, _epoch, current) => current,
    migration: (a) => new MysqlMigration({ source: a.source, target: a.target, from: mysqlDb(a.from) }),
  },
  // The tenant database is its instance: its "database" is the instance's whole keyspace, and its
  // login an ACL user of the same name on every instance.
  redis: {
    scheme: "redis",
    verifier: redisVerifier,
    ensure: (s, t) => rd.ensureTenantUser(s, { user: t.role, verifier: t.verifier }),
    drop: (s, t) => rd.dropTenantDatabase(s, { user: t.role }),
    dump: (s, _db, file) => rd.dumpInstance(s, file),
    targetDatabase: (_key, _epoch, current) => current,
    migration: (a) => new RedisMigration({ source: a.source, target: a.target, user: a.from.role, verifier: a.from.verifier, ...(a.freeBytes ? { freeBytes: a.freeBytes } : {}) }),
  },
};

export function engineOf(engine: string): TenantDbEngine {
  const e = ENGINES[engine as LiveEngine];
  if (!e) throw new Error(`engine ${JSON.stringify(engine)} has no live migration`);
  return e;
}
