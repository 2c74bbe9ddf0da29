/**
 * Redis server settings every tenantfleet server gets: ACL users (no default user), durable AOF,
 * and the settings REPLICAOF-based migrations rely on.
 */
import { createHash } from "node:crypto";

/** A Redis tenant database's memory (its instance's maxmemory) when the stack config gives none, MB. */
export const DEFAULT_REDIS_MEMORY_MB = 256;

export interface RedisSettingsInput {
  port: number;
  bind: string;
  dir: string;
  pidFile: string;
  logFile: string;
  aclFile: string;
  daemonize: boolean;
  /** The instance's maxmemory, MB (a tenant database's instance); none: Redis's default, no limit. */
  maxmemoryMb?: number;
}

export function redisSettings(input: RedisSettingsInput): Record<string, string | number> {
  return {
    bind: input.bind,
    port: input.port,
    "protected-mode": "yes",
    daemonize: input.daemonize ? "yes" : "no",
    pidfile: input.pidFile,
    logfile: input.logFile,
    dir: input.dir,
    aclfile: input.aclFile,
    appendonly: "yes",
    appendfsync: "everysec",
    save: '""',
    "repl-diskless-sync": "yes",
    // A move's full sync (and its safety backup, an RDB read by redis-cli --rdb) starts at once,
    // not after Redis's default 5 s wait for more replicas.
    "repl-diskless-sync-delay": 0,
    // A move's target (empty) loads the snapshot as it arrives, not after writing it to disk.
    "repl-diskless-load": "on-empty-db",
    ...(input.maxmemoryMb ? { maxmemory: `${input.maxmemoryMb}mb` } : {}),
  };
}

export function renderRedisConf(settings: Record<string, string | number>): string {
  const lines = Object.entries(settings).map(([k, v]) => `${k} ${v}`);
  return `# Managed by tenantfleet: rewritten at every start. Do not edit.\n${lines.join("\n")}\n`;
}

/** users.acl: the default user off, the admin user with every permission; the password is kept
 * only as its SHA-256 (Redis ACL `#<hash>` form), never in plain text. */
export function renderRedisAcl(adminUser: string, adminPassword: string): string {
  return renderRedisAclForHash(adminUser, createHash("sha256").update(adminPassword).digest("hex"));
}

/** The same file from the password's SHA-256 (hex): a VM computes it from the secret it fetched. */
export function renderRedisAclForHash(adminUser: string, passwordSha256: string): string {
  return [`user default off`, `user ${adminUser} on #${passwordSha256} ~* &* +@all`].join("\n") + "\n";
}
