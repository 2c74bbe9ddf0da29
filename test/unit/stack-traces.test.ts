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

  it("are installed once", () => {
    const installed = Error.prepareStackTrace;
    installStackTraces();
    expect(Error.prepareStackTrace).toBe(installed);
  });
});
