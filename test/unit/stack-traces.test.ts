/**
 * The program's stack traces (stacks/stack-traces.ts) over a stand-in for the source-mapping
 * `Error.prepareStackTrace`: this mapper returns what source-map-support makes of a frame in
 * @pulumi/pulumi's resource.js.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { inspect } from "node:util";
import { installStackTraces } from "../../stacks/stack-traces";

const mappedFrame = "    at async Stack.initializeAndRegisterOutputs (/work/main/node_modules/@pulumi/resource.ts:1598:22)";
const otherFrame = "    at module.exports (/work/main/stacks/index.ts:33:11)";

describe("the program's stack traces", () => {
  let original: typeof Error.prepareStackTrace;
  beforeEach(() => {
    original = Error.prepareStackTrace;
    Error.prepareStackTrace = (error) => `${String(error)}\n${otherFrame}\n${mappedFrame}`;
    installStackTraces();
  });
  afterEach(() => {
    Error.prepareStackTrace = original;
  });

  it("give a frame mapped into the @pulumi scope directory the package's own directory; other frames are kept", () => {
    const stack = new Error("invalid config").stack ?? "";
    expect(stack.split("\n")).toEqual([
      "Error: invalid config",
      otherFrame,
      "    at async Stack.initializeAndRegisterOutputs (/work/main/node_modules/@pulumi/pulumi/resource.ts:1598:22)",
    ]);
  });

  it("make an error Pulumi can print in colour (Node 20's inspect overflows on the mapped frame)", () => {
    const error = new Error("invalid config");
    expect(inspect(error, { colors: true })).toContain("invalid config");
  });

  it("keep of a resource registration stack only the project's frame that declared it (the caller of its class), below the frames Pulumi skips", () => {
    const frame = (file: string, fn: string) => ({ getFileName: () => file, getFunctionName: () => fn }) as unknown as NodeJS.CallSite;
    const pulumi = "/work/main/node_modules/@pulumi/pulumi";
    const frames = [
      frame(`${pulumi}/resource.js`, "callsites"),
      frame(`${pulumi}/resource.js`, "stackTrace"),
      frame(`${pulumi}/resource.js`, "Resource"),
      frame(`${pulumi}/resource.js`, "CustomResource"),
      frame(`${pulumi}/dynamic/index.js`, "Resource"),
      frame("/work/main/dynamic-providers/lazy-provider.ts", "ProjectResource"),
      frame(`${pulumi}/output.js`, "apply"),
      frame("node:internal/process/task_queues", "processTicksAndRejections"),
      frame("/work/main/components/tenant.ts", "createTenant"),
      frame("/work/main/components/fleet.ts", "createFleet"),
      frame("/work/main/stacks/index.ts", "program"),
    ];
    let seen: string[] = [];
    Error.prepareStackTrace = original;
    const capture = (_e: Error, fs: NodeJS.CallSite[]) => ((seen = fs.map((f) => f.getFunctionName() ?? "")), "mapped");
    Error.prepareStackTrace = capture;
    installStackTraces();
    Error.prepareStackTrace!(new Error("x"), frames);
    expect(seen).toEqual(["callsites", "stackTrace", "Resource", "CustomResource", "Resource", "createTenant"]);
    // A resource declared by the program itself: its only own frame is kept.
    Error.prepareStackTrace!(new Error("x"), [...frames.slice(0, 5), frames[6]!, frames[7]!, frames[10]!]);
    expect(seen).toEqual(["callsites", "stackTrace", "Resource", "CustomResource", "Resource", "program"]);
    // Any other stack is mapped whole.
    Error.prepareStackTrace!(new Error("x"), frames.slice(1));
    expect(seen).toHaveLength(10);
  });

  it("format a Pulumi promise's debug stack only when it is printed, with V8's own frame text", () => {
    let mappedCalls = 0;
    Error.prepareStackTrace = () => (mappedCalls++, "mapped");
    installStackTraces();
    const frame = (file: string, text: string) => ({ getFileName: () => file, getFunctionName: () => "f", toString: () => text }) as unknown as NodeJS.CallSite;
    const frames = [frame("/work/main/node_modules/@pulumi/pulumi/runtime/debuggable.js", "debuggablePromise (debuggable.js:253:5)"), frame("/work/main/stacks/index.ts", "main (index.js:3:1)")];
    const stack = Error.prepareStackTrace!(new Error("x"), frames);
    expect(typeof stack).not.toBe("string");
    expect(`${stack as string}`).toBe("Error: x\n    at debuggablePromise (debuggable.js:253:5)\n    at main (index.js:3:1)");
    expect(mappedCalls).toBe(0);
  });

  it("are installed once", () => {
    const installed = Error.prepareStackTrace;
    installStackTraces();
    expect(Error.prepareStackTrace).toBe(installed);
  });
});
