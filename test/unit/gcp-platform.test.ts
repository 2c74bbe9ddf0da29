/**
 * The gcp platform's resource graph, from the real components under Pulumi's mocks (cloud APIs
 * are the only thing mocked).
 */
import { describe, expect, it } from "vitest";
import { mockIp, named, ofType, runFleet, type Registered } from "./cloud-mocks";

const PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMockKeyForTestsOnly ops@example";
type Db = { engine: string; isolation: string; region: string };
const config = (acmeApp: Db) => ({
  platform: "gcp",
  regions: ["eu-west", "us-east"],
  tenants: {
    acme: { databases: { app: acmeApp } },
    globex: { databases: { app: { engine: "postgres", isolation: "shared", region: "eu-west" }, cache: { engine: "redis", isolation: "dedicated", region: "us-east" } } },
    initech: { databases: { app: { engine: "postgres", isolation: "dedicated", region: "us-east" } } },
  },
  gcp: { project: "acme-saas", regions: { "eu-west": "europe-west1", "us-east": "us-east1" }, bastion: { allowedCidrs: ["198.51.100.0/24"], publicKey: PUBLIC_KEY } },
});
const KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nmock\n-----END OPENSSH PRIVATE KEY-----";
const INSTANCE = "gcp:compute/instance:Instance";
const TENANT_DATABASE = "pulumi-nodejs:dynamic/tenantfleet:TenantDatabase";
const DB_PORTS = ["5432", "3306", "6379"];

let g: Registered[];
const dbServers = () => ofType(g, INSTANCE).filter((i) => ["shared", "dedicated"].includes(i.inputs.labels?.["tenantfleet-role"]));

