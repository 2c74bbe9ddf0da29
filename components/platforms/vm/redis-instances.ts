/**
 * A shared Redis host on the cloud platforms runs one redis-server instance per tenant database
 * (REPLICAOF moves a whole instance), beside the host's own instance on 6379: a systemd template
 * unit `tenantfleet-redis@<name>`, its config rendered from the same settings as LocalServer's
 * (engines/redis/settings.ts), its own port, data dir, AOF, ACL file and maxmemory.
 *
 * Which instances a host runs comes from a manifest the platform writes into the fleet's bucket
 * (`hosts/<server>/redis-instances`), one line per instance: `<name> <port> <maxmemoryMb>`. The host
 * pulls it (a systemd timer, every 15 s) and converges: it starts what is new, applies a changed
 * maxmemory live (CONFIG SET, no restart) and stops what is gone. Nothing reaches into the VM: the
 * database servers keep no SSH access, and the host needs nothing but read access to its manifest.
 * An instance that leaves the manifest is stopped, and its config, ACL file and data move to
 * /var/lib/redis/removed/<name>.<time> — nothing is deleted on the host (the tenant database's
 * safety backup is in the bucket already; the operator removes old copies).
 *
 * Ports come from InstancePorts (dynamic-providers/instance-ports): stable for an instance's life.
 */
import type * as pulumi from "@pulumi/pulumi";
import { redisSettings, renderRedisAclForHash, renderRedisConf } from "../../../dynamic-providers/engines/redis/settings";
import { InstancePorts } from "../../../dynamic-providers/instance-ports";
import type { InstancesRequest, PlatformServer, ServerRequest } from "../index";
import { systemdUnit, type SecretFetch } from "./cloud-init";

/** The ports instances of a shared Redis host listen on (the host's own instance keeps 6379). */
export const REDIS_INSTANCE_PORTS = { first: 6380, last: 7379 } as const;

export const REDIS_INSTANCES_PATH = "/usr/local/sbin/tenantfleet-redis-instances";
export const REDIS_INSTANCE_UNIT = "tenantfleet-redis@.service";
export const REDIS_INSTANCES_SYNC_UNIT = "tenantfleet-redis-instances";
/** How often a host pulls its manifest, seconds. */
export const REDIS_INSTANCES_SYNC_S = 15;

export interface RedisInstanceEntry {
  name: string;
  port: number;
  maxmemoryMb: number;
}

/** A server that runs its Redis tenant databases' instances: a region's shared Redis host. */
export const runsRedisInstances = (req: ServerRequest): boolean => req.engine === "redis" && req.role === "shared" && !req.tenant;

/** The bucket key of a host's manifest. */
export const redisManifestKey = (host: string): string => `hosts/${host}/redis-instances`;

const NAME = /^[a-z0-9][a-z0-9-]*$/;

/** The manifest a host converges to, sorted by name (the same list, the same text). */
export function renderRedisManifest(host: string, entries: RedisInstanceEntry[]): string {
  const seen = new Set<number>();
  const lines = [...entries]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((e) => {
      if (!NAME.test(e.name)) throw new Error(`Redis instance name ${JSON.stringify(e.name)}: lowercase letters, digits and hyphens only`);
      if (!(e.port >= REDIS_INSTANCE_PORTS.first && e.port <= REDIS_INSTANCE_PORTS.last)) throw new Error(`Redis instance ${e.name}: port ${e.port} is outside ${REDIS_INSTANCE_PORTS.first}-${REDIS_INSTANCE_PORTS.last}`);
      if (seen.has(e.port)) throw new Error(`Redis instances of ${host}: port ${e.port} is given twice`);
      if (!(Number.isInteger(e.maxmemoryMb) && e.maxmemoryMb > 0)) throw new Error(`Redis instance ${e.name}: maxmemory ${e.maxmemoryMb} MB`);
      seen.add(e.port);
      return `${e.name} ${e.port} ${e.maxmemoryMb}`;
    });
  return `# tenantfleet Redis instances of ${host}: name port maxmemory-MB (components/platforms/vm/redis-instances.ts)\n${lines.join("\n")}${lines.length ? "\n" : ""}`;
}

/** redis.conf of one instance, with `@NAME@`, `@PORT@` and `@MAXMEMORY_MB@` for the host to fill in. */
function instanceConfTemplate(): string {
  return renderRedisConf(
    redisSettings({
      port: "@PORT@" as unknown as number,
      bind: "0.0.0.0",
      dir: "/var/lib/redis/instances/@NAME@",
      pidFile: "/run/tenantfleet-redis/@NAME@.pid",
      logFile: "/var/log/redis/instance-@NAME@.log",
      aclFile: "/etc/redis/instances/@NAME@.acl",
      daemonize: false,
      maxmemoryMb: "@MAXMEMORY_MB@" as unknown as number,
    }),
  );
}

