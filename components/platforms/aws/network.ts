/**
 * The AWS network of a fleet: per region used, a VPC with private subnets (servers, proxies, the
 * catalog) and public ones (NAT, bastion, an internet-facing load balancer if asked), peered with
 * every other region so a migration's target can replicate from its source and the proxies reach
 * every server. Database ports are open only to the proxies, the bastion and peer servers.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import type { Engine } from "../../../dynamic-providers/engines";
import { VM_PORTS } from "../vm/configure";
import { REDIS_INSTANCE_PORTS } from "../vm/redis-instances";

/** `10.<n>.0.0/16` for the n-th region of the stack's list (stable: the list order, not usage). */
export function regionCidr(index: number): string {
  return `10.${20 + index}.0.0/16`;
}
/** The private half (servers, proxies, catalog) and the public /24s of a region's /16. */
export const privateCidrs = (cidr: string) => [cidr.replace(/\.0\.0\/16$/, ".0.0/20"), cidr.replace(/\.0\.0\/16$/, ".16.0/20")];
export const publicCidrs = (cidr: string) => [cidr.replace(/\.0\.0\/16$/, ".128.0/24"), cidr.replace(/\.0\.0\/16$/, ".129.0/24")];

export interface AwsRegionNet {
  region: string;
  cloudRegion: string;
  cidr: string;
  provider: aws.Provider;
  vpc: aws.ec2.Vpc;
  privateSubnets: aws.ec2.Subnet[];
  publicSubnets: aws.ec2.Subnet[];
  privateRouteTable: aws.ec2.RouteTable;
  publicRouteTable: aws.ec2.RouteTable;
  /** Database servers. */
  dbSecurityGroup: aws.ec2.SecurityGroup;
  /** Debian 12 (amd64) AMI of this region, as published by Debian. */
  ami: pulumi.Output<string>;
}

export interface HomeSecurityGroups {
  bastion: aws.ec2.SecurityGroup;
  proxy: aws.ec2.SecurityGroup;
}

/** Debian's own AWS account, publisher of the official Debian AMIs. */
export const DEBIAN_AMI_OWNER = "136693071363";

export function createRegionNet(args: {
  stack: string;
  region: string;
  cloudRegion: string;
  cidr: string;
  parent: pulumi.Resource;
}): AwsRegionNet {
  const { region, cloudRegion, cidr, parent } = args;
  const n = (s: string) => `${region}-${s}`;
  const provider = new aws.Provider(n("aws"), { region: cloudRegion as aws.Region, defaultTags: { tags: { "tenantfleet:stack": args.stack, "tenantfleet:region": region } } }, { parent });
  const o = { parent, provider };
  const vpc = new aws.ec2.Vpc(n("vpc"), { cidrBlock: cidr, enableDnsHostnames: true, enableDnsSupport: true, tags: { Name: `tenantfleet-${args.stack}-${region}` } }, o);
  const azs = aws.getAvailabilityZonesOutput({ state: "available" }, { parent, provider });
  const subnet = (kind: "private" | "public", c: string, i: number) =>
    new aws.ec2.Subnet(n(`${kind}-${i}`), { vpcId: vpc.id, cidrBlock: c, availabilityZone: azs.names[i]!, mapPublicIpOnLaunch: false, tags: { Name: `tenantfleet-${region}-${kind}-${i}` } }, o);
  const privateSubnets = privateCidrs(cidr).map((c, i) => subnet("private", c, i));
  const publicSubnets = publicCidrs(cidr).map((c, i) => subnet("public", c, i));
  const igw = new aws.ec2.InternetGateway(n("igw"), { vpcId: vpc.id }, o);
  const eip = new aws.ec2.Eip(n("nat-ip"), { domain: "vpc" }, o);
  // Servers have no public address; they reach the package mirrors through NAT.
  const nat = new aws.ec2.NatGateway(n("nat"), { subnetId: publicSubnets[0]!.id, allocationId: eip.id }, o);
  const publicRouteTable = new aws.ec2.RouteTable(n("public-rt"), { vpcId: vpc.id, routes: [{ cidrBlock: "0.0.0.0/0", gatewayId: igw.id }] }, { ...o, ignoreChanges: ["routes"] });
  const privateRouteTable = new aws.ec2.RouteTable(n("private-rt"), { vpcId: vpc.id, routes: [{ cidrBlock: "0.0.0.0/0", natGatewayId: nat.id }] }, { ...o, ignoreChanges: ["routes"] });
  publicSubnets.forEach((s, i) => new aws.ec2.RouteTableAssociation(n(`public-rta-${i}`), { subnetId: s.id, routeTableId: publicRouteTable.id }, o));
  privateSubnets.forEach((s, i) => new aws.ec2.RouteTableAssociation(n(`private-rta-${i}`), { subnetId: s.id, routeTableId: privateRouteTable.id }, o));
  const dbSecurityGroup = new aws.ec2.SecurityGroup(
    n("db-sg"),
    {
      vpcId: vpc.id,
      description: "tenantfleet database servers: engine ports from proxies, bastion and peer servers only",
      egress: [{ protocol: "-1", fromPort: 0, toPort: 0, cidrBlocks: ["0.0.0.0/0"], description: "packages, secrets, peer servers" }],
    },
    o,
  );
  const ami = aws.ec2.getAmiOutput(
    { owners: [DEBIAN_AMI_OWNER], mostRecent: true, filters: [{ name: "name", values: ["debian-12-amd64-*"] }, { name: "architecture", values: ["x86_64"] }] },
    { parent, provider },
  ).id;
  return { region, cloudRegion, cidr, provider, vpc, privateSubnets, publicSubnets, privateRouteTable, publicRouteTable, dbSecurityGroup, ami };
}

