/**
 * The preview summary's edge cases on small hand-written preview JSON (the real thing, from a real
 * `pulumi preview --json`, is exercised in test/e2e/preview-summary.test.ts).
 */
import { describe, expect, it } from "vitest";
import { parseServerName } from "../../components/fleet-plan";
import { UNKNOWN } from "../../dynamic-providers/preview";
import { cell, countLine, parsePreviewJson, previewSummaryMarkdown, renderSummary, summarizePreview, TYPES, type PreviewJson, type PreviewStep, type Row } from "../../scripts/lib/preview-summary";

const P = "urn:pulumi:dev::tenantfleet::";
const FLEET = `${P}tenantfleet:index:Fleet::fleet`;
const LOCAL_SERVER = "pulumi-nodejs:dynamic/tenantfleet:LocalServer";
const urnOf = (chain: string[], name: string) => `${P}${chain.join("$")}::${name}`;
const tdUrn = (tenant: string, database: string) => urnOf([TYPES.fleet, TYPES.tenant, TYPES.tenantDatabase], `${tenant}-${database}`);
const compUrn = (type: string, name: string) => urnOf([TYPES.fleet, type], name);
const serverType = (name: string) => (name.startsWith("shared-") ? TYPES.sharedCluster : TYPES.dedicatedServer);
const childUrn = (server: string) => urnOf([TYPES.fleet, serverType(server), LOCAL_SERVER], server);

type Placement = { serverName: string; isolation: string; region: string };
const at = (serverName: string): Placement => {
  const p = parseServerName(serverName)!;
  return { serverName, isolation: p.isolation, region: p.region };
};
const td = (tenant: string, database: string, p: Placement, extra: object = {}) => ({
  urn: tdUrn(tenant, database),
  type: TYPES.tenantDatabase,
  custom: true,
  inputs: { tenant, database, engine: "postgres", ...p },
  outputs: { tenant, database, engine: "postgres", ...p, status: "ready" },
  ...extra,
});
const tdStep = (op: string, tenant: string, database: string, from?: Placement, to?: Placement, extra: object = {}): PreviewStep => ({
  op,
  urn: tdUrn(tenant, database),
  ...(from ? { oldState: td(tenant, database, from, extra) } : {}),
  ...(to ? { newState: { ...td(tenant, database, to), outputs: undefined } } : {}),
});
const serverStep = (op: "create" | "delete", name: string, outputs?: Record<string, unknown>): PreviewStep => {
  const state = { urn: compUrn(serverType(name), name), type: serverType(name), parent: FLEET, ...(outputs ? { outputs } : {}) };
  return { op, urn: state.urn, ...(op === "create" ? { newState: state } : { oldState: state }) };
};
const childStep = (op: string, server: string, engine = "postgres"): PreviewStep => {
  const state = { urn: childUrn(server), type: LOCAL_SERVER, custom: true, parent: compUrn(serverType(server), server), inputs: { engine, serverName: server } };
  return { op, urn: state.urn, oldState: state, newState: state };
};
const stackStep = (outputs: Record<string, unknown>): PreviewStep => ({
  op: "same",
  urn: `${P}pulumi:pulumi:Stack::tenantfleet-dev`,
  oldState: { type: TYPES.stack, outputs },
  newState: { type: TYPES.stack },
});
const tenantsConfig = (t: Record<string, Record<string, { engine: string; isolation: string; region: string }>>) => ({
  "tenantfleet:tenants": JSON.stringify(Object.fromEntries(Object.entries(t).map(([k, dbs]) => [k, { databases: dbs }]))),
});

describe("parseServerName", () => {
  it("reads back shared cluster and dedicated server names, regions with hyphens included", () => {
    expect(parseServerName("shared-postgres-eu-west")).toEqual({ isolation: "shared", engine: "postgres", region: "eu-west" });
    expect(parseServerName("shared-redis-us-east-1")).toEqual({ isolation: "shared", engine: "redis", region: "us-east-1" });
    expect(parseServerName("shared-redis-us-east-1--acme-cache_2")).toEqual({ isolation: "shared", engine: "redis", region: "us-east-1", tenant: "acme", database: "cache_2" });
    expect(parseServerName("dedicated-acme-app_v2-eu-west")).toEqual({ isolation: "dedicated", tenant: "acme", database: "app_v2", region: "eu-west" });
  });

  it("is undefined for names it did not make", () => {
    expect(parseServerName("control-catalog")).toBeUndefined();
    expect(parseServerName("shared-oracle-eu-west")).toBeUndefined();
    expect(parseServerName("proxy-1")).toBeUndefined();
  });
});