/** The systemd template unit: one supervised redis-server per instance. */
export function redisInstanceUnit(): string {
  return systemdUnit("tenantfleet Redis instance %i", "Service", [
    "Type=notify",
    "User=redis",
    "Group=redis",
    "ExecStart=/usr/bin/redis-server /etc/redis/instances/%i.conf --supervised systemd --daemonize no",
    "RuntimeDirectory=tenantfleet-redis",
    "RuntimeDirectoryPreserve=yes",
    "RuntimeDirectoryMode=0755",
    "Restart=always",
    "RestartSec=2",
    "TimeoutStopSec=90",
    "LimitNOFILE=65536",
  ]);
}

/**
 * The host-side step that converges the running instances on a manifest (argument 1). Idempotent.
 * Off the VM (the integration test), `has_systemd` is false and instances run daemonised as the
 * redis account, stopped through their pid files.
 */
export function redisInstancesScript(adminUser: string): string {
  const conf = instanceConfTemplate();
  const acl = renderRedisAclForHash(adminUser, "@ADMIN_PASSWORD_SHA256@");
  for (const [what, text] of [["conf", conf], ["acl", acl]]) if (text!.includes("TENANTFLEET_EOF")) throw new Error(`Redis instance ${what} contains TENANTFLEET_EOF`);
  return `#!/bin/bash
# tenantfleet: converge this host's Redis instances on a manifest (components/platforms/vm/redis-instances.ts).
set -euo pipefail
umask 077
manifest="\${1:?usage: $0 MANIFEST}"
password_file="\${TF_ADMIN_PASSWORD_FILE:-/run/tenantfleet/admin-password}"
[ -s "$password_file" ] || { echo "tenantfleet-redis-instances: no admin password in $password_file" >&2; exit 1; }
log() { echo "tenantfleet-redis-instances: $*" >&2; }
has_systemd() { [ -d /run/systemd/system ]; }
etc=/etc/redis/instances
lib=/var/lib/redis/instances
removed=/var/lib/redis/removed
install -d -o redis -g redis -m 0750 "$etc" "$lib" "$removed"
install -d -o redis -g redis -m 0755 /run/tenantfleet-redis
install -d -o redis -g adm -m 2750 /var/log/redis
hash="$(printf %s "$(cat "$password_file")" | sha256sum | cut -d' ' -f1)"
admin() { REDISCLI_AUTH="$(cat "$password_file")" redis-cli --no-auth-warning --user ${adminUser} -h 127.0.0.1 -p "$1" "\${@:2}"; }
# A process that exists and is not a zombie (off systemd, its parent may never reap it).
alive() { [ -r "/proc/$1/stat" ] && [ "$(cut -d' ' -f3 "/proc/$1/stat")" != Z ]; }
running() { # name
  if has_systemd; then systemctl is-active --quiet "tenantfleet-redis@$1"; else [ -s "/run/tenantfleet-redis/$1.pid" ] && alive "$(cat "/run/tenantfleet-redis/$1.pid")"; fi
}
start() { # name
  if has_systemd; then systemctl enable --now --quiet "tenantfleet-redis@$1"; else runuser -u redis -- redis-server "$etc/$1.conf" --daemonize yes; fi
}
stop() { # name
  if has_systemd; then systemctl disable --now --quiet "tenantfleet-redis@$1" || true; return; fi
  local pidfile="/run/tenantfleet-redis/$1.pid"
  if [ -s "$pidfile" ]; then
    local pid; pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do alive "$pid" || break; sleep 0.1; done
  fi
}
render_conf() { # name port maxmemory
  sed -e "s/@NAME@/$1/g" -e "s/@PORT@/$2/g" -e "s/@MAXMEMORY_MB@/$3/g" <<'TENANTFLEET_EOF'
${conf}TENANTFLEET_EOF
}
declare -A wanted=()
while read -r name port mem rest; do
  case "$name" in ""|"#"*) continue ;; esac
  [[ "$name" =~ ^[a-z0-9][a-z0-9-]*$ && "$port" =~ ^[0-9]+$ && "$mem" =~ ^[0-9]+$ && -z "$rest" ]] || { log "bad manifest line: $name $port $mem $rest"; exit 1; }
  wanted[$name]=1
  conf="$etc/$name.conf"
  new="$(render_conf "$name" "$port" "$mem")"
  install -d -o redis -g redis -m 0750 "$lib/$name"
  # The ACL file is written once: the instance's own ACL SAVE keeps the tenant's user in it.
  if [ ! -f "$etc/$name.acl" ]; then
    sed "s/@ADMIN_PASSWORD_SHA256@/$hash/" > "$etc/$name.acl" <<'TENANTFLEET_EOF'
${acl}TENANTFLEET_EOF
    chown redis:redis "$etc/$name.acl"; chmod 600 "$etc/$name.acl"
  fi
  if [ -f "$conf" ] && running "$name"; then
    [ "$(cat "$conf")" != "$new" ] || continue
    old_port="$(sed -n 's/^port //p' "$conf")"
    [ "$old_port" = "$port" ] || { log "$name: its port is $old_port, the manifest says $port (an instance keeps its port for life); left as it is"; continue; }
    # A changed maxmemory, applied live: the instance keeps serving.
    admin "$port" CONFIG SET maxmemory "\${mem}mb" > /dev/null
    printf '%s\\n' "$new" > "$conf"; chown redis:redis "$conf"; chmod 640 "$conf"
    log "$name: maxmemory \${mem} MB"
    continue
  fi
  printf '%s\\n' "$new" > "$conf"; chown redis:redis "$conf"; chmod 640 "$conf"
  start "$name"
  log "$name: started on port $port (maxmemory \${mem} MB)"
done < "$manifest"
# Instances no longer listed: stopped, and everything of theirs kept aside.
shopt -s nullglob
for conf in "$etc"/*.conf; do
  name="$(basename "$conf" .conf)"
  [ -z "\${wanted[$name]:-}" ] || continue
  stop "$name"
  aside="$removed/$name.$(date -u +%Y%m%dT%H%M%SZ)"
  install -d -o redis -g redis -m 0750 "$aside"
  mv "$conf" "$aside/"; [ ! -f "$etc/$name.acl" ] || mv "$etc/$name.acl" "$aside/"
  [ ! -d "$lib/$name" ] || mv "$lib/$name" "$aside/data"
  log "$name: stopped; its config and data are in $aside"
done
`;
}

