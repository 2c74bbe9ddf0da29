/**
 * The AWS platform: EC2 database servers (Debian 12, encrypted gp3 disks, no public address,
 * configured by cloud-init from the same settings as LocalServer), a proxy fleet of EC2 instances
 * behind a network load balancer, the control catalog on RDS PostgreSQL Multi-AZ, a versioned and
 * encrypted S3 bucket for safety backups, and a bastion that migrations tunnel through.
 *
 * One `aws.Provider` per region used; IAM (global) and the home region's resources use the home
 * region's provider.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import * as path from "node:path";
import type { Engine } from "../../../dynamic-providers/engines";
import { ControlCatalog } from "../../../dynamic-providers/control-catalog";
import { CATALOG_DATABASE, CATALOG_SERVER, servesMysql, servesRedis, viaBastion, type CloudPlatformArgs, type MigrationPath, type Platform, type PlatformCatalog, type PlatformServer, type ServerRequest } from "../index";
import { awsObjectFetch, awsSecretFetch, bastionUserData, PROXY_ADMIN_PORT, PROXY_MYSQL_PORT, PROXY_PORT, PROXY_REDIS_PORT, proxyClientPorts, proxyUserData, serverUserData } from "../vm/cloud-init";
import { VM_PORTS } from "../vm/configure";
import { buildProxyBundle } from "../vm/proxy-artifact";
import { redisManifestKey, runsRedisInstances, vmRedisInstances } from "../vm/redis-instances";
import { ADMIN_USER, ENGINE_VERSIONS, serverId } from "../vm/naming";
import { allowDatabaseIngress, createRegionNet, peerRegions, regionCidr, type AwsRegionNet, type HomeSecurityGroups } from "./network";

const assumeRole = (service: string) =>
  JSON.stringify({ Version: "2012-10-17", Statement: [{ Effect: "Allow", Principal: { Service: service }, Action: "sts:AssumeRole" }] });

export function awsPlatform(args: CloudPlatformArgs): Platform {
  const { spec, stack, parent } = args;
  const cloud = spec.cloud;
  const prefix = `tenantfleet/${stack}`;

  // Regions: every region a tenant database lives in, and the home region. CIDRs follow the order
  // of the stack's region list, so adding a region never renumbers another.
  const used = new Set([cloud.homeRegion, ...spec.databases.map((d) => d.region)]);
  const nets = new Map<string, AwsRegionNet>();
  spec.regions.forEach((region, i) => {
    if (used.has(region)) nets.set(region, createRegionNet({ stack, region, cloudRegion: cloud.regions[region]!, cidr: regionCidr(i), parent }));
  });
  const home = nets.get(cloud.homeRegion)!;
  peerRegions([...nets.values()], parent);
  const h = { parent, provider: home.provider };

  // Bastion and proxy security groups (home region), then database ingress in every region.
  const bastionSg = new aws.ec2.SecurityGroup(
    "bastion-sg",
    {
      vpcId: home.vpc.id,
      description: "tenantfleet bastion: SSH from the operators' networks only",
      ingress: cloud.bastion.allowedCidrs.map((c) => ({ protocol: "tcp", fromPort: 22, toPort: 22, cidrBlocks: [c], description: "operators / CI" })),
      egress: [{ protocol: "-1", fromPort: 0, toPort: 0, cidrBlocks: ["0.0.0.0/0"] }],
    },
    h,
  );
  const fleetCidrs = [...nets.values()].map((n) => n.cidr);
  const clientPorts = proxyClientPorts({ mysql: servesMysql(spec), redis: servesRedis(spec) });
  const proxySg = new aws.ec2.SecurityGroup(
    "proxy-sg",
    {
      vpcId: home.vpc.id,
      description: "tenantfleet proxies: client port from applications, admin port from the VPC",
      ingress: [
        ...clientPorts.flatMap((port) => (cloud.proxyClientCidrs ?? fleetCidrs).map((c) => ({ protocol: "tcp", fromPort: port, toPort: port, cidrBlocks: [c], description: "applications" }))),
        { protocol: "tcp", fromPort: PROXY_ADMIN_PORT, toPort: PROXY_ADMIN_PORT, cidrBlocks: [home.cidr], description: "health checks, metrics" },
      ],
      egress: [{ protocol: "-1", fromPort: 0, toPort: 0, cidrBlocks: ["0.0.0.0/0"] }],
    },
    h,
  );
  const homeGroups: HomeSecurityGroups = { bastion: bastionSg, proxy: proxySg };
  for (const net of nets.values()) {
    const engines = spec.databases.filter((d) => d.region === net.region).map((d) => d.engine as Engine);
    allowDatabaseIngress({ net, home, homeGroups, nets: [...nets.values()], engines, parent });
  }

  // Instance roles: servers read their own admin secrets; proxies the catalog URL and their code.
  const instanceProfile = (name: string, statements: pulumi.Input<unknown>[]) => {
    const role = new aws.iam.Role(`${name}-role`, { assumeRolePolicy: assumeRole("ec2.amazonaws.com") }, h);
    new aws.iam.RolePolicy(`${name}-policy`, { role: role.id, policy: pulumi.jsonStringify({ Version: "2012-10-17", Statement: statements }) }, h);
    return new aws.iam.InstanceProfile(`${name}-profile`, { role: role.name }, h);
  };

  // Safety backups (and the proxy's code): versioned, KMS-encrypted, private, expiring.
  const bucket = new aws.s3.Bucket("backups", { forceDestroy: false }, { ...h, protect: spec.protectTenantDatabases });
  new aws.s3.BucketPublicAccessBlock("backups-private", { bucket: bucket.id, blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true }, h);
  new aws.s3.BucketVersioning("backups-versioning", { bucket: bucket.id, versioningConfiguration: { status: "Enabled" } }, h);
  new aws.s3.BucketServerSideEncryptionConfiguration("backups-encryption", { bucket: bucket.id, rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "aws:kms" }, bucketKeyEnabled: true }] }, h);
  new aws.s3.BucketLifecycleConfiguration(
    "backups-lifecycle",
    {
      bucket: bucket.id,
      rules: [
        { id: "expire-backups", status: "Enabled", filter: { prefix: "backups/" }, expiration: { days: cloud.backupRetentionDays }, noncurrentVersionExpiration: { noncurrentDays: cloud.backupRetentionDays } },
        { id: "old-artifacts", status: "Enabled", filter: { prefix: "artifacts/" }, noncurrentVersionExpiration: { noncurrentDays: 30 } },
      ],
    },
    h,
  );

  const serverProfile = instanceProfile("servers", [
    { Effect: "Allow", Action: "secretsmanager:GetSecretValue", Resource: `arn:aws:secretsmanager:*:*:secret:${prefix}/servers/*` },
    // Shared Redis hosts pull the manifest of their instances (vm/redis-instances.ts).
    ...(servesRedis(spec) ? [{ Effect: "Allow", Action: "s3:GetObject", Resource: pulumi.interpolate`${bucket.arn}/hosts/*` }] : []),
  ]);

  // The bastion: the only instance with a public address; SSH only, from the configured networks.
  const keyPair = new aws.ec2.KeyPair("bastion-key", { publicKey: cloud.bastion.publicKey }, h);
  const bastion = new aws.ec2.Instance(
    "bastion",
    {
      ami: home.ami,
      instanceType: cloud.instanceTypes.bastion as aws.ec2.InstanceType,
      subnetId: home.publicSubnets[0]!.id,
      associatePublicIpAddress: true,
      vpcSecurityGroupIds: [bastionSg.id],
      keyName: keyPair.keyName,
      rootBlockDevice: { encrypted: true, volumeType: "gp3", volumeSize: 8 },
      metadataOptions: { httpTokens: "required", httpEndpoint: "enabled" },
      userData: bastionUserData(cloud.bastion.user, cloud.bastion.publicKey),
      tags: { Name: `tenantfleet-${stack}-bastion`, "tenantfleet:role": "bastion" },
    },
    { ...h, ignoreChanges: ["ami"] },
  );
  const migrationPath: MigrationPath = {
    bastion: pulumi.output({ host: bastion.publicIp, port: 22, username: cloud.bastion.user, ...(cloud.bastion.hostKeyFingerprint ? { hostKeyFingerprint: cloud.bastion.hostKeyFingerprint } : {}) }),
    ...(args.bastionPrivateKey ? { privateKey: pulumi.secret(args.bastionPrivateKey) } : {}),
  };

  /** A Secrets Manager secret `<prefix>/<path>` holding `value`; instances read it at boot. */
  const secret = (name: string, secretPath: string, value: pulumi.Input<string>, o: pulumi.CustomResourceOptions) => {
    const s = new aws.secretsmanager.Secret(name, { name: `${prefix}/${secretPath}`, recoveryWindowInDays: 7 }, o);
    new aws.secretsmanager.SecretVersion(name, { secretId: s.id, secretString: value }, o);
    return s;
  };

  const server = (req: ServerRequest, p: pulumi.Resource): PlatformServer => {
    const net = nets.get(req.region)!;
    const o = { parent: p, provider: net.provider };
    const password = new random.RandomPassword(`${req.serverName}-admin-password`, { length: 32, special: false }, { parent: p });
    const adminSecret = secret(`${req.serverName}-admin`, `servers/${req.serverName}/admin`, password.result, o);
    const role = req.role === "catalog" ? "shared" : req.role;
    // A shared Redis host also runs its tenant databases' instances, from the manifest it pulls.
    const redisHost = runsRedisInstances(req);
    const userData = pulumi.all([adminSecret.arn, bucket.bucket]).apply(([arn, b]) =>
      serverUserData(
        { engine: req.engine, adminUser: ADMIN_USER, clientCidrs: fleetCidrs, role, serverId: serverId(req.serverName) },
        awsSecretFetch(arn, net.cloudRegion),
        redisHost ? { fetchManifest: awsObjectFetch(b, redisManifestKey(req.serverName), home.cloudRegion) } : undefined,
      ),
    );
    const instance = new aws.ec2.Instance(
      req.serverName,
      {
        ami: net.ami,
        instanceType: cloud.instanceTypes[role] as aws.ec2.InstanceType,
        subnetId: net.privateSubnets[serverId(req.serverName) % net.privateSubnets.length]!.id,
        associatePublicIpAddress: false,
        vpcSecurityGroupIds: [net.dbSecurityGroup.id],
        iamInstanceProfile: serverProfile.name,
        rootBlockDevice: { encrypted: true, volumeType: "gp3", volumeSize: cloud.diskGb[role], deleteOnTermination: true },
        metadataOptions: { httpTokens: "required", httpEndpoint: "enabled" },
        disableApiTermination: req.role === "dedicated" || req.role === "shared" ? spec.protectTenantDatabases : false,
        userData,
        tags: {
          Name: `tenantfleet-${stack}-${req.serverName}`,
          "tenantfleet:server": req.serverName,
          "tenantfleet:engine": req.engine,
          "tenantfleet:role": req.role,
          ...(req.tenant ? { "tenantfleet:tenant": req.tenant, "tenantfleet:database": req.database! } : {}),
        },
      },
      // A newer AMI or a changed boot script must never replace a server that holds data.
      { ...o, ignoreChanges: ["ami", "userData"] },
    );
    return { host: instance.privateIp, port: pulumi.output(VM_PORTS[req.engine]), adminUser: pulumi.output(ADMIN_USER), adminPassword: pulumi.secret(password.result), version: pulumi.output(ENGINE_VERSIONS.debian12[req.engine]) };
  };

  let catalogUrlSecretArn: pulumi.Output<string> | undefined;

  return {
    name: "aws",
    migrationPath,
    backupBucket: pulumi.output({ provider: "s3" as const, bucket: bucket.bucket, region: home.cloudRegion }),
    server,
    redisInstances: true,
    instances(req, p) {
      return vmRedisInstances(req, p, (name, key, content) => {
        new aws.s3.BucketObjectv2(name, { bucket: bucket.id, key, content, contentType: "text/plain", serverSideEncryption: "aws:kms" }, { ...h, parent: p });
      });
    },
    controlCatalog(p): PlatformCatalog {
      const password = new random.RandomPassword("catalog-admin-password", { length: 32, special: false }, { parent: p });
      const sg = new aws.ec2.SecurityGroup(
        "catalog-sg",
        {
          vpcId: home.vpc.id,
          description: "tenantfleet control catalog: PostgreSQL from proxies and bastion only",
          ingress: [
            { protocol: "tcp", fromPort: 5432, toPort: 5432, securityGroups: [proxySg.id], description: "proxy fleet" },
            { protocol: "tcp", fromPort: 5432, toPort: 5432, securityGroups: [bastionSg.id], description: "bastion (providers)" },
          ],
        },
        { ...h, parent: p },
      );
      const subnets = new aws.rds.SubnetGroup("catalog-subnets", { subnetIds: home.privateSubnets.map((s) => s.id) }, { ...h, parent: p });
      const db = new aws.rds.Instance(
        "control-catalog",
        {
          engine: "postgres",
          engineVersion: "16",
          instanceClass: cloud.instanceTypes.catalog as aws.rds.InstanceType,
          allocatedStorage: 20,
          maxAllocatedStorage: 100,
          storageType: "gp3",
          storageEncrypted: true,
          multiAz: true,
          publiclyAccessible: false,
          dbSubnetGroupName: subnets.name,
          vpcSecurityGroupIds: [sg.id],
          username: ADMIN_USER,
          password: password.result,
          backupRetentionPeriod: 7,
          deletionProtection: true,
          skipFinalSnapshot: false,
          finalSnapshotIdentifier: `tenantfleet-${stack}-catalog-final`,
          autoMinorVersionUpgrade: true,
        },
        { ...h, parent: p, protect: true },
      );
      const catalog = new ControlCatalog(
        "control-catalog",
        { serverName: CATALOG_SERVER, host: db.address, port: db.port, adminUser: ADMIN_USER, adminPassword: password.result, database: CATALOG_DATABASE, tls: true, ...viaBastion(migrationPath) },
        { parent: p },
      );
      catalogUrlSecretArn = secret("catalog-url", "catalog-url", catalog.url, { ...h, parent: p }).arn;
      return { serverName: CATALOG_SERVER, host: catalog.host, port: catalog.port, adminUser: catalog.adminUser, adminPassword: catalog.adminPassword, database: catalog.database, url: catalog.url, tls: true };
    },
    proxyFleet(req, p) {
      if (!catalogUrlSecretArn) throw new Error("aws platform: the control catalog must be declared before the proxy fleet");
      const o = { ...h, parent: p };
      const bundle = buildProxyBundle(args.repoRoot, path.join(args.repoRoot, ".tenantfleet", "artifacts"));
      const artifact = new aws.s3.BucketObjectv2("proxy-bundle", { bucket: bucket.id, key: "artifacts/proxy.js", source: new pulumi.asset.FileAsset(bundle), serverSideEncryption: "aws:kms" }, o);
      const profile = instanceProfile("proxies", [
        { Effect: "Allow", Action: "secretsmanager:GetSecretValue", Resource: catalogUrlSecretArn },
        { Effect: "Allow", Action: "s3:GetObject", Resource: pulumi.interpolate`${bucket.arn}/artifacts/*` },
      ]);
      const instances = Array.from({ length: req.replicas }, (_, i) => {
        const proxyId = `proxy-${i + 1}`;
        const userData = pulumi.all([catalogUrlSecretArn!, bucket.bucket, artifact.key, artifact.versionId]).apply(([arn, b, key, version]) =>
          proxyUserData({
            proxyId,
            // The object's version pins the code this instance runs; a new bundle replaces proxies
            // one at a time (they drain on SIGTERM) rather than changing code under them.
            fetchArtifact: awsObjectFetch(b, key, home.cloudRegion, version),
            catalogUrl: awsSecretFetch(arn, home.cloudRegion),
            mysql: req.mysql,
            redis: !!req.redis,
          }),
        );
        return new aws.ec2.Instance(
          proxyId,
          {
            ami: home.ami,
            instanceType: cloud.instanceTypes.proxy as aws.ec2.InstanceType,
            subnetId: home.privateSubnets[i % home.privateSubnets.length]!.id,
            associatePublicIpAddress: false,
            vpcSecurityGroupIds: [proxySg.id],
            iamInstanceProfile: profile.name,
            rootBlockDevice: { encrypted: true, volumeType: "gp3", volumeSize: 16 },
            metadataOptions: { httpTokens: "required", httpEndpoint: "enabled" },
            userData,
            userDataReplaceOnChange: true,
            tags: { Name: `tenantfleet-${stack}-${proxyId}`, "tenantfleet:role": "proxy" },
          },
          { ...o, ignoreChanges: ["ami"], replaceOnChanges: ["userData"], deleteBeforeReplace: false },
        );
      });
      const lb = new aws.lb.LoadBalancer(
        "proxies-nlb",
        {
          loadBalancerType: "network",
          internal: !cloud.proxyInternetFacing,
          subnets: (cloud.proxyInternetFacing ? home.publicSubnets : home.privateSubnets).map((s) => s.id),
          securityGroups: [proxySg.id],
          enableCrossZoneLoadBalancing: true,
        },
        o,
      );
      /** A listener of the load balancer forwarding `port` to every proxy (suffix: "" for PostgreSQL, the names it always had). */
      const listen = (port: number, suffix: string) => {
        const tg = new aws.lb.TargetGroup(
          `proxies${suffix}-tg`,
          {
            port,
            protocol: "TCP",
            vpcId: home.vpc.id,
            targetType: "instance",
            // Deregistration lets a stopping proxy finish its transactions (its shutdown grace).
            deregistrationDelay: 45,
            healthCheck: { protocol: "HTTP", port: String(PROXY_ADMIN_PORT), path: "/healthz", interval: 10, healthyThreshold: 2, unhealthyThreshold: 2 },
          },
          o,
        );
        instances.forEach((inst, i) => new aws.lb.TargetGroupAttachment(`proxy-${i + 1}${suffix}-tg`, { targetGroupArn: tg.arn, targetId: inst.id, port }, o));
        new aws.lb.Listener(`proxies${suffix}-listener`, { loadBalancerArn: lb.arn, port, protocol: "TCP", defaultActions: [{ type: "forward", targetGroupArn: tg.arn }] }, o);
        return lb.dnsName.apply((dns) => [`${dns}:${port}`]);
      };
      const endpoints = listen(PROXY_PORT, "");
      return {
        endpoints,
        adminEndpoints: pulumi.all(instances.map((inst) => pulumi.interpolate`${inst.privateIp}:${PROXY_ADMIN_PORT}`)),
        ...(req.mysql ? { mysqlEndpoints: listen(PROXY_MYSQL_PORT, "-mysql") } : {}),
        ...(req.redis ? { redisEndpoints: listen(PROXY_REDIS_PORT, "-redis") } : {}),
      };
    },
  };
}
