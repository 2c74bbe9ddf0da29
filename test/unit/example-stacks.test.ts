/**
 * The example stacks are documentation users copy: they must validate, and build a fleet under the
 * cloud mocks with the shape the comments promise.
 */
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { load } from "js-yaml";
import { describe, expect, it } from "vitest";
import { validateFleetConfig } from "../../stacks/config";
import { ofType, runFleet } from "./cloud-mocks";

function raw(stack: string): Record<string, unknown> {
  const doc = load(readFileSync(path.join(__dirname, "..", "..", "stacks", `Pulumi.${stack}.yaml`), "utf8")) as { config: Record<string, unknown> };
  return Object.fromEntries(Object.entries(doc.config).map(([k, v]) => [k.replace(/^tenantfleet:/, ""), v]));
}

describe.each([
  ["aws-example", "aws:ec2/instance:Instance"],
  ["gcp-example", "gcp:compute/instance:Instance"],
])("stacks/Pulumi.%s.yaml", (stack, instanceType) => {
  it("validates", () => {
    const r = validateFleetConfig(raw(stack));
    expect(r.ok ? [] : r.problems).toEqual([]);
  });

  it("builds one VM per server (4 shared clusters, 1 dedicated), plus the bastion; the shared Redis host runs acme/cache's instance", async () => {
    const rs = await runFleet(raw(stack), { stack });
    const names = ofType(rs, instanceType).map((i) => i.name).sort();
    expect(names.filter((n) => !n.startsWith("proxy-"))).toEqual(["bastion", "dedicated-acme-app-eu-west", "shared-mysql-us-east", "shared-postgres-eu-west", "shared-postgres-us-east", "shared-redis-eu-west"]);
    // Without tenantfleet:bastionPrivateKey the fleet still builds; migrations then fail with a message naming the key.
    const tenantDbs = ofType(rs, "pulumi-nodejs:dynamic/tenantfleet:TenantDatabase");
    expect(tenantDbs.map((d) => d.name).sort()).toEqual(["acme-app", "acme-cache", "globex-app", "globex-shop", "initech-app"]);
    for (const d of tenantDbs) {
      expect(d.inputs.bastion?.port, d.name).toBe(22);
      expect(d.inputs.bastionPrivateKey, d.name).toBeUndefined();
    }
  });
});
