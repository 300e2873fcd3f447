/** Small VS Code helpers shared by the commands. */
import * as vscode from "vscode";
import { COMMANDS } from "./common/ids";
import type { Folder } from "./common/format";
import type { Range } from "./common/protocol";

export function folders(): Folder[] {
  return (vscode.workspace.workspaceFolders ?? []).map((f) => ({ name: f.name, uri: f.uri.toString() }));
}

export function toRange(range: Range): vscode.Range {
  return new vscode.Range(range.start.line, range.start.character, range.end.line, range.end.character);
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Said when a command needs the server and none runs. */
export async function notRunning(): Promise<void> {
  const restart = "Restart Server";
  const logs = "Show Logs";
  const pick = await vscode.window.showWarningMessage("Kenning: the server is not running.", restart, logs);
  if (pick === restart) {
    await vscode.commands.executeCommand(COMMANDS.restart);
  } else if (pick === logs) {
    await vscode.commands.executeCommand(COMMANDS.showLogs);
  }
}
