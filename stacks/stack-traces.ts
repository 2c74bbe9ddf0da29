/**
 * How the program's stack traces are made, for costs that are Pulumi's and Node's, not ours:
 *
 * - Pulumi's SDK records `new Error().stack` on every promise it makes (`debuggablePromise`,
 *   printed only if the program exits with promises still pending), and under ts-node each of
 *   those stacks is source-mapped frame by frame by source-map-support. In a 250-tenant preview
 *   that was a third of the program's CPU time (`npm run bench:stack`, the note on issue 15).
 *   Those stacks are formatted here without source maps (V8's own frame text: the compiled
 *   positions), and only when printed: even unmapped, formatting each one eagerly was 3 s of a
 *   1,000-tenant preview's 27 s of program CPU. Every other stack, and so every error a user
 *   sees, is mapped as before.
 * - @pulumi/pulumi's source maps place its top-level sources one directory too high:
 *   `resource.js` maps to `node_modules/@pulumi/resource.ts`. Pulumi prints a failed program's
 *   error with `util.inspect(err, { colors: true })`, and Node 20's inspect loops on a frame whose
 *   file sits directly in a scope directory until the string overflows (27 s and 3 GB of heap,
 *   then a RangeError and an uncoloured retry): every error thrown from the program's async body,
 *   config errors included, passes through `Stack.initializeAndRegisterOutputs` in resource.ts.
 *   Such frames are given the package's real directory, `node_modules/@pulumi/pulumi/`.
 * - Pulumi records where each resource was registered: `Resource.callsites` takes the whole
 *   stack (no depth limit), every frame source-mapped, and the engine stores it in the state
 *   (`stackTrace`, about 600 bytes of each TenantDatabase's state at 5 tenants; its first frame
 *   is also the resource's `sourcePosition`). Only the project's own frames say where a resource
 *   comes from, and the first of them is the resource class's own constructor (the same for every
 *   resource of the class); the one after it, the code that declared the resource, is the one
 *   kept, and it is the resource's `sourcePosition` too. The SDK's and Node's frames (the promise
 *   machinery under the program's awaits) and the callers further up (the Fleet, the program)
 *   are left out before mapping (a TenantDatabase's stackTrace 321 → ~60 bytes).
 */
const DEBUGGABLE = /[\\/]@pulumi[\\/]pulumi[\\/]runtime[\\/]debuggable\.js$/;
const RESOURCE_JS = /[\\/]@pulumi[\\/]pulumi[\\/]resource\.js$/;
/** Frames Pulumi's `Resource.stackTrace` drops from the top of a registration stack (its `skip` + 1). */
const REGISTRATION_SKIP = 5;
/** `…/node_modules/@pulumi/resource.ts:1598:22`: a file directly under the scope, at a line's end. */
const SCOPE_ROOT_FILE = /([\\/]node_modules[\\/]@pulumi[\\/])(?=[^\\/\s()]+:\d+:\d+\)?$)/gm;

type Prepare = (error: Error, frames: NodeJS.CallSite[]) => unknown;

/** Install the stack-trace changes above over the source-mapping `Error.prepareStackTrace`
 * that ts-node set up (once; without one there is nothing to change). */
export function installStackTraces(): void {
  const mapped = Error.prepareStackTrace as Prepare | undefined;
  if (!mapped || (mapped as { tenantfleet?: boolean }).tenantfleet) return;
  const prepare: Prepare = (error, frames) => {
    if (frames[0] && DEBUGGABLE.test(frames[0].getFileName() ?? "")) return new DeferredStack(error, frames);
    if (frames[0]?.getFunctionName() === "callsites" && RESOURCE_JS.test(frames[0].getFileName() ?? "")) {
      frames = [...frames.slice(0, REGISTRATION_SKIP), ...declaringFrame(frames.slice(REGISTRATION_SKIP))];
    }
    const stack = mapped(error, frames);
    return typeof stack === "string" ? stack.replace(SCOPE_ROOT_FILE, "$1pulumi/") : stack;
  };
  (prepare as { tenantfleet?: boolean }).tenantfleet = true;
  Error.prepareStackTrace = prepare;
}

/** Of a registration stack's frames below those Pulumi skips, the project's own frame that declared
 * the resource: the caller of its class's constructor (the first own frame, kept only when it is
 * the only one: a resource declared at the top of the program). */
function declaringFrame(frames: NodeJS.CallSite[]): NodeJS.CallSite[] {
  const own = frames.filter(ownFrame);
  return own.length > 1 ? own.slice(1, 2) : own;
}

/** A frame in the project's own code: not under node_modules, not Node's internals. */
function ownFrame(f: NodeJS.CallSite): boolean {
  const file = f.getFileName() ?? "";
  return file !== "" && !file.startsWith("node:") && !/[\\/]node_modules[\\/]/.test(file);
}

/**
 * A promise's debug stack, formatted only if it is printed (Pulumi prints it for a promise still
 * pending when the program exits): `${stack}` gives V8's own frame text. Until then it holds the
 * call sites V8 collected anyway.
 */
class DeferredStack {
  constructor(
    private readonly error: Error,
    private readonly frames: NodeJS.CallSite[],
  ) {}

  toString(): string {
    return `${String(this.error)}\n    at ${this.frames.join("\n    at ")}`;
  }
}
