/**
 * Pure: `pulumi preview --json` → a Markdown summary of what happens to tenants, for a pull request.
 *
 * What the preview JSON holds (checked against real previews, see test/e2e/preview-summary.test.ts):
 * - `steps` lists every planned step except `same` ones (the root Stack's `same` step is kept, with
 *   the previous stack outputs in `oldState.outputs`); a replacement is several steps of one URN
 *   (`create-replacement`, `replace`, `delete-replaced`).
 * - A TenantDatabase `update` carries `oldState` (inputs and outputs as they are now) and
 *   `newState` (inputs only: outputs are not known at preview). `oldState.inputs.plan` is the plan
 *   text of the *previous* run; the placement to compare is `serverName`/`isolation`/`region`.
 * - Components (SharedCluster, DedicatedServer) have a `create`/`delete` step of their own, whatever
 *   the platform puts under them; SharedCluster's old outputs hold its engine and region.
 * - `config` holds the stack config as the program saw it, object values as JSON strings.
 * - A failed preview (config error, protected resource) has error `diagnostics`; its steps are
 *   whatever was planned before the failure.
 */
import { parseServerName, serverNameOf } from "../../components/fleet-plan";
import { UNKNOWN } from "../../dynamic-providers/preview";
import { rolloutPlan } from "../../dynamic-providers/schema-rollout/plan";
import type { MigrationRef, SchemaRolloutInputs } from "../../dynamic-providers/schema-rollout/types";

/** Resource types and names the summary recognises (kept in sync with components/ and dynamic-providers/). */
export const TYPES = {
  tenantDatabase: "pulumi-nodejs:dynamic/tenantfleet:TenantDatabase",
  sharedCluster: "tenantfleet:index:SharedCluster",
  dedicatedServer: "tenantfleet:index:DedicatedServer",
  proxyFleet: "tenantfleet:index:ProxyFleet",
  tenant: "tenantfleet:index:Tenant",
  schemaSet: "pulumi-nodejs:dynamic/tenantfleet:SchemaSet",
  schemaRollout: "pulumi-nodejs:dynamic/tenantfleet:SchemaRollout",
  fleet: "tenantfleet:index:Fleet",
  stack: "pulumi:pulumi:Stack",
} as const;
/** The control catalog's resources: the ControlCatalog resource and its server (`control-catalog`). */
const CATALOG_NAME = /^control-catalog/;
/** Resources under a server component whose replacement loses the server's data (besides the one
 * named like the server: LocalServer, the VM instance). */
const DATA_TYPES = /(:LocalServer|ebs\/volume:Volume|compute\/disk:Disk|compute\/instance:Instance|ec2\/instance:Instance)$/;

export interface ResourceState {
  urn?: string;
  type: string;
  custom?: boolean;
  id?: string;
  parent?: string;
  protect?: boolean;
  inputs?: Record<string, unknown>;
  outputs?: Record<string, unknown>;
}

export interface PreviewStep {
  op: string;
  urn: string;
  oldState?: ResourceState;
  newState?: ResourceState;
}

export interface Diagnostic {
  message: string;
  severity: string;
  urn?: string;
}

export interface PreviewJson {
  config?: Record<string, string>;
  steps?: PreviewStep[];
  diagnostics?: Diagnostic[];
  changeSummary?: Record<string, number>;
}

export const ACTIONS = ["migrate", "create", "delete", "replace", "server added", "server removed"] as const;
export type Action = (typeof ACTIONS)[number];

export interface Row {
  tenant: string;
  database: string;
  engine: string;
  from: string;
  to: string;
  action: Action;
}

export interface Summary {
  stack?: string;
  /** The preview failed: `diagnostics` say why and `rows` are not shown. */
  failed: boolean;
  /** Errors and warnings from the engine and the program (info lines are dropped). */
  diagnostics: Diagnostic[];
  rows: Row[];
  /** Destructive or risky changes, each one line of Markdown. */
  warnings: string[];
  /** Worth knowing, not destructive (protected resources, in-place updates with no data moving…). */
  notes: string[];
  /** Changes that are not tenant changes: `update LocalServer shared-mysql-us-east`. */
  other: string[];
  /** Schema rollouts, one line each: `app: 0002_orders → 0003_discount on 480 tenant databases (canary: acme)`. */
  schemas?: string[];
}

