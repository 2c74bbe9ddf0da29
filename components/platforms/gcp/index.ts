/**
 * The GCP platform: Compute Engine database servers (Ubuntu 24.04 LTS, whose images run
 * cloud-init; disks encrypted with a customer-managed KMS key; no external address), a managed
 * instance group of proxies behind a passthrough network load balancer, the control catalog on
 * Cloud SQL for PostgreSQL with regional HA, a versioned, KMS-encrypted bucket for safety backups,
 * and a bastion that migrations tunnel through.
 *
 * One VPC network for the fleet (GCP networks are global) with a subnet and Cloud NAT per region
 * used, and one `gcp.Provider` per region.
 */
import * as gcp from "@pulumi/gcp";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import * as path from "node:path";
import { ControlCatalog } from "../../../dynamic-providers/control-catalog";
import type { Engine } from "../../../dynamic-providers/engines";
import { CATALOG_DATABASE, CATALOG_SERVER, servesMysql, servesRedis, viaBastion, type CloudPlatformArgs, type MigrationPath, type Platform, type PlatformCatalog, type PlatformServer, type ServerRequest } from "../index";
import { bastionUserData, gcpSecretFetch, PROXY_ADMIN_PORT, PROXY_MYSQL_PORT, PROXY_PORT, PROXY_REDIS_PORT, proxyClientPorts, proxyUserData, serverUserData } from "../vm/cloud-init";
import { VM_PORTS } from "../vm/configure";
import { ADMIN_USER, cloudName, ENGINE_VERSIONS, serverId } from "../vm/naming";
import { buildProxyBundle } from "../vm/proxy-artifact";
import { REDIS_INSTANCE_PORTS, redisManifestKey, runsRedisInstances, vmRedisInstances } from "../vm/redis-instances";

/** Google's load balancer health-check ranges (they must reach the proxies' admin port). */
export const GCP_HEALTH_CHECK_RANGES = ["35.191.0.0/16", "130.211.0.0/22"];
const IMAGE = { family: "ubuntu-2404-lts-amd64", project: "ubuntu-os-cloud" };

interface GcpRegion {
  region: string;
  cloudRegion: string;
  cidr: string;
  provider: gcp.Provider;
  subnet: gcp.compute.Subnetwork;
  diskKey: gcp.kms.CryptoKey;
  image: pulumi.Output<string>;
  zones: pulumi.Output<string[]>;
}

