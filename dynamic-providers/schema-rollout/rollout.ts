/**
 * The order a rollout takes: the canary tenants first, then every other tenant database in
 * parallel, at most `perServer` at once on one server (its connections come out of the server's
 * reserve, so the proxies' pools are never starved) and `parallel` at once in all. After the
 * canary, a failure beyond `maxFailures` stops the rollout from starting more; those running
 * finish. Engine-neutral: `apply` does the work.
 */
import type { RolloutPolicy } from "./types";

export interface RolloutTarget {
  tenant: string;
  /** Server name: the per-server cap groups by it. */
  server: string;
}

export interface RolloutOutcome<R> {
  done: { tenant: string; result: R }[];
  failed: { tenant: string; error: string }[];
  /** Not started: the canary failed, or the failure threshold was passed. */
  skipped: string[];
  /** Set when the rollout stopped early, saying why. */
  stopped?: string;
}

export interface RolloutProgress {
  done: number;
  failed: number;
  total: number;
}

/** Run `targets` through `apply` as the policy says; `progress` after each one ends. */
export async function runRollout<T extends RolloutTarget, R>(
  targets: T[],
  apply: (t: T) => Promise<R>,
  policy: RolloutPolicy,
  progress: (p: RolloutProgress) => void = () => undefined,
): Promise<RolloutOutcome<R>> {
  const out: RolloutOutcome<R> = { done: [], failed: [], skipped: [] };
  const canaries = policy.canary.map((c) => targets.find((t) => t.tenant === c)).filter((t): t is T => !!t);
  const rest = targets.filter((t) => !canaries.includes(t));
  const report = () => progress({ done: out.done.length, failed: out.failed.length, total: targets.length });

  await pass(canaries, 0);
  if (out.failed.length) {
    out.stopped = `the canary failed (${out.failed.map((f) => f.tenant).join(", ")}): no other tenant database was touched`;
    out.skipped.push(...rest.map((t) => t.tenant));
    return out;
  }
  await pass(rest, policy.maxFailures);
  return out;

  /** Run `list` within the caps until it is empty or more than `tolerated` of it failed. */
  async function pass(list: T[], tolerated: number): Promise<void> {
    const queue = [...list];
    const perServer = new Map<string, number>();
    let running = 0;
    let failures = 0;
    await new Promise<void>((resolve) => {
      const next = () => {
        if (failures > tolerated && !out.stopped) {
          out.stopped = `${failures} tenant database${failures > 1 ? "s" : ""} failed after the canary, more than the ${tolerated} tolerated (maxFailures): the rollout stopped starting others`;
        }
        if (out.stopped) {
          out.skipped.push(...queue.splice(0).map((t) => t.tenant));
        }
        while (queue.length && running < policy.parallel) {
          const i = queue.findIndex((t) => (perServer.get(t.server) ?? 0) < policy.perServer);
          if (i < 0) break;
          const t = queue.splice(i, 1)[0]!;
          running++;
          perServer.set(t.server, (perServer.get(t.server) ?? 0) + 1);
          apply(t).then(
            (result) => out.done.push({ tenant: t.tenant, result }),
            (e: Error) => {
              failures++;
              out.failed.push({ tenant: t.tenant, error: e.message });
            },
          ).finally(() => {
            running--;
            perServer.set(t.server, perServer.get(t.server)! - 1);
            report();
            next();
          });
        }
        if (running === 0) resolve();
      };
      next();
    });
  }
}