const NONE = "—";
const REPLACE_OPS = new Set(["replace", "create-replacement", "delete-replaced", "discard-replaced", "read-replacement", "import-replacement"]);

interface Urn {
  stack: string;
  types: string[];
  type: string;
  name: string;
}

export function parseUrn(urn: string): Urn {
  const parts = urn.split("::");
  const types = (parts[2] ?? "").split("$");
  return { stack: (parts[0] ?? "").replace(/^urn:pulumi:/, ""), types, type: types[types.length - 1] ?? "", name: parts.slice(3).join("::") };
}

/** All steps of one resource, folded into one logical operation. */
interface Change {
  urn: string;
  urnParts: Urn;
  op: string;
  old?: ResourceState;
  new?: ResourceState;
}

function foldSteps(steps: PreviewStep[]): Change[] {
  const byUrn = new Map<string, Change>();
  for (const s of steps) {
    const c = byUrn.get(s.urn) ?? { urn: s.urn, urnParts: parseUrn(s.urn), op: s.op };
    if (REPLACE_OPS.has(s.op)) c.op = "replace";
    c.old ??= s.oldState;
    c.new ??= s.newState;
    byUrn.set(s.urn, c);
  }
  return [...byUrn.values()];
}

interface Placement {
  server: string;
  isolation?: string;
  region?: string;
}

const str = (v: unknown): string | undefined => (typeof v === "string" && v !== UNKNOWN ? v : undefined);
const unknownText = "(known after `pulumi up`)";

function describe(p: Placement | undefined): string {
  if (!p) return NONE;
  const parsed = parseServerName(p.server);
  const isolation = p.isolation ?? parsed?.isolation;
  const region = p.region ?? parsed?.region;
  const where = [isolation, region].filter(Boolean).join(", ");
  return where ? `${p.server} (${where})` : p.server;
}

function placementOf(state: ResourceState | undefined, preferOutputs: boolean): Placement | undefined {
  if (!state) return undefined;
  const src = (preferOutputs && state.outputs ? state.outputs : state.inputs) ?? state.outputs ?? {};
  const server = str(src.serverName) ?? (src.serverName === UNKNOWN ? unknownText : undefined);
  if (!server) return undefined;
  return { server, isolation: str(src.isolation), region: str(src.region) };
}

/** Where a tenant database lives, before (stack outputs) or after (config) this change. */
interface TenantDbPlacement {
  tenant: string;
  database: string;
  engine: string;
  isolation: string;
  region: string;
  server: string;
}

const key = (tenant: string, database: string) => `${tenant}/${database}`;

/** The previous `tenantDatabases` stack output (see stacks/index.ts), from the root Stack's step. */
function previousPlacements(changes: Change[]): Map<string, TenantDbPlacement> | undefined {
  const stack = changes.find((c) => c.urnParts.type === TYPES.stack);
  const out = stack?.old?.outputs?.tenantDatabases;
  if (!isRecord(out)) return undefined;
  const m = new Map<string, TenantDbPlacement>();
  for (const [tenant, dbs] of Object.entries(out)) {
    if (!isRecord(dbs)) continue;
    for (const [database, d] of Object.entries(dbs)) {
      if (!isRecord(d)) continue;
      const [engine, isolation, region, server] = [str(d.engine), str(d.isolation), str(d.region), str(d.server)];
      if (engine && isolation && region && server) m.set(key(tenant, database), { tenant, database, engine, isolation, region, server });
    }
  }
  return m;
}

/** The previous `servers` stack output: engine of each server by name. */
function previousServerEngines(changes: Change[]): Map<string, string> {
  const stack = changes.find((c) => c.urnParts.type === TYPES.stack);
  const out = stack?.old?.outputs?.servers;
  const m = new Map<string, string>();
  if (isRecord(out)) for (const [name, s] of Object.entries(out)) if (isRecord(s) && str(s.engine)) m.set(name, str(s.engine)!);
  return m;
}