export function gcpPlatform(args: CloudPlatformArgs): Platform {
  const { spec, stack, parent } = args;
  const cloud = spec.cloud;
  const name = (s: string) => cloudName(`tf-${stack}-${s}`);
  const tag = { db: name("db"), proxy: name("proxy"), bastion: name("bastion") };
  const homeCloud = cloud.regions[cloud.homeRegion]!;
  const homeProvider = new gcp.Provider("gcp", { region: homeCloud, ...(cloud.project ? { project: cloud.project } : {}), defaultLabels: { "tenantfleet-stack": stack } }, { parent });
  const h = { parent, provider: homeProvider };
  const project = gcp.organizations.getProjectOutput(cloud.project ? { projectId: cloud.project } : {}, { parent, provider: homeProvider });
  const projectId = project.apply((p) => p.projectId!);
  const network = new gcp.compute.Network("network", { name: name("network"), autoCreateSubnetworks: false, routingMode: "GLOBAL" }, h);

  // Regions used: a subnet, Cloud NAT (servers fetch packages without external addresses), a KMS
  // key for their disks, the image and zones looked up in the region.
  const used = new Set([cloud.homeRegion, ...spec.databases.map((d) => d.region)]);
  const regions = new Map<string, GcpRegion>();
  spec.regions.forEach((region, i) => {
    if (!used.has(region)) return;
    const cloudRegion = cloud.regions[region]!;
    const provider = region === cloud.homeRegion ? homeProvider : new gcp.Provider(`${region}-gcp`, { region: cloudRegion, ...(cloud.project ? { project: cloud.project } : {}), defaultLabels: { "tenantfleet-stack": stack } }, { parent });
    const o = { parent, provider };
    const cidr = `10.${20 + i}.0.0/20`;
    const subnet = new gcp.compute.Subnetwork(`${region}-subnet`, { name: name(region), network: network.id, region: cloudRegion, ipCidrRange: cidr, privateIpGoogleAccess: true }, o);
    const router = new gcp.compute.Router(`${region}-router`, { name: name(`${region}-router`), network: network.id, region: cloudRegion }, o);
    new gcp.compute.RouterNat(`${region}-nat`, { name: name(`${region}-nat`), router: router.name, region: cloudRegion, natIpAllocateOption: "AUTO_ONLY", sourceSubnetworkIpRangesToNat: "ALL_SUBNETWORKS_ALL_IP_RANGES" }, o);
    const ring = new gcp.kms.KeyRing(`${region}-keyring`, { name: name(region), location: cloudRegion }, o);
    const diskKey = new gcp.kms.CryptoKey(`${region}-disk-key`, { name: "disks", keyRing: ring.id, rotationPeriod: "7776000s" }, { ...o, protect: true });
    // Compute Engine's and Cloud Storage's service agents encrypt with the key.
    for (const [agent, member] of [
      ["compute", pulumi.interpolate`serviceAccount:service-${project.number}@compute-system.iam.gserviceaccount.com`],
      ["storage", pulumi.interpolate`serviceAccount:service-${project.number}@gs-project-accounts.iam.gserviceaccount.com`],
    ] as const) {
      new gcp.kms.CryptoKeyIAMMember(`${region}-disk-key-${agent}`, { cryptoKeyId: diskKey.id, role: "roles/cloudkms.cryptoKeyEncrypterDecrypter", member }, o);
    }
    const image = gcp.compute.getImageOutput(IMAGE, { parent, provider }).selfLink;
    const zones = gcp.compute.getZonesOutput({ region: cloudRegion, status: "UP" }, { parent, provider }).names;
    regions.set(region, { region, cloudRegion, cidr, provider, subnet, diskKey, image, zones });
  });
  const home = regions.get(cloud.homeRegion)!;
  const fleetCidrs = [...regions.values()].map((r) => r.cidr);

  // Firewalls: database ports from proxies, bastion and peer servers only (by network tag); SSH to
  // the bastion from the operators' networks; the proxies' ports from clients and health checks.
  const ports = [...new Set(spec.databases.map((d) => VM_PORTS[d.engine as Engine]))].sort((a, b) => a - b).map(String);
  // Redis: the instances of the tenant databases on shared hosts too (vm/redis-instances.ts).
  if (servesRedis(spec)) ports.push(`${REDIS_INSTANCE_PORTS.first}-${REDIS_INSTANCE_PORTS.last}`);
  if (ports.length > 0) {
    new gcp.compute.Firewall("db-ingress", { name: name("db-ingress"), network: network.id, direction: "INGRESS", allows: [{ protocol: "tcp", ports }], sourceTags: [tag.proxy, tag.bastion, tag.db], targetTags: [tag.db] }, h);
  }
  new gcp.compute.Firewall("bastion-ssh", { name: name("bastion-ssh"), network: network.id, direction: "INGRESS", allows: [{ protocol: "tcp", ports: ["22"] }], sourceRanges: cloud.bastion.allowedCidrs, targetTags: [tag.bastion] }, h);
  new gcp.compute.Firewall("proxy-clients", { name: name("proxy-clients"), network: network.id, direction: "INGRESS", allows: [{ protocol: "tcp", ports: proxyClientPorts({ mysql: servesMysql(spec), redis: servesRedis(spec) }).map(String) }], sourceRanges: [...(cloud.proxyClientCidrs ?? fleetCidrs), ...GCP_HEALTH_CHECK_RANGES], targetTags: [tag.proxy] }, h);
  new gcp.compute.Firewall("proxy-health", { name: name("proxy-health"), network: network.id, direction: "INGRESS", allows: [{ protocol: "tcp", ports: [String(PROXY_ADMIN_PORT)] }], sourceRanges: [...GCP_HEALTH_CHECK_RANGES, home.cidr], targetTags: [tag.proxy] }, h);

  const serversSa = new gcp.serviceaccount.Account("servers-sa", { accountId: cloudName(`tf-${stack}-servers`, 30), displayName: `tenantfleet ${stack} database servers` }, h);
  const proxiesSa = new gcp.serviceaccount.Account("proxies-sa", { accountId: cloudName(`tf-${stack}-proxies`, 30), displayName: `tenantfleet ${stack} proxies` }, h);
  const bucketEncryption = { defaultKmsKeyName: home.diskKey.id };

  // Safety backups: versioned, KMS-encrypted, never public, expiring.
  const backups = new gcp.storage.Bucket(
    "backups",
    {
      name: cloudName(`tf-${stack}-backups-${homeCloud}`),
      location: homeCloud.toUpperCase(),
      uniformBucketLevelAccess: true,
      publicAccessPrevention: "enforced",
      versioning: { enabled: true },
      encryption: bucketEncryption,
      lifecycleRules: [
        { action: { type: "Delete" }, condition: { age: cloud.backupRetentionDays, matchesPrefixes: ["backups/"] } },
        { action: { type: "Delete" }, condition: { daysSinceNoncurrentTime: cloud.backupRetentionDays, withState: "ARCHIVED" } },
      ],
    },
    { ...h, protect: spec.protectTenantDatabases },
  );

  if (servesRedis(spec)) {
    // Shared Redis hosts pull the manifest of their instances (vm/redis-instances.ts), and read
    // nothing else of the bucket: the condition limits them to `hosts/`.
    new gcp.storage.BucketIAMMember(
      "backups-hosts-reader",
      {
        bucket: backups.name,
        role: "roles/storage.objectViewer",
        member: pulumi.interpolate`serviceAccount:${serversSa.email}`,
        condition: { title: "host manifests only", expression: pulumi.interpolate`resource.name.startsWith("projects/_/buckets/${backups.name}/objects/hosts/")` },
      },
      h,
    );
  }

  // The bastion: the only VM with an external address.
  const bastionZone = home.zones.apply((z) => z[0]!);
  const bastion = new gcp.compute.Instance(
    "bastion",
    {
      name: name("bastion"),
      zone: bastionZone,
      machineType: cloud.instanceTypes.bastion,
      tags: [tag.bastion],
      bootDisk: { initializeParams: { image: home.image, size: 10 }, kmsKeySelfLink: home.diskKey.id },
      networkInterfaces: [{ subnetwork: home.subnet.id, accessConfigs: [{}] }],
      metadata: { "user-data": bastionUserData(cloud.bastion.user, cloud.bastion.publicKey), "block-project-ssh-keys": "TRUE" },
      shieldedInstanceConfig: { enableSecureBoot: true, enableVtpm: true, enableIntegrityMonitoring: true },
    },
    { ...h, ignoreChanges: ["bootDisk.initializeParams.image"] },
  );
  const migrationPath: MigrationPath = {
    bastion: pulumi.output({ host: bastion.networkInterfaces.apply((n) => n[0]!.accessConfigs![0]!.natIp!), port: 22, username: cloud.bastion.user, ...(cloud.bastion.hostKeyFingerprint ? { hostKeyFingerprint: cloud.bastion.hostKeyFingerprint } : {}) }),
    ...(args.bastionPrivateKey ? { privateKey: pulumi.secret(args.bastionPrivateKey) } : {}),
  };

  const secret = (id: string, value: pulumi.Input<string>, reader: gcp.serviceaccount.Account, p: pulumi.Resource) => {
    const s = new gcp.secretmanager.Secret(id, { secretId: name(id), replication: { auto: {} } }, { ...h, parent: p });
    new gcp.secretmanager.SecretVersion(id, { secret: s.id, secretData: value }, { ...h, parent: p });
    new gcp.secretmanager.SecretIamMember(`${id}-reader`, { secretId: s.id, role: "roles/secretmanager.secretAccessor", member: pulumi.interpolate`serviceAccount:${reader.email}` }, { ...h, parent: p });
    return s;
  };

  const server = (req: ServerRequest, p: pulumi.Resource): PlatformServer => {
    const r = regions.get(req.region)!;
    const password = new random.RandomPassword(`${req.serverName}-admin-password`, { length: 32, special: false }, { parent: p });
    const adminSecret = secret(`${req.serverName}-admin`, password.result, serversSa, p);
    const role = req.role === "catalog" ? "shared" : req.role;
    const id = serverId(req.serverName);
    // A shared Redis host also runs its tenant databases' instances, from the manifest it pulls.
    const redisHost = runsRedisInstances(req);
    const userData = pulumi.all([adminSecret.secretId, projectId, backups.name]).apply(([sid, proj, b]) =>
      serverUserData(
        { engine: req.engine, adminUser: ADMIN_USER, clientCidrs: fleetCidrs, role, serverId: id },
        gcpSecretFetch(sid, proj),
        redisHost ? { fetchManifest: { packages: [], command: `gcloud storage cat gs://${b}/${redisManifestKey(req.serverName)}` } } : undefined,
      ),
    );
    const instance = new gcp.compute.Instance(
      req.serverName,
      {
        name: name(req.serverName),
        zone: r.zones.apply((z) => z[id % z.length]!),
        machineType: cloud.instanceTypes[role],
        tags: [tag.db],
        labels: { "tenantfleet-server": cloudName(req.serverName), "tenantfleet-engine": req.engine, "tenantfleet-role": req.role, ...(req.tenant ? { "tenantfleet-tenant": req.tenant } : {}) },
        bootDisk: { initializeParams: { image: r.image, size: cloud.diskGb[role], type: "pd-ssd" }, kmsKeySelfLink: r.diskKey.id },
        // No accessConfigs: no external address.
        networkInterfaces: [{ subnetwork: r.subnet.id }],
        metadata: { "user-data": userData, "block-project-ssh-keys": "TRUE" },
        serviceAccount: { email: serversSa.email, scopes: ["cloud-platform"] },
        shieldedInstanceConfig: { enableSecureBoot: true, enableVtpm: true, enableIntegrityMonitoring: true },
        deletionProtection: req.role !== "catalog" && spec.protectTenantDatabases,
        allowStoppingForUpdate: false,
      },
      // A newer image or a changed boot script must never replace a server that holds data.
      { parent: p, provider: r.provider, ignoreChanges: ["bootDisk.initializeParams.image", 'metadata["user-data"]'] },
    );
    return {
      host: instance.networkInterfaces.apply((n) => n[0]!.networkIp!),
      port: pulumi.output(VM_PORTS[req.engine]),
      adminUser: pulumi.output(ADMIN_USER),
      adminPassword: pulumi.secret(password.result),
      version: pulumi.output(ENGINE_VERSIONS.ubuntu2404[req.engine]),
    };
  };

  let catalogUrlSecretId: pulumi.Output<string> | undefined;

  return {
    name: "gcp",
    migrationPath,
    backupBucket: pulumi.output({ provider: "gcs" as const, bucket: backups.name, projectId }),
    server,
    redisInstances: true,
    instances(req, p) {
      return vmRedisInstances(req, p, (objectName, key, content) => {
        new gcp.storage.BucketObject(objectName, { bucket: backups.name, name: key, content, contentType: "text/plain" }, { ...h, parent: p });
      });
    },
    controlCatalog(p): PlatformCatalog {
      const o = { ...h, parent: p };
      const password = new random.RandomPassword("catalog-admin-password", { length: 32, special: false }, { parent: p });
      // Cloud SQL's private IP comes through a peering of Google's service network with ours.
      const range = new gcp.compute.GlobalAddress("catalog-range", { name: name("catalog-range"), purpose: "VPC_PEERING", addressType: "INTERNAL", prefixLength: 20, network: network.id }, o);
      const peering = new gcp.servicenetworking.Connection("catalog-peering", { network: network.id, service: "servicenetworking.googleapis.com", reservedPeeringRanges: [range.name] }, o);
      const db = new gcp.sql.DatabaseInstance(
        "control-catalog",
        {
          name: name("catalog"),
          databaseVersion: "POSTGRES_16",
          region: homeCloud,
          deletionProtection: true,
          settings: {
            tier: cloud.instanceTypes.catalog,
            availabilityType: "REGIONAL",
            diskAutoresize: true,
            ipConfiguration: { ipv4Enabled: false, privateNetwork: network.id, sslMode: "ENCRYPTED_ONLY" },
            backupConfiguration: { enabled: true, pointInTimeRecoveryEnabled: true },
            deletionProtectionEnabled: true,
          },
        },
        { ...o, dependsOn: [peering], protect: true },
      );
      new gcp.sql.User("catalog-admin", { instance: db.name, name: ADMIN_USER, password: password.result }, o);
      const catalog = new ControlCatalog(
        "control-catalog",
        { serverName: CATALOG_SERVER, host: db.privateIpAddress, port: 5432, adminUser: ADMIN_USER, adminPassword: password.result, database: CATALOG_DATABASE, tls: true, ...viaBastion(migrationPath) },
        { parent: p },
      );
      catalogUrlSecretId = secret("catalog-url", catalog.url, proxiesSa, p).secretId;
      return { serverName: CATALOG_SERVER, host: catalog.host, port: catalog.port, adminUser: catalog.adminUser, adminPassword: catalog.adminPassword, database: catalog.database, url: catalog.url, tls: true };
    },
    proxyFleet(req, p) {
      if (!catalogUrlSecretId) throw new Error("gcp platform: the control catalog must be declared before the proxy fleet");
      const o = { ...h, parent: p };
      // The proxy's code lives in a bucket of its own: proxies may read it, and nothing else.
      const artifacts = new gcp.storage.Bucket("artifacts", { name: cloudName(`tf-${stack}-artifacts-${homeCloud}`), location: homeCloud.toUpperCase(), uniformBucketLevelAccess: true, publicAccessPrevention: "enforced", versioning: { enabled: true }, encryption: bucketEncryption }, o);
      new gcp.storage.BucketIAMMember("artifacts-reader", { bucket: artifacts.name, role: "roles/storage.objectViewer", member: pulumi.interpolate`serviceAccount:${proxiesSa.email}` }, o);
      const bundle = buildProxyBundle(args.repoRoot, path.join(args.repoRoot, ".tenantfleet", "artifacts"));
      const object = new gcp.storage.BucketObject("proxy-bundle", { bucket: artifacts.name, name: "proxy.js", source: new pulumi.asset.FileAsset(bundle) }, o);
      const userData = pulumi.all([catalogUrlSecretId, projectId, artifacts.name, object.name, object.generation]).apply(([sid, proj, b, obj, gen]) =>
        proxyUserData({
          // One template for the group: each proxy is named after its host (systemd's %l).
          proxyId: "%l",
          fetchArtifact: { packages: [], command: `gcloud storage cat gs://${b}/${obj}#${gen}` },
          catalogUrl: gcpSecretFetch(sid, proj),
          mysql: req.mysql,
          redis: !!req.redis,
        }),
      );
      const template = new gcp.compute.RegionInstanceTemplate(
        "proxy-template",
        {
          namePrefix: name("proxy-"),
          region: homeCloud,
          machineType: cloud.instanceTypes.proxy,
          tags: [tag.proxy],
          disks: [{ sourceImage: home.image, boot: true, autoDelete: true, diskSizeGb: 16, diskEncryptionKey: { kmsKeySelfLink: home.diskKey.id } }],
          networkInterfaces: [{ subnetwork: home.subnet.id }],
          metadata: { "user-data": userData, "block-project-ssh-keys": "TRUE" },
          serviceAccount: { email: proxiesSa.email, scopes: ["cloud-platform"] },
          shieldedInstanceConfig: { enableSecureBoot: true, enableVtpm: true, enableIntegrityMonitoring: true },
        },
        { ...o, deleteBeforeReplace: false },
      );
      const health = new gcp.compute.RegionHealthCheck("proxy-health", { name: name("proxy-health"), region: homeCloud, httpHealthCheck: { port: PROXY_ADMIN_PORT, requestPath: "/healthz" }, checkIntervalSec: 10, healthyThreshold: 2, unhealthyThreshold: 2 }, o);
      const group = new gcp.compute.RegionInstanceGroupManager(
        "proxies",
        {
          name: name("proxies"),
          region: homeCloud,
          baseInstanceName: name("proxy"),
          versions: [{ instanceTemplate: template.selfLink }],
          targetSize: req.replicas,
          autoHealingPolicies: { healthCheck: health.id, initialDelaySec: 180 },
          // A new proxy version rolls out one surge instance at a time; the old ones drain on SIGTERM.
          updatePolicy: { type: "PROACTIVE", minimalAction: "REPLACE", maxSurgeFixed: 3, maxUnavailableFixed: 0 },
        },
        o,
      );
      const scheme = cloud.proxyInternetFacing ? "EXTERNAL" : "INTERNAL";
      const backend = new gcp.compute.RegionBackendService(
        "proxies-backend",
        { name: name("proxies"), region: homeCloud, protocol: "TCP", loadBalancingScheme: scheme, healthChecks: health.id, connectionDrainingTimeoutSec: 45, backends: [{ group: group.instanceGroup, balancingMode: "CONNECTION" }] },
        o,
      );
      // One forwarding rule per protocol on the same backend service: adding MySQL to a fleet leaves
      // the PostgreSQL rule (and its address, in every connection string) untouched.
      const forward = (port: number, suffix: string) =>
        new gcp.compute.ForwardingRule(
          `proxies${suffix}-lb`,
          {
            name: name(`proxies${suffix}`),
            region: homeCloud,
            loadBalancingScheme: scheme,
            backendService: backend.id,
            ipProtocol: "TCP",
            ports: [String(port)],
            ...(scheme === "INTERNAL" ? { network: network.id, subnetwork: home.subnet.id } : {}),
          },
          o,
        ).ipAddress.apply((ip) => [`${ip}:${port}`]);
      return {
        endpoints: forward(PROXY_PORT, ""),
        ...(req.mysql ? { mysqlEndpoints: forward(PROXY_MYSQL_PORT, "-mysql") } : {}),
        ...(req.redis ? { redisEndpoints: forward(PROXY_REDIS_PORT, "-redis") } : {}),
        // The group's instances come and go (autohealing); their admin ports are reached by address
        // inside the network, which the group lists. Nothing stable to publish here.
        adminEndpoints: pulumi.output([] as string[]),
      };
    },
  };
}
