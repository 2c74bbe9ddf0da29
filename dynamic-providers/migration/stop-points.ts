/**
 * The step boundaries of a move, named, so a test can stop a real `pulumi up` at any of them as
 * deterministically as a kill can be (DESIGN.md "A migration"; the kill matrix in test/e2e).
 *
 * With `TENANTFLEET_STOP_AT=<step>` in the environment, the process that reaches `<step>` writes
 * `<step> <pid>` to `TENANTFLEET_STOP_FILE` and freezes: its whole thread blocks, so nothing else
 * of it runs (no lease renewal, no further step), exactly as if it had been killed there; the
 * test then SIGKILLs it and everything it started. Unset (every real run), a stop point costs one
 * environment lookup.
 */
import { renameSync, writeFileSync } from "node:fs";

export const MOVE_STEPS = [
  /** Preflight passed; nothing is made yet. */
  "after-preflight",
  /** The safety backup is being written (its `.partial` file exists). */
  "backup",
  /** The target copy exists (database, role, schema); no replication yet. */
  "after-prepare",
  /** Native replication is copying the initial data. */
  "sync",
  /** Initial copy done; catching up. */
  "catchup",
  /** Every proxy drained and holds the tenant's queries; nothing committed. */
  "paused",
  /** The catalog commits the new route; the proxies have not acknowledged the switch. */
  "after-commit",
  /** The proxies switched and resumed on the target. */
  "after-switch",
  /** Replication objects removed on both servers; the source copy not yet fenced. */
  "after-cleanup",
  /** The source copy fenced. */
  "after-fence",
  /** The move is recorded done; the provider has not yet returned to Pulumi. */
  "done",
] as const;

export type MoveStep = (typeof MOVE_STEPS)[number];

/**
 * Stop here if asked to. `ready`, when given, is polled first (every 5 ms, up to 60 s): the step
 * is "during" something that must have visibly begun.
 */
export async function stopPoint(step: MoveStep, ready?: () => Promise<boolean>): Promise<void> {
  if (process.env.TENANTFLEET_STOP_AT !== step) return;
  if (ready) {
    for (const end = Date.now() + 60_000; Date.now() < end && !(await ready().catch(() => false)); ) await new Promise((r) => setTimeout(r, 5));
  }
  const file = process.env.TENANTFLEET_STOP_FILE;
  if (file) {
    // Whole or not at all: a test polling for the file must never read it half-written.
    writeFileSync(`${file}.tmp`, `${step} ${process.pid}\n`);
    renameSync(`${file}.tmp`, file);
  }
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
}
