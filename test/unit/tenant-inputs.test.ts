/**
 * A TenantDatabase's inputs name their server and the catalog once, in `dependsOn`
 * (components/tenant.ts): `valueOnly` keeps an Output's value, secrecy and unknowns and drops
 * its dependencies, so `propertyDependencies` does not repeat the URNs.
 */
import * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";
import { valueOnly } from "../../components/tenant";

type Inner<T> = { promise(withUnknowns?: boolean): Promise<T>; isKnown: Promise<boolean>; isSecret: Promise<boolean>; allResources(): Promise<Set<unknown>>; resources(): Set<unknown> };
const inner = <T>(o: pulumi.Output<T>) => o as unknown as Inner<T>;
const OutputCtor = pulumi.Output as unknown as new <T>(r: Set<unknown>, v: Promise<T>, k: Promise<boolean>, s: Promise<boolean>, a: Promise<Set<unknown>>) => pulumi.Output<T>;
/** An Output of `value` that comes from `from` (a stand-in object: an Output only carries it). */
const fromResource = <T>(value: T, from: object, known = true, secret = false) =>
  new OutputCtor<T>(new Set([from]), Promise.resolve(value), Promise.resolve(known), Promise.resolve(secret), Promise.resolve(new Set([from])));

describe("valueOnly", () => {
  it("keeps the value and drops the resources it came from (the SDK's source of propertyDependencies)", async () => {
    const server = { name: "shared-postgres-eu-west" };
    const address = fromResource({ host: "10.0.0.5", port: 5432 }, server);
    expect([...(await inner(address).allResources())]).toEqual([server]);
    const stripped = valueOnly(address);
    expect(await inner(stripped).promise()).toEqual({ host: "10.0.0.5", port: 5432 });
    expect([...(await inner(stripped).allResources())]).toEqual([]);
    expect([...inner(stripped).resources()]).toEqual([]);
    expect(await inner(stripped).isKnown).toBe(true);
    expect(await inner(stripped).isSecret).toBe(false);
  });

  it("keeps a secret secret", async () => {
    const stripped = valueOnly(fromResource("s3cret", {}, true, true));
    expect(await inner(stripped).isSecret).toBe(true);
    expect(await inner(stripped).promise()).toBe("s3cret");
  });

  it("keeps an unknown unknown (a server not created yet, at preview): its apply callbacks do not run", async () => {
    const unknown = valueOnly(fromResource<string>(undefined as unknown as string, {}, false, true));
    expect(await inner(unknown).isKnown).toBe(false);
    let ran = false;
    const derived = unknown.apply((v) => ((ran = true), v));
    expect(await inner(derived).isKnown).toBe(false);
    expect(ran).toBe(false);
  });
});
