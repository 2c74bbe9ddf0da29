/**
 * The `tenantfleet:aws` / `tenantfleet:gcp` stack config: how the stack's logical regions map to a
 * cloud's regions, and the few choices a cloud fleet needs. Pure; validated with the rest of the
 * config before any resource exists.
 *
 * ```yaml
 *   tenantfleet:platform: aws
 *   tenantfleet:aws:
 *     regions: { eu-west: eu-west-1, us-east: us-east-1 }
 *     homeRegion: eu-west            # control catalog, proxies, bastion, backups (default: first region)
 *     bastion:
 *       allowedCidrs: [203.0.113.0/24]
 *       publicKey: ssh-ed25519 AAAA… ops@example
 *   tenantfleet:bastionPrivateKey:   # secret: the key migrations use to reach private servers
 *     secure: v1:…
 * ```
 */
import type { ConfigProblem } from "./config";

export type CloudPlatform = "aws" | "gcp";

export interface CloudSpec {
  /** Logical region (`eu-west`) → the cloud's region (`eu-west-1` / `europe-west1`). */
  regions: Record<string, string>;
  /** Logical region of the control catalog, the proxies, the bastion and the backup bucket. */
  homeRegion: string;
  /** `hostKeyFingerprint` ("SHA256:…", from `ssh-keygen -lf` of the bastion's host key) pins it. */
  bastion: { allowedCidrs: string[]; publicKey: string; user: string; hostKeyFingerprint?: string };
  /** Networks allowed to reach the proxies' load balancer. Default: the fleet's own networks. */
  proxyClientCidrs?: string[];
  /** Make the proxies' load balancer internet-facing (default false: internal). */
  proxyInternetFacing: boolean;
  instanceTypes: { shared: string; dedicated: string; proxy: string; bastion: string; catalog: string };
  diskGb: { shared: number; dedicated: number };
  /** Days a safety backup is kept in the bucket (older versions expire after the same time). */
  backupRetentionDays: number;
  /** GCP project (gcp only; default: the provider's `gcp:project`). */
  project?: string;
}

const DEFAULTS: Record<CloudPlatform, { instanceTypes: CloudSpec["instanceTypes"]; regionPattern: RegExp; example: string }> = {
  aws: {
    instanceTypes: { shared: "m7i.large", dedicated: "m7i.large", proxy: "c7i.large", bastion: "t3.micro", catalog: "db.t4g.medium" },
    regionPattern: /^[a-z]{2}(-gov)?-[a-z]+-\d$/,
    example: "eu-west-1",
  },
  gcp: {
    instanceTypes: { shared: "n2-standard-2", dedicated: "n2-standard-2", proxy: "e2-standard-2", bastion: "e2-micro", catalog: "db-custom-1-3840" },
    regionPattern: /^[a-z]+-[a-z]+\d$/,
    example: "europe-west1",
  },
};

