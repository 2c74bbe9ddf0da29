import { describe, expect, it } from "vitest";
import { isCompatibleCli, parseVersion, pseudoVersion } from "../../scripts/lib/toolchain";

describe("toolchain versions", () => {
  it("parses CLI versions with or without v and suffixes", () => {
    expect(parseVersion("v3.259.0")).toEqual([3, 259, 0]);
    expect(parseVersion("3.260.1-alpha.x1")).toEqual([3, 260, 1]);
    expect(parseVersion("dev")).toBeUndefined();
  });

  it("accepts a CLI of the same major that is at least as new as the SDK", () => {
    expect(isCompatibleCli("3.259.0", "3.259.0")).toBe(true);
    expect(isCompatibleCli("v3.262.1", "3.259.0")).toBe(true);
    expect(isCompatibleCli("3.258.9", "3.259.0")).toBe(false);
    expect(isCompatibleCli("3.259.0", "3.259.1")).toBe(false);
    expect(isCompatibleCli("4.0.0", "3.259.0")).toBe(false);
    expect(isCompatibleCli("", "3.259.0")).toBe(false);
  });

  it("builds Go pseudo-versions from the commit time in UTC and a 12-hex prefix", () => {
    expect(pseudoVersion(3, "2026-08-20T08:44:10Z", "a05d88f24d05726fa3beae771bfdedb0c0c6a94a")).toBe(
      "v3.0.0-20260820084410-a05d88f24d05",
    );
    expect(() => pseudoVersion(3, "yesterday", "a05d88f24d05")).toThrow(/not a time/);
    expect(() => pseudoVersion(3, "2026-08-20T08:44:10Z", "main")).toThrow(/not a commit hash/);
  });
});
