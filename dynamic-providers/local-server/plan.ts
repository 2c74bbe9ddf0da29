/** Pure planning for LocalServer: what a change of inputs (or a dead process) means. */
import type { LocalServerInputs, LocalServerOutputs, ServerState } from "./types";

/** Inputs whose change needs a different server (a new data dir): a replace. */
export const REPLACE_KEYS = ["engine", "serverName", "stack"] as const;
/** Inputs that change in place: labels, and a Redis instance's maxmemory (applied to the running instance). */
export const UPDATE_KEYS = ["region", "role", "tenant", "database", "maxmemoryMb"] as const;

export interface LocalServerPlan {
  changes: boolean;
  replaces: string[];
  /** Properties that change, for `pulumi preview --diff`. */
  diffs: string[];
  deleteBeforeReplace: boolean;
  /** Why, in words, for logs. */
  reasons: string[];
}

export function planLocalServer(olds: LocalServerOutputs, news: LocalServerInputs, live: ServerState): LocalServerPlan {
  const replaces = REPLACE_KEYS.filter((k) => olds[k] !== news[k]);
  const updates = UPDATE_KEYS.filter((k) => (olds[k] ?? undefined) !== (news[k] ?? undefined));
  const reasons: string[] = [
    ...replaces.map((k) => `${k} ${olds[k]} → ${news[k]} needs a new server`),
    ...updates.map((k) => `${k} ${olds[k] ?? "(none)"} → ${news[k] ?? "(none)"}`),
  ];
  const diffs: string[] = [...replaces, ...updates];
  if (live !== "running" && replaces.length === 0) {
    reasons.push(live === "missing" ? "data dir is missing: it will be re-initialised on the same port" : "server process is not running: it will be restarted");
    diffs.push("state");
  }
  return {
    changes: diffs.length > 0,
    replaces: [...replaces],
    diffs,
    deleteBeforeReplace: false,
    reasons,
  };
}
