/**
 * Runs the real Fleet component for a cloud platform under `pulumi.runtime.setMocks` (the cloud
 * APIs are the one thing mocked) and records every resource registered: type, name, inputs and the
 * region of the provider it was created with.
 */
import * as pulumi from "@pulumi/pulumi";
import { createHash } from "node:crypto";
import { validateFleetConfig, type RawFleetConfig } from "../../stacks/config";
import { assignPorts } from "../../dynamic-providers/instance-ports/provider";

export interface Registered {
  type: string;
  name: string;
  inputs: Record<string, any>;
  /** Region of the explicit provider (aws/gcp) the resource was created with, if any. */
  region?: string;
}

const CALLS: Record<string, (args: Record<string, any>) => Record<string, any>> = {
  "aws:index/getAvailabilityZones:getAvailabilityZones": () => ({ names: ["zone-a", "zone-b", "zone-c"] }),
  "aws:ec2/getAmi:getAmi": (a) => ({ id: `ami-debian12-${a.owners?.[0]}` }),
  "gcp:organizations/getProject:getProject": () => ({ projectId: "acme-saas", number: "123456789" }),
  "gcp:compute/getImage:getImage": (a) => ({ selfLink: `projects/${a.project}/global/images/family/${a.family}` }),
  "gcp:compute/getZones:getZones": (a) => ({ names: [`${a.region}-a`, `${a.region}-b`] }),
};

/** The private address the mocked cloud gives the instance `name`. */
export function mockIp(name: string): string {
  const h = createHash("sha256").update(name).digest();
  return `10.99.${h[0]}.${h[1]! % 250 + 1}`;
}

/** Computed outputs the clouds would return, shaped like theirs. */
function computed(type: string, name: string, inputs: Record<string, any>): Record<string, any> {
  // Addresses follow the resource's name, as a cloud's would stay with the resource.
  const ip = mockIp(name);
  switch (type) {
    case "random:index/randomPassword:RandomPassword":
      return { result: `mock-password-${name}-0123456789` };
    case "aws:ec2/instance:Instance":
      return { privateIp: ip, publicIp: inputs.associatePublicIpAddress ? "203.0.113.10" : undefined, arn: `arn:aws:ec2:::instance/${name}` };
    case "aws:secretsmanager/secret:Secret":
      return { arn: `arn:aws:secretsmanager:r:1:secret:${inputs.name}` };
    case "aws:s3/bucket:Bucket":
      return { bucket: `${name}-bucket`, arn: `arn:aws:s3:::${name}-bucket` };
    case "aws:s3/bucketObjectv2:BucketObjectv2":
      return { versionId: "v1" };
    case "aws:rds/instance:Instance":
      return { address: `${name}.rds.internal`, port: 5432 };
    case "aws:lb/loadBalancer:LoadBalancer":
      return { dnsName: `${name}.elb.internal`, arn: `arn:lb:${name}` };
    case "aws:lb/targetGroup:TargetGroup":
      return { arn: `arn:tg:${name}` };
    case "aws:iam/role:Role":
    case "aws:iam/instanceProfile:InstanceProfile":
      return { name: `${name}-name`, arn: `arn:aws:iam:::${name}` };
    case "aws:ec2/keyPair:KeyPair":
      return { keyName: name };
    case "gcp:compute/instance:Instance":
      return { networkInterfaces: (inputs.networkInterfaces ?? []).map((ni: any) => ({ ...ni, networkIp: ip, accessConfigs: ni.accessConfigs?.map(() => ({ natIp: "203.0.113.20" })) })) };
    case "gcp:serviceaccount/account:Account":
      return { email: `${inputs.accountId}@acme-saas.iam.gserviceaccount.com` };
    case "gcp:secretmanager/secret:Secret":
      return { secretId: inputs.secretId };
    case "gcp:sql/databaseInstance:DatabaseInstance":
      return { privateIpAddress: "10.200.0.5" };
    case "gcp:storage/bucketObject:BucketObject":
      return { generation: 1 };
    case "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager":
      return { instanceGroup: `groups/${name}` };
    case "gcp:compute/forwardingRule:ForwardingRule":
      return { ipAddress: "10.20.0.100" };
    case "gcp:compute/regionInstanceTemplate:RegionInstanceTemplate":
      return { selfLink: `templates/${name}` };
    case "pulumi-nodejs:dynamic/tenantfleet:ControlCatalog": return { url: `postgres://u:p@${inputs.host}:${inputs.port}/${inputs.database}` };
    // Pure bookkeeping (no cloud API): its real assignment.
    case "pulumi-nodejs:dynamic/tenantfleet:InstancePorts":
      return { ports: assignPorts({}, inputs.names, inputs.firstPort, inputs.lastPort) };
    case "pulumi-nodejs:dynamic/tenantfleet:TenantDatabase":
      return { role: `${inputs.database}__${inputs.tenant}`, password: "secret", status: "ready", epoch: 1 };
  }
  return {};
}

export async function runFleet(raw: RawFleetConfig, opts: { stack?: string; bastionPrivateKey?: string } = {}): Promise<Registered[]> {
  const result = validateFleetConfig(raw);
  if (!result.ok) throw new Error(JSON.stringify(result.problems));
  const stack = opts.stack ?? "prod";
  const registered: Registered[] = [];
  const providerRegions = new Map<string, string>();
  pulumi.runtime.setMocks(
    {
      newResource(args) {
        const id = `${args.name}-id`;
        if (args.type === "pulumi:providers:aws" || args.type === "pulumi:providers:gcp") {
          providerRegions.set(`${args.name}::${id}`, args.inputs.region);
        }
        // A provider reference is "<provider urn>::<provider id>".
        const region = args.provider ? [...providerRegions.entries()].find(([k]) => args.provider!.endsWith(`::${k}`))?.[1] : undefined;
        registered.push({ type: args.type, name: args.name, inputs: args.inputs, region });
        return { id, state: { ...args.inputs, ...computed(args.type, args.name, args.inputs) } };
      },
      call(args) {
        const f = CALLS[args.token];
        if (!f) throw new Error(`unmocked call ${args.token}`);
        return f(args.inputs);
      },
    },
    "tenantfleet",
    stack,
    false,
  );
  // Imported after setMocks, as Pulumi's testing guide does: resources register against the mocks.
  const { Fleet } = await import("../../components/fleet");
  const fleet = new Fleet("fleet", { spec: result.spec, stack, bastionPrivateKey: opts.bastionPrivateKey ? pulumi.secret(opts.bastionPrivateKey) : undefined });
  // Every output settles once every resource it depends on has registered; then wait for the count
  // to stop growing (registrations of leaves nothing depends on).
  await new Promise<void>((resolve) => pulumi.all([fleet.proxies.endpoints, fleet.catalogUrl]).apply(() => resolve()));
  let last = -1;
  while (registered.length !== last) {
    last = registered.length;
    await new Promise((r) => setTimeout(r, 200));
  }
  return registered;
}

export const ofType = (rs: Registered[], type: string) => rs.filter((r) => r.type === type);
export const named = (rs: Registered[], type: string, name: string) => {
  const r = rs.find((x) => x.type === type && x.name === name);
  if (!r) throw new Error(`no ${type} named ${name}; have ${rs.filter((x) => x.type === type).map((x) => x.name).join(", ")}`);
  return r;
};
