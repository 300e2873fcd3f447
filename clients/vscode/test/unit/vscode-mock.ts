/**
 * A small stand-in for the `vscode` module: just what the search command
 * touches, recording what the extension asks of VS Code.
 */
type Listener<T> = (value: T) => unknown;

export class EventEmitter<T> {
  private listeners: Listener<T>[] = [];
  event = (listener: Listener<T>): { dispose(): void } => {
    this.listeners.push(listener);
    return { dispose: () => (this.listeners = this.listeners.filter((l) => l !== listener)) };
  };
  fire(value: T): unknown[] {
    return this.listeners.map((l) => l(value));
  }
  dispose(): void {
    this.listeners = [];
  }
}

export class Range {
  constructor(
    public startLine: number,
    public startCharacter: number,
    public endLine: number,
    public endCharacter: number,
  ) {}
}

export class ThemeIcon {
  constructor(public id: string) {}
}

export class Uri {
  private constructor(private readonly text: string) {}
  static parse(text: string): Uri {
    return new Uri(text);
  }
  toString(): string {
    return this.text;
  }
  get fsPath(): string {
    return decodeURIComponent(this.text.replace(/^file:\/\//, ""));
  }
}

export interface FakeItem {
  label: string;
  description?: string;
  detail?: string;
  alwaysShow?: boolean;
  result?: { uri: string };
}

export class FakeQuickPick {
  value = "";
  title: string | undefined;
  placeholder: string | undefined;
  items: FakeItem[] = [];
  activeItems: FakeItem[] = [];
  selectedItems: FakeItem[] = [];
  buttons: unknown[] = [];
  busy = false;
  matchOnDescription = true;
  matchOnDetail = true;
  sortByLabel = true;
  visible = false;
  disposed = false;
  readonly valueEmitter = new EventEmitter<string>();
  readonly activeEmitter = new EventEmitter<FakeItem[]>();
  readonly acceptEmitter = new EventEmitter<void>();
  readonly hideEmitter = new EventEmitter<void>();
  readonly buttonEmitter = new EventEmitter<unknown>();
  onDidChangeValue = this.valueEmitter.event;
  onDidChangeActive = this.activeEmitter.event;
  onDidAccept = this.acceptEmitter.event;
  onDidHide = this.hideEmitter.event;
  onDidTriggerButton = this.buttonEmitter.event;
  onDidChangeSelection = new EventEmitter<FakeItem[]>().event;
  show(): void {
    this.visible = true;
  }
  hide(): void {
    if (this.visible) {
      this.visible = false;
      this.hideEmitter.fire();
    }
  }
  dispose(): void {
    this.disposed = true;
  }
  /** What a user typing does: the value changes, then VS Code fires the event. */
  type(value: string): void {
    this.value = value;
    this.valueEmitter.fire(value);
  }
}

export interface ShownDocument {
  uri: string;
  options: { preview?: boolean; preserveFocus?: boolean; selection?: Range };
}

export class MarkdownString {
  isTrusted: unknown;
  constructor(public value = "") {}
  appendMarkdown(text: string): this {
    this.value += text;
    return this;
  }
}

export class ThemeColor {
  constructor(public id: string) {}
}

export enum StatusBarAlignment {
  Left = 1,
  Right = 2,
}

export enum ProgressLocation {
  SourceControl = 1,
  Window = 10,
  Notification = 15,
}

export enum QuickPickItemKind {
  Separator = -1,
  Default = 0,
}

export interface FakeStatusBarItem {
  id: string;
  text: string;
  tooltip?: MarkdownString;
  command?: string;
  name?: string;
  backgroundColor?: ThemeColor;
  visible: boolean;
}

export const recorded = {
  quickPicks: [] as FakeQuickPick[],
  shown: [] as ShownDocument[],
  warnings: [] as string[],
  errors: [] as string[],
  commands: new Map<string, (...args: unknown[]) => unknown>(),
  statusItems: [] as FakeStatusBarItem[],
  log: [] as string[],
  settings: new Map<string, unknown>(),
  configListeners: new EventEmitter<{ affectsConfiguration(section: string): boolean }>(),
  reset(): void {
    this.quickPicks = [];
    this.shown = [];
    this.warnings = [];
    this.errors = [];
    this.commands = new Map();
    this.statusItems = [];
    this.log = [];
    this.settings = new Map();
    this.configListeners = new EventEmitter();
  },
};

export const window = {
  activeTextEditor: undefined as unknown,
  createQuickPick(): FakeQuickPick {
    const pick = new FakeQuickPick();
    recorded.quickPicks.push(pick);
    return pick;
  },
  showTextDocument(uri: Uri, options: ShownDocument["options"]): Promise<void> {
    recorded.shown.push({ uri: uri.toString(), options });
    return Promise.resolve();
  },
  showErrorMessage(message: string): Promise<undefined> {
    recorded.errors.push(message);
    return Promise.resolve(undefined);
  },
  createOutputChannel(name: string) {
    return {
      name,
      appendLine: (line: string) => recorded.log.push(line),
      append: (text: string) => recorded.log.push(text),
      show: () => undefined,
      dispose: () => undefined,
    };
  },
  createStatusBarItem(id: string): FakeStatusBarItem & { show(): void; dispose(): void } {
    const item = {
      id,
      text: "",
      visible: false,
      show() {
        item.visible = true;
      },
      dispose() {
        item.visible = false;
      },
    };
    recorded.statusItems.push(item);
    return item;
  },
  showWarningMessage(message: string): Promise<undefined> {
    recorded.warnings.push(message);
    return Promise.resolve(undefined);
  },
  showQuickPick(): Promise<undefined> {
    return Promise.resolve(undefined);
  },
  showInputBox(): Promise<undefined> {
    return Promise.resolve(undefined);
  },
};

export const workspace = {
  workspaceFolders: [{ name: "shop", uri: Uri.parse("file:///home/u/shop") }],
  getConfiguration(section: string) {
    return {
      get: <T>(key: string, fallback?: T): T | undefined =>
        recorded.settings.has(`${section}.${key}`) ? (recorded.settings.get(`${section}.${key}`) as T) : fallback,
    };
  },
  onDidChangeConfiguration(listener: (e: { affectsConfiguration(section: string): boolean }) => unknown) {
    return recorded.configListeners.event(listener);
  },
};

export const commands = {
  executeCommand(): Promise<undefined> {
    return Promise.resolve(undefined);
  },
  registerCommand(id: string, run: (...args: unknown[]) => unknown) {
    if (recorded.commands.has(id)) {
      throw new Error(`command '${id}' already exists`);
    }
    recorded.commands.set(id, run);
    return { dispose: () => recorded.commands.delete(id) };
  },
};

export const extensions = {
  getExtension(): undefined {
    return undefined;
  },
};

export class Memento {
  readonly data = new Map<string, unknown>();
  get<T>(key: string, fallback: T): T {
    return this.data.has(key) ? (this.data.get(key) as T) : fallback;
  }
  update(key: string, value: unknown): Promise<void> {
    this.data.set(key, value);
    return Promise.resolve();
  }
  keys(): string[] {
    return [...this.data.keys()];
  }
}
