import { createHash } from "node:crypto";

/** The verifier a route holds for a Redis login: SHA-256 of the password, hex (what Redis's ACL stores as `#<hex>`). */
export function redisVerifier(password: string): string {
  return createHash("sha256").update(password).digest("hex");
}
