/**
 * Stable ports for local servers. A port is reserved machine-wide (a file per port under the
 * user's cache dir) and kept for the server's life, so a restart after a reboot comes back on the
 * same port. A reservation whose owner dir no longer exists is stale and reclaimed.
 *
 * Every change of a reservation file is atomic, so two provider processes never own one port:
 * - a new reservation is written to a private temporary file and linked into place (`link` fails
 *   when the name exists): nobody ever reads a half-written reservation;
 * - a stale one is taken over under a per-port lock (`mkdir`, which only one process wins), and
 *   only after re-reading it under that lock, then replaced by `rename`. A process that judged the
 *   same file stale a moment earlier finds the winner's fresh reservation when its turn comes.
 * A process killed inside a takeover (a few milliseconds) leaves its lock: that port is skipped
 * until the lock is removed by hand (`<port>.takeover` in the reservations dir).
 */
import { randomBytes } from "node:crypto";
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

type Holder = { kind: "free" } | { kind: "stale" } | { kind: "owned"; owner: string };

/** Who holds the reservation file: nobody, a gone owner (or an unreadable file), or a live owner. */
async function holderOf(file: string): Promise<Holder> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { kind: "free" };
    throw err;
  }
  let owner: string;
  try {
    owner = (JSON.parse(text) as { owner: string }).owner;
  } catch {
    return { kind: "stale" }; // never half-written (see above): a corrupt file
  }
  try {
    await fs.access(owner);
    return { kind: "owned", owner };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { kind: "stale" };
    throw err;
  }
}

/** A complete reservation for `ownerDir` in a temporary file of this process's own. */
async function draft(dir: string, ownerDir: string): Promise<string> {
  const tmp = path.join(dir, `.draft-${process.pid}-${randomBytes(6).toString("hex")}`);
  await fs.writeFile(tmp, JSON.stringify({ owner: ownerDir, at: new Date().toISOString() }), { flag: "wx" });
  return tmp;
}

/** Create the reservation if nobody holds it. */
async function create(file: string, ownerDir: string): Promise<boolean> {
  const tmp = await draft(path.dirname(file), ownerDir);
  try {
    await fs.link(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  } finally {
    await fs.rm(tmp, { force: true });
  }
}

/** Replace a stale reservation; false when another process got there first (or holds the lock). */
async function takeOver(file: string, ownerDir: string): Promise<boolean> {
  const lock = `${file}.takeover`;
  try {
    await fs.mkdir(lock);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  }
  try {
    const h = await holderOf(file);
    if (h.kind === "owned") return false;
    if (h.kind === "free") return create(file, ownerDir);
    await fs.rename(await draft(path.dirname(file), ownerDir), file);
    return true;
  } finally {
    await fs.rmdir(lock).catch(() => undefined);
  }
}

/** Make `ownerDir` the holder of `port`'s reservation unless a live owner holds it. */
async function acquire(port: number, ownerDir: string): Promise<Holder> {
  const dir = reservationsDir();
  await fs.mkdir(dir, { recursive: true });
  const file = path.join(dir, String(port));
  for (let attempt = 0; attempt < 3; attempt++) {
    if (await create(file, ownerDir)) return { kind: "owned", owner: ownerDir };
    const h = await holderOf(file);
    if (h.kind === "owned") return h;
    if (h.kind === "stale" && (await takeOver(file, ownerDir))) return { kind: "owned", owner: ownerDir };
    // free again (released meanwhile), or another process is taking it over: look again
  }
  return holderOf(file);
}

/** Reserve the first free port at or above `base` for the server living in `ownerDir`. */
export async function reservePort(base: number, ownerDir: string): Promise<number> {
  for (let port = base; port < base + SPAN; port++) {
    const h = await acquire(port, ownerDir);
    if (h.kind !== "owned" || h.owner !== ownerDir) continue;
    if (await bindable(port)) return port;
    await releasePort(port, ownerDir); // something outside tenantfleet listens there
  }
  throw new Error(`no free port in ${base}..${base + SPAN - 1} (reservations in ${reservationsDir()})`);
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

/**
 * Re-assert a reservation when restarting a server on the port it already has (its reservation
 * file may have been lost or gone stale). Refuses when a live server elsewhere holds the port.
 */
export async function claimPort(port: number, ownerDir: string): Promise<void> {
  const h = await acquire(port, ownerDir);
  if (h.kind === "owned" && h.owner === ownerDir) return;
  const by = h.kind === "owned" ? `the server in ${h.owner}` : "another process taking it over";
  throw new Error(`port ${port} is reserved by ${by} (${path.join(reservationsDir(), String(port))}): two servers cannot share it. Stop that one, or remove this server and create it again to get a new port`);
}
