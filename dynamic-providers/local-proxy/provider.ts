/**
 * LocalProxy: one real proxy process (`proxy/main.ts`) on this machine, the local platform's
 * "proxy host". Detached like a LocalServer, so it outlives `pulumi up`; stable ports; a dead
 * process shows as an update and is restarted.
 */
import type * as pulumi from "@pulumi/pulumi";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { logTail, pidAlive, portOpen, readPid, startDetached, stopPid } from "../local-server/process";
import { claimPort, releasePort, reservePort } from "../local-server/ports";
import { projectRoot, stateRoot } from "../local-server/state";
import { isUnknown } from "../preview";
import type { LocalProxyInputs, LocalProxyOutputs } from "./types";

export const PROXY_BASE_PORT = 16432;
export const PROXY_ADMIN_BASE_PORT = 19187;
export const PROXY_MYSQL_BASE_PORT = 13306;
export const PROXY_REDIS_BASE_PORT = 16379;

/** The protocols a proxy serves besides PostgreSQL's, each on a port of its own, reserved per marker file (like a server's). */
const EXTRA = {
  mysql: { base: PROXY_MYSQL_BASE_PORT, port: "mysqlPort", flag: "--mysql-listen" },
  redis: { base: PROXY_REDIS_BASE_PORT, port: "redisPort", flag: "--redis-listen" },
} as const;
type Extra = keyof typeof EXTRA;
const EXTRAS = Object.keys(EXTRA) as Extra[];
const marker = (dir: string, e: Extra) => path.join(dir, `${e}.port`);

async function reserveExtraPort(dir: string, e: Extra): Promise<number> {
  await fs.writeFile(marker(dir, e), ""); // a reservation's owner must exist, or it counts as stale
  return reservePort(EXTRA[e].base, marker(dir, e));
}

const proxyDir = (stack: string, proxyId: string) => path.join(stateRoot(), stack, "proxies", proxyId);

async function running(o: Pick<LocalProxyOutputs, "dir" | "port">): Promise<boolean> {
  const pid = await readPid(path.join(o.dir, "proxy.pid"));
  if (!pidAlive(pid)) return false;
  const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  return cmdline.includes("proxy/main.ts") && (await portOpen(o.port));
}

