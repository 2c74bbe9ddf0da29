/**
 * The engine configuration step a cloud VM runs at first boot (and may rerun: it is idempotent):
 * the Debian/Ubuntu package's server, configured exactly as migrations need it. The settings come
 * from the same functions LocalServer uses (engines/<engine>/settings.ts); only paths, the listen
 * address and the client networks are a VM's own.
 *
 * The script reads the admin password from a file (fetched from the cloud's secret store by
 * cloud-init just before, onto tmpfs), never from its own text: user-data is readable by anyone who
 * may describe the instance.
 *
 * Two environment overrides exist for running the step on a machine that is not the VM (the test
 * runs it against a server on this machine): `TF_PORT` (a port other than the engine's default) and
 * `TF_EXTRA_CLIENT_CIDR` (one more client network, e.g. 127.0.0.1/32). `TF_PG_CLUSTER` names the
 * Debian cluster (default `main`).
 */
import type { Engine } from "../../../dynamic-providers/engines";
import { mysqlSettings, renderMyCnf } from "../../../dynamic-providers/engines/mysql/settings";
import { postgresMaxConnections, postgresSettings, renderPgHba, renderPostgresConf } from "../../../dynamic-providers/engines/postgres/settings";
import { redisSettings, renderRedisAclForHash, renderRedisConf } from "../../../dynamic-providers/engines/redis/settings";

/** Default port of each engine on a VM. */
export const VM_PORTS: Record<Engine, number> = { postgres: 5432, mysql: 3306, redis: 6379, mongodb: 27017 };

/** Debian/Ubuntu packages each engine's VM installs. */
export const VM_PACKAGES: Record<Engine, string[]> = {
  postgres: ["postgresql", "postgresql-client", "openssl"],
  mysql: ["mariadb-server", "mariadb-client", "openssl"],
  redis: ["redis-server", "openssl"],
  mongodb: [],
};

export const ADMIN_PASSWORD_FILE = "/run/tenantfleet/admin-password";
export const CONFIGURE_PATH = "/usr/local/sbin/tenantfleet-configure";

export interface ConfigureInput {
  engine: Engine;
  adminUser: string;
  /** Networks allowed to reach the engine's port (the proxies, the bastion, peer servers). */
  clientCidrs: string[];
  /** Sizes for a dedicated VM vs a shared one. */
  role: "shared" | "dedicated";
  /** Unique among servers that may replicate with each other (MariaDB server-id). */
  serverId: number;
}

/** Write `body` to `file` (a shell word, double-quoted: it may use $variables) with a quoted
 * heredoc, so nothing in the body is expanded. A body never contains the terminator line. */
function heredoc(file: string, body: string, mode = "0644", owner = "root:root"): string {
  const tag = "TENANTFLEET_EOF";
  if (body.split("\n").includes(tag)) throw new Error(`configuration for ${file} contains the line ${tag}`);
  const [user, group] = owner.split(":");
  return `install -m ${mode} -o ${user} -g ${group} /dev/null "${file}"\ncat > "${file}" <<'${tag}'\n${body}${body.endsWith("\n") ? "" : "\n"}${tag}`;
}

const PRELUDE = `#!/bin/bash
# tenantfleet engine configuration step (components/platforms/vm/configure.ts). Idempotent.
set -euo pipefail
umask 077
password_file="\${TF_ADMIN_PASSWORD_FILE:-${ADMIN_PASSWORD_FILE}}"
[ -s "$password_file" ] || { echo "tenantfleet-configure: no admin password in $password_file" >&2; exit 1; }
log() { echo "tenantfleet-configure: $*" >&2; }
has_systemd() { [ -d /run/systemd/system ]; }
# A self-signed certificate made on the server: its key never leaves the machine.
make_cert() { # dir owner
  if [ ! -s "$1/tenantfleet-server.key" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=$(hostname)" \\
      -keyout "$1/tenantfleet-server.key" -out "$1/tenantfleet-server.crt" 2>/dev/null
  fi
  chown "$2" "$1/tenantfleet-server.key" "$1/tenantfleet-server.crt"
  chmod 600 "$1/tenantfleet-server.key"
}
extra_cidr="\${TF_EXTRA_CLIENT_CIDR:-}"
`;

