/** `Kenning: Search Code`: a QuickPick that searches as the user types. */
import * as vscode from "vscode";
import { resultFields, searchTitle } from "./common/format";
import { LiveQuery } from "./common/live";
import type { Logger } from "./common/log";
import type { KenningServer, SearchAnswer, SearchResult } from "./common/protocol";
import { parseQuery, toSearchArgs, withFilter } from "./common/query";
import { errorText, folders, notRunning, toRange } from "./ui";

export const LAST_QUERY_KEY = "kenning.lastQuery";
const DEBOUNCE_MS = 150;
const PLACEHOLDER = "Describe the code you want, e.g. retry an http request (filters: lang:python glob:src/**)";

/** Languages offered by the filter button; the server accepts any tree-sitter language name. */
export const COMMON_LANGUAGES = [
  "python", "typescript", "javascript", "go", "rust", "java", "c", "cpp", "csharp",
  "ruby", "php", "kotlin", "swift", "scala", "elixir", "lua", "bash",
];

export interface SearchDeps {
  server(): KenningServer | undefined;
  memento: vscode.Memento;
  log: Logger;
  k(): number | undefined;
  debounceMs?: number;
}

interface ResultItem extends vscode.QuickPickItem {
  result?: SearchResult;
}

export async function searchCode(deps: SearchDeps): Promise<void> {
  const server = deps.server();
  if (server === undefined) {
    await notRunning();
    return;
  }
  const langButton: vscode.QuickInputButton = { iconPath: new vscode.ThemeIcon("symbol-namespace"), tooltip: "Filter by language" };
  const globButton: vscode.QuickInputButton = { iconPath: new vscode.ThemeIcon("filter"), tooltip: "Filter by path glob" };

  const pick = vscode.window.createQuickPick<ResultItem>();
  pick.title = "Kenning: Search Code";
  pick.placeholder = PLACEHOLDER;
  pick.matchOnDescription = false;
  pick.matchOnDetail = false;
  // The server ranks; VS Code must not re-sort by label match. (`sortByLabel`
  // is not in the typed API yet, but the extension host honours it.)
  (pick as unknown as { sortByLabel: boolean }).sortByLabel = false;
  pick.buttons = [langButton, globButton];

  const original = vscode.window.activeTextEditor;
  let accepted = false;
  let previewed = false;
  let switching = false;

  const live = new LiveQuery<string, SearchAnswer>({
    run: (text, signal) => server.search(toSearchArgs(parseQuery(text), deps.k()), signal),
    onResult: (text, answer) => {
      const parsed = parseQuery(text);
      const filters = [...(parsed.lang ? [`lang:${parsed.lang}`] : []), ...parsed.glob.map((g) => `glob:${g}`)];
      pick.title = searchTitle(answer.results.length, answer.took_ms, filters, answer.notes);
      const roots = folders();
      // alwaysShow: the query is meaning, not characters; VS Code's own filter would hide results.
      pick.items = answer.results.map((result) => ({ ...resultFields(result, roots), alwaysShow: true, result }));
    },
    onError: (_text, error) => {
      deps.log.error("kenning.search failed", error);
      pick.items = [{ label: "$(error) Search failed", detail: errorText(error), alwaysShow: true }];
    },
    onBusy: (busy) => (pick.busy = busy),
    delayMs: deps.debounceMs ?? DEBOUNCE_MS,
  });

  const onValue = (value: string): void => {
    if (parseQuery(value).query === "") {
      live.cancel();
      pick.items = [];
      pick.title = "Kenning: Search Code";
    } else {
      live.update(value);
    }
  };

  const disposables: vscode.Disposable[] = [
    pick.onDidChangeValue(onValue),
    pick.onDidChangeActive((items) => {
      const result = items[0]?.result;
      if (result !== undefined) {
        previewed = true;
        void vscode.window.showTextDocument(vscode.Uri.parse(result.uri), {
          preview: true,
          preserveFocus: true,
          selection: toRange(result.range),
        }).then(undefined, (error: unknown) => deps.log.debug(`preview failed: ${errorText(error)}`));
      }
    }),
    pick.onDidAccept(() => {
      const result = pick.activeItems[0]?.result;
      if (result === undefined) {
        return;
      }
      accepted = true;
      pick.hide();
      void vscode.window.showTextDocument(vscode.Uri.parse(result.uri), {
        preview: false,
        selection: toRange(result.range),
      });
    }),
    pick.onDidTriggerButton(async (button) => {
      switching = true;
      let value: string | undefined;
      if (button === langButton) {
        const seen = pick.items.map((i) => i.result?.language).filter((l): l is string => !!l);
        const langs = [...new Set([...seen, ...COMMON_LANGUAGES])];
        const lang = await vscode.window.showQuickPick(langs, { title: "Kenning: filter by language" });
        value = lang === undefined ? undefined : withFilter(pick.value, "lang", lang);
      } else {
        const glob = await vscode.window.showInputBox({ title: "Kenning: filter by path glob", prompt: "e.g. src/**/*.py", value: "" });
        value = glob ? withFilter(pick.value, "glob", glob.trim()) : undefined;
      }
      switching = false;
      pick.show();
      if (value !== undefined) {
        pick.value = value;
        onValue(value);
      }
    }),
    pick.onDidHide(() => {
      if (switching) {
        return; // a filter picker took over for a moment; we come back
      }
      void deps.memento.update(LAST_QUERY_KEY, pick.value);
      live.dispose();
      for (const d of disposables) {
        d.dispose();
      }
      pick.dispose();
      if (!accepted && previewed && original !== undefined) {
        // Escape puts the user back where they were, like Go to Symbol does.
        void vscode.window.showTextDocument(original.document, {
          viewColumn: original.viewColumn,
          selection: original.selection,
        });
      }
    }),
  ];

  const last = deps.memento.get<string>(LAST_QUERY_KEY, "");
  pick.value = last;
  pick.show();
  if (parseQuery(last).query !== "") {
    await live.now(last);
  }
}
