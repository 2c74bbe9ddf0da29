/** Redis as a local server: Debian's redis-server, daemonised, run as the `redis` account when
 * we are root, with an ACL file (no default user) and AOF persistence. */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import type { LocalEngineRuntime, LocalServerLayout } from "../local-runtime";
import { chownTree, livePid, logTail, run, startDetached, stopPid, waitUntilServing } from "../../local-server/process";
import { redisSettings, renderRedisAcl, renderRedisConf } from "./settings";

const REDIS_SERVER = "/usr/bin/redis-server";
const confPath = (l: LocalServerLayout) => path.join(l.dir, "redis.conf");
const pidPath = (l: LocalServerLayout) => path.join(l.runDir, "redis.pid");
const aclPath = (l: LocalServerLayout) => path.join(l.dataDir, "users.acl");

async function writeConfig(l: LocalServerLayout): Promise<void> {
  const settings = redisSettings({
    port: l.port,
    bind: "127.0.0.1",
    dir: l.dataDir,
    pidFile: pidPath(l),
    logFile: l.logFile,
    aclFile: aclPath(l),
    daemonize: true,
    ...(l.maxmemoryMb ? { maxmemoryMb: l.maxmemoryMb } : {}),
  });
  await fs.writeFile(confPath(l), renderRedisConf(settings));
}

export const redisLocal: LocalEngineRuntime = {
  serviceUser: "redis",
  async requireBinaries() {
    try {
      await fs.access(REDIS_SERVER);
    } catch {
      throw new Error(`${REDIS_SERVER} not found: install Debian's redis-server package (npm run setup does)`);
    }
  },
  async version() {
    const { stdout } = await run(REDIS_SERVER, ["--version"]);
    return /v=(\S+)/.exec(stdout)?.[1] ?? stdout.trim();
  },
  async init(l, admin) {
    await fs.mkdir(l.dataDir, { recursive: true });
    await fs.writeFile(aclPath(l), renderRedisAcl(admin.user, admin.password), { mode: 0o600 });
    await this.start(l);
  },
  async start(l) {
    await writeConfig(l);
    await chownTree(l.dir, l.user);
    const { code } = await startDetached(REDIS_SERVER, [confPath(l)], { user: l.user, logFile: l.logFile, wait: true, cwd: l.dir });
    if (code !== 0) throw new Error(`redis-server exited with ${code}; last log lines:\n${await logTail(l.logFile)}`);
    await waitUntilServing("redis-server", pidPath(l), l.port, { timeoutMs: 60_000, logFile: l.logFile });
  },
  async stop(l) {
    await stopPid(await this.runningPid(l), 60_000);
  },
  runningPid: (l) => livePid(pidPath(l)),
  async applySettings(l, admin) {
    await writeConfig(l);
    const { default: IORedis } = await import("ioredis");
    const c = new IORedis({ host: "127.0.0.1", port: l.port, username: admin.user, password: admin.password, maxRetriesPerRequest: 0, lazyConnect: true });
    try {
      await c.connect();
      await c.call("CONFIG", "SET", "maxmemory", l.maxmemoryMb ? `${l.maxmemoryMb}mb` : "0");
    } finally {
      c.disconnect();
    }
  },
};
