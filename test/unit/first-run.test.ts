/**
 * The first run on a fresh clone: npm's pre-hook installs the packages when node_modules does not
 * match the lock file, and a root user's clone that the servers' accounts cannot reach keeps its
 * state in a folder they can.
 */
import { afterEach, describe, expect, it } from "vitest";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
// @ts-expect-error: a plain-Node .mjs script (it runs before any dependency exists), no types
import { staleReason } from "../../scripts/install-deps.mjs";
import { chooseStateRoot } from "../../dynamic-providers/local-server/state";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const scratch = (mode = 0o755) => {
  const d = mkdtempSync(path.join(os.tmpdir(), "tf-first-run-"));
  chmodSync(d, mode);
  dirs.push(d);
  return d;
};

describe("install-deps: is node_modules what package-lock.json says?", () => {
  const lock = {
    lockfileVersion: 3,
    packages: {
      "": { name: "tenantfleet" },
      "node_modules/pg": { version: "8.23.1" },
      "node_modules/@esbuild/darwin-arm64": { version: "0.28.2", optional: true },
    },
  };
  const project = (installed: object | undefined) => {
    const d = scratch();
    writeFileSync(path.join(d, "package-lock.json"), JSON.stringify(lock));
    if (installed) {
      mkdirSync(path.join(d, "node_modules"));
      writeFileSync(path.join(d, "node_modules", ".package-lock.json"), JSON.stringify({ packages: installed }));
    }
    return d;
  };

  it("a fresh clone (no node_modules) needs an install", () => {
    expect(staleReason(project(undefined))).toBe("node_modules is missing");
  });
  it("a package missing or at another version needs an install; another platform's optional binary does not", () => {
    expect(staleReason(project({}))).toBe("node_modules/pg is not installed");
    expect(staleReason(project({ "node_modules/pg": { version: "8.20.0" } }))).toBe("node_modules/pg is 8.20.0, the lock file wants 8.23.1");
    expect(staleReason(project({ "node_modules/pg": { version: "8.23.1" } }))).toBeUndefined();
  });
  it("this checkout's own node_modules matches its lock file (the hook is a no-op here)", () => {
    expect(staleReason(path.resolve(__dirname, "../.."))).toBeUndefined();
  });
});

describe("the state folder of a clone run as root", () => {
  it("stays in <project>/.tenantfleet when the servers' accounts can reach the project", () => {
    const project = path.join(scratch(), "clone");
    mkdirSync(project);
    const c = chooseStateRoot(project, { asRoot: true, base: scratch() });
    expect(c).toEqual({ root: path.join(project, ".tenantfleet"), chosenNow: false });
  });

  it("moves to a reachable folder, says why, records the choice and keeps it after the project becomes reachable", () => {
    const parent = scratch(0o700); // like /root or a `mktemp -d` folder
    const project = path.join(parent, "clone");
    mkdirSync(project);
    const base = path.join(scratch(), "shared");
    const first = chooseStateRoot(project, { asRoot: true, base });
    expect(path.dirname(first.root)).toBe(base);
    expect(path.basename(first.root)).toMatch(/^clone-[0-9a-f]{8}$/);
    expect(first.chosenNow).toBe(true);
    expect(first.redirected).toBe(`${parent} is not traversable by the servers' accounts (postgres, mysql, redis)`);
    expect(statSync(first.root).mode & 0o755).toBe(0o755);
    expect(readFileSync(path.join(project, ".tenantfleet", "state-root"), "utf8").trim()).toBe(first.root);

    chmodSync(parent, 0o755);
    const again = chooseStateRoot(project, { asRoot: true, base });
    expect(again.root).toBe(first.root);
    expect(again.chosenNow).toBe(false);
  });

  it("does not move for a non-root user (servers then run as that user)", () => {
    const project = path.join(scratch(0o700), "clone");
    mkdirSync(project);
    expect(chooseStateRoot(project, { asRoot: false, base: scratch() }).root).toBe(path.join(project, ".tenantfleet"));
  });
});