function postgresScript(input: ConfigureInput): string {
  const port = VM_PORTS.postgres;
  const conf = renderPostgresConf(
    postgresSettings({
      port,
      listenAddresses: "*",
      unixSocketDirectories: "/var/run/postgresql",
      sharedBuffers: input.role === "dedicated" ? "1GB" : "512MB",
      maxConnections: postgresMaxConnections("vm", input.role === "dedicated" ? "dedicated" : "shared"),
    }),
  );
  // TLS is on, but not yet required: the proxy's and the migration's connections to servers do not
  // negotiate it yet (README "Cloud platforms", limits); `hostssl` lines once they do.
  const hba = renderPgHba(input.clientCidrs, { localPeerAdmin: true });
  return `${PRELUDE}
cluster="\${TF_PG_CLUSTER:-main}"
version="\${TF_PG_VERSION:-$(ls /etc/postgresql | sort -V | tail -n 1)}"
conf_dir="/etc/postgresql/$version/$cluster"
[ -f "$conf_dir/postgresql.conf" ] || { log "no PostgreSQL cluster at $conf_dir"; exit 1; }
pg() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$1" -d postgres "\${@:2}"; }
restart() { if has_systemd; then systemctl restart "postgresql@$version-$cluster"; else pg_ctlcluster "$version" "$cluster" restart; fi; }

install -d -o postgres -g postgres -m 0755 "$conf_dir/conf.d"
make_cert "$conf_dir" postgres:postgres
${heredoc("$conf_dir/conf.d/tenantfleet.conf", conf, "0644", "postgres:postgres")}
cat >> "$conf_dir/conf.d/tenantfleet.conf" <<EOF
ssl = on
ssl_cert_file = '$conf_dir/tenantfleet-server.crt'
ssl_key_file = '$conf_dir/tenantfleet-server.key'
EOF
[ -z "\${TF_PORT:-}" ] || echo "port = $TF_PORT" >> "$conf_dir/conf.d/tenantfleet.conf"
${heredoc("$conf_dir/pg_hba.conf", hba, "0640", "postgres:postgres")}
[ -z "$extra_cidr" ] || printf 'host all all %s scram-sha-256\\nhost replication all %s scram-sha-256\\n' "$extra_cidr" "$extra_cidr" >> "$conf_dir/pg_hba.conf"

# The admin role, over the local socket (peer auth as the postgres OS account). The password goes
# through psql's stdin, never argv (which \`ps\` shows).
restart
pw="$(cat "$password_file")"
pw_sql=\${pw//"'"/"''"}
pg "\${TF_PORT:-${port}}" <<SQL
SELECT 'CREATE ROLE "${input.adminUser}"' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${input.adminUser}') \\gexec
ALTER ROLE "${input.adminUser}" WITH LOGIN SUPERUSER REPLICATION PASSWORD '$pw_sql';
SQL
[ "$(pg "\${TF_PORT:-${port}}" -At -c 'show wal_level')" = logical ] || { log "wal_level is not logical after restart"; exit 1; }
log "PostgreSQL $version/$cluster configured (port \${TF_PORT:-${port}}, wal_level logical, ssl on)"
`;
}

