/**
 * Imported first by tests of modules that import `vscode`: routes that import
 * to the mock. Names the mock lacks resolve to an empty class, because
 * vscode-languageclient subclasses many `vscode` classes when it loads.
 */
import Module from "node:module";
import * as path from "node:path";
import * as mock from "./vscode-mock";

const mockPath = path.join(__dirname, "vscode-mock.js");
const mod = Module as unknown as {
  _resolveFilename: (request: string, ...rest: unknown[]) => string;
  _cache: Record<string, unknown>;
};
const original = mod._resolveFilename;
mod._resolveFilename = function (request: string, ...rest: unknown[]): string {
  return request === "vscode" ? mockPath : original.call(this, request, ...rest);
};

const fallbacks: Record<string, unknown> = {};
const proxied = new Proxy(mock, {
  get(target, name): unknown {
    if (typeof name !== "string") {
      return undefined;
    }
    if (name in target) {
      return (target as Record<string, unknown>)[name];
    }
    fallbacks[name] ??= class {};
    return fallbacks[name];
  },
});
mod._cache[mockPath] = { id: mockPath, filename: mockPath, loaded: true, exports: proxied };
