/** Pure: a rollout's plan in words (the preview's text) and the edits a preview refuses. */
import type { MigrationRef, RolloutPolicy } from "./types";

/** A file's name and checksum (what the state keeps; the text is in the catalog). */
export const ref = (f: MigrationRef): MigrationRef => ({ name: f.name, checksum: f.checksum });
/** The same files in the same order, unchanged. */
export const sameRefs = (a: MigrationRef[] = [], b: MigrationRef[] = []) => a.length === b.length && a.every((f, i) => f.name === b[i]!.name && f.checksum === b[i]!.checksum);

const head = (files: MigrationRef[]) => files[files.length - 1]?.name ?? "(no migrations)";

/** Files that were in the last applied set and differ now (edited or removed), with why. */
export function changedAppliedFiles(applied: MigrationRef[], now: MigrationRef[]): string[] {
  const byName = new Map(now.map((f) => [f.name, f.checksum]));
  const out: string[] = [];
  for (const a of applied) {
    const c = byName.get(a.name);
    if (c === undefined) out.push(`migration ${a.name} has been applied but is no longer in the folder: a file that has run must stay`);
    else if (c !== a.checksum) out.push(`migration ${a.name} has been applied (checksum ${a.checksum.slice(0, 12)}) and its file has changed (now ${c.slice(0, 12)}): an applied migration must not change; revert the edit and add a new migration`);
  }
  // A new file must sort after the last applied one: inserted before it, it would run out of order.
  const last = applied[applied.length - 1];
  if (last) {
    for (const f of now) if (!applied.some((a) => a.name === f.name) && f.name < last.name) out.push(`migration ${f.name} is new but sorts before ${last.name}, which has been applied: number it after ${last.name}`);
  }
  return out;
}

/** `app: 0002_orders → 0003_discount on 480 tenant databases (canary: acme, globex)`. */
export function rolloutPlan(database: string, before: MigrationRef[] | undefined, files: MigrationRef[], tenants: number, policy: Pick<RolloutPolicy, "canary">): string {
  const on = `${tenants} tenant database${tenants === 1 ? "" : "s"}`;
  const known = new Set((before ?? []).map((f) => `${f.name}:${f.checksum}`));
  const pending = files.filter((f) => !known.has(`${f.name}:${f.checksum}`));
  if (!pending.length) return `${database}: at ${head(files)} on ${on}, nothing to apply`;
  const list = pending.length > 1 ? ` (${pending.length} migrations: ${pending.map((f) => f.name).join(", ")})` : "";
  const canary = policy.canary.length ? ` (canary: ${policy.canary.join(", ")})` : "";
  return `${database}: ${before?.length ? head(before) : "(empty)"} → ${head(files)}${list} on ${on}${canary}`;
}
