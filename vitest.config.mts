import { defineConfig } from "vitest/config";

const KILL_MATRIX = "test/e2e/kill-matrix.test.ts";
const EXCLUDE = ["node_modules/**", ".pulumi-state/**", ".tenantfleet/**"];

export default defineConfig({
  test: {
    // Integration and e2e tests start real servers and run the real Pulumi CLI.
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // 2 cores: the e2e file runs the CLI while integration files start servers; more forks only thrash.
    maxWorkers: 2,
    reporters: ["default", "./test/summary-reporter.ts"],
    // Projects with a higher groupOrder start when the lower ones have finished.
    projects: [
      { extends: true, test: { name: "tests", include: ["test/**/*.test.ts", "**/*.test.ts"], exclude: [...EXCLUDE, KILL_MATRIX], sequence: { groupOrder: 0 } } },
      // The kill matrix runs last, with the machine to itself: on CI, beside the other e2e files,
      // its 13 cases took 112–292 s each (2,582 s); alone one takes about 25 s.
      { extends: true, test: { name: "kill-matrix", include: [KILL_MATRIX], exclude: EXCLUDE, sequence: { groupOrder: 1 } } },
    ],
  },
});
