/**
 * The program's biggest cost per resource, removed: Pulumi's SDK records `new Error().stack` on
 * every promise it makes (`debuggablePromise`, printed only if the program exits with promises
 * still pending), and under ts-node each of those stacks is source-mapped frame by frame by
 * source-map-support. In a 250-tenant preview that was a third of the program's CPU time
 * (`npm run bench:stack`, the note on issue 15). Those stacks are formatted here without source
 * maps (V8's own frame text: the compiled positions); every other stack, and so every error a
 * user sees, is mapped as before.
 */
const DEBUGGABLE = /[\\/]@pulumi[\\/]pulumi[\\/]runtime[\\/]debuggable\.js$/;

type Prepare = (error: Error, frames: NodeJS.CallSite[]) => unknown;

export function formatPromiseTracesPlainly(): void {
  const mapped = Error.prepareStackTrace as Prepare | undefined;
  if (!mapped || (mapped as { tenantfleet?: boolean }).tenantfleet) return;
  const prepare: Prepare = (error, frames) =>
    frames[0] && DEBUGGABLE.test(frames[0].getFileName() ?? "") ? `${String(error)}\n    at ${frames.join("\n    at ")}` : mapped(error, frames);
  (prepare as { tenantfleet?: boolean }).tenantfleet = true;
  Error.prepareStackTrace = prepare;
}
