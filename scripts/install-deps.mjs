#!/usr/bin/env node
/**
 * npm's `prestart` / `pretest` / `presetup` hook: brings `node_modules` in line with
 * `package-lock.json` before anything that needs tsx runs, so `npm start` and `npm test` work on a
 * fresh clone. Plain Node on purpose: it runs when no dependency is installed yet.
 *
 * The check compares the lock file with npm's own record of what it installed
 * (`node_modules/.package-lock.json`): every package the lock file requires on this platform must be
 * there at the locked version. Anything missing or different → `npm ci` (exact, from the lock file).
 * Optional packages (esbuild's binaries for other platforms) are skipped: npm installs only the
 * one that matches.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** Why node_modules does not match the lock file, or undefined when it does. */
export function staleReason(projectRoot) {
  const lock = readJson(path.join(projectRoot, "package-lock.json"));
  if (!lock) return "package-lock.json is missing or unreadable";
  const installed = readJson(path.join(projectRoot, "node_modules", ".package-lock.json"));
  if (!installed) return "node_modules is missing";
  const have = installed.packages ?? {};
  for (const [where, want] of Object.entries(lock.packages ?? {})) {
    if (where === "" || want.optional || want.link) continue;
    const got = have[where];
    if (!got) return `${where} is not installed`;
    if (got.version !== want.version) return `${where} is ${got.version}, the lock file wants ${want.version}`;
  }
  return undefined;
}

function readJson(file) {
  try {
    return JSON.parse(readFileSync(file, "utf8"));
  } catch {
    return undefined;
  }
}

function main() {
  const reason = staleReason(root);
  if (!reason) return;
  console.log(`[install] ${reason}: running npm ci (the exact versions of package-lock.json)`);
  const npm = process.env.npm_execpath
    ? [process.execPath, [process.env.npm_execpath]]
    : ["npm", []];
  const r = spawnSync(npm[0], [...npm[1], "ci", "--no-audit", "--no-fund"], { cwd: root, stdio: "inherit" });
  if (r.status !== 0) {
    console.error(`[install] npm ci failed (exit ${r.status ?? r.signal}); fix the cause above and run the command again`);
    process.exit(r.status || 1);
  }
  const still = staleReason(root);
  if (still) {
    console.error(`[install] npm ci finished but ${still}`);
    process.exit(1);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