/**
 * The systemd timer and service that pull the manifest and run the converging step (and fetch the
 * admin password again after a reboot: it lives on tmpfs). `fetchManifest` prints the manifest,
 * `fetchAdmin` the admin password.
 */
export function redisInstancesSyncUnits(fetchManifest: SecretFetch, fetchAdmin: SecretFetch, passwordFile: string): { service: string; timer: string } {
  const fetch = [
    `install -d -m 0700 /run/tenantfleet`,
    `[ -s ${passwordFile} ] || { (${fetchAdmin.command}) | tr -d '\\n' > ${passwordFile}.new && mv ${passwordFile}.new ${passwordFile}; }`,
    `(${fetchManifest.command}) > /run/tenantfleet/redis-instances.new`,
    `mv /run/tenantfleet/redis-instances.new /run/tenantfleet/redis-instances`,
    `${REDIS_INSTANCES_PATH} /run/tenantfleet/redis-instances`,
  ].join(" && ");
  // A oneshot the timer starts (never enabled itself).
  const service = systemdUnit("tenantfleet: converge the Redis instances of this host on its manifest", "Service", [
    "Type=oneshot",
    "UMask=0077",
    `ExecStart=/bin/bash -c ${JSON.stringify(fetch).replace(/\$/g, "$$$$").replace(/%/g, "%%")}`,
  ]);
  const timer = systemdUnit("tenantfleet: pull this host's Redis instance manifest", "Timer", ["OnBootSec=5s", `OnUnitActiveSec=${REDIS_INSTANCES_SYNC_S}s`, "AccuracySec=1s"], { wantedBy: "timers.target", afterNetwork: false });
  return { service, timer };
}

/**
 * The instances of a shared Redis host on a VM platform: their ports (InstancePorts), the manifest
 * the host pulls (`writeManifest` puts it into the platform's bucket at `key`), and what each
 * instance exposes — the host's address and admin account, the instance's own port.
 */
export function vmRedisInstances(
  req: InstancesRequest,
  parent: pulumi.Resource,
  writeManifest: (name: string, key: string, content: pulumi.Output<string>) => void,
): Record<string, PlatformServer> {
  const host = req.host.serverName;
  const ports = new InstancePorts(
    `${host}-instance-ports`,
    { host, names: req.instances.map((i) => i.name), firstPort: REDIS_INSTANCE_PORTS.first, lastPort: REDIS_INSTANCE_PORTS.last },
    { parent },
  );
  const manifest = ports.ports.apply((p) => renderRedisManifest(host, req.instances.map((i) => ({ name: i.name, port: p[i.name]!, maxmemoryMb: i.maxmemoryMb }))));
  writeManifest(`${host}-redis-instances`, redisManifestKey(host), manifest);
  const { hostServer } = req;
  return Object.fromEntries(
    req.instances.map((i) => [i.name, { host: hostServer.host, port: ports.ports.apply((p) => p[i.name]!), adminUser: hostServer.adminUser, adminPassword: hostServer.adminPassword, version: hostServer.version }]),
  );
}