/** Placements the new config asks for (`tenantfleet:tenants`, read leniently: the program validates it). */
function configuredPlacements(config: Record<string, string> | undefined): Map<string, TenantDbPlacement> | undefined {
  const raw = config?.["tenantfleet:tenants"];
  if (typeof raw !== "string") return undefined;
  let tenants: unknown;
  try {
    tenants = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (!isRecord(tenants)) return undefined;
  const m = new Map<string, TenantDbPlacement>();
  for (const [tenant, t] of Object.entries(tenants)) {
    const dbs = isRecord(t) ? t.databases : undefined;
    if (!isRecord(dbs)) continue;
    for (const [database, d] of Object.entries(dbs)) {
      if (!isRecord(d)) continue;
      const [engine, isolation, region] = [str(d.engine), str(d.isolation), str(d.region)];
      if (!engine || !isolation || !region) continue;
      const server = serverNameOf({ engine: engine as never, isolation: isolation as "shared" | "dedicated", region, tenant, database });
      m.set(key(tenant, database), { tenant, database, engine, isolation, region, server });
    }
  }
  return m;
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

const shortType = (type: string) => type.split(/[:/]/).pop() ?? type;
const code = (s: string) => `\`${s.replace(/`/g, "'")}\``;

export function summarizePreview(preview: PreviewJson, opts: { stack?: string } = {}): Summary {
  const steps = (preview.steps ?? []).filter((s) => s && typeof s.urn === "string" && typeof s.op === "string");
  const changes = foldSteps(steps);
  let diagnostics = (preview.diagnostics ?? []).filter((d) => d && typeof d.message === "string" && (d.severity === "error" || d.severity === "warning"));
  // The engine's closing "preview failed" line adds nothing to the errors before it.
  if (diagnostics.length > 1) diagnostics = diagnostics.filter((d) => d.message.trim() !== "error: preview failed");
  const failed = diagnostics.some((d) => d.severity === "error");
  const summary: Summary = { stack: opts.stack ?? changes[0]?.urnParts.stack, failed, diagnostics, rows: [], warnings: [], notes: [], other: [] };

  for (const c of changes) {
    if (c.op !== "delete" || !c.old?.protect) continue;
    const i = c.old.inputs ?? {};
    const td = c.urnParts.type === TYPES.tenantDatabase;
    const what = td && str(i.tenant) ? `Tenant database ${i.tenant}/${String(i.database)}` : `${shortType(c.urnParts.type)} ${code(c.urnParts.name)}`;
    summary.notes.push(`${what} is protected, so deleting it fails the preview. To drop it on purpose${td ? " (its delete takes a safety backup)" : ""}: \`pulumi state unprotect '${c.urn}'\`, then preview again.`);
  }
  if (failed) return summary;

  const before = previousPlacements(changes);
  const after = configuredPlacements(preview.config);
  const serverEngines = previousServerEngines(changes);
  const byUrn = new Map(changes.map((c) => [c.urn, c]));
  const parentOf = (c: Change) => c.new?.parent ?? c.old?.parent;
  /** The nearest SharedCluster/DedicatedServer above a resource (the "server" it belongs to). */
  const serverAbove = (c: Change): string | undefined => {
    const i = Math.max(c.urnParts.types.lastIndexOf(TYPES.sharedCluster), c.urnParts.types.lastIndexOf(TYPES.dedicatedServer));
    if (i < 0 || i === c.urnParts.types.length - 1) return undefined;
    for (let p = parentOf(c); p; p = byUrn.get(p) ? parentOf(byUrn.get(p)!) : undefined) {
      const pu = parseUrn(p);
      if (pu.type === TYPES.sharedCluster || pu.type === TYPES.dedicatedServer) return pu.name;
    }
    return c.urnParts.name;
  };
  const serverChange = new Map<string, "create" | "delete">();
  for (const c of changes) {
    if ((c.urnParts.type === TYPES.sharedCluster || c.urnParts.type === TYPES.dedicatedServer) && (c.op === "create" || c.op === "delete")) {
      serverChange.set(c.urnParts.name, c.op);
    }
  }
  const removedServers = new Set([...serverChange].filter(([, op]) => op === "delete").map(([n]) => n));
  const replacedServers = new Map<string, string[]>();
  const catalog = new Map<string, string[]>();
  const proxies = new Map<string, string[]>();
  const push = (m: Map<string, string[]>, k: string, v: string) => m.set(k, [...(m.get(k) ?? []), v]);
  const listed = (m: Map<string, string[]>) => [...m].flatMap(([op, whats]) => whats.map((w) => `${w} ${op}`)).sort().join(", ");

  for (const c of changes) {
    const { type, types, name } = c.urnParts;
    if (c.op === "same" || type === TYPES.stack) continue;
    if (type === TYPES.tenantDatabase) {
      tenantDatabaseChange(c, summary);
      continue;
    }
    if (type === TYPES.schemaRollout) {
      schemaChange(c, summary);
      continue;
    }
    if (type === TYPES.schemaSet) continue; // its rollout says what changes
    if (type === TYPES.sharedCluster || type === TYPES.dedicatedServer) {
      if (c.op === "create" || c.op === "delete") {
        summary.rows.push(serverRow(c, before, after, serverEngines, byUrn));
        continue;
      }
    }
    const server = serverAbove(c);
    const what = `${shortType(type)} ${code(name)}`;
    if (server !== undefined) {
      // A platform resource under a server component: LocalServer locally; instances, disks, secrets in the cloud.
      if (c.op === "replace") {
        if (name === server || DATA_TYPES.test(type)) push(replacedServers, server, what);
        else summary.notes.push(`Server ${code(server)}: ${what} is replaced (not the machine or its data disk).`);
        continue;
      }
      if ((c.op === "create" || c.op === "delete") && serverChange.get(server) === c.op) continue; // comes and goes with its server
    }
    const destructive = c.op === "replace" || c.op === "delete";
    if (destructive && (type.endsWith(":ControlCatalog") || CATALOG_NAME.test(name) || c.old?.inputs?.role === "catalog")) {
      push(catalog, c.op === "replace" ? "replaced" : "deleted", what);
      continue;
    }
    if (destructive && types.includes(TYPES.proxyFleet)) {
      push(proxies, c.op === "replace" ? "replaced" : "deleted", what);
      continue;
    }
    if (type === TYPES.tenant || type === TYPES.fleet) continue; // a tenant's component comes and goes with its databases
    summary.other.push(`${c.op} ${what}`);
  }
  for (const [server, what] of replacedServers) {
    summary.warnings.push(`⚠️ **Server ${code(server)} is replaced** (${what.sort().join(", ")}): it comes back empty, and every tenant database on it loses its data unless it was moved off first.`);
  }
  if (catalog.size) {
    summary.warnings.push(`⚠️ **The control catalog is ${[...catalog.keys()].sort().join(" and ")}** (${listed(catalog)}): it holds every route, SCRAM verifier and migration record, and the proxies serve from it.`);
  }
  if (proxies.size) {
    summary.warnings.push(`⚠️ **Proxies are ${[...proxies.keys()].sort().join(" and ")}** (${listed(proxies)}): sessions through them end at their next idle point, and connection strings that name a removed proxy change.`);
  }

  // Databases a TenantDatabase already manages move live (MariaDB/MySQL ones where the proxies speak MySQL).
  const managed = new Set<string>();
  for (const c of changes) {
    if (c.urnParts.type !== TYPES.tenantDatabase || c.op === "create") continue;
    const i = (c.new ?? c.old)?.inputs;
    if (i) managed.add(key(String(i.tenant), String(i.database)));
  }
  nonPostgresWarnings(summary, before, after, removedServers, serverEngines, managed);
  summary.rows.sort(compareRows);
  summary.warnings = [...new Set(summary.warnings)].sort();
  summary.notes = [...new Set(summary.notes)].sort();
  summary.other = [...new Set(summary.other)].sort();
  return summary;
}

