/** What a TenantDatabase stores in Pulumi's state (dynamic-providers/tenant-database/state.ts). */
import { describe, expect, it } from "vitest";
import { provider } from "../../dynamic-providers/tenant-database/provider";
import { accessChanged, fromState, isEarlierState, passwordOf, takeAccess, toState, withAccess } from "../../dynamic-providers/tenant-database/state";
import { checkTenantDatabase, connectionString } from "../../dynamic-providers/tenant-database/plan";
import { UNKNOWN } from "../../dynamic-providers/preview";
import type { TenantDatabaseInputs, TenantDatabaseOutputs } from "../../dynamic-providers/tenant-database/types";
import { tenantDatabaseInputs } from "../fixtures/tenant-database-inputs";

const program = (over: Record<string, unknown> = {}): Record<string, unknown> =>
  tenantDatabaseInputs({
    serverAdminPassword: "server-secret",
    catalogPassword: "catalog-secret",
    resourceUrn: "urn:pulumi:local::tenantfleet::tenantfleet:index:Fleet$tenantfleet:index:Tenant$pulumi-nodejs:dynamic/tenantfleet:TenantDatabase::acme-app",
    ...over,
  });

function checkedInputs(news: Record<string, unknown>): TenantDatabaseInputs {
  const r = checkTenantDatabase(undefined, news);
  if ("failures" in r) throw new Error(JSON.stringify(r.failures));
  return r.inputs;
}

const PASSWORD = "tenant/pa:ss@word";

function outputsOf(i: TenantDatabaseInputs, over: Partial<TenantDatabaseOutputs> = {}): TenantDatabaseOutputs {
  return {
    ...i,
    role: "app__acme",
    password: PASSWORD,
    backendDatabase: "app__acme",
    epoch: 3,
    status: "ready",
    lastMigration: null,
    retained: [],
    ...over,
  };
}

/** Every string leaf of a value. */
const leaves = (v: unknown): string[] =>
  typeof v === "string" ? [v] : Array.isArray(v) ? v.flatMap(leaves) : v && typeof v === "object" ? Object.values(v).flatMap(leaves) : [];

const count = (haystack: string[], needle: string) => haystack.filter((s) => s.includes(needle)).length;

