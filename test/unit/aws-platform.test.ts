/**
 * The aws platform's resource graph, from the real components under Pulumi's mocks (cloud APIs
 * are the only thing mocked).
 */
import { describe, expect, it } from "vitest";
import { mockIp, named, ofType, runFleet, type Registered } from "./cloud-mocks";

const PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMockKeyForTestsOnly ops@example";
type Db = { engine: string; isolation: string; region: string };
const config = (acmeApp: Db) => ({
  platform: "aws",
  regions: ["eu-west", "us-east"],
  tenants: {
    acme: { databases: { app: acmeApp, cache: { engine: "redis", isolation: "shared", region: "eu-west" } } },
    globex: { databases: { app: { engine: "postgres", isolation: "shared", region: "eu-west" }, shop: { engine: "mysql", isolation: "dedicated", region: "us-east" } } },
    initech: { databases: { app: { engine: "postgres", isolation: "dedicated", region: "us-east" } } },
  },
  aws: { regions: { "eu-west": "eu-west-1", "us-east": "us-east-1" }, bastion: { allowedCidrs: ["203.0.113.0/24"], publicKey: PUBLIC_KEY } },
});
const SHARED_ACME: Db = { engine: "postgres", isolation: "shared", region: "eu-west" };
const DEDICATED_ACME: Db = { engine: "postgres", isolation: "dedicated", region: "eu-west" };
const INSTANCE = "aws:ec2/instance:Instance";
const DB_PORTS = [5432, 3306, 6379];
const TENANT_DATABASE = "pulumi-nodejs:dynamic/tenantfleet:TenantDatabase";
const CONTROL_CATALOG = "pulumi-nodejs:dynamic/tenantfleet:ControlCatalog";