/** A SchemaRollout's plan in words, from the files before and after (the same text `preview --diff` shows). */
function schemaChange(c: Change, summary: Summary): void {
  const i = (c.new?.inputs ?? {}) as Partial<SchemaRolloutInputs>;
  const database = str(i.database) ?? str(c.old?.inputs?.database) ?? c.urnParts.name;
  const list = (summary.schemas ??= []);
  if (c.op === "delete") {
    list.push(`${database}: no longer rolled out by this stack (its migrations stay applied in the tenant databases)`);
    return;
  }
  if (!Array.isArray(i.files) || !Array.isArray(i.tenants)) return;
  const before = c.old?.inputs?.files;
  const plan = rolloutPlan(database, Array.isArray(before) ? (before as MigrationRef[]) : undefined, i.files, i.tenants.length, { canary: Array.isArray(i.policy?.canary) ? i.policy!.canary : [] });
  // Only a rollout that applies something is a schema change (a new tenant alone is created at the head).
  if (!/nothing to apply$/.test(plan)) list.push(plan);
}

function tenantDatabaseChange(c: Change, summary: Summary): void {
  const state = c.new ?? c.old;
  const inputs = state?.inputs ?? state?.outputs ?? {};
  const tenant = str(inputs.tenant) ?? c.urnParts.name;
  const database = str(inputs.database) ?? "?";
  const engine = str(inputs.engine) ?? "postgres";
  const from = placementOf(c.old, true);
  const to = placementOf(c.new, false);
  const who = `${tenant}/${database}`;
  const row = (action: Action, f?: Placement, t?: Placement) => summary.rows.push({ tenant, database, engine, from: describe(f), to: describe(t), action });
  switch (c.op) {
    case "update":
      if (from && to && from.server === to.server) {
        summary.other.push(`update TenantDatabase ${code(who)} in place on ${from.server} (no data moves; e.g. proxy endpoints changed, a status repair, or the end of a rollback window, which drops the fenced copy and backup)`);
      } else {
        row("migrate", from, to);
      }
      return;
    case "create":
      row("create", undefined, to);
      return;
    case "delete":
      row("delete", from, undefined);
      summary.warnings.push(
        `⚠️ **${who} (${engine}) is deleted**: its database and login role are dropped from ${from?.server ?? "its server"} after a safety backup (\`pg_dump\`) into the platform's backup store; its route leaves the catalog.`,
      );
      return;
    case "replace":
      row("replace", from, to);
      summary.warnings.push(`⚠️ **${who} (${engine}) is replaced**: the database is dropped (after a safety backup) and created again empty on ${to?.server ?? from?.server ?? "its server"}. A tenant database should only ever move by migration.`);
      return;
    default:
      summary.other.push(`${c.op} TenantDatabase ${code(who)}`);
  }
}

