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

export const recorded = {
  quickPicks: [] as FakeQuickPick[],
  shown: [] as ShownDocument[],
  warnings: [] as string[],
  reset(): void {
    this.quickPicks = [];
    this.shown = [];
    this.warnings = [];
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
};

export const commands = {
  executeCommand(): Promise<undefined> {
    return Promise.resolve(undefined);
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
