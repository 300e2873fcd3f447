/**
 * Which process to start as the server. The order: the `kenning.interpreter`
 * setting, then the Python extension's active interpreter, then `kenning` on
 * PATH. The probes are injected so the order is tested without VS Code.
 */

export type Source = "setting" | "python" | "path";

export interface Probes {
  /** The Python extension's active interpreter, if the extension is there. */
  pythonExtension(): Promise<string[] | undefined>;
  /** An executable's full path on PATH, or undefined. */
  which(name: string): Promise<string | undefined>;
  /** Whether `kenning` is importable by that interpreter; throws if it does not run at all. */
  hasKenning(interpreter: string[]): Promise<boolean>;
}

export type Resolution =
  | { kind: "ready"; source: Source; command: string; args: string[]; interpreter?: string[] }
  | { kind: "notInstalled"; source: Exclude<Source, "path">; interpreter: string[] }
  | { kind: "broken"; source: Exclude<Source, "path">; interpreter: string[]; error: string }
  | { kind: "notFound" };

/** The server command line for an interpreter: `python -m kenning lsp`. */
export function serverArgs(interpreter: string[]): { command: string; args: string[] } {
  return { command: interpreter[0], args: [...interpreter.slice(1), "-m", "kenning", "lsp"] };
}

/**
 * Expands `${workspaceFolder}`, `${userHome}` and a leading `~` in the setting,
 * like other Python tool extensions do, and drops empty entries.
 */
export function expandInterpreter(setting: readonly string[], workspaceFolder: string | undefined, home: string): string[] {
  return setting
    .map((part) => {
      let out = part.replace(/\$\{userHome\}/g, home);
      if (workspaceFolder !== undefined) {
        out = out.replace(/\$\{workspaceFolder\}/g, workspaceFolder);
      }
      return out.replace(/^~(?=$|[\\/])/, home);
    })
    .filter((part) => part.trim() !== "");
}

async function probe(
  interpreter: string[],
  source: Exclude<Source, "path">,
  probes: Probes,
): Promise<Resolution> {
  try {
    if (await probes.hasKenning(interpreter)) {
      return { kind: "ready", source, ...serverArgs(interpreter), interpreter };
    }
    return { kind: "notInstalled", source, interpreter };
  } catch (error) {
    return { kind: "broken", source, interpreter, error: error instanceof Error ? error.message : String(error) };
  }
}

export async function resolveServer(setting: string[], probes: Probes): Promise<Resolution> {
  // An explicit setting is the user's word: never silently use something else.
  if (setting.length > 0) {
    return probe(setting, "setting", probes);
  }
  const python = await probes.pythonExtension().catch(() => undefined);
  let fromPython: Resolution | undefined;
  if (python !== undefined && python.length > 0) {
    fromPython = await probe(python, "python", probes);
    if (fromPython.kind === "ready") {
      return fromPython;
    }
  }
  // A kenning installed with pipx or in another environment still serves this
  // workspace; only when it is nowhere is the selected interpreter's lack reported.
  const onPath = await probes.which("kenning");
  if (onPath !== undefined) {
    return { kind: "ready", source: "path", command: onPath, args: ["lsp"] };
  }
  return fromPython ?? { kind: "notFound" };
}

/** The pip command that installs kenning into an interpreter. */
export function pipInstallArgs(interpreter: string[]): { command: string; args: string[] } {
  return { command: interpreter[0], args: [...interpreter.slice(1), "-m", "pip", "install", "--upgrade", "kenning"] };
}

/** A one-line description of where the server comes from, for the log. */
export function describe(resolution: Resolution): string {
  switch (resolution.kind) {
    case "ready":
      return `${[resolution.command, ...resolution.args].join(" ")} (from ${sourceName(resolution.source)})`;
    case "notInstalled":
      return `kenning is not installed in ${resolution.interpreter.join(" ")} (from ${sourceName(resolution.source)})`;
    case "broken":
      return `${resolution.interpreter.join(" ")} (from ${sourceName(resolution.source)}) does not run: ${resolution.error}`;
    case "notFound":
      return "no Python interpreter selected and no kenning on PATH";
  }
}

export function sourceName(source: Source): string {
  switch (source) {
    case "setting":
      return "the kenning.interpreter setting";
    case "python":
      return "the Python extension";
    case "path":
      return "PATH";
  }
}