function serverRow(c: Change, before: Map<string, TenantDbPlacement> | undefined, after: Map<string, TenantDbPlacement> | undefined, engines: Map<string, string>, byUrn: Map<string, Change>): Row {
  const name = c.urnParts.name;
  const parsed = parseServerName(name);
  const added = c.op === "create";
  const here = describe({ server: name });
  let tenant = NONE;
  let database = NONE;
  let engine: string | undefined;
  if (parsed?.isolation === "dedicated") {
    tenant = parsed.tenant;
    database = parsed.database;
    const k = key(tenant, database);
    engine = (added ? after?.get(k)?.engine : before?.get(k)?.engine) ?? engines.get(name);
  } else if (parsed) {
    engine = parsed.engine;
  }
  // Otherwise: SharedCluster's own outputs, or the `engine` input of a platform resource under it.
  engine ??= str(c.old?.outputs?.engine);
  for (const x of byUrn.values()) {
    if (engine) break;
    if ((x.new?.parent ?? x.old?.parent) === c.urn) engine = str((x.new ?? x.old)?.inputs?.engine);
  }
  return { tenant, database, engine: engine ?? "?", from: added ? NONE : here, to: added ? here : NONE, action: added ? "server added" : "server removed" };
}

/**
 * Tenant databases of engines without live migration (everything but PostgreSQL) have no resource
 * of their own: their data stays where it is. Compare where they were (stack outputs) with where
 * the config puts them, and with the servers this preview removes.
 */