let shared: Registered[];
describe("aws platform graph", () => {
  it("builds", async () => {
    shared = await runFleet(config(SHARED_ACME), { bastionPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nmock\n-----END OPENSSH PRIVATE KEY-----" });
    expect(shared.length).toBeGreaterThan(50);
  });

  it("places each tenant database's server in its region's provider, on an EC2 instance", () => {
    const expected: Record<string, string> = {
      "shared-postgres-eu-west": "eu-west-1",
      "shared-redis-eu-west": "eu-west-1",
      "dedicated-globex-shop-us-east": "us-east-1",
      "dedicated-initech-app-us-east": "us-east-1",
    };
    for (const [server, region] of Object.entries(expected)) {
      const i = named(shared, INSTANCE, server);
      expect(i.region, server).toBe(region);
      expect(i.inputs.tags["tenantfleet:server"]).toBe(server);
    }
    expect(ofType(shared, "pulumi:providers:aws").map((p) => p.inputs.region).sort()).toEqual(["eu-west-1", "us-east-1"]);
  });
});

describe("aws platform: security and placement invariants", () => {
  const dbServers = () => ofType(shared, INSTANCE).filter((i) => ["shared", "dedicated"].includes(i.inputs.tags?.["tenantfleet:role"]));

  it("no database port is open to 0.0.0.0/0 (or ::/0): only proxies, bastion and peer servers", () => {
    const open: string[] = [];
    const covers = (from: number, to: number) => DB_PORTS.some((p) => from <= p && p <= to) || from === 0;
    for (const sg of ofType(shared, "aws:ec2/securityGroup:SecurityGroup")) {
      for (const r of sg.inputs.ingress ?? []) {
        if (covers(r.fromPort, r.toPort) && [...(r.cidrBlocks ?? []), ...(r.ipv6CidrBlocks ?? [])].some((c: string) => c.endsWith("/0"))) open.push(`${sg.name} ${r.fromPort}`);
      }
    }
    const rules = ofType(shared, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule");
    for (const r of rules) if (covers(r.inputs.fromPort, r.inputs.toPort) && (r.inputs.cidrIpv4?.endsWith("/0") || r.inputs.cidrIpv6?.endsWith("/0"))) open.push(r.name);
    expect(open).toEqual([]);
    // Every database ingress rule names a source: a security group or a private 10.x network.
    expect(rules.length).toBeGreaterThan(0);
    for (const r of rules) expect(r.inputs.referencedSecurityGroupId ?? r.inputs.cidrIpv4, r.name).toMatch(/^(sg-|.*-id$|10\.)/);
    // SSH to the bastion only from the configured operator network.
    expect(named(shared, "aws:ec2/securityGroup:SecurityGroup", "bastion-sg").inputs.ingress.map((r: any) => r.cidrBlocks)).toEqual([["203.0.113.0/24"]]);
  });

  it("every disk is encrypted (instances, the catalog, the backup bucket)", () => {
    for (const i of ofType(shared, INSTANCE)) expect(i.inputs.rootBlockDevice?.encrypted, i.name).toBe(true);
    const rds = named(shared, "aws:rds/instance:Instance", "control-catalog");
    expect(rds.inputs).toMatchObject({ storageEncrypted: true, multiAz: true, publiclyAccessible: false, engine: "postgres" });
    const sse = ofType(shared, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration");
    expect(sse.map((s) => s.inputs.rules[0].applyServerSideEncryptionByDefault.sseAlgorithm)).toEqual(["aws:kms"]);
    expect(ofType(shared, "aws:s3/bucketVersioning:BucketVersioning").map((v) => v.inputs.versioningConfiguration.status)).toEqual(["Enabled"]);
    const lifecycle = ofType(shared, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")[0]!;
    expect(lifecycle.inputs.rules.find((r: any) => r.id === "expire-backups")).toMatchObject({ status: "Enabled", expiration: { days: 30 } });
    expect(ofType(shared, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")[0]!.inputs).toMatchObject({ blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true });
  });

  it("database servers have no public address and sit in private subnets; only the bastion is public", () => {
    const privateSubnets = new Set(ofType(shared, "aws:ec2/subnet:Subnet").filter((s) => s.name.includes("-private-")).map((s) => `${s.name}-id`));
    for (const s of dbServers()) {
      expect(s.inputs.associatePublicIpAddress, s.name).toBe(false);
      expect(privateSubnets.has(s.inputs.subnetId), `${s.name} in ${s.inputs.subnetId}`).toBe(true);
      expect(s.inputs.metadataOptions.httpTokens).toBe("required");
    }
    expect(ofType(shared, INSTANCE).filter((i) => i.inputs.associatePublicIpAddress).map((i) => i.name)).toEqual(["bastion"]);
    for (const s of ofType(shared, "aws:ec2/subnet:Subnet")) expect(s.inputs.mapPublicIpOnLaunch, s.name).toBe(false);
  });

  it("one dedicated VM per dedicated tenant database, tagged with it", () => {
    const dedicated = dbServers().filter((s) => s.inputs.tags["tenantfleet:role"] === "dedicated");
    expect(dedicated.map((s) => `${s.inputs.tags["tenantfleet:tenant"]}/${s.inputs.tags["tenantfleet:database"]}@${s.region}`).sort()).toEqual(["globex/shop@us-east-1", "initech/app@us-east-1"]);
    expect(dbServers().filter((s) => s.inputs.tags["tenantfleet:role"] === "shared").map((s) => s.name).sort()).toEqual(["shared-postgres-eu-west", "shared-redis-eu-west"]);
  });

  it("user-data configures the engine from the shared settings and never carries a secret", () => {
    for (const s of dbServers()) {
      const ud: string = s.inputs.userData;
      expect(ud.startsWith("#cloud-config\n"), s.name).toBe(true);
      const doc = JSON.parse(ud.slice("#cloud-config\n".length));
      expect(doc.write_files[0].path).toBe("/usr/local/sbin/tenantfleet-configure");
      expect(doc.runcmd[0][2]).toContain(`secretsmanager get-secret-value --region ${s.region}`);
      expect(ud).not.toMatch(/mock-password/);
    }
    const pg = JSON.parse(named(shared, INSTANCE, "shared-postgres-eu-west").inputs.userData.slice(14));
    expect(pg.packages).toContain("postgresql");
    expect(pg.write_files[0].content).toContain("wal_level = 'logical'");
    expect(pg.write_files[0].content).toContain("host replication all 10.21.0.0/16 scram-sha-256");
    expect(pg.write_files[0].content).toContain("host all all 10.20.0.0/16 scram-sha-256");
    // Servers never get replaced for a newer AMI or a changed boot script.
    const proxies = ofType(shared, INSTANCE).filter((i) => i.inputs.tags?.["tenantfleet:role"] === "proxy");
    expect(proxies.length).toBe(2);
    for (const p of proxies) expect(p.inputs.userData).not.toMatch(/mock-password|postgres:\/\//);
  });

  it("the proxies run behind a network load balancer; migrations reach servers through the bastion", () => {
    expect(named(shared, "aws:lb/loadBalancer:LoadBalancer", "proxies-nlb").inputs).toMatchObject({ loadBalancerType: "network", internal: true });
    expect(ofType(shared, "aws:lb/targetGroupAttachment:TargetGroupAttachment").length).toBe(6); // 2 proxies × PostgreSQL, MySQL and Redis
    const tenantDbs = ofType(shared, TENANT_DATABASE);
    expect(tenantDbs.map((d) => d.name).sort()).toEqual(["acme-app", "acme-cache", "globex-app", "globex-shop", "initech-app"]);
    for (const d of [...tenantDbs, named(shared, CONTROL_CATALOG, "control-catalog")]) {
      expect(d.inputs.bastion, d.name).toMatchObject({ host: "203.0.113.10", port: 22, username: "tenantfleet" });
    }
    // RDS PostgreSQL 16 requires TLS (rds.force_ssl): every catalog connection uses it.
    expect(named(shared, CONTROL_CATALOG, "control-catalog").inputs.tls).toBe(true);
    for (const d of tenantDbs) expect(d.inputs.catalog.tls, d.name).toBe(true);
    // Safety backups go to the fleet's bucket.
    for (const d of tenantDbs) expect(d.inputs.backupBucket, d.name).toEqual({ provider: "s3", bucket: "backups-bucket", region: "eu-west-1" });
    // Regions are peered so a migration's target replicates from its source across regions.
    expect(ofType(shared, "aws:ec2/vpcPeeringConnection:VpcPeeringConnection").map((p) => p.inputs.peerRegion)).toEqual(["us-east-1"]);
  });
});

describe("aws platform: the MySQL protocol", () => {
  it("a fleet with MariaDB tenant databases: each proxy listens on 6033, the load balancer forwards it, applications may reach it", () => {
    const proxies = ofType(shared, INSTANCE).filter((i) => i.inputs.tags?.["tenantfleet:role"] === "proxy");
    for (const p of proxies) expect(p.inputs.userData, p.name).toContain("--mysql-listen 0.0.0.0:6033");
    expect(named(shared, "aws:lb/listener:Listener", "proxies-mysql-listener").inputs).toMatchObject({ port: 6033, protocol: "TCP" });
    expect(named(shared, "aws:lb/targetGroup:TargetGroup", "proxies-mysql-tg").inputs).toMatchObject({ port: 6033, protocol: "TCP" });
    // PostgreSQL's listener keeps its name and port: existing stacks keep their load balancer's listener.
    expect(named(shared, "aws:lb/listener:Listener", "proxies-listener").inputs).toMatchObject({ port: 6432 });
    const ingress = named(shared, "aws:ec2/securityGroup:SecurityGroup", "proxy-sg").inputs.ingress as { fromPort: number; cidrBlocks: string[] }[];
    expect(ingress.filter((r) => r.fromPort === 6033).map((r) => r.cidrBlocks)).toEqual(ingress.filter((r) => r.fromPort === 6432).map((r) => r.cidrBlocks));
    // The MySQL tenant database is managed (database, login, route) like the PostgreSQL ones.
    expect(named(shared, TENANT_DATABASE, "globex-shop").inputs).toMatchObject({ engine: "mysql", isolation: "dedicated", serverName: "dedicated-globex-shop-us-east" });
  });

  it("a fleet without them: no MySQL listener, port or flag (the proxies' user-data is what it was)", async () => {
    const pgOnly = await runFleet({ ...config(SHARED_ACME), tenants: { acme: { databases: { app: SHARED_ACME } } } });
    for (const p of ofType(pgOnly, INSTANCE).filter((i) => i.inputs.tags?.["tenantfleet:role"] === "proxy")) expect(p.inputs.userData).not.toContain("mysql");
    expect(ofType(pgOnly, "aws:lb/listener:Listener").map((l) => l.name)).toEqual(["proxies-listener"]);
    const ingress = named(pgOnly, "aws:ec2/securityGroup:SecurityGroup", "proxy-sg").inputs.ingress as { fromPort: number }[];
    expect(ingress.map((r) => r.fromPort)).not.toContain(6033);
  });
});

describe("aws platform: Redis tenant databases", () => {
  it("a shared one is an instance on its host: the host's address, a port of its own, in the manifest the host pulls from the bucket", () => {
    expect(named(shared, TENANT_DATABASE, "acme-cache").inputs).toMatchObject({ engine: "redis", serverName: "shared-redis-eu-west--acme-cache", server: { host: mockIp("shared-redis-eu-west"), port: 6380, adminUser: "tenantfleet_admin" } });
    const manifest = named(shared, "aws:s3/bucketObjectv2:BucketObjectv2", "shared-redis-eu-west-redis-instances");
    expect(manifest.inputs).toMatchObject({ bucket: "backups-id", key: "hosts/shared-redis-eu-west/redis-instances", serverSideEncryption: "aws:kms" });
    expect(manifest.inputs.content).toContain("\nshared-redis-eu-west--acme-cache 6380 256\n");
    expect(named(shared, "pulumi-nodejs:dynamic/tenantfleet:InstancePorts", "shared-redis-eu-west-instance-ports").inputs).toMatchObject({ host: "shared-redis-eu-west", names: ["shared-redis-eu-west--acme-cache"], firstPort: 6380, lastPort: 7379 });
  });

  it("the host's user-data installs the instance unit and the timer that pulls the manifest; the servers' role may read host manifests only", () => {
    const doc = JSON.parse(named(shared, INSTANCE, "shared-redis-eu-west").inputs.userData.slice("#cloud-config\n".length));
    expect(doc.write_files.map((f: any) => f.path)).toContain("/etc/systemd/system/tenantfleet-redis@.service");
    const sync = doc.write_files.find((f: any) => f.path === "/etc/systemd/system/tenantfleet-redis-instances.service").content as string;
    expect(sync).toContain("aws s3api get-object --region eu-west-1 --bucket backups-bucket --key hosts/shared-redis-eu-west/redis-instances /dev/fd/3 3>&1 >/dev/null");
    expect(doc.runcmd[0][2]).toMatch(/systemctl enable --now tenantfleet-redis-instances\.timer$/);
    const policy = JSON.parse(named(shared, "aws:iam/rolePolicy:RolePolicy", "servers-policy").inputs.policy);
    expect(policy.Statement.map((st: any) => [st.Action, st.Resource])).toEqual([
      ["secretsmanager:GetSecretValue", "arn:aws:secretsmanager:*:*:secret:tenantfleet/prod/servers/*"],
      ["s3:GetObject", "arn:aws:s3:::backups-bucket/hosts/*"],
    ]);
  });

  it("the instances' ports are open to proxies, bastion and peers like the engine's own; the proxies listen for Redis on 6379 behind the load balancer", () => {
    const rules = ofType(shared, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule").filter((r) => r.name.startsWith("eu-west-db-redis-instances-"));
    expect(rules.map((r) => r.name.replace("eu-west-db-redis-instances-", "")).sort()).toEqual(["bastion", "peers", "proxies", "us-east-0", "us-east-1"]);
    for (const r of rules) expect([r.inputs.fromPort, r.inputs.toPort]).toEqual([6380, 7379]);
    for (const p of ofType(shared, INSTANCE).filter((i) => i.inputs.tags?.["tenantfleet:role"] === "proxy")) expect(p.inputs.userData).toContain("--redis-listen 0.0.0.0:6379");
    expect(named(shared, "aws:lb/listener:Listener", "proxies-redis-listener").inputs).toMatchObject({ port: 6379, protocol: "TCP" });
  });
});

describe("aws platform: changing one tenant's isolation", () => {
  it("changes only that tenant's resources", async () => {
    const dedicated = await runFleet(config(DEDICATED_ACME), { bastionPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nmock\n-----END OPENSSH PRIVATE KEY-----" });
    const key = (r: Registered) => `${r.type}::${r.name}`;
    const before = new Map(shared.map((r) => [key(r), r]));
    const after = new Map(dedicated.map((r) => [key(r), r]));
    const added = [...after.keys()].filter((k) => !before.has(k)).sort();
    const removed = [...before.keys()].filter((k) => !after.has(k));
    const changed = [...after.keys()].filter((k) => before.has(k) && JSON.stringify(before.get(k)!.inputs) !== JSON.stringify(after.get(k)!.inputs)).map((k) => k.split("::")[1]);
    expect(removed).toEqual([]);
    expect(added).toEqual([
      "aws:ec2/instance:Instance::dedicated-acme-app-eu-west",
      "aws:secretsmanager/secret:Secret::dedicated-acme-app-eu-west-admin",
      "aws:secretsmanager/secretVersion:SecretVersion::dedicated-acme-app-eu-west-admin",
      "random:index/randomPassword:RandomPassword::dedicated-acme-app-eu-west-admin-password",
      "tenantfleet:index:DedicatedServer::dedicated-acme-app-eu-west",
    ]);
    // The tenant database itself: an update (a live migration), not a replacement.
    expect(changed).toEqual(["acme-app"]);
    expect(after.get(`${TENANT_DATABASE}::acme-app`)!.inputs.serverName).toBe("dedicated-acme-app-eu-west");
  });
});
