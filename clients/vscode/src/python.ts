/** Finding Python and kenning on this machine, and installing kenning with pip. */
import { execFile, spawn } from "node:child_process";
import { homedir } from "node:os";
import { PythonExtension } from "@vscode/python-extension";
import * as vscode from "vscode";
import which from "which";
import { expandInterpreter, pipInstallArgs, type Probes } from "./common/interpreter";
import type { Logger } from "./common/log";

let api: PythonExtension | undefined;

/** The Python extension's API, or undefined when it is not installed or fails to start. */
async function pythonApi(log: Logger): Promise<PythonExtension | undefined> {
  if (api === undefined) {
    try {
      api = await PythonExtension.api();
    } catch (error) {
      log.debug(`Python extension not available: ${error instanceof Error ? error.message : String(error)}`);
      return undefined;
    }
  }
  return api;
}

function projectRoot(): vscode.WorkspaceFolder | undefined {
  return vscode.workspace.workspaceFolders?.[0];
}

export function interpreterSetting(): string[] {
  const raw = vscode.workspace.getConfiguration("kenning").get<string[]>("interpreter") ?? [];
  return expandInterpreter(raw, projectRoot()?.uri.fsPath, homedir());
}

/** Fires when the Python extension's active interpreter changes. */
export async function onDidChangePythonInterpreter(log: Logger, listener: () => void): Promise<vscode.Disposable | undefined> {
  const python = await pythonApi(log);
  return python?.environments.onDidChangeActiveEnvironmentPath(() => listener());
}

// Exit 3 (not 1) so a broken interpreter that fails to import anything is not
// mistaken for "kenning missing".
const FIND_KENNING = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('kenning') else 3)";

export function probes(log: Logger): Probes {
  return {
    async pythonExtension() {
      const python = await pythonApi(log);
      if (python === undefined) {
        return undefined;
      }
      const root = projectRoot();
      const env = await python.environments.resolveEnvironment(python.environments.getActiveEnvironmentPath(root?.uri));
      const exe = env?.executable.uri?.fsPath;
      return exe === undefined ? undefined : [exe];
    },
    async which(name) {
      return (await which(name, { nothrow: true })) ?? undefined;
    },
    hasKenning(interpreter) {
      return new Promise((resolve, reject) => {
        execFile(interpreter[0], [...interpreter.slice(1), "-c", FIND_KENNING], { timeout: 30_000 }, (error, _out, stderr) => {
          if (error === null) {
            resolve(true);
          } else if (error.code === 3) {
            resolve(false);
          } else {
            reject(new Error(stderr.trim().split("\n").pop() || error.message));
          }
        });
      });
    },
  };
}

/**
 * `python -m pip install kenning` with a cancellable progress notification;
 * pip's output goes to the log. Resolves true when pip succeeded.
 */
export function installKenning(interpreter: string[], log: Logger): Thenable<boolean> {
  const { command, args } = pipInstallArgs(interpreter);
  log.info(`Installing kenning: ${[command, ...args].join(" ")}`);
  return vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: "Installing kenning", cancellable: true },
    (progress, token) =>
      new Promise<boolean>((resolve) => {
        const child = spawn(command, args, { env: { ...process.env, PIP_DISABLE_PIP_VERSION_CHECK: "1" } });
        let lastLine = "";
        const onData = (data: Buffer): void => {
          for (const line of data.toString().split(/\r?\n/)) {
            if (line.trim() === "") {
              continue;
            }
            lastLine = line.trim();
            log.info(`pip: ${lastLine}`);
            // pip's own lines ("Collecting onnxruntime", "Installing collected packages")
            // are the most honest progress there is.
            progress.report({ message: lastLine.slice(0, 80) });
          }
        };
        child.stdout.on("data", onData);
        child.stderr.on("data", onData);
        token.onCancellationRequested(() => child.kill());
        child.on("error", (error) => {
          log.error("pip did not start", error);
          void vscode.window.showErrorMessage(`Kenning: could not run pip: ${error.message}`);
          resolve(false);
        });
        child.on("close", (code) => {
          if (code === 0) {
            log.info("kenning installed");
            resolve(true);
          } else if (token.isCancellationRequested) {
            log.warn("kenning installation cancelled");
            resolve(false);
          } else {
            log.error(`pip exited with ${code}`);
            void vscode.window
              .showErrorMessage(`Kenning: installing with pip failed: ${lastLine}`, "Show Logs")
              .then((pick) => pick && vscode.commands.executeCommand("kenning.showLogs"));
            resolve(false);
          }
        });
      }),
  );
}
