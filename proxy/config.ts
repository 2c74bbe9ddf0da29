/**
 * The proxy's command line and environment. Secrets (the catalog URL carries a password) come
 * from the environment, not argv, which `ps` shows to every user.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { ProxyOptions } from "./proxy";

export const USAGE = `usage: tenantfleet-proxy --id <proxy-id> [--listen host:port] [--mysql-listen host:port] [--redis-listen host:port [--redis-multiplex on|off]]
                         [--admin host:port]
                         [--advertise host:port] [--tls-cert file --tls-key file]
                         [--login-timeout seconds (default 60)] [--shutdown-grace seconds (default 30)]
                         [--pool-queue-timeout seconds (default 30)] [--pool-idle-timeout seconds (default 600)]
environment:
  TENANTFLEET_CATALOG_URL   postgres://user:password@host:port/db of the control catalog (required)
  TENANTFLEET_LOG_LEVEL     trace | debug | info (default) | warn | error`;

export class ConfigError extends Error {
  override name = "ConfigError";
}

function hostPort(flag: string, value: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !m[1] || port > 65535) throw new ConfigError(`--${flag} must be host:port (port 0 picks a free one), got "${value}"`);
  // "[::1]:6432": the brackets only delimit an IPv6 address; listen() and connect() want it bare.
  return { host: m[1].replace(/^\[(.+)\]$/, "$1"), port };
}

export function parseProxyArgs(argv: string[], env: NodeJS.ProcessEnv): Omit<ProxyOptions, "log"> {
  const { values } = parseArgs({
    args: argv,
    options: {
      id: { type: "string" },
      listen: { type: "string", default: "127.0.0.1:6432" },
      "mysql-listen": { type: "string" },
      "redis-listen": { type: "string" },
      "redis-multiplex": { type: "string", default: "on" },
      admin: { type: "string", default: "127.0.0.1:9187" },
      advertise: { type: "string" },
      "tls-cert": { type: "string" },
      "tls-key": { type: "string" },
      "login-timeout": { type: "string", default: "60" },
      "shutdown-grace": { type: "string", default: "30" },
      "pool-queue-timeout": { type: "string", default: "30" },
      "pool-idle-timeout": { type: "string", default: "600" },
    },
    strict: true,
  });
  const problems: string[] = [];
  if (!values.id || !/^[a-z0-9][a-z0-9-]{0,62}$/.test(values.id)) problems.push("--id is required: lower-case letters, digits and dashes (e.g. proxy-1)");
  const url = env.TENANTFLEET_CATALOG_URL;
  if (!url) problems.push("TENANTFLEET_CATALOG_URL is not set: the proxy needs the control catalog");
  if (!!values["tls-cert"] !== !!values["tls-key"]) problems.push("--tls-cert and --tls-key go together");
  const loginTimeout = Number(values["login-timeout"]);
  if (!(loginTimeout > 0 && loginTimeout <= 86_400)) problems.push(`--login-timeout must be a number of seconds between 0 and 86400, got "${values["login-timeout"]}"`);
  const shutdownGrace = Number(values["shutdown-grace"]);
  if (!(shutdownGrace >= 0 && shutdownGrace <= 86_400) || values["shutdown-grace"] === "") problems.push(`--shutdown-grace must be a number of seconds from 0 to 86400, got "${values["shutdown-grace"]}"`);
  const seconds = (flag: string, min: number) => {
    const v = Number(values[flag as "pool-queue-timeout"]);
    if (!(v >= min && v <= 86_400) || values[flag as "pool-queue-timeout"] === "") problems.push(`--${flag} must be a number of seconds from ${min} to 86400, got "${values[flag as "pool-queue-timeout"]}"`);
    return v * 1000;
  };
  const poolQueueTimeoutMs = seconds("pool-queue-timeout", 0.01);
  const poolIdleTimeoutMs = seconds("pool-idle-timeout", 1);
  if (!["on", "off"].includes(values["redis-multiplex"]!)) problems.push(`--redis-multiplex must be on or off, got "${values["redis-multiplex"]}"`);
  if (problems.length) throw new ConfigError(problems.join("\n"));
  const opts: Omit<ProxyOptions, "log"> = {
    proxyId: values.id!,
    catalog: { connectionString: url },
    listen: hostPort("listen", values.listen!),
    admin: hostPort("admin", values.admin!),
    loginTimeoutMs: loginTimeout * 1000,
    shutdownGraceMs: shutdownGrace * 1000,
    poolQueueTimeoutMs,
    poolIdleTimeoutMs,
  };
  if (values.advertise) opts.advertise = hostPort("advertise", values.advertise);
  if (values["mysql-listen"]) opts.mysqlListen = hostPort("mysql-listen", values["mysql-listen"]);
  if (values["redis-listen"]) opts.redisListen = hostPort("redis-listen", values["redis-listen"]);
  if (values["redis-multiplex"] === "off") opts.redisMultiplex = false;
  if (values["tls-cert"]) {
    try {
      opts.tls = { cert: readFileSync(values["tls-cert"]), key: readFileSync(values["tls-key"]!) };
    } catch (e) {
      throw new ConfigError(`cannot read the TLS certificate or key: ${(e as Error).message}`);
    }
  }
  return opts;
}
