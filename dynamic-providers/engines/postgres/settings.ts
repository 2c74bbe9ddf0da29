/**
 * PostgreSQL server settings every tenantfleet server gets, on every platform (LocalServer writes
 * them to a conf file; cloud-init will render the same ones). They are what migrations need:
 * logical replication per database (publication on the source, subscription on the target) and
 * SCRAM authentication.
 */
export interface PostgresSettingsInput {
  port: number;
  /** Addresses to listen on, e.g. "127.0.0.1" locally or "*" on a VM behind firewall rules. */
  listenAddresses: string;
  /** Small servers locally (many per machine); more on a dedicated VM. */
  sharedBuffers?: string;
  maxConnections?: number;
  /** Default none (see below); a VM keeps Debian's `/var/run/postgresql` for local admin by peer auth. */
  unixSocketDirectories?: string;
  /** Extra settings of one platform (e.g. TLS files on a VM), appended after the common ones. */
  extra?: Record<string, string | number>;
}

/**
 * max_connections of a tenantfleet PostgreSQL server: the one source for the servers (LocalServer,
 * the VMs' configuration step) and for the connection budget the proxies' pools must fit.
 */
export function postgresMaxConnections(host: "local" | "vm", isolation: "shared" | "dedicated"): number {
  if (host === "local") return 100; // many small servers on one machine
  return isolation === "dedicated" ? 200 : 400;
}

export function postgresSettings(input: PostgresSettingsInput): Record<string, string | number> {
  return {
    listen_addresses: input.listenAddresses,
    port: input.port,
    // No Unix socket: every client (admin, proxy, migration) connects over TCP, and socket paths
    // under a deep state dir would pass the 107-byte sun_path limit.
    unix_socket_directories: input.unixSocketDirectories ?? "",
    password_encryption: "scram-sha-256",
    max_connections: input.maxConnections ?? 100,
    shared_buffers: input.sharedBuffers ?? "32MB",
    // Logical replication: one publication/subscription pair per migrating tenant database.
    wal_level: "logical",
    max_replication_slots: 32,
    max_wal_senders: 32,
    max_logical_replication_workers: 16,
    max_worker_processes: 32,
    max_sync_workers_per_subscription: 4,
    // A slot left behind must never fill the disk of a shared server.
    max_slot_wal_keep_size: "4GB",
    wal_sender_timeout: "60s",
    // Durable acknowledgements: no acknowledged write is lost.
    fsync: "on",
    synchronous_commit: "on",
    log_line_prefix: "%m [%p] %q%u@%d ",
    log_connections: "off",
    ...input.extra,
  };
}

/** Render settings as postgresql.conf lines (strings quoted, numbers bare). */
export function renderPostgresConf(settings: Record<string, string | number>): string {
  const lines = Object.entries(settings).map(([k, v]) =>
    typeof v === "number" ? `${k} = ${v}` : `${k} = '${v.replace(/'/g, "''")}'`,
  );
  return `# Managed by tenantfleet: rewritten at every start. Do not edit.\n${lines.join("\n")}\n`;
}

/** pg_hba.conf: password (SCRAM) auth only, from the given client networks (on a VM, also the
 * `postgres` OS account over the local socket, for the configuration step and operators). */
export function renderPgHba(clientCidrs: string[], opts: { localPeerAdmin?: boolean } = {}): string {
  const lines = ["# Managed by tenantfleet. TYPE DATABASE USER ADDRESS METHOD"];
  if (opts.localPeerAdmin) lines.push("local all postgres peer");
  for (const cidr of clientCidrs) {
    lines.push(`host all all ${cidr} scram-sha-256`);
    lines.push(`host replication all ${cidr} scram-sha-256`);
  }
  return lines.join("\n") + "\n";
}
