/**
 * `kenning.*` VS Code settings -> the server's settings tree (CONTRACT.md,
 * "Language server"). The keys mirror the server's one-to-one; the only
 * extension-side settings are `interpreter` and `trace.server`.
 */

/** Every server setting as a dotted path under the `kenning` section. */
export const SERVER_SETTING_KEYS = [
  "model",
  "device",
  "exclude",
  "include",
  "index.onChange",
  "index.debounceMs",
  "index.maxFileBytes",
  "search.k",
  "search.mode",
  "workspaceSymbol.semantic",
  "duplicates.diagnostics",
  "duplicates.threshold",
  "remote.endpoints",
  "remote.timeoutMs",
] as const;

export type ServerSettingKey = (typeof SERVER_SETTING_KEYS)[number];

/** Settings that only the extension reads; they are never sent to the server. */
export const CLIENT_SETTING_KEYS = ["interpreter", "trace.server"] as const;

/**
 * Settings whose change needs a new server process: the interpreter picks the
 * process, and the model and device are loaded once at start. The server
 * registers its workspace/symbol provider (and the duplicate diagnostics that
 * come with their engine) in `initialize`, from the settings it gets there, so
 * turning them on later has no effect until it starts again.
 */
export const RESTART_SETTING_KEYS = ["interpreter", "model", "device", "workspaceSymbol.semantic", "duplicates.diagnostics"] as const;

export type ServerSettings = Record<string, unknown>;

/**
 * Builds the nested settings object the server expects from a flat getter
 * (`vscode.workspace.getConfiguration("kenning").get`). Keys the getter does not
 * know (undefined) are left out so the server keeps its own default.
 */
export function toServerSettings(get: (key: string) => unknown): ServerSettings {
  const out: ServerSettings = {};
  for (const key of SERVER_SETTING_KEYS) {
    const value = get(key);
    if (value === undefined) {
      continue;
    }
    const parts = key.split(".");
    let node = out;
    for (const part of parts.slice(0, -1)) {
      if (typeof node[part] !== "object" || node[part] === null) {
        node[part] = {};
      }
      node = node[part] as ServerSettings;
    }
    // An empty model string in the settings UI means "the default model".
    node[parts[parts.length - 1]] = key === "model" && value === "" ? null : value;
  }
  return out;
}

/** True when a configuration change touched a setting that needs a restart. */
export function needsRestart(affects: (section: string) => boolean, section = "kenning"): boolean {
  return RESTART_SETTING_KEYS.some((key) => affects(`${section}.${key}`));
}

/** True when a configuration change touched a setting the server should hear about. */
export function affectsServer(affects: (section: string) => boolean, section = "kenning"): boolean {
  return SERVER_SETTING_KEYS.some((key) => affects(`${section}.${key}`));
}
