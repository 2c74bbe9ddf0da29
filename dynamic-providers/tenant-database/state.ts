/**
 * What Pulumi's state holds of a TenantDatabase, and how the provider reads it back.
 *
 * A stack holds one TenantDatabase per tenant database, so its state is what a fleet's checkpoint
 * grows with. Each secret is stored once, and all of them in one secret (each secret value costs
 * its own ~110-byte envelope in the state):
 * - The credentials the provider logs in with (the server's and the catalog's admin passwords, the
 *   bastion's key) come in as inputs, but `check` takes them out of the inputs it returns (the
 *   inputs the engine stores) and keeps them in this process for the `diff`, `create` and `update`
 *   the engine runs next, in the same plugin process. The outputs keep them once, in `access`:
 *   `delete` and `read` get nothing but the outputs.
 * - The role's password is in `access` too (the program builds the connection string from it;
 *   earlier versions kept it in a `password` output of its own, or inside `connectionString`); the
 *   SCRAM verifier is in the catalog's route (and the server's role), where it is used.
 * - The resource's own URN (for progress lines) comes in as an input that `check` takes out, like
 *   the credentials: `create` and `update` report on the resource; `delete` and `read` (which get
 *   the outputs only) report on the stack, naming the database.
 * - `retained` is stored only when a copy is retained.
 * Inputs are not mirrored into the outputs beyond what `delete`, `read` and the next `diff` need.
 *
 * State written by earlier versions (every input mirrored, `password` and `scramVerifier`
 * outputs, the credentials at the top level) reads back through `fromState` unchanged; `diff`
 * reports the oldest shape (credentials at the top level) as a change and `update` rewrites it in
 * this shape without touching any server. The previous shape (`password` and `resourceUrn` beside
 * `access`) is read as it is and rewritten by the next update that has work to do: a `pulumi up`
 * of this version on a stack made by the previous one changes nothing.
 */
import { isUnknown } from "../preview";
import type { RetainedCopy, TenantDatabaseInputs, TenantDatabaseOutputs } from "./types";

/** The secrets the provider logs in with, and (in the stored outputs) the role's password. */
export interface TenantDatabaseAccess {
  serverAdminPassword: string;
  catalogPassword: string;
  bastionPrivateKey?: string;
  /** The role's password (stored outputs only; absent in the previous version's `access`). */
  password?: string;
}

const ACCESS_KEYS = ["serverAdminPassword", "catalogPassword", "bastionPrivateKey"] as const;

/** Checked inputs as stored: the program's inputs less the credentials and the URN. */
export type StoredInputs = Omit<TenantDatabaseInputs, (typeof ACCESS_KEYS)[number] | "resourceUrn">;

/** What `check` keeps of a resource's inputs for the steps that follow it. */
interface Taken {
  access: TenantDatabaseAccess;
  resourceUrn?: string;
}

/** Outputs as stored. */
export interface StoredOutputs
  extends Omit<TenantDatabaseOutputs, (typeof ACCESS_KEYS)[number] | "scramVerifier" | "plan" | "retained" | "proxyEndpoints" | "connectionString" | "password" | "resourceUrn"> {
  /** Secret: the credentials and the role's password. */
  access: TenantDatabaseAccess;
  /** Secret; absent when nothing is retained. */
  retained?: RetainedCopy[];
}

const keyOf = (i: { tenant?: unknown; database?: unknown }) => `${String(i.tenant)}/${String(i.database)}`;

/** What `check` took out of the inputs, for this process's next diff/create/update. */
const checked = new Map<string, Taken>();

/** `check`: the credentials and the URN out of the inputs (kept for the steps that follow it). */
export function takeAccess(inputs: TenantDatabaseInputs): StoredInputs {
  const { resourceUrn, ...stored } = inputs as TenantDatabaseInputs & Record<string, unknown>;
  const access: Record<string, unknown> = {};
  for (const k of ACCESS_KEYS) {
    if (stored[k] !== undefined) access[k] = stored[k];
    delete stored[k];
  }
  checked.set(keyOf(inputs), { access: access as unknown as TenantDatabaseAccess, resourceUrn });
  return stored as unknown as StoredInputs;
}

/** Inputs that still hold their credentials (as an earlier version's check returned them). */
function holdsAccess(news: StoredInputs | TenantDatabaseInputs): news is TenantDatabaseInputs {
  return "serverAdminPassword" in news && news.serverAdminPassword !== undefined;
}

/** Checked inputs with their credentials and URN back (create/update). */
export function withAccess(news: StoredInputs | TenantDatabaseInputs): TenantDatabaseInputs {
  const taken = checked.get(keyOf(news));
  if (holdsAccess(news)) return { ...news, resourceUrn: news.resourceUrn ?? taken?.resourceUrn ?? "" };
  if (!taken) {
    throw new Error(
      `tenant database ${keyOf(news)}: the provider has no credentials for it (the engine runs check before every create and update, in the same process); run \`pulumi up\` again`,
    );
  }
  return { ...news, ...taken.access, resourceUrn: taken.resourceUrn } as TenantDatabaseInputs;
}

/** The credentials changed since the state was written (a rotated admin password): the outputs must take them. */
export function accessChanged(olds: TenantDatabaseOutputs, news: StoredInputs | TenantDatabaseInputs): boolean {
  const now: TenantDatabaseAccess | undefined = holdsAccess(news) ? news : checked.get(keyOf(news))?.access;
  if (!now) return false;
  return ACCESS_KEYS.some((k) => !isUnknown(now[k]) && (now[k] ?? undefined) !== (olds[k] ?? undefined));
}

/** Whether the stored outputs are an earlier version's (rewritten by the next update). */
export function isEarlierState(props: Record<string, unknown>): boolean {
  // (The earliest state had `password` too, beside these; this version stores it again, in place
  // of the connection string.)
  return !("access" in props) || "scramVerifier" in props || "serverAdminPassword" in props;
}

/** The role's password, from a connection string an earlier version stored (`postgresql://role:password@…`). */
export function passwordOf(connectionString: string): string {
  const m = /^postgresql:\/\/[^:]*:([^@]*)@/.exec(connectionString);
  if (!m) throw new Error("the stored connection string has no password");
  return decodeURIComponent(m[1]!);
}

/** Stored outputs (this version's or an earlier one's) as the provider works with them. */
export function fromState(props: StoredOutputs | TenantDatabaseOutputs): TenantDatabaseOutputs {
  const p = props as Partial<StoredOutputs> & Partial<TenantDatabaseOutputs>;
  const { access, ...rest } = p;
  return {
    ...(rest as TenantDatabaseOutputs),
    ...(access ?? {}),
    password: access?.password ?? p.password ?? passwordOf(p.connectionString!),
    retained: p.retained ?? [],
  };
}

/** Outputs as they are stored. */
export function toState(outs: TenantDatabaseOutputs): StoredOutputs {
  const { serverAdminPassword, catalogPassword, bastionPrivateKey, password, scramVerifier: _inCatalog, plan: _inputOnly, retained, proxyEndpoints: _earlier, connectionString: _built, resourceUrn: _taken, ...rest } = outs;
  return {
    ...rest,
    access: { serverAdminPassword, catalogPassword, ...(bastionPrivateKey ? { bastionPrivateKey } : {}), password },
    ...(retained.length ? { retained } : {}),
  };
}
