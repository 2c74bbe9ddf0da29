import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts", "**/*.test.ts"],
    exclude: ["node_modules/**", ".pulumi-state/**", ".tenantfleet/**"],
    // Integration and e2e tests start real servers and run the real Pulumi CLI.
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // 2 cores: the e2e file runs the CLI while integration files start servers; more forks only thrash.
    maxWorkers: 2,
    reporters: ["default", "./test/summary-reporter.ts"],
  },
});
