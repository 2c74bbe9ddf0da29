/**
 * MariaDB server settings every tenantfleet server gets: row-based binlog with GTIDs, so a tenant
 * database can move with native replication (binlog/GTID) and a replica can resume from a GTID.
 */
export interface MysqlSettingsInput {
  port: number;
  bindAddress: string;
  /** Unique among every server that may replicate with this one; also its GTID domain. */
  serverId: number;
  dataDir: string;
  socket: string;
  pidFile: string;
  logError: string;
  /** OS user mariadbd switches to when started as root. */
  user?: string;
  innodbBufferPoolSize?: string;
}

/** max_connections of a tenantfleet MariaDB server, on every platform: the servers' setting and the proxies' pool budget. */
export const MYSQL_MAX_CONNECTIONS = 200;

export function mysqlSettings(input: MysqlSettingsInput): Record<string, string | number> {
  const s: Record<string, string | number> = {
    datadir: input.dataDir,
    port: input.port,
    "bind-address": input.bindAddress,
    socket: input.socket,
    "pid-file": input.pidFile,
    "log-error": input.logError,
    "server-id": input.serverId,
    // Its own GTID domain: what a server writes never collides, under gtid_strict_mode, with what
    // it applies from another (dynamic-providers/engines/mysql/migration.ts).
    "gtid-domain-id": input.serverId,
    "log-bin": "binlog",
    "binlog-format": "ROW",
    "binlog-row-image": "FULL",
    "gtid-strict-mode": "ON",
    "log-slave-updates": "ON",
    // A migration's replica applies in parallel, committing in the source's order: it keeps up
    // with a busy tenant and catches up quickly once the tenant is paused (its commits group).
    "slave-parallel-threads": 4,
    // A migration's replication filter (one database) is set at runtime and a restart forgets it:
    // a server restarted mid-move must not start that connection again unfiltered (it would copy
    // every database of the source here). tenantfleet starts replication itself; a move
    // interrupted by a restart starts over (migration.ts removes the connection).
    "skip-slave-start": "ON",
    "slave-parallel-mode": "optimistic",
    "binlog-expire-logs-seconds": 7 * 24 * 3600,
    "skip-name-resolve": "ON",
    "character-set-server": "utf8mb4",
    "collation-server": "utf8mb4_unicode_ci",
    "innodb-buffer-pool-size": input.innodbBufferPoolSize ?? "64M",
    "innodb-flush-log-at-trx-commit": 1,
    "sync-binlog": 1,
    "max-connections": MYSQL_MAX_CONNECTIONS,
  };
  if (input.user) s.user = input.user;
  return s;
}

export function renderMyCnf(settings: Record<string, string | number>): string {
  const lines = Object.entries(settings).map(([k, v]) => `${k} = ${v}`);
  return `# Managed by tenantfleet: rewritten at every start. Do not edit.\n[mariadbd]\n${lines.join("\n")}\n`;
}
