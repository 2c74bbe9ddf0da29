/**
 * cloud-init user-data for the VMs of the cloud platforms: database servers (configure.ts), proxy
 * hosts and the bastion. User-data never carries a secret (anyone allowed to describe an instance
 * can read it): a VM fetches its own secret from the cloud's secret store at boot, with its own
 * identity, onto tmpfs.
 *
 * The document is `#cloud-config` followed by JSON, which is valid YAML and needs no escaping rules
 * of our own.
 */
import { ADMIN_PASSWORD_FILE, CONFIGURE_PATH, VM_PACKAGES, configureScript, type ConfigureInput } from "./configure";
import { REDIS_INSTANCE_UNIT, REDIS_INSTANCES_PATH, REDIS_INSTANCES_SYNC_UNIT, redisInstanceUnit, redisInstancesScript, redisInstancesSyncUnits } from "./redis-instances";

/** How a VM reads one secret from its cloud's store: a shell command that prints it. */
export interface SecretFetch {
  /** Debian/Ubuntu packages the command needs. */
  packages: string[];
  /** Shell command printing the secret's value on stdout. */
  command: string;
}

export function awsSecretFetch(secretArn: string, region: string): SecretFetch {
  return {
    packages: ["awscli"],
    command: `aws secretsmanager get-secret-value --region ${shellWord(region)} --secret-id ${shellWord(secretArn)} --query SecretString --output text`,
  };
}

/**
 * How a VM reads an S3 object (the proxy's code, a host's Redis manifest): printed on stdout.
 * `get-object` writes the object to a file and its metadata (JSON) to stdout, so the object goes to
 * the original stdout through fd 3 and the metadata to /dev/null. (`… /dev/stdout >/dev/null`, as
 * the proxy's fetch once read, sends both to /dev/null: /dev/stdout is fd 1 after the redirection.)
 */
export function awsObjectFetch(bucket: string, key: string, region: string, versionId?: string): SecretFetch {
  return {
    packages: ["awscli"],
    command: `aws s3api get-object --region ${shellWord(region)} --bucket ${shellWord(bucket)} --key ${shellWord(key)}${versionId ? ` --version-id ${shellWord(versionId)}` : ""} /dev/fd/3 3>&1 >/dev/null`,
  };
}

export function gcpSecretFetch(secretId: string, project: string): SecretFetch {
  // gcloud comes with Google's Ubuntu images.
  return { packages: [], command: `gcloud secrets versions access latest --secret=${shellWord(secretId)} --project=${shellWord(project)}` };
}

