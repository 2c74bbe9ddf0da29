/**
 * Stable ports for local servers. A port is reserved machine-wide (a file per port under the
 * user's cache dir, created with O_EXCL so two provider processes never take the same one) and
 * kept for the server's life, so a restart after a reboot comes back on the same port.
 * A reservation whose owner dir no longer exists is stale and reclaimed.
 */
import { promises as fs } from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

export const BASE_PORTS = { postgres: 25432, mysql: 23306, redis: 26379, mongodb: 27117 } as const;
const SPAN = 1000;

export function reservationsDir(): string {
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache");
  return path.join(base, "tenantfleet", "ports");
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once("error", () => resolve(false));
    srv.listen({ port, host: "127.0.0.1", exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

async function ownerGone(file: string): Promise<boolean> {
  try {
    const { owner } = JSON.parse(await fs.readFile(file, "utf8")) as { owner: string };
    await fs.access(owner);
    return false;
  } catch (err) {
    // Unreadable reservation (half-written) or owner dir gone.
    return (err as NodeJS.ErrnoException).code === "ENOENT" || err instanceof SyntaxError;
  }
}

/** Reserve the first free port at or above `base` for the server living in `ownerDir`. */
export async function reservePort(base: number, ownerDir: string): Promise<number> {
  const dir = reservationsDir();
  await fs.mkdir(dir, { recursive: true });
  for (let port = base; port < base + SPAN; port++) {
    const file = path.join(dir, String(port));
    try {
      await fs.writeFile(file, JSON.stringify({ owner: ownerDir, at: new Date().toISOString() }), { flag: "wx" });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      if (!(await ownerGone(file))) continue;
      // Stale: take it over only if nobody else does at the same moment.
      await fs.rm(file, { force: true });
      try {
        await fs.writeFile(file, JSON.stringify({ owner: ownerDir, at: new Date().toISOString() }), { flag: "wx" });
      } catch {
        continue;
      }
    }
    if (await bindable(port)) return port;
    await fs.rm(file, { force: true }); // something outside tenantfleet listens there
  }
  throw new Error(`no free port in ${base}..${base + SPAN - 1} (reservations in ${dir})`);
}

export async function releasePort(port: number, ownerDir: string): Promise<void> {
  const file = path.join(reservationsDir(), String(port));
  try {
    const { owner } = JSON.parse(await fs.readFile(file, "utf8")) as { owner: string };
    if (owner === ownerDir) await fs.rm(file, { force: true });
  } catch {
    /* already gone */
  }
}

/** Re-assert a reservation (e.g. when restarting a server whose reservation file was lost). */
export async function claimPort(port: number, ownerDir: string): Promise<void> {
  const file = path.join(reservationsDir(), String(port));
  await fs.mkdir(reservationsDir(), { recursive: true });
  await fs.writeFile(file, JSON.stringify({ owner: ownerDir, at: new Date().toISOString() }));
}
