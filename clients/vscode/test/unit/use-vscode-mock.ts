/** Imported first by tests of modules that import `vscode`: routes that import to the mock. */
import Module from "node:module";
import * as path from "node:path";

const mockPath = path.join(__dirname, "vscode-mock.js");
const mod = Module as unknown as { _resolveFilename: (request: string, ...rest: unknown[]) => string };
const original = mod._resolveFilename;
mod._resolveFilename = function (request: string, ...rest: unknown[]): string {
  return request === "vscode" ? mockPath : original.call(this, request, ...rest);
};
