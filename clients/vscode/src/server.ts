/** Starting, restarting and talking to `kenning lsp`. */
import * as vscode from "vscode";
import {
  ApplyWorkspaceEditRequest,
  DidChangeConfigurationNotification,
  LanguageClient,
  RevealOutputChannelOn,
  State,
  WorkDoneProgress,
  WorkDoneProgressCreateRequest,
  type ApplyWorkspaceEditParams,
  type ApplyWorkspaceEditResult,
  type LanguageClientOptions,
  type ProgressToken,
  type ResponseError,
  type ServerOptions,
} from "vscode-languageclient/node";
import { COMMANDS, SECTION, SERVER_COMMANDS, STATUS_NOTIFICATION } from "./common/ids";
import { describe, resolveServer, sourceName, type Resolution } from "./common/interpreter";
import { levelForTrace, type Logger } from "./common/log";
import { checkSearchAnswer, KenningServer, targetFromArgs } from "./common/protocol";
import { RestartQueue } from "./common/restart";
import { affectsServer, needsRestart, toServerSettings } from "./common/settings";
import { singleTextEdit, toSnippet } from "./common/snippet";
import { stateFromNotification, stateFromProgress, stateFromStatus, type IndexState } from "./common/status";
import { installKenning, interpreterSetting, onDidChangePythonInterpreter, probes } from "./python";
import { showSimilar } from "./similar";
import { errorText } from "./ui";


function currentSettings(): Record<string, unknown> {
  const config = vscode.workspace.getConfiguration(SECTION);
  return toServerSettings((key) => config.get(key));
}

/** The Python extension's interpreter picker, or the setting when that extension is absent. */
async function selectInterpreter(): Promise<void> {
  if (vscode.extensions.getExtension("ms-python.python") !== undefined) {
    await vscode.commands.executeCommand("python.setInterpreter");
  } else {
    await vscode.commands.executeCommand("workbench.action.openSettings", `${SECTION}.interpreter`);
  }
}

