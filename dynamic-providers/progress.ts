/**
 * Progress lines from inside a dynamic provider, shown by `pulumi up` on the resource.
 *
 * The dynamic-provider host is started with the engine's address as its first argument but never
 * connects to it, and its methods do not receive the resource's URN; so a resource that reports
 * progress takes its own URN as an input (`pulumi.createUrn`, computed by the component) and the
 * provider sends LogRequests to the engine itself. Without a URN (a method that gets only the
 * stored outputs, where the URN is not kept) the lines go to the stack's diagnostics: name what
 * they are about (`prefixed`). Outside Pulumi (tests, scripts) lines go to the given fallback.
 */
import type * as grpcTypes from "@grpc/grpc-js";

export type ProgressLog = (message: string, level?: "info" | "warn") => void;

/** Engine address: argv[2] of the dynamic-provider host process. */
function engineAddress(): string | undefined {
  const arg = process.argv[2];
  return arg && /^[\w.-]+:\d+$/.test(arg) && process.argv[1]?.includes("dynamic-provider") ? arg : undefined;
}

export function progressLog(urn: string | undefined, fallback: ProgressLog = (m) => console.log(m)): ProgressLog & { flush(): Promise<void> } {
  const addr = engineAddress();
  if (!addr) {
    const f = ((m: string, l?: "info" | "warn") => fallback(m, l)) as ProgressLog & { flush(): Promise<void> };
    f.flush = async () => undefined;
    return f;
  }
  /* eslint-disable @typescript-eslint/no-require-imports */
  const grpc = require("@grpc/grpc-js") as typeof grpcTypes;
  const engrpc = require("@pulumi/pulumi/proto/engine_grpc_pb.js");
  const engproto = require("@pulumi/pulumi/proto/engine_pb.js");
  /* eslint-enable @typescript-eslint/no-require-imports */
  const client = new engrpc.EngineClient(addr, grpc.credentials.createInsecure());
  let chain: Promise<void> = Promise.resolve();
  const log = ((message: string, level: "info" | "warn" = "info") => {
    // In order, one at a time, like @pulumi/pulumi's own log module.
    chain = chain.then(
      () =>
        new Promise<void>((resolve) => {
          const req = new engproto.LogRequest();
          req.setSeverity(level === "warn" ? engproto.LogSeverity.WARNING : engproto.LogSeverity.INFO);
          req.setMessage(message);
          req.setUrn(urn ?? "");
          req.setEphemeral(false);
          client.log(req, () => resolve());
        }),
    );
  }) as ProgressLog & { flush(): Promise<void> };
  log.flush = async () => {
    await chain;
    client.close();
  };
  return log;
}

/** `log` with every line starting with `subject: ` (lines on the stack rather than on a resource). */
export function prefixed<L extends ProgressLog>(subject: string, log: L): L {
  const p = ((m: string, l?: "info" | "warn") => log(`${subject}: ${m}`, l)) as L;
  return Object.assign(p, { ...log });
}
