/** Names and constants shared by the cloud platforms' VMs. */
import { createHash } from "node:crypto";
import type { Engine } from "../../../dynamic-providers/engines";

/** The admin account every cloud server and the managed catalog get. */
export const ADMIN_USER = "tenantfleet_admin";

/** Engine versions of the images' distribution packages (Debian 12 on AWS, Ubuntu 24.04 on GCP). */
export const ENGINE_VERSIONS: Record<"debian12" | "ubuntu2404", Record<Engine, string>> = {
  debian12: { postgres: "15", mysql: "10.11", redis: "7.0", mongodb: "" },
  ubuntu2404: { postgres: "16", mysql: "10.11", redis: "7.0", mongodb: "" },
};

/** A stable number per server name: MariaDB's server-id, and the subnet/zone a server lands in. */
export function serverId(serverName: string): number {
  return (createHash("sha256").update(serverName).digest().readUInt32BE(0) % 2_000_000_000) + 1;
}

/** A cloud resource name of at most `max` characters: lowercase, hyphens, and a hash suffix when
 * the readable name had to be cut (GCP names are ≤ 63 characters). */
export function cloudName(name: string, max = 63): string {
  const clean = name.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "");
  if (clean.length <= max) return clean;
  const hash = createHash("sha256").update(name).digest("hex").slice(0, 8);
  return `${clean.slice(0, max - 9).replace(/-+$/, "")}-${hash}`;
}
