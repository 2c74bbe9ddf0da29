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

/**
 * The dynamic-provider plugin's provider resource, declared by the program instead of left to the
 * engine. The engine configures a default `pulumi-nodejs` provider with the stack's whole config
 * (pkg/resource/deploy/target.go, GetPackageConfig) and stores it in its state twice, inputs and
 * outputs: at 1,000 tenants that is 2 × the `tenantfleet:tenants` object, and every tier edit
 * rewrites it. tenantfleet's providers read nothing from the config (everything comes as inputs),
 * so this one is configured with nothing. Its alias is the default provider's name: a stack made
 * before it keeps its provider (the engine treats an aliased provider as the same one) and no
 * resource of it is replaced. The Fleet declares it and hands it to its children (the component's
 * `providers`), so every dynamic resource in a fleet uses it.
 */
export class DynamicProviderHost extends pulumi.ProviderResource {
  constructor() {
    super("pulumi-nodejs", "tenantfleet", {}, { aliases: [{ name: "default" }] });
  }
}

/** A dynamic resource whose provider is `provider` exported by `modulePath`; type `pulumi-nodejs:dynamic/tenantfleet:<type>`. */
export abstract class ProjectResource extends pulumi.CustomResource {
  protected constructor(type: string, modulePath: string, name: string, props: pulumi.Inputs, opts?: pulumi.CustomResourceOptions) {
    super(`pulumi-nodejs:dynamic/tenantfleet:${type}`, name, { ...props, __provider: providerModule(modulePath) }, opts);
  }
}

/**
 * A resource's URN, for building the URN of a child (`pulumi.createUrn`) without depending on the
 * resource: an input that holds a component's URN makes the SDK wait for every child of that
 * component, and for a Fleet's TenantDatabases that is each other (a deadlock).
 */
export function urnOnly(r: pulumi.Resource): pulumi.Output<string> {
  return pulumi.output(new Promise<string>((resolve) => r.urn.apply((u) => (resolve(u), u))));
}
