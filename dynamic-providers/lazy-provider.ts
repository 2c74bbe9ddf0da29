/**
 * The base of tenantfleet's dynamic resources: a provider that is one line of state.
 *
 * Pulumi runs a dynamic resource's provider from the `__provider` property of its state, a module
 * whose `handler()` returns the provider. `pulumi.dynamic.Resource` fills it by serializing the
 * provider's closure: kilobytes per resource (a wrapper per method), stored in the inputs and again
 * in the outputs of every resource, and re-serialized for every resource the program declares. Ours
 * is written out instead: a module that requires the implementation from the project's own files
 * (loaded with tsx by bin/pulumi-resource-pulumi-nodejs).
 * It is the same text for every resource of a type, and it never freezes old code into old state:
 * each implementation handles the state every earlier version wrote.
 */
import * as pulumi from "@pulumi/pulumi";

/**
 * The `__provider` module text for the implementation at `modulePath` (relative to the project).
 * Pulumi's dynamic-provider host runs as the plugin process's main module, from the project's own
 * `node_modules/@pulumi/pulumi/cmd/dynamic-provider` (bin/pulumi-resource-pulumi-nodejs starts it,
 * and so does Pulumi's own plugin), five directories below the project: the module requires the
 * implementation from there, whatever the plugin's working directory.
 */
export function providerModule(modulePath: string): string {
  return `exports.handler=()=>require(require.main.path+${JSON.stringify(`/../../../../../${modulePath}`)}).provider`;
}

/** A dynamic resource whose provider is `provider` exported by `modulePath`; type `pulumi-nodejs:dynamic/tenantfleet:<type>`. */
export abstract class ProjectResource extends pulumi.CustomResource {
  protected constructor(type: string, modulePath: string, name: string, props: pulumi.Inputs, opts?: pulumi.CustomResourceOptions) {
    super(`pulumi-nodejs:dynamic/tenantfleet:${type}`, name, { ...props, __provider: providerModule(modulePath) }, opts);
  }
}