describe("gcp platform graph", () => {
  it("builds", async () => {
    g = await runFleet(config({ engine: "postgres", isolation: "shared", region: "eu-west" }), { bastionPrivateKey: KEY });
    expect(g.length).toBeGreaterThan(40);
  });

  it("places each tenant database's server in its region (provider, zone and subnet of that region)", () => {
    const expected: Record<string, string> = { "shared-postgres-eu-west": "europe-west1", "dedicated-globex-cache-us-east": "us-east1", "dedicated-initech-app-us-east": "us-east1" };
    for (const [server, region] of Object.entries(expected)) {
      const i = named(g, INSTANCE, server);
      expect(i.region, server).toBe(region);
      expect(i.inputs.zone.startsWith(`${region}-`), i.inputs.zone).toBe(true);
    }
    expect(ofType(g, "pulumi:providers:gcp").map((p) => p.inputs.region).sort()).toEqual(["europe-west1", "us-east1"]);
    expect(ofType(g, "gcp:compute/subnetwork:Subnetwork").map((s) => [s.inputs.region, s.inputs.ipCidrRange])).toEqual([["europe-west1", "10.20.0.0/20"], ["us-east1", "10.21.0.0/20"]]);
  });

  it("no database port is open to 0.0.0.0/0: only proxies, bastion and peer servers, by tag", () => {
    for (const f of ofType(g, "gcp:compute/firewall:Firewall")) {
      const ports: string[] = f.inputs.allows.flatMap((a: any) => a.ports ?? ["all"]);
      // The database servers' ports (the proxies' Redis port is 6379 too: it is open to applications).
      if (f.inputs.targetTags.includes("tf-prod-db") || ports.includes("all")) {
        expect(ports.filter((p) => !DB_PORTS.includes(p) && p !== "6380-7379"), f.name).toEqual([]);
        expect(f.inputs.sourceRanges ?? [], f.name).toEqual([]);
        expect(f.inputs.sourceTags, f.name).toEqual(["tf-prod-proxy", "tf-prod-bastion", "tf-prod-db"]);
      }
    }
    // Redis: the host's own port and its tenant databases' instances.
    expect(named(g, "gcp:compute/firewall:Firewall", "db-ingress").inputs.allows).toEqual([{ protocol: "tcp", ports: ["5432", "6379", "6380-7379"] }]);
    expect(named(g, "gcp:compute/firewall:Firewall", "bastion-ssh").inputs.sourceRanges).toEqual(["198.51.100.0/24"]);
  });

  it("every disk is encrypted with the region's KMS key; the catalog is Cloud SQL HA; backups are versioned and private", () => {
    const keys = new Map(ofType(g, "gcp:kms/cryptoKey:CryptoKey").map((k) => [`${k.name}-id`, k.region]));
    for (const i of ofType(g, INSTANCE)) {
      expect(keys.get(i.inputs.bootDisk.kmsKeySelfLink), i.name).toBe(i.region);
    }
    for (const t of ofType(g, "gcp:compute/regionInstanceTemplate:RegionInstanceTemplate")) expect(t.inputs.disks[0].diskEncryptionKey.kmsKeySelfLink).toMatch(/-disk-key-id$/);
    const sql = named(g, "gcp:sql/databaseInstance:DatabaseInstance", "control-catalog");
    expect(sql.inputs).toMatchObject({ databaseVersion: "POSTGRES_16", settings: { availabilityType: "REGIONAL", ipConfiguration: { ipv4Enabled: false } } });
    const backups = named(g, "gcp:storage/bucket:Bucket", "backups");
    expect(backups.inputs).toMatchObject({ versioning: { enabled: true }, publicAccessPrevention: "enforced", uniformBucketLevelAccess: true });
    expect(backups.inputs.encryption.defaultKmsKeyName).toMatch(/eu-west-disk-key-id$/);
    expect(backups.inputs.lifecycleRules[0]).toMatchObject({ action: { type: "Delete" }, condition: { age: 30, matchesPrefixes: ["backups/"] } });
  });

  it("database servers have no external address; only the bastion has one", () => {
    for (const s of dbServers()) {
      expect(s.inputs.networkInterfaces.length).toBe(1);
      expect(s.inputs.networkInterfaces[0].accessConfigs ?? [], s.name).toEqual([]);
      expect(s.inputs.metadata["user-data"]).not.toMatch(/mock-password/);
      expect(s.inputs.metadata["user-data"]).toContain("gcloud secrets versions access latest");
    }
    expect(ofType(g, INSTANCE).filter((i) => i.inputs.networkInterfaces.some((n: any) => n.accessConfigs?.length)).map((i) => i.name)).toEqual(["bastion"]);
  });

  it("one dedicated VM per dedicated tenant database; proxies in a managed group behind a passthrough load balancer", () => {
    expect(dbServers().filter((s) => s.inputs.labels["tenantfleet-role"] === "dedicated").map((s) => `${s.inputs.labels["tenantfleet-tenant"]}@${s.region}`).sort()).toEqual(["globex@us-east1", "initech@us-east1"]);
    expect(named(g, "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager", "proxies").inputs.targetSize).toBe(2);
    expect(named(g, "gcp:compute/forwardingRule:ForwardingRule", "proxies-lb").inputs).toMatchObject({ loadBalancingScheme: "INTERNAL", ports: ["6432"] });
    for (const d of ofType(g, TENANT_DATABASE)) {
      expect(d.inputs.bastion, d.name).toMatchObject({ host: "203.0.113.20", port: 22 });
      expect(d.inputs.backupBucket, d.name).toEqual({ provider: "gcs", bucket: "tf-prod-backups-europe-west1", projectId: "acme-saas" });
    }
  });

  it("a fleet without MariaDB tenant databases has no MySQL forwarding rule, port or proxy flag (its Redis ones: it has a Redis tenant database)", () => {
    expect(ofType(g, "gcp:compute/forwardingRule:ForwardingRule").map((r) => r.name)).toEqual(["proxies-lb", "proxies-redis-lb"]);
    expect(named(g, "gcp:compute/firewall:Firewall", "proxy-clients").inputs.allows).toEqual([{ protocol: "tcp", ports: ["6432", "6379"] }]);
    expect(named(g, "gcp:compute/regionInstanceTemplate:RegionInstanceTemplate", "proxy-template").inputs.metadata["user-data"]).not.toContain("mysql");
  });

  it("adding one: a second forwarding rule (6033) on the same backend, the PostgreSQL rule untouched", async () => {
    const withMysql = await runFleet({ ...config({ engine: "postgres", isolation: "shared", region: "eu-west" }), tenants: { ...config({ engine: "postgres", isolation: "shared", region: "eu-west" }).tenants, hooli: { databases: { shop: { engine: "mysql", isolation: "shared", region: "eu-west" } } } } }, { bastionPrivateKey: KEY });
    const rule = (rs: Registered[], name: string) => named(rs, "gcp:compute/forwardingRule:ForwardingRule", name).inputs;
    expect(rule(withMysql, "proxies-lb")).toEqual(rule(g, "proxies-lb"));
    expect(rule(withMysql, "proxies-mysql-lb")).toMatchObject({ ports: ["6033"], backendService: rule(g, "proxies-lb").backendService, loadBalancingScheme: "INTERNAL" });
    expect(named(withMysql, "gcp:compute/firewall:Firewall", "proxy-clients").inputs.allows).toEqual([{ protocol: "tcp", ports: ["6432", "6033", "6379"] }]);
    expect(named(withMysql, "gcp:compute/regionInstanceTemplate:RegionInstanceTemplate", "proxy-template").inputs.metadata["user-data"]).toContain("--mysql-listen 0.0.0.0:6033");
    expect(named(withMysql, TENANT_DATABASE, "hooli-shop").inputs).toMatchObject({ engine: "mysql", serverName: "shared-mysql-eu-west" });
  });

  it("changing one tenant's isolation changes only that tenant's resources", async () => {
    const after = await runFleet(config({ engine: "postgres", isolation: "dedicated", region: "eu-west" }), { bastionPrivateKey: KEY });
    const key = (r: Registered) => `${r.type}::${r.name}`;
    const b = new Map(g.map((r) => [key(r), r]));
    const a = new Map(after.map((r) => [key(r), r]));
    expect([...b.keys()].filter((k) => !a.has(k))).toEqual([]);
    expect([...a.keys()].filter((k) => !b.has(k)).sort()).toEqual([
      "gcp:compute/instance:Instance::dedicated-acme-app-eu-west",
      "gcp:secretmanager/secret:Secret::dedicated-acme-app-eu-west-admin",
      "gcp:secretmanager/secretIamMember:SecretIamMember::dedicated-acme-app-eu-west-admin-reader",
      "gcp:secretmanager/secretVersion:SecretVersion::dedicated-acme-app-eu-west-admin",
      "random:index/randomPassword:RandomPassword::dedicated-acme-app-eu-west-admin-password",
      "tenantfleet:index:DedicatedServer::dedicated-acme-app-eu-west",
    ]);
    const changed = [...a.keys()].filter((k) => b.has(k) && JSON.stringify(b.get(k)!.inputs) !== JSON.stringify(a.get(k)!.inputs));
    expect(changed).toEqual([`${TENANT_DATABASE}::acme-app`]);
  });
});