/** What to do about an unmanaged tenant database whose placement changes, per engine. */
const NOT_MIGRATED_ADVICE: Record<string, string> = {
  mysql: "tenantfleet moves a mysql database live only once a TenantDatabase manages it: keep the old placement for this `pulumi up` (which starts managing it where it is), then change it; or copy the data yourself.",
  // A stack from before Redis instances: its Redis databases lived in the host's own instance, unmanaged.
  redis: "Each Redis tenant database is an instance of its own now, managed and moved live from then on; the keys in the host's own instance are not copied into it (the host is kept, nothing is deleted): copy them yourself if the application needs them (e.g. MIGRATE … KEYS, or an RDB restored into the new instance).",
};

function nonPostgresWarnings(summary: Summary, before: Map<string, TenantDbPlacement> | undefined, after: Map<string, TenantDbPlacement> | undefined, removed: Set<string>, engines: Map<string, string>, managed: Set<string>): void {
  const covered = new Set<string>();
  for (const b of before?.values() ?? []) {
    if (b.engine === "postgres" || managed.has(key(b.tenant, b.database))) continue;
    const who = `${b.tenant}/${b.database} (${b.engine})`;
    const a = after?.get(key(b.tenant, b.database));
    const gone = removed.has(b.server);
    if (gone) covered.add(b.server);
    if (a && a.server !== b.server) {
      summary.warnings.push(
        `⚠️ **${who}: its data is not migrated**: it is placed on ${a.server}, which starts empty, while its data ${gone ? `is deleted with ${b.server}` : `stays on ${b.server}`}. ${NOT_MIGRATED_ADVICE[b.engine] ?? `${b.engine} has no live migration yet: copy the data yourself before \`pulumi up\`, or keep the old placement.`}`,
      );
    } else if (!a && after && gone) {
      summary.warnings.push(`⚠️ **${who} is deleted with its server ${b.server}**: tenantfleet takes no backup of ${b.engine} databases.`);
    } else if (!a && after) {
      summary.notes.push(`${who} leaves the config; its data stays on ${b.server} (tenantfleet does not drop ${b.engine} databases).`);
    } else if (gone) {
      summary.warnings.push(`⚠️ **${who} is deleted with its server ${b.server}**: its data is not migrated.`);
    }
  }
  // Without the previous stack outputs: warn for every removed server that may hold such data.
  for (const server of removed) {
    if (covered.has(server) || before) continue;
    const parsed = parseServerName(server);
    const engine = parsed?.isolation === "shared" ? parsed.engine : engines.get(server);
    if (engine === "postgres") continue;
    summary.warnings.push(
      `⚠️ **Server ${server} is removed${engine ? ` (${engine})` : ""}**: tenant databases on it that are not PostgreSQL lose their data (no live migration for ${engine ?? "that engine"} yet).`,
    );
  }
}

const actionOrder = (a: Action) => ACTIONS.indexOf(a);
const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function compareRows(a: Row, b: Row): number {
  return cmp(a.tenant, b.tenant) || cmp(a.database, b.database) || actionOrder(a.action) - actionOrder(b.action) || cmp(a.from, b.from) || cmp(a.to, b.to);
}

/** `2 tenant databases migrate, 1 server added`. */
export function countLine(rows: Row[]): string {
  const n = (a: Action) => rows.filter((r) => r.action === a).length;
  const dbs = (k: number) => `${k} tenant database${k === 1 ? "" : "s"}`;
  const servers = (k: number) => `${k} server${k === 1 ? "" : "s"}`;
  const parts = [
    n("migrate") && `${dbs(n("migrate"))} migrate${n("migrate") === 1 ? "s" : ""}`,
    n("create") && `${dbs(n("create"))} created`,
    n("delete") && `${dbs(n("delete"))} deleted`,
    n("replace") && `${dbs(n("replace"))} replaced`,
    n("server added") && `${servers(n("server added"))} added`,
    n("server removed") && `${servers(n("server removed"))} removed`,
  ].filter(Boolean);
  return parts.length ? parts.join(", ") : "No tenant changes";
}

/** A table cell: one line, `|` escaped. */
export function cell(s: string): string {
  return s.replace(/\r?\n/g, " ").replace(/\|/g, "\\|");
}

function fenced(text: string): string {
  const longest = Math.max(0, ...(text.match(/`+/g) ?? []).map((m) => m.length));
  const fence = "`".repeat(Math.max(3, longest + 1));
  return `${fence}text\n${text.replace(/\s+$/, "")}\n${fence}`;
}

