// The layers import only downward (STYLE.md): contract <- target side (lambdas/)
// <- agent / local cloud <- infra, and no product file leans on test/ or bench/;
// the bench measures the product, so it leans on product code only, not test/.
// Static and dynamic imports alike; a stand-in the product runs is product code.

import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

function sources(dir: string): string[] {
  return readdirSync(join(root, dir), { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && /\.(ts|js|mjs)$/.test(entry.name))
    .map((entry) => relative(root, join(entry.parentPath, entry.name)));
}

/** The top-level folder each relative import of a file resolves into. */
export function importedLayers(file: string, text: string): { specifier: string; layer: string; target: string }[] {
  const found: { specifier: string; layer: string; target: string }[] = [];
  for (const match of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["'](\.{1,2}\/[^"']+)["']/g)) {
    const specifier = match[1] ?? "";
    const target = relative(root, resolve(root, dirname(file), specifier));
    found.push({ specifier, layer: target.split("/")[0] ?? "", target });
  }
  return found;
}

/** Where in lambdas/ an agent file may import from: the target library, and (tidemark local only) the local cloud. */
function agentMayImport(file: string, target: string): boolean {
  if (target.startsWith("lambdas/target/")) return true;
  return file === "agent/commands/local.ts" && target.startsWith("lambdas/local/");
}

/** Which layers each product layer (and the bench) may not import. */
const FORBIDDEN: Record<string, readonly string[]> = {
  contract: ["agent", "lambdas", "infra", "test", "bench"],
  lambdas: ["agent", "infra", "test", "bench"],
  agent: ["infra", "test", "bench"],
  infra: ["agent", "test", "bench"],
  bench: ["test"],
};

describe("layers", () => {
  it("finds static, dynamic and side-effect imports", () => {
    const text = `import a from "../../test/x.ts";\nconst b = await import("../../bench/y.ts");\nimport "../../contract/z.ts";\nimport type { C } from "./c.ts";`;
    expect(importedLayers("agent/commands/q.ts", text).map((i) => i.layer)).toEqual(["test", "bench", "contract", "agent"]);
  });

  for (const [layer, forbidden] of Object.entries(FORBIDDEN)) {
    it(`${layer}/ imports nothing from ${forbidden.join(", ")}`, () => {
      const offending = sources(layer).flatMap((file) =>
        importedLayers(file, readFileSync(join(root, file), "utf8"))
          .filter((i) => forbidden.includes(i.layer))
          .map((i) => `${file}: ${i.specifier}`),
      );
      expect(offending).toEqual([]);
    });
  }

  it("agent/ reaches the target side only through the target library (lambdas/target/)", () => {
    const offending = sources("agent").flatMap((file) =>
      importedLayers(file, readFileSync(join(root, file), "utf8"))
        .filter((i) => i.layer === "lambdas" && !agentMayImport(file, i.target))
        .map((i) => `${file}: ${i.specifier}`),
    );
    expect(offending).toEqual([]);
  });
});