describe("TenantDatabase state", () => {
  it("check returns the inputs without the credentials or the URN; create and update get them back", async () => {
    const r = await provider.check!({}, program({ bastionPrivateKey: "KEY" }));
    const stored = r.inputs as Record<string, unknown>;
    expect(stored).not.toHaveProperty("serverAdminPassword");
    expect(stored).not.toHaveProperty("catalogPassword");
    expect(stored).not.toHaveProperty("bastionPrivateKey");
    expect(stored).not.toHaveProperty("resourceUrn");
    expect(stored.plan).toBe("on shared-postgres-eu-west (shared, eu-west)");
    const back = withAccess(stored as never);
    expect(back).toMatchObject({ serverAdminPassword: "server-secret", catalogPassword: "catalog-secret", bastionPrivateKey: "KEY", resourceUrn: program().resourceUrn });
  });

  it("create/update without a check in this process fail clearly instead of logging in with nothing", () => {
    const { serverAdminPassword: _, catalogPassword: __, resourceUrn: ___, ...stored } = checkedInputs(program({ tenant: "nocheck" }));
    expect(() => withAccess(stored as never)).toThrow(/tenant database nocheck\/app: the provider has no credentials for it .*run `pulumi up` again/);
  });

  it("the stored outputs hold each secret once, and no input only `check` needs", () => {
    const outs = outputsOf(checkedInputs(program({ bastionPrivateKey: "KEY" })));
    const stored = toState(outs);
    const all = leaves(stored);
    expect(count(all, "server-secret")).toBe(1);
    expect(count(all, "catalog-secret")).toBe(1);
    expect(count(all, "KEY")).toBe(1);
    expect(count(all, PASSWORD)).toBe(1); // in `access` only
    expect(stored).not.toHaveProperty("password");
    expect(stored).not.toHaveProperty("resourceUrn"); // taken by check, given to create/update
    expect(stored).not.toHaveProperty("connectionString"); // built by the program
    expect(stored).not.toHaveProperty("proxyEndpoints");
    expect(stored).not.toHaveProperty("scramVerifier");
    expect(stored).not.toHaveProperty("plan");
    expect(stored).not.toHaveProperty("retained"); // nothing retained
    expect(stored.access).toEqual({ serverAdminPassword: "server-secret", catalogPassword: "catalog-secret", bastionPrivateKey: "KEY", password: PASSWORD });
    const { plan: _plan, resourceUrn: _urn, ...rest } = outs;
    expect(fromState(stored)).toEqual(rest);
  });

  it("reads back what it stored: the password, the credentials from `access`", () => {
    const outs = outputsOf(checkedInputs(program()));
    const back = fromState(toState(outs));
    expect(back.password).toBe(PASSWORD);
    expect(back.serverAdminPassword).toBe("server-secret");
    expect(back.catalogPassword).toBe("catalog-secret");
    expect(back.retained).toEqual([]);
    expect(back.epoch).toBe(3);
    expect(back.resourceUrn).toBeUndefined(); // read and delete report on the stack

    expect(() => passwordOf("postgresql://nobody@h:1/db")).toThrow(/no password/);
  });

  /** This version's stored outputs in the previous version's shape: the password and the URN beside `access`. */
  function previousShape() {
    const { access, ...rest } = toState(outputsOf(checkedInputs(program())));
    const { password, ...credentials } = access;
    return { ...rest, access: credentials, password: password!, resourceUrn: String(program().resourceUrn) };
  }

  it("reads the previous version's state (the password and the URN beside `access`) without a rewrite; the next update stores it in this shape", async () => {
    const previous = previousShape();
    expect(isEarlierState(previous as never)).toBe(false);
    expect(fromState(previous as never)).toMatchObject({ password: PASSWORD, resourceUrn: program().resourceUrn, serverAdminPassword: "server-secret" });
    const news = (await provider.check!({}, program())).inputs;
    expect((await provider.diff!("acme/app", previous as never, news)).changes).toBe(false);
    const rewritten = toState(fromState(previous as never));
    expect(rewritten).not.toHaveProperty("password");
    expect(rewritten).not.toHaveProperty("resourceUrn");
    expect(rewritten.access.password).toBe(PASSWORD);
  });

  it("reads the version before (the password inside a stored connection string, the proxies' endpoints) without a rewrite; the next update stores it in this shape", async () => {
    const { password: _, ...current } = previousShape();
    const previous = { ...current, proxyEndpoints: ["127.0.0.1:16432", "127.0.0.1:16433"], connectionString: connectionString("app__acme", PASSWORD, ["127.0.0.1:16432", "127.0.0.1:16433"], "app__acme") };
    expect(isEarlierState(previous as never)).toBe(false);
    expect(fromState(previous as never).password).toBe(PASSWORD);
    const news = (await provider.check!({}, program())).inputs;
    expect((await provider.diff!("acme/app", previous as never, news)).changes).toBe(false);
    const rewritten = toState(fromState(previous as never));
    expect(rewritten).not.toHaveProperty("connectionString");
    expect(rewritten).not.toHaveProperty("proxyEndpoints");
    expect(rewritten.access.password).toBe(PASSWORD);
  });

  it("reads state an earlier version wrote (credentials at the top level, password and verifier outputs) unchanged, and flags it for a rewrite", () => {
    const old = { ...outputsOf(checkedInputs(program())), scramVerifier: "SCRAM-SHA-256$4096:…" };
    expect(isEarlierState(old as never)).toBe(true);
    const back = fromState(old);
    expect(back).toMatchObject({ serverAdminPassword: "server-secret", catalogPassword: "catalog-secret", password: PASSWORD, epoch: 3, backendDatabase: "app__acme" });
    const rewritten = toState(back);
    expect(isEarlierState(rewritten as never)).toBe(false);
    expect(Object.keys(rewritten).sort()).not.toContain("scramVerifier");
  });

  it("diff: this version's state with the same inputs is no change; an earlier version's is an update (a state rewrite)", async () => {
    const news = (await provider.check!({}, program())).inputs;
    const current = toState(outputsOf(checkedInputs(program())));
    expect((await provider.diff!("acme/app", current, news)).changes).toBe(false);
    const earlier = { ...outputsOf(checkedInputs(program())), scramVerifier: "v" };
    expect((await provider.diff!("acme/app", earlier, news)).changes).toBe(true);
  });

  it("diff: a rotated admin password is a change (the outputs must take it), an unknown one during preview is not", async () => {
    const current = toState(outputsOf(checkedInputs(program())));
    const rotated = (await provider.check!({}, program({ serverAdminPassword: "rotated" }))).inputs;
    expect((await provider.diff!("acme/app", current, rotated)).changes).toBe(true);
    takeAccess(checkedInputs(program({ serverAdminPassword: UNKNOWN })) as TenantDatabaseInputs);
    const { serverAdminPassword: _, catalogPassword: __, resourceUrn: ___, ...stored } = checkedInputs(program());
    expect(accessChanged(fromState(current), stored as never)).toBe(false);
  });

  it("update with nothing to move rewrites the state and touches no server (the catalog is unreachable here)", async () => {
    const earlier = { ...outputsOf(checkedInputs(program({ catalog: { host: "127.0.0.1", port: 1, adminUser: "admin", database: "nowhere" } }))), scramVerifier: "v" };
    const news = (await provider.check!({}, program({ catalog: earlier.catalog }))).inputs;
    const r = await provider.update!("acme/app", earlier, news);
    expect(isEarlierState(r.outs as never)).toBe(false);
    expect(r.outs).toMatchObject({ epoch: 3, backendDatabase: "app__acme", access: { serverAdminPassword: "server-secret", password: PASSWORD } });
    expect(r.outs).not.toHaveProperty("connectionString");
  });
});
