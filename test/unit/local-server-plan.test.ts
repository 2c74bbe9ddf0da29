import { describe, expect, it } from "vitest";
import { planLocalServer } from "../../dynamic-providers/local-server/plan";
import type { LocalServerInputs, LocalServerOutputs } from "../../dynamic-providers/local-server/types";

const inputs: LocalServerInputs = { engine: "postgres", serverName: "shared-postgres-eu-west", stack: "local", region: "eu-west", role: "shared" };
const olds: LocalServerOutputs = {
  ...inputs,
  dirName: "shared-postgres-eu-west-abc123",
  dir: "/x",
  host: "127.0.0.1",
  port: 25432,
  serverId: 25432,
  adminUser: "admin",
  adminPassword: "s3cret",
  version: "15.18",
  state: "running",
};

describe("planLocalServer", () => {
  it("plans nothing when inputs are unchanged and the server runs", () => {
    expect(planLocalServer(olds, inputs, "running")).toMatchObject({ changes: false, replaces: [], diffs: [] });
  });

  it("replaces the server when its engine changes", () => {
    expect(planLocalServer(olds, { ...inputs, engine: "mysql" }, "running")).toMatchObject({ changes: true, replaces: ["engine"] });
  });

  it("updates in place when only a label (region, role) changes", () => {
    const plan = planLocalServer(olds, { ...inputs, region: "us-east" }, "running");
    expect(plan).toMatchObject({ changes: true, replaces: [], diffs: ["region"] });
    expect(plan.reasons).toEqual(["region eu-west → us-east"]);
  });

  it("plans a restart when the process is not running", () => {
    const plan = planLocalServer(olds, inputs, "stopped");
    expect(plan).toMatchObject({ changes: true, replaces: [], diffs: ["state"] });
    expect(plan.reasons[0]).toContain("restarted");
  });

  it("plans a re-initialisation on the same port when the data dir is gone", () => {
    const plan = planLocalServer(olds, inputs, "missing");
    expect(plan).toMatchObject({ changes: true, replaces: [] });
    expect(plan.reasons[0]).toContain("re-initialised on the same port");
  });
});
