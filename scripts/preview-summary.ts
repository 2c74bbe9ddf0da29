#!/usr/bin/env -S npx tsx
/**
 * npm run -s preview:summary [-- [preview.json] [--stack name]]
 * Reads the output of `pulumi preview --json` (from the file, or stdin) and prints a Markdown
 * summary of the tenant changes: migrations, new and deleted tenant databases, servers added and
 * removed, and warnings for anything destructive. Logic: scripts/lib/preview-summary.ts.
 *
 *   npm run -s pulumi -- preview --json --stack local | npm run -s preview:summary
 *
 * Exit status: 0 when a summary was printed (also for a failed preview: the summary shows its
 * diagnostics), 2 when the input is not preview JSON (a Markdown note saying so is still printed).
 */
import { promises as fs } from "node:fs";
import { parseArgs } from "node:util";
import { previewSummaryMarkdown } from "./lib/preview-summary";

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) throw new Error("no input: pass a file, or pipe `pulumi preview --json` into this command");
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({ options: { stack: { type: "string" }, help: { type: "boolean", short: "h" } }, allowPositionals: true });
  if (values.help) {
    console.log("usage: npm run -s preview:summary -- [preview.json|-] [--stack name]   (reads stdin without a file)");
    return;
  }
  const file = positionals[0];
  const text = file && file !== "-" ? await fs.readFile(file, "utf8") : await readStdin();
  try {
    process.stdout.write(previewSummaryMarkdown(text, { stack: values.stack }));
  } catch (e) {
    process.stdout.write(`### tenantfleet preview${values.stack ? ` of stack \`${values.stack}\`` : ""}: no summary\n\n${(e as Error).message.split("\n")[0]}\n`);
    console.error(`[preview-summary] ${(e as Error).message}`);
    process.exitCode = 2;
  }
}

main().catch((e: Error) => {
  console.error(`[preview-summary] ${e.message}`);
  process.exit(1);
});
