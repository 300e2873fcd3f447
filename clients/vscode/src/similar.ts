/** `Kenning: Find Similar Code` and `Kenning: Insert Template`. */
import * as vscode from "vscode";
import { templateFields } from "./common/format";
import type { Logger } from "./common/log";
import type { KenningServer, SearchAnswer, Target, TemplateMatch } from "./common/protocol";
import { errorText, notRunning, toRange } from "./ui";

export interface EditorDeps {
  server(): KenningServer | undefined;
  log: Logger;
  k(): number | undefined;
  withSnippetEdits<T>(fn: () => Promise<T>): Promise<T>;
}

/** The selection when there is one, else the cursor (the server widens it to the enclosing chunk). */
export function targetOf(editor: vscode.TextEditor): Target {
  const uri = editor.document.uri.toString();
  const sel = editor.selection;
  if (sel.isEmpty) {
    return { uri, position: { line: sel.active.line, character: sel.active.character } };
  }
  return {
    uri,
    range: {
      start: { line: sel.start.line, character: sel.start.character },
      end: { line: sel.end.line, character: sel.end.character },
    },
  };
}

export async function findSimilar(deps: EditorDeps): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (editor === undefined) {
    void vscode.window.showInformationMessage("Kenning: open a file and put the cursor in the code to compare.");
    return;
  }
  const server = deps.server();
  if (server === undefined) {
    await notRunning();
    return;
  }
  let results;
  try {
    results = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Window, title: "Kenning: finding similar code" },
      () => server.similar(targetOf(editor), deps.k()),
    );
  } catch (error) {
    deps.log.error("kenning.similar failed", error);
    void vscode.window.showErrorMessage(`Kenning: finding similar code failed: ${errorText(error)}`);
    return;
  }
  await showSimilar(results, targetOf(editor));
}

/**
 * Shows a `kenning.similar` answer in the peek view at the target; used by
 * `Kenning: Find Similar Code` and by the server's "Find similar code" code action.
 */
export async function showSimilar(answer: SearchAnswer, target: Target): Promise<void> {
  if (answer.results.length === 0) {
    void vscode.window.showInformationMessage("Kenning: no similar code found.");
    return;
  }
  const at = "position" in target ? target.position : target.range.start;
  const locations = answer.results.map((r) => new vscode.Location(vscode.Uri.parse(r.uri), toRange(r.range)));
  await vscode.commands.executeCommand(
    "editor.action.peekLocations",
    vscode.Uri.parse(target.uri),
    new vscode.Position(at.line, at.character),
    locations,
    "peek",
  );
}

interface TemplateItem extends vscode.QuickPickItem {
  match: TemplateMatch;
}

export async function insertTemplate(deps: EditorDeps): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (editor === undefined) {
    void vscode.window.showInformationMessage("Kenning: open a file and put the cursor where the template should go.");
    return;
  }
  const server = deps.server();
  if (server === undefined) {
    await notRunning();
    return;
  }
  const uri = editor.document.uri.toString();
  const active = editor.selection.active;
  const position = { line: active.line, character: active.character };
  const pick = vscode.window.createQuickPick<TemplateItem>();
  pick.title = "Kenning: Insert Template";
  pick.placeholder = "Templates that fit here, best first";
  pick.busy = true;
  pick.matchOnDescription = true;
  pick.show();
  let matches: TemplateMatch[];
  try {
    matches = (await server.matchTemplates({ uri, position })).matches;
  } catch (error) {
    pick.dispose();
    deps.log.error("kenning.matchTemplates failed", error);
    void vscode.window.showErrorMessage(`Kenning: matching templates failed: ${errorText(error)}`);
    return;
  }
  pick.busy = false;
  if (matches.length === 0) {
    pick.dispose();
    void vscode.window.showInformationMessage("Kenning: no template fits here.");
    return;
  }
  pick.items = matches.map((match) => ({ ...templateFields(match), match }));
  const chosen = await new Promise<TemplateMatch | undefined>((resolve) => {
    pick.onDidAccept(() => {
      resolve(pick.selectedItems[0]?.match);
      pick.hide();
    });
    pick.onDidHide(() => resolve(undefined));
  });
  pick.dispose();
  if (chosen === undefined) {
    return;
  }
  try {
    await deps.withSnippetEdits(() => server.applyTemplate(uri, position, chosen.id));
  } catch (error) {
    deps.log.error("kenning.applyTemplate failed", error);
    void vscode.window.showErrorMessage(`Kenning: inserting the template failed: ${errorText(error)}`);
  }
}
