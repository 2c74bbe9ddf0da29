/** InstancePorts — a stable port for each instance on a host (see provider.ts). */
import type * as pulumi from "@pulumi/pulumi";
import { ProjectResource } from "../lazy-provider";
import type { InstancePortsInputs } from "./types";

export type { InstancePortsInputs } from "./types";

export class InstancePorts extends ProjectResource {
  declare readonly host: pulumi.Output<string>;
  declare readonly names: pulumi.Output<string[]>;
  /** Each instance's port, by name. */
  declare readonly ports: pulumi.Output<Record<string, number>>;

  constructor(name: string, args: { [K in keyof InstancePortsInputs]: pulumi.Input<InstancePortsInputs[K]> }, opts?: pulumi.CustomResourceOptions) {
    super("InstancePorts", "dynamic-providers/instance-ports/provider.ts", name, { ...args, ports: undefined }, opts);
  }
}
