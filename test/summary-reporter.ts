/**
 * Prints one closing line, `N passed, N failed, N skipped`, after vitest's own report, so CI logs
 * end with a count any reader (or tool) understands. A test file that failed to load or whose
 * hooks failed counts as one failure.
 */
import type { Reporter, TestModule } from "vitest/node";

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>): void {
    let passed = 0;
    let failed = unhandledErrors.length;
    let skipped = 0;
    for (const m of testModules) {
      let moduleFailures = 0;
      for (const t of m.children.allTests()) {
        const state = t.result().state;
        if (state === "passed") passed++;
        else if (state === "failed") moduleFailures++;
        else skipped++;
      }
      if (moduleFailures === 0 && m.errors().length > 0) moduleFailures = 1;
      failed += moduleFailures;
    }
    console.log(`\n${passed} passed, ${failed} failed, ${skipped} skipped`);
  }
}
