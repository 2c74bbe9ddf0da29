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

export function serverUserData(input: ConfigureInput, adminSecret: SecretFetch): string {
  return cloudConfig({
    package_update: true,
    package_upgrade: false,
    packages: [...new Set([...VM_PACKAGES[input.engine], ...adminSecret.packages])],
    write_files: [{ path: CONFIGURE_PATH, permissions: "0700", owner: "root:root", content: configureScript(input) }],
    runcmd: [["bash", "-c", `${fetchInto(adminSecret, ADMIN_PASSWORD_FILE)} && ${CONFIGURE_PATH}`]],
  });
}

export const PROXY_PORT = 6432;
/** The proxies' MySQL-protocol port (ProxySQL's), on fleets with MariaDB/MySQL tenant databases. */
export const PROXY_MYSQL_PORT = 6033;
export const PROXY_ADMIN_PORT = 9187;
export const PROXY_DIR = "/opt/tenantfleet";

export interface ProxyUserDataInput {
  proxyId: string;
  /** Shell command that writes the proxy bundle (proxy-artifact.ts) to stdout. */
  fetchArtifact: SecretFetch;
  /** Prints the catalog URL. */
  catalogUrl: SecretFetch;
  /** Also listen for the MySQL protocol (PROXY_MYSQL_PORT). Off, the unit is what it was before MySQL support. */
  mysql?: boolean;
}

/** A proxy host: Node.js from the distribution, the bundled proxy, a systemd unit that restarts it
 * and gives it `shutdown-grace` to drain on stop. The catalog URL reaches it through an
 * environment file readable by root only, never argv. */
export function proxyUserData(input: ProxyUserDataInput): string {
  const unit = [
    "[Unit]",
    "Description=tenantfleet proxy",
    "After=network-online.target",
    "Wants=network-online.target",
    "",
    "[Service]",
    "EnvironmentFile=/etc/tenantfleet/proxy.env",
    `ExecStart=/usr/bin/node ${PROXY_DIR}/proxy.js --id ${input.proxyId} --listen 0.0.0.0:${PROXY_PORT}${input.mysql ? ` --mysql-listen 0.0.0.0:${PROXY_MYSQL_PORT}` : ""} --admin 0.0.0.0:${PROXY_ADMIN_PORT}`,
    "DynamicUser=yes",
    "Restart=always",
    "RestartSec=1",
    "KillSignal=SIGTERM",
    "TimeoutStopSec=45",
    "LimitNOFILE=65536",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
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