function mysqlScript(input: ConfigureInput): string {
  const port = VM_PORTS.mysql;
  const cnf = renderMyCnf({
    ...mysqlSettings({
      port,
      bindAddress: "0.0.0.0",
      serverId: input.serverId,
      dataDir: "/var/lib/mysql",
      socket: "/run/mysqld/mysqld.sock",
      pidFile: "/run/mysqld/mysqld.pid",
      logError: "/var/log/mysql/error.log",
      innodbBufferPoolSize: input.role === "dedicated" ? "2G" : "1G",
    }),
    "ssl-cert": "/etc/mysql/tenantfleet-server.crt",
    "ssl-key": "/etc/mysql/tenantfleet-server.key",
    // Offered, not required, as for PostgreSQL: the proxy's and the providers' connections do not
    // negotiate TLS yet, and required they could not reach the server at all (README, limits).
  });
  return `${PRELUDE}
make_cert /etc/mysql mysql:mysql
${heredoc("/etc/mysql/mariadb.conf.d/90-tenantfleet.cnf", cnf)}
[ -z "\${TF_PORT:-}" ] || echo "port = $TF_PORT" >> /etc/mysql/mariadb.conf.d/90-tenantfleet.cnf
# Debian 12's mariadb-server logs to the journal and creates no /var/log/mysql: without it mariadbd
# (run directly by systemd) says "Can't create file '/var/log/mysql/error.log'" and the log-error
# above is lost (found by test/integration/vm-configure.test.ts).
install -d -o mysql -g adm -m 2750 /var/log/mysql
if has_systemd; then systemctl restart mariadb; else service mariadb restart; fi
pw="$(cat "$password_file")"
pw_sql=\${pw//"\\\\"/"\\\\\\\\"}; pw_sql=\${pw_sql//"'"/"\\\\'"}
mariadb --protocol=socket -u root <<SQL
CREATE USER IF NOT EXISTS '${input.adminUser}'@'%' IDENTIFIED BY '$pw_sql';
ALTER USER '${input.adminUser}'@'%' IDENTIFIED BY '$pw_sql' REQUIRE SSL;
GRANT ALL PRIVILEGES ON *.* TO '${input.adminUser}'@'%' WITH GRANT OPTION;
SQL
log "MariaDB configured (port \${TF_PORT:-${port}}, binlog ROW with GTID, TLS required)"
`;
}

function redisScript(input: ConfigureInput): string {
  const port = VM_PORTS.redis;
  const conf = renderRedisConf(
    redisSettings({
      port,
      bind: "0.0.0.0",
      dir: "/var/lib/redis",
      pidFile: "/run/redis/redis-server.pid",
      logFile: "/var/log/redis/redis-server.log",
      aclFile: "/etc/redis/users.acl",
      daemonize: false,
    }),
  );
  const acl = renderRedisAclForHash(input.adminUser, "@ADMIN_PASSWORD_SHA256@");
  return `${PRELUDE}
${heredoc("/etc/redis/redis.conf", conf, "0640", "redis:redis")}
# Under systemd the Debian unit (Type=notify) supervises a foreground server. Without systemd the
# init script's start-stop-daemon (no --background) waits for redis-server to daemonise itself: a
# foreground server made \`service redis-server restart\` hang forever (found by
# test/integration/vm-configure.test.ts).
if has_systemd; then echo "supervised systemd" >> /etc/redis/redis.conf; else echo "daemonize yes" >> /etc/redis/redis.conf; fi
[ -z "\${TF_PORT:-}" ] || echo "port $TF_PORT" >> /etc/redis/redis.conf
${heredoc("/etc/redis/users.acl.in", acl, "0600", "redis:redis")}
sed "s/@ADMIN_PASSWORD_SHA256@/$(printf %s "$(cat "$password_file")" | sha256sum | cut -d' ' -f1)/" /etc/redis/users.acl.in > /etc/redis/users.acl
rm -f /etc/redis/users.acl.in
chown redis:redis /etc/redis/users.acl && chmod 600 /etc/redis/users.acl
if has_systemd; then systemctl restart redis-server; else service redis-server restart; fi
log "Redis configured (port \${TF_PORT:-${port}}, AOF, ACL admin user, default user off)"
`;
}

/** The bash script of the configuration step for one server. */
export function configureScript(input: ConfigureInput): string {
  switch (input.engine) {
    case "postgres":
      return postgresScript(input);
    case "mysql":
      return mysqlScript(input);
    case "redis":
      return redisScript(input);
    case "mongodb":
      throw new Error("MongoDB servers are not supported on cloud platforms yet");
  }
}
