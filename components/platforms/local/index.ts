/** The local platform: each server is a LocalServer — a real server process on this machine. */
import { LocalServer } from "../../../dynamic-providers/local-server";
import type { Platform, PlatformServer, ServerRequest } from "../index";

export function localPlatform(stack: string): Platform {
  return {
    name: "local",
    server(req: ServerRequest, parent): PlatformServer {
      const s = new LocalServer(
        req.serverName,
        {
          engine: req.engine,
          serverName: req.serverName,
          stack,
          region: req.region,
          role: req.role,
          tenant: req.tenant,
          database: req.database,
        },
        { parent },
      );
      return { host: s.host, port: s.port, adminUser: s.adminUser, adminPassword: s.adminPassword, version: s.version };
    },
  };
}