/** Every pair of regions peered, with routes both ways. */
export function peerRegions(nets: AwsRegionNet[], parent: pulumi.Resource): void {
  for (let i = 0; i < nets.length; i++) {
    for (let j = i + 1; j < nets.length; j++) {
      const a = nets[i]!;
      const b = nets[j]!;
      const name = `peer-${a.region}-${b.region}`;
      const peering = new aws.ec2.VpcPeeringConnection(name, { vpcId: a.vpc.id, peerVpcId: b.vpc.id, peerRegion: b.cloudRegion }, { parent, provider: a.provider });
      const accepted = new aws.ec2.VpcPeeringConnectionAccepter(`${name}-accept`, { vpcPeeringConnectionId: peering.id, autoAccept: true }, { parent, provider: b.provider });
      for (const [from, to] of [[a, b], [b, a]] as const) {
        for (const [kind, rt] of [["private", from.privateRouteTable], ["public", from.publicRouteTable]] as const) {
          new aws.ec2.Route(`${name}-${from.region}-${kind}`, { routeTableId: rt.id, destinationCidrBlock: to.cidr, vpcPeeringConnectionId: accepted.id }, { parent, provider: from.provider });
        }
      }
    }
  }
}

/**
 * Ingress to a region's database servers, one rule per (engine port, source): from the home
 * region's proxies and bastion (by security group when in the same VPC, by subnet otherwise: AWS
 * does not reference security groups across regions) and from peer servers (same group, or the
 * other regions' private subnets).
 */
export function allowDatabaseIngress(args: { net: AwsRegionNet; home: AwsRegionNet; homeGroups: HomeSecurityGroups; nets: AwsRegionNet[]; engines: Engine[]; parent: pulumi.Resource }): void {
  const { net, home, homeGroups, nets, parent } = args;
  const o = { parent, provider: net.provider };
  // Redis: the host's own port and its tenant databases' instances (vm/redis-instances.ts).
  const ranges = [...new Set(args.engines)].sort().flatMap((engine) => [
    { key: engine as string, from: VM_PORTS[engine], to: VM_PORTS[engine] },
    ...(engine === "redis" ? [{ key: "redis-instances", from: REDIS_INSTANCE_PORTS.first, to: REDIS_INSTANCE_PORTS.last }] : []),
  ]);
  for (const { key, from, to } of ranges) {
    const rule = (name: string, source: { referencedSecurityGroupId?: pulumi.Input<string>; cidrIpv4?: string }, description: string) =>
      new aws.vpc.SecurityGroupIngressRule(`${net.region}-db-${key}-${name}`, { securityGroupId: net.dbSecurityGroup.id, ipProtocol: "tcp", fromPort: from, toPort: to, description, ...source }, o);
    rule("peers", { referencedSecurityGroupId: net.dbSecurityGroup.id }, "peer servers in the region (migrations)");
    if (net === home) {
      rule("proxies", { referencedSecurityGroupId: homeGroups.proxy.id }, "proxy fleet");
      rule("bastion", { referencedSecurityGroupId: homeGroups.bastion.id }, "bastion (migration path)");
    } else {
      rule("bastion", { cidrIpv4: publicCidrs(home.cidr)[0]! }, "bastion subnet (migration path)");
    }
    for (const other of nets) {
      if (other === net) continue;
      privateCidrs(other.cidr).forEach((c, i) => rule(`${other.region}-${i}`, { cidrIpv4: c }, `${other.region} private subnet: ${other === home ? "proxies, " : ""}peer servers`));
    }
  }
}