export function renderSummary(s: Summary): string {
  const title = `### tenantfleet preview${s.stack ? ` of stack ${code(s.stack)}` : ""}`;
  const out: string[] = [];
  if (s.failed) {
    out.push(`${title}: failed`, "", "The preview failed, so nothing is planned yet. Fix what it reports and push again:", "");
    for (const d of s.diagnostics) out.push(`**${d.severity}**${d.urn ? ` on ${code(parseUrn(d.urn).name)}` : ""}`, "", fenced(d.message), "");
    if (s.notes.length) out.push(...s.notes.map((n) => `- ${n}`), "");
    return out.join("\n").replace(/\n+$/, "\n");
  }
  const schemas = s.schemas ?? [];
  const rollouts = schemas.length ? `${schemas.length} schema rollout${schemas.length > 1 ? "s" : ""}` : "";
  out.push(title, "", `${s.rows.length || !rollouts ? countLine(s.rows) : ""}${s.rows.length && rollouts ? "; " : ""}${rollouts}.`, "");
  if (s.rows.length) {
    out.push("| tenant | database | engine | from → to | action |", "|---|---|---|---|---|");
    for (const r of s.rows) out.push(`| ${[r.tenant, r.database, r.engine, `${r.from} → ${r.to}`, r.action].map(cell).join(" | ")} |`);
    out.push("");
  }
  if (schemas.length) out.push("**Schema migrations** (canary first, then the rest; a tenant database that fails keeps its schema and fails `pulumi up`)", "", ...schemas.map((x) => `- ${x}`), "");
  if (s.warnings.length) out.push("**Destructive changes: review before merging**", "", ...s.warnings.map((w) => `- ${w}`), "");
  if (s.notes.length) out.push("**Notes**", "", ...s.notes.map((n) => `- ${n}`), "");
  if (s.diagnostics.length) {
    out.push("**Diagnostics**", "");
    for (const d of s.diagnostics) out.push(`${d.severity}${d.urn ? ` on ${code(parseUrn(d.urn).name)}` : ""}:`, "", fenced(d.message), "");
  }
  if (s.other.length) out.push("<details><summary>Other changes (no tenant data moves)</summary>", "", ...s.other.map((o) => `- ${o}`), "", "</details>", "");
  return out.join("\n").replace(/\n+$/, "\n");
}

/** Parse the CLI's output; a useful error when it is not preview JSON (e.g. the CLI printed an error instead). */
export function parsePreviewJson(text: string): PreviewJson {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    const head = text.trim().split("\n").slice(0, 5).join("\n");
    throw new Error(`not JSON from \`pulumi preview --json\` (${(e as Error).message})${head ? `; it starts with:\n${head}` : ": the input is empty"}`);
  }
  if (!isRecord(json) || (!Array.isArray(json.steps) && !Array.isArray(json.diagnostics))) {
    throw new Error("not the output of `pulumi preview --json`: expected an object with `steps` or `diagnostics`");
  }
  return json as PreviewJson;
}

export function previewSummaryMarkdown(text: string, opts: { stack?: string } = {}): string {
  return renderSummary(summarizePreview(parsePreviewJson(text), opts));
}
