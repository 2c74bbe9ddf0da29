/** What a stack's checkpoint holds, by resource type and, for one resource, by field (`pulumi stack export`). */

export interface ExportedResource {
  urn: string;
  type: string;
  inputs?: Record<string, unknown>;
  outputs?: Record<string, unknown>;
  [field: string]: unknown;
}

export interface StackExport {
  deployment: { resources?: ExportedResource[] };
}

const bytes = (v: unknown) => Buffer.byteLength(JSON.stringify(v) ?? "");

export interface StateSizes {
  /** The whole export, bytes. */
  totalBytes: number;
  /** Per resource type: count, total bytes, bytes per resource (median and max). */
  byType: Record<string, { count: number; bytes: number; medianBytes: number; maxBytes: number }>;
}

export function stateSizes(exported: StackExport): StateSizes {
  const byType: Record<string, number[]> = {};
  for (const r of exported.deployment.resources ?? []) (byType[r.type] ??= []).push(bytes(r));
  return {
    totalBytes: bytes(exported),
    byType: Object.fromEntries(
      Object.entries(byType).map(([type, sizes]) => {
        const sorted = [...sizes].sort((a, b) => a - b);
        return [type, { count: sizes.length, bytes: sizes.reduce((a, b) => a + b, 0), medianBytes: sorted[Math.floor(sorted.length / 2)]!, maxBytes: sorted.at(-1)! }];
      }),
    ),
  };
}

/** Bytes of each top-level field of a resource's state, and of each input and output property, largest first. */
export function resourceBreakdown(r: ExportedResource): { fields: Record<string, number>; inputs: Record<string, number>; outputs: Record<string, number> } {
  const sized = (o: Record<string, unknown> | undefined) =>
    Object.fromEntries(Object.entries(o ?? {}).map(([k, v]) => [k, bytes(v)] as const).sort((a, b) => b[1] - a[1]));
  return { fields: sized(r), inputs: sized(r.inputs), outputs: sized(r.outputs) };
}