export function shellWord(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function cloudConfig(doc: Record<string, unknown>): string {
  return `#cloud-config\n${JSON.stringify(doc, null, 2)}\n`;
}

/** Fetch a secret into a root-only file on tmpfs; no trailing newline. */
function fetchInto(fetch: SecretFetch, file: string): string {
  return `install -d -m 0700 "$(dirname ${file})" && (${fetch.command}) | tr -d '\\n' > ${file} && chmod 600 ${file}`;
}

/**
 * A database server's user-data. `redisInstances` (a shared Redis host): the host also runs an
 * instance per tenant database, from the manifest `fetchManifest` prints (redis-instances.ts).
 */
export function serverUserData(input: ConfigureInput, adminSecret: SecretFetch, redisInstances?: { fetchManifest: SecretFetch }): string {
  const files = [{ path: CONFIGURE_PATH, permissions: "0700", owner: "root:root", content: configureScript(input) }];
  let then = "";
  if (redisInstances) {
    if (input.engine !== "redis" || input.role !== "shared") throw new Error("only a shared Redis host runs Redis instances");
    const units = redisInstancesSyncUnits(redisInstances.fetchManifest, adminSecret, ADMIN_PASSWORD_FILE);
    files.push(
      { path: REDIS_INSTANCES_PATH, permissions: "0700", owner: "root:root", content: redisInstancesScript(input.adminUser) },
      { path: `/etc/systemd/system/${REDIS_INSTANCE_UNIT}`, permissions: "0644", owner: "root:root", content: redisInstanceUnit() },
      { path: `/etc/systemd/system/${REDIS_INSTANCES_SYNC_UNIT}.service`, permissions: "0644", owner: "root:root", content: units.service },
      { path: `/etc/systemd/system/${REDIS_INSTANCES_SYNC_UNIT}.timer`, permissions: "0644", owner: "root:root", content: units.timer },
    );
    then = ` && systemctl daemon-reload && systemctl enable --now ${REDIS_INSTANCES_SYNC_UNIT}.timer`;
  }
  return cloudConfig({
    package_update: true,
    package_upgrade: false,
    packages: [...new Set([...VM_PACKAGES[input.engine], ...adminSecret.packages, ...(redisInstances?.fetchManifest.packages ?? [])])],
    write_files: files,
    runcmd: [["bash", "-c", `${fetchInto(adminSecret, ADMIN_PASSWORD_FILE)} && ${CONFIGURE_PATH}${then}`]],
  });
}

export const PROXY_PORT = 6432;
/** The proxies' MySQL-protocol port (ProxySQL's), on fleets with MariaDB/MySQL tenant databases. */
export const PROXY_MYSQL_PORT = 6033;
/** The proxies' Redis-protocol port, on fleets with Redis tenant databases. */
export const PROXY_REDIS_PORT = 6379;
export const PROXY_ADMIN_PORT = 9187;

/** The ports applications reach the proxies on: PostgreSQL's, and MySQL's and Redis's when the fleet has such tenant databases. */
export function proxyClientPorts(protocols: { mysql: boolean; redis: boolean }): number[] {
  return [PROXY_PORT, ...(protocols.mysql ? [PROXY_MYSQL_PORT] : []), ...(protocols.redis ? [PROXY_REDIS_PORT] : [])];
}
export const PROXY_DIR = "/opt/tenantfleet";

export interface ProxyUserDataInput {
  proxyId: string;
  /** Shell command that writes the proxy bundle (proxy-artifact.ts) to stdout. */
  fetchArtifact: SecretFetch;
  /** Prints the catalog URL. */
  catalogUrl: SecretFetch;
  /** Also listen for the MySQL protocol (PROXY_MYSQL_PORT). Off, the unit is what it was before MySQL support. */
  mysql?: boolean;
  /** Also listen for the Redis protocol (PROXY_REDIS_PORT). Off, the unit is what it was before Redis support. */
  redis?: boolean;
}

/** A systemd unit file: `[Unit]` (after the network is up, unless `afterNetwork` is false), one `section`, `[Install]`. */
export function systemdUnit(description: string, section: "Service" | "Timer", lines: string[], opts: { wantedBy?: string; afterNetwork?: boolean } = {}): string {
  const network = opts.afterNetwork === false ? [] : ["After=network-online.target", "Wants=network-online.target"];
  return [...["[Unit]", `Description=${description}`, ...network, "", `[${section}]`], ...lines, "", "[Install]", `WantedBy=${opts.wantedBy ?? "multi-user.target"}`, ""].join("\n");
}

/** A proxy host: Node.js from the distribution, the bundled proxy, a systemd unit that restarts it
 * and gives it `shutdown-grace` to drain on stop. The catalog URL reaches it through an
 * environment file readable by root only, never argv. */
export function proxyUserData(input: ProxyUserDataInput): string {
  const unit = systemdUnit("tenantfleet proxy", "Service", [
    "EnvironmentFile=/etc/tenantfleet/proxy.env",
    `ExecStart=/usr/bin/node ${PROXY_DIR}/proxy.js --id ${input.proxyId} --listen 0.0.0.0:${PROXY_PORT}${input.mysql ? ` --mysql-listen 0.0.0.0:${PROXY_MYSQL_PORT}` : ""}${input.redis ? ` --redis-listen 0.0.0.0:${PROXY_REDIS_PORT}` : ""} --admin 0.0.0.0:${PROXY_ADMIN_PORT}`,
    "DynamicUser=yes",
    "Restart=always",
    "RestartSec=1",
    "KillSignal=SIGTERM",
    "TimeoutStopSec=45",
    "LimitNOFILE=65536",
  ]);
  return cloudConfig({
    package_update: true,
    packages: [...new Set(["nodejs", ...input.fetchArtifact.packages, ...input.catalogUrl.packages])],
    write_files: [{ path: "/etc/systemd/system/tenantfleet-proxy.service", permissions: "0644", content: unit }],
    runcmd: [
      [
        "bash",
        "-c",
        [
          `install -d -m 0755 ${PROXY_DIR} /etc/tenantfleet`,
          `(${input.fetchArtifact.command}) > ${PROXY_DIR}/proxy.js.new && mv ${PROXY_DIR}/proxy.js.new ${PROXY_DIR}/proxy.js`,
          `umask 077 && printf 'TENANTFLEET_CATALOG_URL=%s\\n' "$(${input.catalogUrl.command})" > /etc/tenantfleet/proxy.env`,
          "systemctl daemon-reload && systemctl enable --now tenantfleet-proxy",
        ].join(" && "),
      ],
    ],
  });
}

/** The bastion: an SSH jump host and nothing else (no database client, no agent forwarding). */
export function bastionUserData(user: string, publicKey: string): string {
  return cloudConfig({
    users: [{ name: user, shell: "/bin/bash", ssh_authorized_keys: [publicKey], lock_passwd: true }],
    ssh_pwauth: false,
    disable_root: true,
    write_files: [
      {
        path: "/etc/ssh/sshd_config.d/90-tenantfleet.conf",
        content: `AllowUsers ${user}\nPasswordAuthentication no\nAllowTcpForwarding yes\nAllowAgentForwarding no\nX11Forwarding no\nPermitTunnel no\n`,
      },
    ],
    runcmd: [["systemctl", "reload", "ssh"]],
  });
}
