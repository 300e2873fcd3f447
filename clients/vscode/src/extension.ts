/** Entry point: wires the commands, the status item and the server together. */
import * as vscode from "vscode";
import { COMMANDS, SECTION } from "./common/ids";
import { reindexSummary } from "./common/format";
import { levelForTrace, Logger } from "./common/log";
import { searchCode } from "./search";
import { ServerManager } from "./server";
import { findSimilar, insertTemplate } from "./similar";
import { StatusItem, showStatus } from "./statusItem";
import { errorText, notRunning } from "./ui";

let manager: ServerManager | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  // One channel for the extension's own log and the client's protocol trace.
  const channel = vscode.window.createOutputChannel("Kenning");
  const config = (): vscode.WorkspaceConfiguration => vscode.workspace.getConfiguration(SECTION);
  const log = new Logger((line) => channel.appendLine(line), levelForTrace(config().get("trace.server")));
  const status = new StatusItem();
  const servers = new ServerManager(channel, log);
  // Stopped in deactivate, which VS Code awaits (subscriptions are not awaited).
  manager = servers;
  context.subscriptions.push(channel, status, servers.onDidChangeState((s) => status.update(s)));

  const k = (): number | undefined => config().get<number>("search.k");
  const editorDeps = {
    server: () => servers.server,
    log,
    k,
    withSnippetEdits: <T>(fn: () => Promise<T>) => servers.withSnippetEdits(fn),
  };

  const commands: Record<(typeof COMMANDS)[keyof typeof COMMANDS], () => Promise<void>> = {
    [COMMANDS.searchCode]: () => searchCode({ server: () => servers.server, memento: context.workspaceState, log, k }),
    [COMMANDS.findSimilar]: () => findSimilar(editorDeps),
    [COMMANDS.insertTemplate]: () => insertTemplate(editorDeps),
    [COMMANDS.reindexWorkspace]: async () => {
      const server = servers.server;
      if (server === undefined) {
        await notRunning();
        return;
      }
      const controller = new AbortController();
      try {
        const answer = await vscode.window.withProgress(
          { location: vscode.ProgressLocation.Notification, title: "Kenning: reindexing the workspace", cancellable: true },
          (_progress, token) => {
            token.onCancellationRequested(() => controller.abort());
            return server.reindex(controller.signal);
          },
        );
        void vscode.window.showInformationMessage(`Kenning: ${reindexSummary(answer)}.`);
      } catch (error) {
        if (controller.signal.aborted) {
          void vscode.window.showInformationMessage("Kenning: reindexing cancelled; the index keeps what was done.");
        } else {
          log.error("kenning.reindex failed", error);
          void vscode.window.showErrorMessage(`Kenning: reindexing failed: ${errorText(error)}`);
        }
      }
      await servers.refreshStatus();
    },
    [COMMANDS.showStatus]: () => showStatus(servers.server, servers.state),
    [COMMANDS.showLogs]: () => {
      channel.show();
      return Promise.resolve();
    },
    [COMMANDS.restart]: () => servers.restart(),
  };
  for (const [id, run] of Object.entries(commands)) {
    context.subscriptions.push(vscode.commands.registerCommand(id, run));
  }

  const manifest = context.extension.packageJSON as { version?: string };
  log.info(`Kenning extension ${manifest.version ?? "?"} activated`);
  await servers.restart();
}

export async function deactivate(): Promise<void> {
  await manager?.dispose();
  manager = undefined;
}
