/**
 * Where local servers live: `<state root>/<stack>/servers/<dirName>/`, with a `server.json` record
 * (no secrets) that lets `npm run servers:restart` bring every server back after a reboot without
 * asking Pulumi.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import type { LocalServerOutputs } from "./types";

/** The project root: the nearest folder above the working directory holding Pulumi.yaml. */
export function projectRoot(from = process.cwd()): string {
  let dir = path.resolve(from);
  while (!existsSync(path.join(dir, "Pulumi.yaml"))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no Pulumi.yaml above ${from}: run from the tenantfleet project`);
    dir = up;
  }
  return dir;
}

/**
 * Where server data, proxy logs and backups go: TENANTFLEET_STATE_DIR when set, else the folder this
 * project chose the first time (see chooseStateRoot). Stable for the project's life: servers record
 * their data dirs under it.
 */
export function stateRoot(): string {
  if (process.env.TENANTFLEET_STATE_DIR) return path.resolve(process.env.TENANTFLEET_STATE_DIR);
  return chooseStateRoot(projectRoot()).root;
}

/** Where a project that the server accounts cannot reach keeps its state, when run as root. */
export const SHARED_STATE_BASE = "/var/lib/tenantfleet";

export interface StateRootChoice {
  root: string;
  /** Why the state is not in `<project>/.tenantfleet` (only when it was redirected). */
  redirected?: string;
  /** True when this call made the choice (and recorded it); false when it read an earlier one. */
  chosenNow: boolean;
}

/**
 * `<project>/.tenantfleet`, unless we run as root and the servers' accounts (postgres, mysql, redis:
 * the servers refuse to run as root) cannot traverse the project's folders — a clone under /root or
 * in a `mktemp -d` folder. Then the state goes to `<base>/<folder>-<hash of the project path>`,
 * world-traversable. The choice is recorded in `<project>/.tenantfleet/state-root` and read from
 * there afterwards, so making the folders traversable later does not move a fleet's data away from
 * its servers.
 */
export function chooseStateRoot(
  project: string,
  opts: { asRoot?: boolean; base?: string } = {},
): StateRootChoice {
  const local = path.join(project, ".tenantfleet");
  const pointer = path.join(local, "state-root");
  const recorded = readPointer(pointer);
  if (recorded) return { root: recorded, chosenNow: false, ...(recorded !== local && { redirected: `recorded in ${pointer}` }) };
  const asRoot = opts.asRoot ?? process.getuid?.() === 0;
  const blocked = asRoot ? untraversableFolder(project) : undefined;
  if (!blocked) return { root: local, chosenNow: false };
  const hash = createHash("sha256").update(project).digest("hex").slice(0, 8);
  const root = path.join(opts.base ?? SHARED_STATE_BASE, `${path.basename(project)}-${hash}`);
  const base = opts.base ?? SHARED_STATE_BASE;
  mkdirSync(root, { recursive: true, mode: 0o755 });
  for (const dir of [base, root]) chmodSync(dir, statSync(dir).mode | 0o755);
  mkdirSync(local, { recursive: true });
  writeFileSync(pointer, root + "\n");
  return {
    root,
    chosenNow: true,
    redirected: `${blocked} is not traversable by the servers' accounts (postgres, mysql, redis)`,
  };
}

function readPointer(file: string): string | undefined {
  try {
    const v = readFileSync(file, "utf8").trim();
    return v ? path.resolve(v) : undefined;
  } catch {
    return undefined;
  }
}

function isTraversable(dir: string): boolean {
  return (statSync(dir).mode & 0o001) !== 0;
}

/** The first folder from `/` down to `dir` that other accounts cannot enter, if any. */
function untraversableFolder(dir: string): string | undefined {
  const chain: string[] = [];
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    chain.unshift(d);
    if (d === path.dirname(d)) break;
  }
  return chain.find((d) => !isTraversable(d));
}

export function serverDir(root: string, stack: string, dirName: string): string {
  return path.join(root, stack, "servers", dirName);
}

export type ServerRecord = Omit<LocalServerOutputs, "adminPassword" | "state" | "dir">;

export async function writeServerRecord(dir: string, o: LocalServerOutputs): Promise<void> {
  const { adminPassword: _secret, state: _state, dir: _dir, ...record } = o;
  await fs.writeFile(path.join(dir, "server.json"), JSON.stringify(record satisfies ServerRecord, null, 2) + "\n");
}

/** Every server recorded under `root` (all stacks, or one). */
export async function listServerRecords(root: string, stack?: string): Promise<ServerRecord[]> {
  const out: ServerRecord[] = [];
  let stacks: string[];
  try {
    stacks = stack ? [stack] : await fs.readdir(root);
  } catch {
    return out;
  }
  for (const s of stacks) {
    let dirs: string[] = [];
    try {
      dirs = await fs.readdir(path.join(root, s, "servers"));
    } catch {
      continue;
    }
    for (const d of dirs) {
      try {
        out.push(JSON.parse(await fs.readFile(path.join(root, s, "servers", d, "server.json"), "utf8")) as ServerRecord);
      } catch {
        /* half-created or foreign folder */
      }
    }
  }
  return out;
}
