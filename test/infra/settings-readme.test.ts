// Every stack setting has its row in README's settings table, so a platform
// engineer finds each knob (and its default) where the deploy section lists them.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { SETTING_KEYS } from "../../infra/settings.ts";

const README = readFileSync(fileURLToPath(new URL("../../README.md", import.meta.url)), "utf8");

describe("README's settings table", () => {
  it("has a row for every tidemark: setting", () => {
    expect(SETTING_KEYS.filter((key) => !README.includes(`| \`tidemark:${key}\` |`))).toEqual([]);
  });
});
