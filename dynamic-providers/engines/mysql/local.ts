/** MariaDB as a local server: mariadb-install-db + mariadbd from Debian's mariadb-server, run as
 * the `mysql` account when we are root. The `mysql` engine name covers MySQL and MariaDB. */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import type { LocalEngineRuntime, LocalServerLayout } from "../local-runtime";
import { chownTree, livePid, run, startDetached, stopPid, waitUntilServing } from "../../local-server/process";
import { mysqlSettings, renderMyCnf } from "./settings";

const MARIADBD = ["/usr/sbin/mariadbd", "/usr/sbin/mysqld"];
const INSTALL_DB = ["/usr/bin/mariadb-install-db", "/usr/bin/mysql_install_db"];

async function first(paths: string[], what: string): Promise<string> {
  for (const p of paths) {
    try {
      await fs.access(p);
      return p;
    } catch {
      /* next */
    }
  }
  throw new Error(`${what} not found (${paths.join(", ")}): install Debian's mariadb-server package (npm run setup does)`);
}

const cnfPath = (l: LocalServerLayout) => path.join(l.dir, "my.cnf");
const pidPath = (l: LocalServerLayout) => path.join(l.runDir, "mariadbd.pid");
/** Unix sockets must fit in 107 bytes, so they live in /tmp keyed by the (unique) port. */
export const socketPath = (port: number) => `/tmp/tenantfleet-mysql-${port}.sock`;

async function writeConfig(l: LocalServerLayout): Promise<void> {
  const settings = mysqlSettings({
    port: l.port,
    bindAddress: "127.0.0.1",
    serverId: l.serverId,
    dataDir: l.dataDir,
    socket: socketPath(l.port),
    pidFile: pidPath(l),
    logError: l.logFile,
    user: l.user,
  });
  // [mysqld] is read by mariadbd and by mariadb-install-db alike.
  await fs.writeFile(cnfPath(l), renderMyCnf(settings).replace("[mariadbd]", "[mysqld]"));
}

export const mysqlLocal: LocalEngineRuntime = {
  serviceUser: "mysql",
  async requireBinaries() {
    await first(MARIADBD, "mariadbd");
    await first(INSTALL_DB, "mariadb-install-db");
  },
  async version() {
    const { stdout } = await run(await first(MARIADBD, "mariadbd"), ["--version"]);
    return /Ver\s+(\S+)/.exec(stdout)?.[1]?.replace(/-.*$/, "") ?? stdout.trim();
  },
  async init(l, admin) {
    await fs.mkdir(l.dataDir, { recursive: true });
    await writeConfig(l);
    await chownTree(l.dir, l.user);
    const args = [`--defaults-file=${cnfPath(l)}`, "--auth-root-authentication-method=normal", "--skip-test-db"];
    if (l.user) args.push(`--user=${l.user}`);
    await run(await first(INSTALL_DB, "mariadb-install-db"), args, { timeoutMs: 180_000 });
    await this.start(l);
    // root@localhost has no password yet and only a socket reaches it: create the admin account
    // (TCP from 127.0.0.1, skip-name-resolve) and give root the same password.
    const mysql = await import("mysql2/promise");
    const conn = await mysql.createConnection({ socketPath: socketPath(l.port), user: "root", password: "" });
    try {
      for (const host of ["127.0.0.1", "localhost"]) {
        await conn.query("CREATE USER ?@? IDENTIFIED BY ?", [admin.user, host, admin.password]);
        await conn.query("GRANT ALL PRIVILEGES ON *.* TO ?@? WITH GRANT OPTION", [admin.user, host]);
      }
      await conn.query("ALTER USER 'root'@'localhost' IDENTIFIED BY ?", [admin.password]);
      await conn.query("FLUSH PRIVILEGES");
    } finally {
      await conn.end();
    }
  },
  async start(l) {
    await writeConfig(l);
    await chownTree(l.runDir, l.user);
    const { code } = await startDetached(await first(MARIADBD, "mariadbd"), [`--defaults-file=${cnfPath(l)}`], {
      logFile: l.logFile,
      wait: false,
      daemon: true,
      cwd: l.dir,
    });
    if (code !== 0) throw new Error(`could not start mariadbd (setsid exited with ${code}); see ${l.logFile}`);
    await waitUntilServing("mariadbd", pidPath(l), l.port, { timeoutMs: 120_000, logFile: l.logFile });
  },
  async stop(l) {
    await stopPid(await this.runningPid(l), 120_000);
  },
  runningPid: (l) => livePid(pidPath(l)),
};
