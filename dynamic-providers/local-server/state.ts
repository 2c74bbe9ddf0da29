/**
 * Where local servers live: `<state root>/<stack>/servers/<dirName>/`, with a `server.json` record
 * (no secrets) that lets `npm run servers:restart` bring every server back after a reboot without
 * asking Pulumi.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { existsSync } from "node:fs";
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

/** TENANTFLEET_STATE_DIR, else `.tenantfleet/` in the project (gitignored). */
export function stateRoot(): string {
  return process.env.TENANTFLEET_STATE_DIR
    ? path.resolve(process.env.TENANTFLEET_STATE_DIR)
    : path.join(projectRoot(), ".tenantfleet");
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