describe("gcp platform: Redis tenant databases", () => {
  let r: Registered[];
  const withSharedRedis = () => {
    const c = config({ engine: "postgres", isolation: "shared", region: "eu-west" });
    return { ...c, tenants: { ...c.tenants, acme: { databases: { app: { engine: "postgres", isolation: "shared", region: "eu-west" }, cache: { engine: "redis", isolation: "shared", region: "eu-west", memory: "512mb" } } } } };
  };

  it("a shared Redis tenant database is an instance on its host: the host's address, a port of its own, in the manifest the host pulls", async () => {
    r = await runFleet(withSharedRedis(), { bastionPrivateKey: KEY });
    const td = named(r, TENANT_DATABASE, "acme-cache");
    expect(td.inputs).toMatchObject({ engine: "redis", serverName: "shared-redis-eu-west--acme-cache", server: { host: mockIp("shared-redis-eu-west"), port: 6380 } });
    // No VM of its own: the host is the only Redis VM in the region.
    expect(ofType(r, INSTANCE).filter((s) => s.inputs.labels?.["tenantfleet-engine"] === "redis").map((s) => s.name).sort()).toEqual(["dedicated-globex-cache-us-east", "shared-redis-eu-west"]);
    const manifest = named(r, "gcp:storage/bucketObject:BucketObject", "shared-redis-eu-west-redis-instances");
    expect(manifest.inputs).toMatchObject({ bucket: "tf-prod-backups-europe-west1", name: "hosts/shared-redis-eu-west/redis-instances" });
    // The gcp provider keeps an object's content secret in the state.
    expect(manifest.inputs.content.value ?? manifest.inputs.content).toContain("\nshared-redis-eu-west--acme-cache 6380 512\n");
  });

  it("the host pulls its manifest with its own account, which may read host manifests and nothing else of the bucket", () => {
    const ud: string = named(r, INSTANCE, "shared-redis-eu-west").inputs.metadata["user-data"];
    const doc = JSON.parse(ud.slice("#cloud-config\n".length));
    expect(doc.write_files.map((f: any) => f.path)).toEqual([
      "/usr/local/sbin/tenantfleet-configure",
      "/usr/local/sbin/tenantfleet-redis-instances",
      "/etc/systemd/system/tenantfleet-redis@.service",
      "/etc/systemd/system/tenantfleet-redis-instances.service",
      "/etc/systemd/system/tenantfleet-redis-instances.timer",
    ]);
    expect(doc.write_files[3].content).toContain("gcloud storage cat gs://tf-prod-backups-europe-west1/hosts/shared-redis-eu-west/redis-instances");
    expect(doc.runcmd[0][2]).toMatch(/tenantfleet-configure && systemctl daemon-reload && systemctl enable --now tenantfleet-redis-instances\.timer$/);
    // A dedicated Redis VM runs its one server, as before.
    expect(named(r, INSTANCE, "dedicated-globex-cache-us-east").inputs.metadata["user-data"]).not.toContain("tenantfleet-redis-instances");
    const reader = named(r, "gcp:storage/bucketIAMMember:BucketIAMMember", "backups-hosts-reader");
    expect(reader.inputs).toMatchObject({ role: "roles/storage.objectViewer", member: "serviceAccount:tf-prod-servers@acme-saas.iam.gserviceaccount.com" });
    expect(reader.inputs.condition.expression).toBe('resource.name.startsWith("projects/_/buckets/tf-prod-backups-europe-west1/objects/hosts/")');
  });

  it("the proxies listen for Redis on 6379 behind a forwarding rule of its own; the fleet contract lists it", () => {
    expect(named(r, "gcp:compute/regionInstanceTemplate:RegionInstanceTemplate", "proxy-template").inputs.metadata["user-data"]).toContain("--redis-listen 0.0.0.0:6379");
    expect(named(r, "gcp:compute/forwardingRule:ForwardingRule", "proxies-redis-lb").inputs).toMatchObject({ ports: ["6379"], loadBalancingScheme: "INTERNAL" });
  });
});
