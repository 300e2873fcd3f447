#!/usr/bin/env bash
# The VS Code extension's checks, as CI runs them: install from the lock file,
# lint, type check, unit tests, bundle, package, and check the .vsix.
# Run from anywhere; works in clients/vscode/. The end-to-end test against the
# real server is separate (`npm run test:e2e`) because it needs Python and the
# kenning package installed; .ci/run runs it after this script.
set -euo pipefail
cd "$(dirname "$0")/.."

npm ci --no-audit --no-fund
npm run lint
npm run typecheck
npm test
npm run build -- --production
# The bundle loads (every dependency resolved by esbuild) and exports the entry points.
node -e '
require("./out/test/unit/use-vscode-mock.js");
const ext = require("./dist/extension.js");
if (typeof ext.activate !== "function" || typeof ext.deactivate !== "function") {
  console.error("dist/extension.js does not export activate and deactivate");
  process.exit(1);
}'

rm -f ./*.vsix
# esbuild bundles every runtime dependency into dist/extension.js.
npx --no-install vsce package --no-dependencies --out kenning.vsix

listing=$(unzip -l kenning.vsix)
for f in extension/dist/extension.js extension/package.json extension/LICENSE.txt extension/readme.md extension/changelog.md; do
  grep -q " $f\$" <<<"$listing" || { echo "kenning.vsix lacks $f" >&2; exit 1; }
done
if grep -q "extension/node_modules/\|extension/src/\|extension/test/" <<<"$listing"; then
  echo "kenning.vsix ships sources or node_modules:" >&2
  grep "node_modules/\|src/\|test/" <<<"$listing" >&2
  exit 1
fi

# The packaged manifest must list every contract command and setting, and the
# bundle must register every command it lists.
unzip -p kenning.vsix extension/package.json > "${TMPDIR:-/tmp}/kenning-vsix-package.json"
unzip -p kenning.vsix extension/dist/extension.js > "${TMPDIR:-/tmp}/kenning-vsix-extension.js"
node - "${TMPDIR:-/tmp}/kenning-vsix-package.json" "${TMPDIR:-/tmp}/kenning-vsix-extension.js" <<'JS'
const fs = require("fs");
const [manifestPath, bundlePath] = process.argv.slice(2);
const manifest = JSON.parse(fs.readFileSync(manifestPath, "utf8"));
const bundle = fs.readFileSync(bundlePath, "utf8");
const commands = [
  "kenning.searchCode", "kenning.findSimilar", "kenning.insertTemplate", "kenning.reindexWorkspace",
  "kenning.showStatus", "kenning.showLogs", "kenning.restart",
];
const settings = [
  "interpreter", "trace.server", "model", "device", "exclude", "include",
  "index.onChange", "index.debounceMs", "index.maxFileBytes", "search.k", "search.mode",
  "workspaceSymbol.semantic", "duplicates.diagnostics", "duplicates.threshold",
  "remote.endpoints", "remote.timeoutMs",
].map((s) => `kenning.${s}`);
const problems = [];
const listed = manifest.contributes.commands.map((c) => c.command);
for (const c of commands) {
  if (!listed.includes(c)) problems.push(`command ${c} missing from the manifest`);
  if (!bundle.includes(JSON.stringify(c))) problems.push(`command ${c} not in the bundle`);
}
for (const c of listed) if (!commands.includes(c)) problems.push(`unexpected command ${c}`);
const props = Object.keys(manifest.contributes.configuration.properties);
for (const s of settings) if (!props.includes(s)) problems.push(`setting ${s} missing from the manifest`);
for (const s of props) if (!settings.includes(s)) problems.push(`unexpected setting ${s}`);
if (manifest.main !== "./dist/extension.js") problems.push(`main is ${manifest.main}`);
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log(`kenning.vsix: ${listed.length} commands, ${props.length} settings, bundle ${bundle.length} bytes`);
JS
echo "clients/vscode: all checks passed"
