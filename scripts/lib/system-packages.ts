/**
 * The Debian packages the local platform runs its servers from, and how to tell they are there.
 */
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

export interface SystemPackage {
  /** Debian package to install when the probe fails. */
  debian: string;
  /** What it provides, for progress lines. */
  what: string;
  /** Binaries, any of which proves the package is there (absolute or on PATH); or, for a
   * package that installs no program (a library), a file of it (`file:` + absolute path). */
  probes: string[];
}

export const SYSTEM_PACKAGES: SystemPackage[] = [
  { debian: "postgresql", what: "PostgreSQL server (initdb, pg_ctl)", probes: ["/usr/lib/postgresql/*/bin/initdb"] },
  { debian: "postgresql-client", what: "psql, pg_dump, pg_restore", probes: ["psql"] },
  { debian: "mariadb-server", what: "MariaDB server", probes: ["mariadbd", "/usr/sbin/mariadbd"] },
  { debian: "mariadb-client", what: "mariadb client, mariadb-dump", probes: ["mariadb", "/usr/bin/mariadb"] },
  { debian: "redis-server", what: "Redis server", probes: ["redis-server", "/usr/bin/redis-server"] },
  { debian: "redis-tools", what: "redis-cli", probes: ["redis-cli", "/usr/bin/redis-cli"] },
  { debian: "pgbouncer", what: "PgBouncer (proxy benchmark baseline)", probes: ["/usr/sbin/pgbouncer"] },
  { debian: "haproxy", what: "HAProxy (the MySQL proxy benchmark's TCP baseline)", probes: ["/usr/sbin/haproxy"] },
  { debian: "nutcracker", what: "twemproxy (the Redis proxy benchmark's baseline)", probes: ["nutcracker", "/usr/sbin/nutcracker", "/usr/bin/nutcracker"] },
  { debian: "sysbench", what: "sysbench (the MySQL proxy benchmark's load)", probes: ["sysbench", "/usr/bin/sysbench"] },
  // The SSH tunnel test starts its own sshd (no system service needed); ssh-keygen makes its keys.
  { debian: "openssh-server", what: "sshd (SSH bastion stand-in for the tunnel test)", probes: ["/usr/sbin/sshd"] },
  { debian: "openssh-client", what: "ssh-keygen", probes: ["ssh-keygen", "/usr/bin/ssh-keygen"] },
  // Reference clients of the transaction-pooling test: drivers that prepare named statements.
  { debian: "default-jdk-headless", what: "Java with its compiler (the pooling test's JDBC client runs from source)", probes: ["javac", "/usr/bin/javac"] },
  { debian: "libpostgresql-jdbc-java", what: "pgjdbc (the pooling test's JDBC client)", probes: ["file:/usr/share/java/postgresql.jar"] },
  { debian: "python3-asyncpg", what: "asyncpg (the pooling test's Python client)", probes: ["file:/usr/lib/python3/dist-packages/asyncpg/__init__.py"] },
];

async function probe(p: string): Promise<boolean> {
  if (p.startsWith("file:")) {
    try {
      await fs.access(p.slice("file:".length), fs.constants.R_OK);
      return true;
    } catch {
      return false;
    }
  }
  if (p.includes("*")) {
    const [dir, rest] = p.split("/*/");
    try {
      for (const v of await fs.readdir(dir!)) {
        if (await probe(`${dir}/${v}/${rest}`)) return true;
      }
    } catch {
      /* no such dir */
    }
    return false;
  }
  if (p.startsWith("/")) {
    try {
      await fs.access(p, fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  }
  try {
    await execFileP("sh", ["-c", 'command -v "$1"', "sh", p]);
    return true;
  } catch {
    return false;
  }
}

export async function missingPackages(pkgs = SYSTEM_PACKAGES): Promise<SystemPackage[]> {
  const missing: SystemPackage[] = [];
  for (const pkg of pkgs) {
    let found = false;
    for (const p of pkg.probes) {
      if (await probe(p)) {
        found = true;
        break;
      }
    }
    if (!found) missing.push(pkg);
  }
  return missing;
}