export class ServerManager implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private api: KenningServer | undefined;
  private readonly restarts = new RestartQueue(() => this.replaceServer());
  private readonly stateEmitter = new vscode.EventEmitter<IndexState>();
  private readonly clientDisposables: vscode.Disposable[] = [];
  private readonly disposables: vscode.Disposable[] = [];
  private snippetDepth = 0;
  /** Ends the window progress of each `$/progress` token still open. */
  private readonly openProgress = new Set<() => void>();
  private _state: IndexState = { kind: "starting" };

  readonly onDidChangeState = this.stateEmitter.event;

  constructor(
    private readonly channel: vscode.OutputChannel,
    private readonly log: Logger,
  ) {
    this.disposables.push(
      vscode.workspace.onDidChangeConfiguration((e) => this.onConfigurationChanged(e)),
      this.stateEmitter,
    );
    void onDidChangePythonInterpreter(log, () => {
      // The setting wins over the Python extension, so its changes matter only without one.
      if (interpreterSetting().length === 0) {
        log.info("The Python extension's interpreter changed; restarting the server");
        void this.restart();
      }
    }).then((d) => d && this.disposables.push(d));
  }

  get state(): IndexState {
    return this._state;
  }

  /** The server's commands, or undefined while no server is running. */
  get server(): KenningServer | undefined {
    return this.client?.state === State.Running ? this.api : undefined;
  }

  restart(): Promise<void> {
    return this.restarts.request();
  }

  /**
   * Runs `fn` with template edits from the server inserted as snippets
   * (tab stops, cursor placement) instead of plain text edits.
   */
  async withSnippetEdits<T>(fn: () => Promise<T>): Promise<T> {
    this.snippetDepth++;
    try {
      return await fn();
    } finally {
      this.snippetDepth--;
    }
  }

  /**
   * Asks the server for `kenning.status` and updates the index state: once
   * when the server starts (and after a reindex the user ran); from then on
   * the server says every change with a `kenning/status` notification.
   */
  async refreshStatus(): Promise<void> {
    const server = this.server;
    if (server === undefined) {
      return;
    }
    try {
      // While a $/progress bar is open, its percentage is the precise one.
      this.setState(stateFromStatus(await server.status(), this.openProgress.size > 0 ? this._state : undefined));
    } catch (error) {
      this.log.error("kenning.status failed", error);
      this.setState({ kind: "error", message: `status failed: ${errorText(error)}` });
    }
  }

  private onStatusNotification(client: LanguageClient, params: unknown): void {
    if (this.client !== client) {
      return; // from a server being replaced
    }
    this.setState(
      stateFromNotification(params, this._state, this.openProgress.size > 0, (error) =>
        this.log.error("kenning/status: unexpected payload", error),
      ),
    );
  }

  async dispose(): Promise<void> {
    await this.stopClient();
    for (const d of this.disposables) {
      d.dispose();
    }
  }

  private setState(state: IndexState): void {
    this._state = state;
    this.stateEmitter.fire(state);
  }

  private onConfigurationChanged(e: vscode.ConfigurationChangeEvent): void {
    if (e.affectsConfiguration(`${SECTION}.trace.server`)) {
      this.log.level = levelForTrace(vscode.workspace.getConfiguration(SECTION).get("trace.server"));
    }
    if (needsRestart((s) => e.affectsConfiguration(s), SECTION)) {
      this.log.info("A setting the server reads only at start changed; restarting the server");
      void this.restart();
    } else if (affectsServer((s) => e.affectsConfiguration(s), SECTION) && this.client?.state === State.Running) {
      const settings = currentSettings();
      this.log.debug(`Sending settings: ${JSON.stringify(settings)}`);
      void this.client.sendNotification(DidChangeConfigurationNotification.type, { settings: { [SECTION]: settings } });
    }
  }

  private async stopClient(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.api = undefined;
    for (const d of this.clientDisposables.splice(0)) {
      d.dispose();
    }
    for (const end of [...this.openProgress]) {
      end();
    }
    if (client !== undefined) {
      this.log.info("Stopping the server");
      try {
        await client.stop(5_000);
      } catch (error) {
        this.log.error("The server did not stop cleanly", error);
      }
      await client.dispose();
    }
  }

  private async replaceServer(): Promise<void> {
    await this.stopClient();
    this.setState({ kind: "starting" });
    const resolution = await resolveServer(interpreterSetting(), probes(this.log));
    this.log.info(`Server: ${describe(resolution)}`);
    if (resolution.kind !== "ready") {
      this.setState({ kind: "error", message: describe(resolution) });
      void this.explain(resolution);
      return;
    }
    const client = this.createClient(resolution.command, resolution.args);
    this.client = client;
    this.api = new KenningServer(client);
    try {
      await client.start();
    } catch (error) {
      this.log.error("The server failed to start", error);
      this.setState({ kind: "error", message: "the server failed to start; see the logs" });
      return;
    }
    // Registered after start so that it replaces the client's own handler,
    // which the client installs during start.
    this.clientDisposables.push(
      client.onRequest(WorkDoneProgressCreateRequest.type, (params) => this.trackProgress(client, params.token)),
    );
    this.log.info("Server started");
    await this.refreshStatus();
  }

  private createClient(command: string, args: string[]): LanguageClient {
    const cwd = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
    const serverOptions: ServerOptions = { command, args, options: { cwd, env: { ...process.env } } };
    const clientOptions: LanguageClientOptions = {
      // Every file: kenning indexes and searches all languages, unsaved buffers included.
      documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
      outputChannel: this.channel,
      traceOutputChannel: this.channel,
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      initializationOptions: currentSettings(),
      // No `synchronize.fileEvents`: the server registers its own `**/*` watcher
      // (dynamic registration), and a second one here would send every event twice.
      middleware: {
        workspace: {
          // Answer the server's pull for `kenning` with the mapped tree, not
          // VS Code's raw section (which holds client-only keys).
          configuration: async (params, token, next) => {
            const raw: unknown = await next(params, token);
            if (!Array.isArray(raw)) {
              return raw as ResponseError<void>;
            }
            const values = raw as unknown[];
            return params.items.map((item, i) => (item.section === SECTION ? currentSettings() : values[i]));
          },
        },
        executeCommand: (command, args, next): Promise<unknown> => {
          const run = async (): Promise<unknown> => (await next(command, args)) as unknown;
          if (command === SERVER_COMMANDS.similar) {
            return this.similarFromCodeAction(run, args);
          }
          return command === SERVER_COMMANDS.applyTemplate ? this.withSnippetEdits(run) : run();
        },
      },
    };
    const client = new LanguageClient(SECTION, "Kenning", serverOptions, clientOptions);
    // Registered before start: pending handlers replace the client's built-in one.
    client.onRequest(ApplyWorkspaceEditRequest.type, (params) => this.applyEdit(client, params));
    // Before start too, so that no notification of the first index is missed.
    this.clientDisposables.push(
      client.onNotification(STATUS_NOTIFICATION, (params: unknown) => this.onStatusNotification(client, params)),
    );
    this.clientDisposables.push(
      client.onDidChangeState((e) => {
        this.log.debug(`Server state: ${State[e.newState]}`);
        if (e.newState === State.Stopped && this.client === client) {
          this.setState({ kind: "stopped" });
        }
      }),
    );
    return client;
  }

  /**
   * The server's "Find similar code" code action runs `kenning.similar` as a
   * VS Code command, whose answer VS Code drops; shown here in the peek view.
   */
  private async similarFromCodeAction(run: () => Promise<unknown>, args: unknown[]): Promise<unknown> {
    const target = targetFromArgs(args);
    try {
      const answer = await run();
      if (target !== undefined) {
        await showSimilar(checkSearchAnswer(answer, SERVER_COMMANDS.similar), target);
      }
      return answer;
    } catch (error) {
      this.log.error("kenning.similar failed", error);
      void vscode.window.showErrorMessage(`Kenning: finding similar code failed: ${errorText(error)}`);
      return undefined;
    }
  }

  private trackProgress(client: LanguageClient, token: ProgressToken): void {
    void vscode.window.withProgress(
      { location: vscode.ProgressLocation.Window, title: "Kenning" },
      (progress) =>
        new Promise<void>((resolve) => {
          const sub = client.onProgress(WorkDoneProgress.type, token, (value) => {
            this.setState(stateFromProgress(value, this._state));
            if (value.kind === "end") {
              // The chunk count follows in a kenning/status notification.
              end();
            } else {
              progress.report({ message: value.message ?? (value.kind === "begin" ? value.title : undefined) });
            }
          });
          const end = (): void => {
            sub.dispose();
            this.openProgress.delete(end);
            resolve();
          };
          this.openProgress.add(end);
        }),
    );
  }

  private async applyEdit(client: LanguageClient, params: ApplyWorkspaceEditParams): Promise<ApplyWorkspaceEditResult> {
    if (this.snippetDepth > 0) {
      const single = singleTextEdit(params.edit);
      const editor = single && vscode.window.visibleTextEditors.find((e) => e.document.uri.toString() === single.uri);
      if (single && editor && (single.version == null || single.version === editor.document.version)) {
        const range = client.protocol2CodeConverter.asRange(single.range);
        const indent = /^\s*/.exec(editor.document.lineAt(range.start.line).text)?.[0] ?? "";
        const applied = await editor.insertSnippet(new vscode.SnippetString(toSnippet(single.newText, indent)), range);
        return { applied };
      }
    }
    const edit = await client.protocol2CodeConverter.asWorkspaceEdit(params.edit);
    return { applied: await vscode.workspace.applyEdit(edit) };
  }

  /** Tells the user why no server runs, with the button that fixes it. */
  private async explain(resolution: Exclude<Resolution, { kind: "ready" }>): Promise<void> {
    const select = "Select Interpreter";
    const logs = "Show Logs";
    if (resolution.kind === "notInstalled") {
      const install = "Install kenning";
      const where = resolution.interpreter.join(" ");
      const pick = await vscode.window.showWarningMessage(
        `Kenning: kenning is not installed in ${where} (from ${sourceName(resolution.source)}).`,
        install,
        select,
      );
      if (pick === install) {
        if (await installKenning(resolution.interpreter, this.log)) {
          await this.restart();
        }
      } else if (pick === select) {
        await selectInterpreter();
      }
      return;
    }
    const message =
      resolution.kind === "broken"
        ? `Kenning: the Python interpreter ${resolution.interpreter.join(" ")} does not run: ${resolution.error}`
        : "Kenning: no Python interpreter is selected and kenning is not on PATH. Select an interpreter or set kenning.interpreter.";
    const pick = await vscode.window.showErrorMessage(message, select, logs);
    if (pick === select) {
      await selectInterpreter();
    } else if (pick === logs) {
      await vscode.commands.executeCommand(COMMANDS.showLogs);
    }
  }
}