describe("summarizePreview", () => {
  it("a schema rollout is summarised as the plan `preview --diff` shows; its SchemaSet and a rollout with nothing to apply are not listed", () => {
    const ref = (name: string) => ({ name, checksum: `${name}-sum` });
    const inputs = (files: string[], tenants: string[]) => ({ database: "app", engine: "postgres", files: files.map(ref), tenants, policy: { canary: ["acme"], perServer: 4, parallel: 16, maxFailures: 0 } });
    const rollout = (op: string, before: string[] | undefined, after: string[], tenants = ["acme", "globex", "initech"]): PreviewStep => ({
      op,
      urn: compUrn(TYPES.schemaRollout, "schema-rollout-app"),
      ...(before ? { oldState: { type: TYPES.schemaRollout, inputs: inputs(before, tenants) } } : {}),
      newState: { type: TYPES.schemaRollout, inputs: inputs(after, tenants) },
    });
    const set: PreviewStep = { op: "update", urn: compUrn(TYPES.schemaSet, "schema-app"), newState: { type: TYPES.schemaSet, inputs: {} } };
    const s = summarizePreview({ steps: [set, rollout("update", ["0001_init", "0002_orders"], ["0001_init", "0002_orders", "0003_discount"])] });
    expect(s.schemas).toEqual(["app: 0002_orders → 0003_discount on 3 tenant databases (canary: acme)"]);
    expect(s.other).toEqual([]);
    const md = renderSummary(s);
    expect(md).toContain("1 schema rollout.");
    expect(md).toContain("- app: 0002_orders → 0003_discount on 3 tenant databases (canary: acme)");
    // A new tenant alone changes the rollout's inputs but applies nothing (it is created at the head).
    expect(summarizePreview({ steps: [rollout("update", ["0001_init"], ["0001_init"], ["acme", "hooli"])] }).schemas).toEqual([]);
    expect(summarizePreview({ steps: [rollout("create", undefined, ["0001_init"])] }).schemas).toEqual(["app: (empty) → 0001_init on 3 tenant databases (canary: acme)"]);
  });

  it("ignores `same` steps: an empty preview has no tenant changes", () => {
    const json: PreviewJson = { steps: [stackStep({}), { op: "same", urn: tdUrn("acme", "app") }], changeSummary: { same: 12 } };
    expect(previewSummaryMarkdown(JSON.stringify(json))).toBe("### tenantfleet preview of stack `dev`\n\nNo tenant changes.\n");
  });

  it("sorts rows the same way whatever the order of the steps", () => {
    const steps = [
      tdStep("update", "globex", "app", at("shared-postgres-eu-west"), at("shared-postgres-us-east")),
      serverStep("create", "shared-postgres-us-east"),
      tdStep("create", "acme", "app", undefined, at("shared-postgres-us-east")),
      serverStep("delete", "dedicated-acme-old-eu-west"),
    ];
    const a = previewSummaryMarkdown(JSON.stringify({ steps }));
    const b = previewSummaryMarkdown(JSON.stringify({ steps: [...steps].reverse() }));
    expect(a).toBe(b);
    expect(summarizePreview({ steps }).rows.map((r) => `${r.tenant}/${r.database} ${r.action}`)).toEqual(["acme/app create", "acme/old server removed", "globex/app migrate", "—/— server added"]);
  });

  it("a TenantDatabase update that keeps its server is not a migration: listed under other changes", () => {
    const s = summarizePreview({ steps: [tdStep("update", "acme", "app", at("shared-postgres-eu-west"), at("shared-postgres-eu-west"))] });
    expect(s.rows).toEqual([]);
    expect(s.other).toEqual([expect.stringMatching(/^update TenantDatabase `acme\/app` in place on shared-postgres-eu-west \(no data moves/)]);
  });

  it("a server name not known until `up` is said so", () => {
    const s = summarizePreview({ steps: [tdStep("update", "acme", "app", at("shared-postgres-eu-west"), { serverName: UNKNOWN, isolation: "dedicated", region: "eu-west" })] });
    expect(s.rows[0]!.to).toBe("(known after `pulumi up`) (dedicated, eu-west)");
  });

  it("a replaced TenantDatabase (three steps of one URN) is one row and a loud warning", () => {
    const from = at("shared-postgres-eu-west");
    const s = summarizePreview({
      steps: [tdStep("create-replacement", "acme", "app", from, from), tdStep("replace", "acme", "app", from, from), tdStep("delete-replaced", "acme", "app", from, from)],
    });
    expect(s.rows).toEqual([{ tenant: "acme", database: "app", engine: "postgres", from: "shared-postgres-eu-west (shared, eu-west)", to: "shared-postgres-eu-west (shared, eu-west)", action: "replace" }]);
    expect(s.warnings).toEqual([expect.stringMatching(/^⚠️ \*\*acme\/app \(postgres\) is replaced\*\*: the database is dropped \(after a safety backup\) and created again empty/)]);
    expect(countLine(s.rows)).toBe("1 tenant database replaced");
  });

  it("a replaced server, control catalog or proxy is a warning; their updates are other changes", () => {
    const s = summarizePreview({
      steps: [
        childStep("replace", "shared-postgres-eu-west"),
        { ...childStep("update", "shared-mysql-us-east", "mysql") },
        { op: "replace", urn: urnOf([TYPES.fleet, "pulumi-nodejs:dynamic/tenantfleet:ControlCatalog"], "control-catalog"), oldState: { type: "pulumi-nodejs:dynamic/tenantfleet:ControlCatalog" } },
        { op: "delete", urn: urnOf([TYPES.fleet, TYPES.proxyFleet, "pulumi-nodejs:dynamic/tenantfleet:LocalProxy"], "proxy-3"), oldState: { type: "pulumi-nodejs:dynamic/tenantfleet:LocalProxy" } },
      ],
    });
    expect(s.rows).toEqual([]);
    expect(s.warnings).toEqual([
      "⚠️ **Proxies are deleted** (LocalProxy `proxy-3` deleted): sessions through them end at their next idle point, and connection strings that name a removed proxy change.",
      "⚠️ **Server `shared-postgres-eu-west` is replaced** (LocalServer `shared-postgres-eu-west`): it comes back empty, and every tenant database on it loses its data unless it was moved off first.",
      "⚠️ **The control catalog is replaced** (ControlCatalog `control-catalog` replaced): it holds every route, SCRAM verifier and migration record, and the proxies serve from it.",
    ]);
    expect(s.other).toEqual(["update LocalServer `shared-mysql-us-east`"]);
  });

  it("cloud-shaped resources: the VM named like its server is the server; a replaced secret under it is only a note; proxy parts are one warning", () => {
    const under = (server: string, type: string, name: string): PreviewStep => ({
      op: "replace",
      urn: urnOf([TYPES.fleet, serverType(server), type], name),
      oldState: { type, parent: compUrn(serverType(server), server) },
      newState: { type, parent: compUrn(serverType(server), server) },
    });
    const proxy = (type: string, name: string, op = "replace"): PreviewStep => ({ op, urn: urnOf([TYPES.fleet, TYPES.proxyFleet, type], name), oldState: { type } });
    const s = summarizePreview({
      steps: [
        under("dedicated-acme-app-eu-west", "aws:ec2/instance:Instance", "dedicated-acme-app-eu-west"),
        under("dedicated-acme-app-eu-west", "aws:secretsmanager/secretVersion:SecretVersion", "dedicated-acme-app-eu-west-admin"),
        proxy("aws:ec2/instance:Instance", "proxy-1"),
        proxy("aws:lb/targetGroupAttachment:TargetGroupAttachment", "proxy-1-tg"),
        proxy("aws:ec2/instance:Instance", "proxy-2", "delete"),
        { op: "delete", urn: urnOf([TYPES.fleet, "aws:rds/instance:Instance"], "control-catalog"), oldState: { type: "aws:rds/instance:Instance", protect: true } },
      ],
    });
    expect(s.warnings).toEqual([
      "⚠️ **Proxies are deleted and replaced** (Instance `proxy-1` replaced, Instance `proxy-2` deleted, TargetGroupAttachment `proxy-1-tg` replaced): sessions through them end at their next idle point, and connection strings that name a removed proxy change.",
      "⚠️ **Server `dedicated-acme-app-eu-west` is replaced** (Instance `dedicated-acme-app-eu-west`): it comes back empty, and every tenant database on it loses its data unless it was moved off first.",
      "⚠️ **The control catalog is deleted** (Instance `control-catalog` deleted): it holds every route, SCRAM verifier and migration record, and the proxies serve from it.",
    ]);
    expect(s.notes).toEqual([
      "Instance `control-catalog` is protected, so deleting it fails the preview. To drop it on purpose: `pulumi state unprotect 'urn:pulumi:dev::tenantfleet::tenantfleet:index:Fleet$aws:rds/instance:Instance::control-catalog'`, then preview again.",
      "Server `dedicated-acme-app-eu-west`: SecretVersion `dedicated-acme-app-eu-west-admin` is replaced (not the machine or its data disk).",
    ]);
  });

  it("platform resources created or deleted with their server component are not listed again", () => {
    const s = summarizePreview({ steps: [serverStep("create", "dedicated-acme-app-eu-west"), { ...childStep("create", "dedicated-acme-app-eu-west"), oldState: undefined }] });
    expect(s.rows.map((r) => r.action)).toEqual(["server added"]);
    expect(s.rows[0]!.engine).toBe("postgres"); // from the platform resource's engine input
    expect(s.other).toEqual([]);
  });

  it("a stack from before Redis instances (its Redis databases in the host's own instance, unmanaged): each gets its instance, starting empty, and the preview says the keys stay in the host", () => {
    const s = summarizePreview({
      config: { "tenantfleet:platform": "aws", ...tenantsConfig({ acme: { cache: { engine: "redis", isolation: "shared", region: "eu-west" } }, globex: { cache: { engine: "redis", isolation: "dedicated", region: "eu-west" } } }) },
      steps: [
        stackStep({
          tenantDatabases: {
            acme: { cache: { engine: "redis", isolation: "shared", region: "eu-west", server: "shared-redis-eu-west" } },
            globex: { cache: { engine: "redis", isolation: "shared", region: "eu-west", server: "shared-redis-eu-west" } },
          },
        }),
        serverStep("create", "dedicated-globex-cache-eu-west"),
      ],
    });
    expect(s.rows).toEqual([{ tenant: "globex", database: "cache", engine: "redis", from: "—", to: "dedicated-globex-cache-eu-west (dedicated, eu-west)", action: "server added" }]);
    const advice = "Each Redis tenant database is an instance of its own now, managed and moved live from then on; the keys in the host's own instance are not copied into it (the host is kept, nothing is deleted): copy them yourself if the application needs them (e.g. MIGRATE … KEYS, or an RDB restored into the new instance).";
    expect(s.warnings).toEqual([
      `⚠️ **acme/cache (redis): its data is not migrated**: it is placed on shared-redis-eu-west--acme-cache, which starts empty, while its data stays on shared-redis-eu-west. ${advice}`,
      `⚠️ **globex/cache (redis): its data is not migrated**: it is placed on dedicated-globex-cache-eu-west, which starts empty, while its data stays on shared-redis-eu-west. ${advice}`,
    ]);
  });

  it("a non-PostgreSQL tenant database removed from the config: deleted with its server, or left in place", () => {
    const outputs = {
      tenantDatabases: {
        acme: { shop: { engine: "mysql", isolation: "dedicated", region: "us-east", server: "dedicated-acme-shop-us-east" } },
        globex: { cache: { engine: "redis", isolation: "shared", region: "eu-west", server: "shared-redis-eu-west" } },
      },
    };
    const s = summarizePreview({ config: tenantsConfig({ initech: { cache: { engine: "redis", isolation: "shared", region: "eu-west" } } }), steps: [stackStep(outputs), serverStep("delete", "dedicated-acme-shop-us-east")] });
    expect(s.rows).toEqual([{ tenant: "acme", database: "shop", engine: "mysql", from: "dedicated-acme-shop-us-east (dedicated, us-east)", to: "—", action: "server removed" }]);
    expect(s.warnings).toEqual(["⚠️ **acme/shop (mysql) is deleted with its server dedicated-acme-shop-us-east**: tenantfleet takes no backup of mysql databases."]);
    expect(s.notes).toEqual(["globex/cache (redis) leaves the config; its data stays on shared-redis-eu-west (tenantfleet does not drop redis databases)."]);
  });

  it("without the previous stack outputs, a removed server that is not PostgreSQL still warns", () => {
    const s = summarizePreview({
      steps: [serverStep("delete", "shared-redis-eu-west", { engine: "redis", region: "eu-west" }), serverStep("delete", "shared-postgres-eu-west", { engine: "postgres" }), serverStep("delete", "dedicated-acme-cache-eu-west")],
    });
    expect(s.rows.map((r) => [r.tenant, r.engine, r.action])).toEqual([
      ["acme", "?", "server removed"],
      ["—", "postgres", "server removed"],
      ["—", "redis", "server removed"],
    ]);
    expect(s.warnings).toEqual([
      "⚠️ **Server dedicated-acme-cache-eu-west is removed**: tenant databases on it that are not PostgreSQL lose their data (no live migration for that engine yet).",
      "⚠️ **Server shared-redis-eu-west is removed (redis)**: tenant databases on it that are not PostgreSQL lose their data (no live migration for redis yet).",
    ]);
  });
});

describe("renderSummary", () => {
  it("escapes `|` and newlines in table cells", () => {
    expect(cell("a|b\nc")).toBe("a\\|b c");
    const row: Row = { tenant: "ac|me", database: "app", engine: "postgres", from: "x | y", to: "—", action: "delete" };
    const md = renderSummary({ stack: "dev", failed: false, diagnostics: [], rows: [row], warnings: [], notes: [], other: [] });
    expect(md).toContain("| ac\\|me | app | postgres | x \\| y → — | delete |");
    expect(md.split("\n").filter((l) => l.startsWith("|")).every((l) => l.split(/(?<!\\)\|/).length === 7)).toBe(true);
  });

  it("counts in one line, singular and plural", () => {
    const r = (action: Row["action"]): Row => ({ tenant: "t", database: "d", engine: "postgres", from: "—", to: "—", action });
    expect(countLine([r("migrate"), r("migrate"), r("server added"), r("server removed")])).toBe("2 tenant databases migrate, 1 server added, 1 server removed");
    expect(countLine([r("migrate"), r("create"), r("delete"), r("delete"), r("server added"), r("server added")])).toBe(
      "1 tenant database migrates, 1 tenant database created, 2 tenant databases deleted, 2 servers added",
    );
    expect(countLine([])).toBe("No tenant changes");
  });
});

describe("failed previews", () => {
  it("show their diagnostics instead of a table, in a fence longer than any backtick run in the message", () => {
    const json: PreviewJson = {
      steps: [tdStep("update", "acme", "app", at("shared-postgres-eu-west"), at("dedicated-acme-app-eu-west"))],
      diagnostics: [
        { severity: "info", message: "starting" },
        { severity: "error", message: "error: invalid config:\n  ```tenants``` is | broken\n" },
        { severity: "error", message: "error: preview failed\n" },
      ],
    };
    const md = previewSummaryMarkdown(JSON.stringify(json), { stack: "prod" });
    expect(md).toBe(
      "### tenantfleet preview of stack `prod`: failed\n\nThe preview failed, so nothing is planned yet. Fix what it reports and push again:\n\n" +
        "**error**\n\n````text\nerror: invalid config:\n  ```tenants``` is | broken\n````\n",
    );
  });

  it("note a protected tenant database whose delete fails, with the unprotect command", () => {
    const json: PreviewJson = {
      steps: [tdStep("delete", "globex", "app", at("shared-postgres-eu-west"), undefined, { protect: true })],
      diagnostics: [{ severity: "error", urn: tdUrn("globex", "app"), message: "error: Preview failed: resource cannot be deleted\nbecause it is protected." }],
    };
    const md = previewSummaryMarkdown(JSON.stringify(json));
    expect(md).toContain("**error** on `globex-app`");
    expect(md).toContain(`- Tenant database globex/app is protected, so deleting it fails the preview. To drop it on purpose (its delete takes a safety backup): \`pulumi state unprotect '${tdUrn("globex", "app")}'\`, then preview again.`);
  });

  it("warnings of a successful preview are shown below the table", () => {
    const md = previewSummaryMarkdown(JSON.stringify({ steps: [stackStep({})], diagnostics: [{ severity: "warning", message: "warning: something odd" }] }));
    expect(md).toContain("No tenant changes.\n\n**Diagnostics**\n\nwarning:\n\n```text\nwarning: something odd\n```\n");
  });
});

describe("parsePreviewJson", () => {
  it("says what it got when the input is not preview JSON", () => {
    expect(() => parsePreviewJson("")).toThrow(/not JSON from `pulumi preview --json`.*the input is empty/);
    expect(() => parsePreviewJson("error: no stack named 'dev' found\n")).toThrow(/it starts with:\nerror: no stack named 'dev' found/);
    expect(() => parsePreviewJson('{"hello": 1}')).toThrow(/expected an object with `steps` or `diagnostics`/);
  });
});
