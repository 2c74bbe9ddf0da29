import { describe, expect, it } from "vitest";
import { provider } from "../../dynamic-providers/control-catalog/provider";
import { UNKNOWN } from "../../dynamic-providers/preview";
import { CATALOG_VERSION } from "../../proxy/catalog/schema";

const olds = { serverName: "control-catalog", host: "127.0.0.1", port: 15432, adminUser: "tf", adminPassword: "pw", database: "tenantfleet_catalog", url: "postgres://…", schemaVersion: CATALOG_VERSION };

describe("ControlCatalog diff", () => {
  it("an address unknown at preview (its server is being updated) is an update, not a replacement", async () => {
    const d = await provider.diff!("id", olds, { ...olds, host: UNKNOWN, port: UNKNOWN as unknown as number });
    expect(d).toMatchObject({ changes: true, replaces: [] });
  });

  it("a known new address replaces it; nothing changed is no change", async () => {
    expect(await provider.diff!("id", olds, { ...olds, port: 15433 })).toMatchObject({ changes: true, replaces: ["port"] });
    expect(await provider.diff!("id", olds, { ...olds })).toMatchObject({ changes: false, replaces: [] });
  });
});