const CIDR = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;
export function isCidr(s: unknown): s is string {
  const m = typeof s === "string" ? CIDR.exec(s) : null;
  return !!m && m.slice(1, 5).every((o) => Number(o) <= 255) && Number(m[5]) <= 32;
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

const KNOWN = ["regions", "homeRegion", "bastion", "proxyClientCidrs", "proxyInternetFacing", "instanceTypes", "diskGb", "backupRetentionDays", "project"];

export function validateCloudConfig(
  platform: CloudPlatform,
  raw: unknown,
  stackRegions: string[],
  problem: (p: ConfigProblem) => void,
): CloudSpec | undefined {
  const at = (field: string, message: string) => problem({ path: `${platform}${field ? `.${field}` : ""}`, message });
  const d = DEFAULTS[platform];
  if (!isRecord(raw)) {
    at("", `platform ${platform} needs tenantfleet:${platform} with at least regions (e.g. { ${stackRegions[0] ?? "eu-west"}: ${d.example} }) and bastion { allowedCidrs, publicKey }`);
    return undefined;
  }
  let found = 0;
  const counted = (field: string, message: string) => {
    found++;
    at(field, message);
  };
  for (const k of Object.keys(raw)) if (!KNOWN.includes(k)) counted(k, `unknown field "${k}" (expected one of ${KNOWN.join(", ")})`);

  const regions: Record<string, string> = {};
  if (!isRecord(raw.regions)) {
    counted("regions", `regions must map every stack region to a ${platform} region, e.g. { ${stackRegions[0] ?? "eu-west"}: ${d.example} }`);
  } else {
    for (const r of stackRegions) {
      const v = raw.regions[r];
      if (v === undefined) counted(`regions.${r}`, `stack region "${r}" has no ${platform} region`);
      else if (typeof v !== "string" || !d.regionPattern.test(v)) counted(`regions.${r}`, `${JSON.stringify(v)} is not a ${platform} region name (e.g. ${d.example})`);
      else regions[r] = v;
    }
    for (const r of Object.keys(raw.regions)) if (!stackRegions.includes(r)) counted(`regions.${r}`, `"${r}" is not one of the stack's regions (${stackRegions.join(", ")})`);
    const clouds = Object.values(regions);
    const twice = clouds.find((c, i) => clouds.indexOf(c) !== i);
    if (twice) counted("regions", `${platform} region ${twice} is mapped twice: each stack region needs its own`);
  }

  const homeRegion = raw.homeRegion ?? stackRegions[0];
  if (typeof homeRegion !== "string" || !stackRegions.includes(homeRegion)) counted("homeRegion", `homeRegion must be one of the stack's regions (${stackRegions.join(", ")}), got ${JSON.stringify(raw.homeRegion)}`);

  const b = raw.bastion;
  let bastion: CloudSpec["bastion"] | undefined;
  if (!isRecord(b)) {
    counted("bastion", "bastion { allowedCidrs, publicKey } is missing: migrations reach the private servers through it");
  } else {
    const before = found;
    const cidrs = b.allowedCidrs;
    if (!Array.isArray(cidrs) || cidrs.length === 0 || !cidrs.every(isCidr)) {
      counted("bastion.allowedCidrs", `bastion.allowedCidrs must be a non-empty list of CIDRs (where operators and CI connect from), got ${JSON.stringify(cidrs)}`);
    } else if (cidrs.some((c) => c.endsWith("/0"))) {
      counted("bastion.allowedCidrs", `bastion.allowedCidrs must not contain ${cidrs.find((c) => c.endsWith("/0"))}: SSH to the bastion is never open to the whole internet`);
    }
    if (typeof b.publicKey !== "string" || !/^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/=]+/.test(b.publicKey)) {
      counted("bastion.publicKey", "bastion.publicKey must be an OpenSSH public key line (ssh-ed25519 AAAA…)");
    }
    const user = b.user ?? "tenantfleet";
    if (typeof user !== "string" || !/^[a-z_][a-z0-9_-]{0,31}$/.test(user)) counted("bastion.user", `bastion.user must be a Unix user name, got ${JSON.stringify(b.user)}`);
    const fp = b.hostKeyFingerprint;
    if (fp !== undefined && (typeof fp !== "string" || !/^SHA256:[A-Za-z0-9+/]{43}=?$/.test(fp))) counted("bastion.hostKeyFingerprint", `bastion.hostKeyFingerprint must be "SHA256:<base64>" as printed by ssh-keygen -lf, got ${JSON.stringify(fp)}`);
    for (const k of Object.keys(b)) if (!["allowedCidrs", "publicKey", "user", "hostKeyFingerprint"].includes(k)) counted(`bastion.${k}`, `unknown field "${k}" (expected allowedCidrs, publicKey, user, hostKeyFingerprint)`);
    if (found === before) bastion = { allowedCidrs: cidrs as string[], publicKey: b.publicKey as string, user: user as string, ...(typeof fp === "string" ? { hostKeyFingerprint: fp } : {}) };
  }

  const pcc = raw.proxyClientCidrs;
  if (pcc !== undefined && (!Array.isArray(pcc) || pcc.length === 0 || !pcc.every(isCidr))) counted("proxyClientCidrs", `proxyClientCidrs must be a non-empty list of CIDRs, got ${JSON.stringify(pcc)}`);
  const internetFacing = raw.proxyInternetFacing ?? false;
  if (typeof internetFacing !== "boolean") counted("proxyInternetFacing", `proxyInternetFacing must be true or false, got ${JSON.stringify(raw.proxyInternetFacing)}`);

  const instanceTypes = { ...d.instanceTypes };
  if (raw.instanceTypes !== undefined) {
    if (!isRecord(raw.instanceTypes)) counted("instanceTypes", "instanceTypes must be a map { shared, dedicated, proxy, bastion, catalog }");
    else
      for (const [k, v] of Object.entries(raw.instanceTypes)) {
        if (!(k in instanceTypes)) counted(`instanceTypes.${k}`, `unknown instance role "${k}" (expected ${Object.keys(instanceTypes).join(", ")})`);
        else if (typeof v !== "string" || !v) counted(`instanceTypes.${k}`, `must be a ${platform} machine type name`);
        else instanceTypes[k as keyof typeof instanceTypes] = v;
      }
  }
  const diskGb = { shared: 200, dedicated: 100 };
  if (raw.diskGb !== undefined) {
    if (!isRecord(raw.diskGb)) counted("diskGb", "diskGb must be a map { shared, dedicated } of GB");
    else
      for (const [k, v] of Object.entries(raw.diskGb)) {
        if (!(k in diskGb)) counted(`diskGb.${k}`, `unknown server role "${k}" (expected shared, dedicated)`);
        else if (typeof v !== "number" || !Number.isInteger(v) || v < 10 || v > 65536) counted(`diskGb.${k}`, `must be a whole number of GB from 10 to 65536, got ${JSON.stringify(v)}`);
        else diskGb[k as keyof typeof diskGb] = v;
      }
  }
  const backupRetentionDays = raw.backupRetentionDays ?? 30;
  if (typeof backupRetentionDays !== "number" || !Number.isInteger(backupRetentionDays) || backupRetentionDays < 1 || backupRetentionDays > 3650) {
    counted("backupRetentionDays", `backupRetentionDays must be a whole number of days from 1 to 3650, got ${JSON.stringify(raw.backupRetentionDays)}`);
  }
  if (raw.project !== undefined && (platform !== "gcp" || typeof raw.project !== "string" || !/^[a-z][a-z0-9-]{4,28}[a-z0-9]$/.test(raw.project))) {
    counted("project", platform === "gcp" ? `project must be a GCP project id, got ${JSON.stringify(raw.project)}` : "project is a gcp setting");
  }
  if (found > 0 || !bastion) return undefined;
  return {
    regions,
    homeRegion: homeRegion as string,
    bastion,
    ...(pcc ? { proxyClientCidrs: pcc as string[] } : {}),
    proxyInternetFacing: internetFacing as boolean,
    instanceTypes,
    diskGb,
    backupRetentionDays: backupRetentionDays as number,
    ...(typeof raw.project === "string" ? { project: raw.project } : {}),
  };
}
