/**
 * The proxy as cloud VMs run it: proxy/ bundled into one file by the same function the aws and gcp
 * platforms upload (components/platforms/vm/proxy-artifact.ts), started with plain `node` and no
 * node_modules beside it, serving a real tenant through a real catalog.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Client } from "pg";
import { buildProxyBundle, PROXY_NODE_TARGET } from "../../components/platforms/vm/proxy-artifact";
import { LocalPgFleet, type TenantDb } from "../../scripts/lib/local-pg-fleet";

const repoRoot = path.resolve(__dirname, "..", "..");
let fleet: LocalPgFleet;
let tenant: TenantDb;
let bundle: string;
const out = mkdtempSync(path.join(os.tmpdir(), "tf-bundle-"));

beforeAll(async () => {
  const built = buildProxyBundle(repoRoot, path.join(out, "build"));
  // Alone in a folder outside the repository, as on a VM: nothing can be required from node_modules.
  bundle = path.join(mkdtempSync(path.join(os.tmpdir(), "tf-vm-")), "proxy.js");
  copyFileSync(built, bundle);
  fleet = await LocalPgFleet.create({ stack: "bundle" });
  const server = await fleet.server("shared-bundle");
  tenant = await fleet.tenantDatabase(server, { tenant: "acme", database: "app" });
});

afterAll(async () => {
  await fleet?.close();
  rmSync(out, { recursive: true, force: true });
  if (bundle) rmSync(path.dirname(bundle), { recursive: true, force: true });
});

describe("the bundled proxy (what proxy hosts run)", () => {
  it("is one self-contained file for the VM image's Node.js, and the same bytes on every build", () => {
    const again = buildProxyBundle(repoRoot, path.join(out, "again"));
    expect(readFileSync(again).equals(readFileSync(bundle))).toBe(true);
    expect(PROXY_NODE_TARGET).toBe("node18");
    // Every dependency is inside: no require of a package name but node builtins and pg's optional
    // native binding, which the proxy never loads.
    const requires = [...readFileSync(bundle, "utf8").matchAll(/require\("([^"./][^"]*)"\)/g)].map((m) => m[1]!);
    const builtins = new Set(require("node:module").builtinModules as string[]);
    expect([...new Set(requires.filter((r) => !r.startsWith("node:") && !builtins.has(r)))].sort()).toEqual(["pg-native"]);
  });

  it("starts with plain node, answers /healthz and serves a tenant through the catalog", async () => {
    const p = await fleet.startProxy("bundle-1", { entry: bundle });
    const health = await fetch(`http://127.0.0.1:${p.adminPort}/healthz`);
    expect(health.status).toBe(200);
    const c = new Client({ host: "127.0.0.1", port: p.port, user: tenant.role, password: tenant.password, database: tenant.name });
    await c.connect();
    try {
      await c.query("create table t (id int primary key, v text)");
      await c.query("insert into t select g, md5(g::text) from generate_series(1, 1000) g");
      expect((await c.query("select count(*)::int as n, current_database() as db from t")).rows[0]).toEqual({ n: 1000, db: tenant.name });
    } finally {
      await c.end();
    }
    const metrics = await (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();
    expect(metrics).toMatch(/tenantfleet_/);
  });
});
