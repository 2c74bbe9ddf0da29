/**
 * tenantfleet-proxy: `node --import tsx proxy/main.ts --id proxy-1 --listen 127.0.0.1:6432`.
 * Prints one JSON log line per event; the line with msg "proxy ready" carries the bound ports.
 */
import { ConfigError, parseProxyArgs, USAGE } from "./config";
import { createLogger } from "./log";
import { Proxy } from "./proxy";

async function main(): Promise<void> {
  let opts;
  try {
    opts = parseProxyArgs(process.argv.slice(2), process.env);
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n\n${USAGE}\n`);
    process.exit(2);
  }
  const log = createLogger(opts.proxyId);
  const proxy = new Proxy({ ...opts, log });
  try {
    await proxy.start();
  } catch (e) {
    log.fatal({ err: (e as Error).message }, "proxy failed to start");
    process.exit(1);
  }
  log.info({ port: proxy.port, ...(proxy.mysqlPort ? { mysqlPort: proxy.mysqlPort } : {}), ...(proxy.redisPort ? { redisPort: proxy.redisPort } : {}), adminPort: proxy.adminPort, ordinal: proxy.follower.ordinal, routes: proxy.follower.routes.size }, "proxy ready");
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      log.warn({ signal }, "second signal: stopping now");
      process.exit(1);
    }
    stopping = true;
    log.info({ signal, graceMs: opts.shutdownGraceMs }, "stopping: no new connections; sessions close at their next idle point");
    proxy.stop().finally(() => process.exit(0));
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

void main().catch((e) => {
  if (e instanceof ConfigError) process.stderr.write(`${e.message}\n`);
  else process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});