async function start(o: LocalProxyOutputs): Promise<void> {
  const root = projectRoot();
  const logFile = path.join(o.dir, "proxy.log");
  const before = (await fs.stat(logFile).catch(() => undefined))?.size ?? 0;
  // The catalog URL carries a password: it goes through the environment, never argv.
  const { pid } = await startDetached(
    process.execPath,
    ["--import", "tsx", path.join(root, "proxy", "main.ts"), "--id", o.proxyId, "--listen", `${o.host}:${o.port}`, "--admin", `${o.host}:${o.adminPort}`, ...EXTRAS.flatMap((e) => (o[EXTRA[e].port] ? [EXTRA[e].flag, `${o.host}:${o[EXTRA[e].port]}`] : []))],
    { logFile, wait: false, cwd: root, env: { ...process.env, TENANTFLEET_CATALOG_URL: o.catalogUrl } },
  );
  await fs.writeFile(path.join(o.dir, "proxy.pid"), `${pid}\n`);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const text = (await fs.readFile(logFile, "utf8").catch(() => "")).slice(before);
    if (text.includes('"msg":"proxy ready"')) return;
    if (!pidAlive(pid) || Date.now() > deadline) {
      throw new Error(`proxy ${o.proxyId} did not become ready${pidAlive(pid) ? " within 60 s" : " (it exited)"}; last log lines:\n${await logTail(logFile)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function stop(o: Pick<LocalProxyOutputs, "dir">): Promise<void> {
  // SIGTERM: sessions close at their next idle point (the proxy's --shutdown-grace).
  await stopPid(await readPid(path.join(o.dir, "proxy.pid")), 45_000);
}

export const provider: pulumi.dynamic.ResourceProvider = {
  async check(_olds, news: Record<string, unknown>) {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    if (typeof news.proxyId !== "string" || !/^[a-z0-9][a-z0-9-]{0,62}$/.test(news.proxyId)) failures.push({ property: "proxyId", reason: `proxyId must be lower-case letters, digits and dashes, got ${JSON.stringify(news.proxyId)}` });
    if (typeof news.stack !== "string" || !/^[A-Za-z0-9._-]+$/.test(news.stack)) failures.push({ property: "stack", reason: "stack must be a Pulumi stack name" });
    if (!isUnknown(news.catalogUrl) && (typeof news.catalogUrl !== "string" || !news.catalogUrl.startsWith("postgres"))) failures.push({ property: "catalogUrl", reason: "catalogUrl must be a postgres:// URL of the control catalog" });
    return failures.length ? { failures } : { inputs: news };
  },

  async diff(_id, olds: LocalProxyOutputs, news: LocalProxyInputs) {
    const replaces = (["proxyId", "stack"] as const).filter((k) => olds[k] !== news[k]);
    const changes = replaces.length > 0 || olds.catalogUrl !== news.catalogUrl || EXTRAS.some((e) => !!news[e] !== !!olds[EXTRA[e].port]) || !(await running(olds));
    return { changes, replaces };
  },

  async create(inputs: LocalProxyInputs) {
    const dir = proxyDir(inputs.stack, inputs.proxyId);
    await fs.mkdir(dir, { recursive: true });
    const port = await reservePort(PROXY_BASE_PORT, dir);
    // A reservation's owner must exist, or a concurrent reservation counts it stale and takes the
    // port (two stacks' proxies on one admin port): the log file first, then its port.
    await fs.writeFile(path.join(dir, "proxy.log"), "");
    const adminPort = await reservePort(PROXY_ADMIN_BASE_PORT, path.join(dir, "proxy.log"));
    const outs: LocalProxyOutputs = { ...inputs, host: "127.0.0.1", port, adminPort, dir, state: "running" };
    try {
      for (const e of EXTRAS) if (inputs[e]) outs[EXTRA[e].port] = await reserveExtraPort(dir, e);
      await start(outs);
    } catch (e) {
      await stop(outs).catch(() => undefined);
      await releasePort(port, dir);
      await releasePort(adminPort, path.join(dir, "proxy.log"));
      for (const x of EXTRAS) if (outs[EXTRA[x].port]) await releasePort(outs[EXTRA[x].port]!, marker(dir, x));
      await fs.rm(dir, { recursive: true, force: true });
      throw e;
    }
    return { id: `${inputs.stack}/${inputs.proxyId}`, outs };
  },

  async read(id, props: LocalProxyOutputs) {
    return { id, props: { ...props, state: (await running(props)) ? "running" : "stopped" } };
  },

  async update(_id, olds: LocalProxyOutputs, news: LocalProxyInputs) {
    const outs: LocalProxyOutputs = { ...olds, ...news, state: "running" };
    let listenersChanged = false;
    for (const e of EXTRAS) {
      const key = EXTRA[e].port;
      if (!!news[e] === !!olds[key]) continue;
      listenersChanged = true;
      if (news[e]) outs[key] = await reserveExtraPort(olds.dir, e);
      else {
        await releasePort(olds[key]!, marker(olds.dir, e));
        delete outs[key];
      }
    }
    if (olds.catalogUrl !== news.catalogUrl || listenersChanged || !(await running(olds))) {
      await stop(olds);
      await fs.mkdir(outs.dir, { recursive: true });
      await claimPort(outs.port, outs.dir);
      for (const e of EXTRAS) if (outs[EXTRA[e].port]) await claimPort(outs[EXTRA[e].port]!, marker(outs.dir, e));
      await start(outs);
    }
    return { outs };
  },

  async delete(_id, props: LocalProxyOutputs) {
    await stop(props);
    await releasePort(props.port, props.dir);
    await releasePort(props.adminPort, path.join(props.dir, "proxy.log"));
    for (const e of EXTRAS) if (props[EXTRA[e].port]) await releasePort(props[EXTRA[e].port]!, marker(props.dir, e));
    await fs.rm(props.dir, { recursive: true, force: true });
  },
};
