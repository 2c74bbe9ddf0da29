/**
 * A dynamic provider whose serialized closure captures nothing but a project-relative module path.
 *
 * Pulumi serializes a dynamic provider's code into the state and runs it in a separate process.
 * Serializing our providers whole would drag pg/mysql2/ioredis and every helper into that string,
 * and would freeze old code into old resources. Instead each method finds the project root (the
 * provider process runs in the program's directory, below Pulumi.yaml) and requires the
 * implementation from the project's own files, loaded with tsx by the pulumi-resource-pulumi-nodejs
 * shim. Captured state is one plain string; clients, pools and sockets are created per call.
 */
import type * as pulumi from "@pulumi/pulumi";

export function lazyProvider(modulePath: string): pulumi.dynamic.ResourceProvider {
  const load = (): pulumi.dynamic.ResourceProvider => {
    const p = require("path");
    const fs = require("fs");
    let dir: string = process.cwd();
    while (!fs.existsSync(p.join(dir, "Pulumi.yaml"))) {
      const up = p.dirname(dir);
      if (up === dir) throw new Error(`tenantfleet: no Pulumi.yaml above ${process.cwd()}; cannot load ${modulePath}`);
      dir = up;
    }
    return require(p.join(dir, modulePath)).provider;
  };
  return {
    check: (olds, news) => load().check!(olds, news),
    diff: (id, olds, news) => load().diff!(id, olds, news),
    create: (inputs) => load().create(inputs),
    // A provider without `read` keeps its state on refresh (what Pulumi does for one that has none).
    read: async (id, props) => {
      const p = load();
      return p.read ? p.read(id, props) : { id, props };
    },
    update: (id, olds, news) => load().update!(id, olds, news),
    delete: (id, props) => load().delete!(id, props),
  };
}
