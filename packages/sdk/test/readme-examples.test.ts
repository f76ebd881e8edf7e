/**
 * Every ```ts block of the SDK's README type-checks against the SDK as a plugin author would import it
 * (`@hecate/sdk`, strict, NodeNext, the repository's compiler options): each block is its own module in a temp dir
 * inside this package, checked with the TypeScript compiler API. A block preceded by the line
 * `<!-- readme-check: skip -->` is a fragment and is skipped; most must compile.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const PKG = fileURLToPath(new URL("../../", import.meta.url)); // packages/sdk (this file runs from dist/test)
const README = join(PKG, "README.md");
const SKIP = "<!-- readme-check: skip -->";

interface Block {
  /** 1-based README line of the block's first code line. */
  line: number;
  code: string;
  skipped: boolean;
}

export function extractTsBlocks(markdown: string): Block[] {
  const lines = markdown.split("\n");
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== "```ts") continue;
    let prev = i - 1;
    while (prev >= 0 && lines[prev].trim() === "") prev--;
    const start = i + 1;
    let end = start;
    while (end < lines.length && lines[end].trim() !== "```") end++;
    assert.ok(end < lines.length, `README line ${i + 1}: unterminated ts block`);
    blocks.push({ line: start + 1, code: lines.slice(start, end).join("\n"), skipped: lines[prev]?.trim() === SKIP });
    i = end;
  }
  return blocks;
}

/** Type-checks the blocks (one module each); returns the errors, each as "README line N: message". */
function typeCheck(blocks: Block[]): string[] {
  const root = join(PKG, "dist", "test");
  mkdirSync(root, { recursive: true });
  const dir = mkdtempSync(join(root, "readme-check-"));
  try {
    writeFileSync(join(dir, "package.json"), JSON.stringify({ type: "module", private: true }));
    const files = blocks.map((b, i) => {
      const file = join(dir, `block-${i}.ts`);
      writeFileSync(file, b.code);
      return file;
    });
    const program = ts.createProgram(files, {
      target: ts.ScriptTarget.ES2022,
      lib: ["lib.es2023.d.ts"],
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      strict: true,
      noImplicitOverride: true,
      noFallthroughCasesInSwitch: true,
      esModuleInterop: true,
      skipLibCheck: true,
      resolveJsonModule: true,
      types: ["node"],
      noEmit: true,
    });
    return ts.getPreEmitDiagnostics(program).map((d) => {
      const msg = ts.flattenDiagnosticMessageText(d.messageText, "\n");
      const index = d.file ? files.indexOf(d.file.fileName) : -1;
      if (!d.file || index < 0) return `${d.file?.fileName ?? "(global)"}: ${msg}`;
      const { line } = d.file.getLineAndCharacterOfPosition(d.start ?? 0);
      return `README line ${blocks[index].line + line}: ${msg}`;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("every ts example of the SDK README compiles against the SDK", () => {
  const blocks = extractTsBlocks(readFileSync(README, "utf8"));
  const checked = blocks.filter((b) => !b.skipped);
  assert.ok(checked.length >= 15, `expected the README's examples, found ${checked.length} ts blocks`);
  assert.ok(
    checked.length >= blocks.length * 0.8,
    `most blocks must compile, ${blocks.length - checked.length} skipped`,
  );
  const errors = typeCheck(checked);
  assert.deepEqual(errors, [], `README examples do not compile:\n${errors.join("\n")}`);
});

test("the check catches a wrong example (a misspelt helper, a wrong argument type)", () => {
  const blocks = extractTsBlocks(
    [
      "intro",
      "```ts",
      'import { log } from "@hecate/sdk";',
      'log.inf("typo");',
      "```",
      SKIP,
      "```ts",
      "this is not TypeScript at all",
      "```",
      "```ts",
      'import { ratelimit } from "@hecate/sdk";',
      'ratelimit.createRateLimiter({ capacity: "20", refillPerSecond: 5 });',
      "```",
    ].join("\n"),
  );
  assert.deepEqual(
    blocks.map((b) => [b.line, b.skipped]),
    [
      [3, false],
      [8, true],
      [11, false],
    ],
  );
  const errors = typeCheck(blocks.filter((b) => !b.skipped));
  assert.equal(errors.length, 2, errors.join("\n"));
  assert.match(errors[0], /^README line 4: .*'inf' does not exist/);
  assert.match(errors[1], /^README line 12: .*'string' is not assignable to type 'number'/);
});
