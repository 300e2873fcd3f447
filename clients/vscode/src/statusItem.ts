/** The status bar item and `Kenning: Show Index Status`. */
import * as vscode from "vscode";
import { COMMANDS } from "./common/ids";
import type { KenningServer } from "./common/protocol";
import { statusRows, statusView, type IndexState } from "./common/status";
import { errorText, notRunning } from "./ui";

export class StatusItem implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem("kenning.index", vscode.StatusBarAlignment.Right, 100);

  constructor() {
    this.item.name = "Kenning Index";
    this.item.command = COMMANDS.showStatus;
    this.update({ kind: "starting" });
    this.item.show();
  }

  update(state: IndexState): void {
    const view = statusView(state);
    this.item.text = view.text;
    const tooltip = new vscode.MarkdownString(view.tooltip);
    if (view.severity === "error") {
      tooltip.appendMarkdown(`\n\n[Show Logs](command:${COMMANDS.showLogs}) · [Restart Server](command:${COMMANDS.restart})`);
      tooltip.isTrusted = { enabledCommands: [COMMANDS.showLogs, COMMANDS.restart] };
      this.item.backgroundColor = new vscode.ThemeColor("statusBarItem.errorBackground");
    } else {
      tooltip.appendMarkdown("\n\nClick for the index status.");
      this.item.backgroundColor = view.severity === "warning" ? new vscode.ThemeColor("statusBarItem.warningBackground") : undefined;
    }
    this.item.tooltip = tooltip;
  }

  dispose(): void {
    this.item.dispose();
  }
}

interface Row extends vscode.QuickPickItem {
  command?: string;
}

export async function showStatus(server: KenningServer | undefined, state: IndexState): Promise<void> {
  if (server === undefined) {
    if (state.kind === "error") {
      const pick = await vscode.window.showErrorMessage(`Kenning: ${state.message}`, "Show Logs", "Restart Server");
      if (pick !== undefined) {
        await vscode.commands.executeCommand(pick === "Show Logs" ? COMMANDS.showLogs : COMMANDS.restart);
      }
    } else {
      await notRunning();
    }
    return;
  }
  let rows: [string, string][];
  try {
    rows = statusRows(await server.status());
  } catch (error) {
    void vscode.window.showErrorMessage(`Kenning: kenning.status failed: ${errorText(error)}`);
    return;
  }
  const items: Row[] = [
    ...rows.map(([label, value]) => ({ label, description: value })),
    { label: "", kind: vscode.QuickPickItemKind.Separator },
    { label: "$(refresh) Reindex Workspace", command: COMMANDS.reindexWorkspace },
    { label: "$(output) Show Logs", command: COMMANDS.showLogs },
    { label: "$(debug-restart) Restart Server", command: COMMANDS.restart },
  ];
  const chosen = await vscode.window.showQuickPick(items, { title: "Kenning: Index Status", matchOnDescription: true });
  if (chosen?.command !== undefined) {
    await vscode.commands.executeCommand(chosen.command);
  }
}
