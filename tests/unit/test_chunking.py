"""Chunking: semantic units per language, markdown sections, fallbacks, invariants."""

from __future__ import annotations

import itertools
import random
import textwrap
import threading

import pytest

from kenning.engine import chunking
from kenning.engine.chunking import (
    MAX_UNIT_CHARS,
    MAX_UNIT_LINES,
    SUPPORTED_LANGUAGES,
    WINDOW_LINES,
    chunk_text,
    detect_language,
    digest_text,
)
from kenning.engine.types import Chunk

# One small, realistic file per language, written for these tests.
SAMPLES: dict[str, tuple[str, str]] = {
    "python": (
        "pkg/store.py",
        '''\
"""A tiny key-value store."""

import json
import os
from pathlib import Path

DEFAULT_PATH = Path("~/.kv.json")


# Reads the whole store; small files only.
@functools.lru_cache(maxsize=1)
def load(path: Path = DEFAULT_PATH) -> dict:
    """Load the store from disk."""
    if not path.exists():
        return {}
    return json.loads(path.read_text())


class Store:
    """An in-memory view of the store file."""

    version = 2

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = load(path)

    @property
    def size(self) -> int:
        return len(self.data)

    async def flush(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        os.replace(tmp, self.path)


if __name__ == "__main__":
    print(Store(DEFAULT_PATH).size)
''',
    ),
    "javascript": (
        "web/cart.js",
        """\
import { formatPrice } from "./money.js";

const TAX_RATE = 0.2;

/**
 * Sum the prices of every line in a cart.
 */
export function cartTotal(lines) {
  let total = 0;
  for (const line of lines) {
    total += line.price * line.qty;
  }
  return total * (1 + TAX_RATE);
}

export const describeCart = (lines) => `${lines.length} items, ${formatPrice(cartTotal(lines))}`;

class Cart {
  constructor() {
    this.lines = [];
  }

  add(item, qty = 1) {
    this.lines.push({ ...item, qty });
  }

  get count() {
    return this.lines.length;
  }
}

export default Cart;
""",
    ),
    "typescript": (
        "src/queue.ts",
        """\
import { EventEmitter } from "events";

export interface Job {
  id: string;
  attempts: number;
}

export type Handler = (job: Job) => Promise<void>;

enum State {
  Idle,
  Running,
}

/** A retrying in-process job queue. */
export class JobQueue extends EventEmitter {
  private jobs: Job[] = [];
  private state: State = State.Idle;

  constructor(private readonly handler: Handler) {
    super();
  }

  push(job: Job): void {
    this.jobs.push(job);
    this.emit("queued", job.id);
  }

  async drain(): Promise<number> {
    let done = 0;
    while (this.jobs.length > 0) {
      const job = this.jobs.shift()!;
      await this.handler(job);
      done += 1;
    }
    return done;
  }
}

export function makeJob(id: string): Job {
  return { id, attempts: 0 };
}
""",
    ),
    "tsx": (
        "ui/Counter.tsx",
        """\
import React, { useState } from "react";

type Props = { start: number; label: string };

// A button that counts its clicks.
export function Counter({ start, label }: Props) {
  const [n, setN] = useState(start);
  return (
    <button onClick={() => setN(n + 1)}>
      {label}: {n}
    </button>
  );
}

export const Badge = ({ text }: { text: string }) => <span className="badge">{text}</span>;
""",
    ),
    "go": (
        "server/cache.go",
        """\
package server

import (
	"sync"
	"time"
)

// DefaultTTL is how long entries live.
const DefaultTTL = 5 * time.Minute

// Cache is a TTL map safe for concurrent use.
type Cache struct {
	mu    sync.Mutex
	items map[string]entry
}

type entry struct {
	value   string
	expires time.Time
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{items: make(map[string]entry)}
}

// Get returns the value if present and fresh.
func (c *Cache) Get(key string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[key]
	if !ok || time.Now().After(e.expires) {
		return "", false
	}
	return e.value, true
}

func (c *Cache) Set(key, value string) {
	c.mu.Lock()
	c.items[key] = entry{value, time.Now().Add(DefaultTTL)}
	c.mu.Unlock()
}
""",
    ),
    "rust": (
        "src/ring.rs",
        """\
use std::fmt;

/// A fixed-capacity ring buffer.
#[derive(Debug, Clone)]
pub struct Ring<T> {
    items: Vec<Option<T>>,
    head: usize,
}

pub trait Drain {
    fn drain_all(&mut self) -> usize;
}

impl<T: Clone> Ring<T> {
    /// Create an empty ring.
    pub fn new(cap: usize) -> Self {
        Ring { items: vec![None; cap], head: 0 }
    }

    pub fn push(&mut self, item: T) {
        let n = self.items.len();
        self.items[self.head % n] = Some(item);
        self.head += 1;
    }
}

impl<T> fmt::Display for Ring<T> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Ring(head={})", self.head)
    }
}

pub fn capacity_for(n: usize) -> usize {
    n.next_power_of_two()
}

mod tests {
    #[test]
    fn wraps() {
        assert_eq!(super::capacity_for(3), 4);
    }
}
""",
    ),
    "java": (
        "src/main/java/app/Accounts.java",
        """\
package app;

import java.util.HashMap;
import java.util.Map;

/**
 * Holds account balances.
 */
public class Accounts {
    private final Map<String, Long> balances = new HashMap<>();

    public Accounts() {
    }

    @Override
    public String toString() {
        return "Accounts(" + balances.size() + ")";
    }

    public void deposit(String id, long cents) {
        if (cents <= 0) {
            throw new IllegalArgumentException("positive only");
        }
        balances.merge(id, cents, Long::sum);
    }

    interface Listener {
        void changed(String id);
    }
}
""",
    ),
    "c": (
        "lib/vec.c",
        """\
#include <stdlib.h>
#include "vec.h"

#define GROWTH 2

/* A growable array of ints. */
typedef struct {
    int *data;
    size_t len, cap;
} IntVec;

struct pair {
    int a;
    int b;
};

static int grow(IntVec *v) {
    size_t cap = v->cap ? v->cap * GROWTH : 8;
    int *p = realloc(v->data, cap * sizeof *p);
    if (!p) return -1;
    v->data = p;
    v->cap = cap;
    return 0;
}

int vec_push(IntVec *v, int x) {
    if (v->len == v->cap && grow(v) != 0) return -1;
    v->data[v->len++] = x;
    return 0;
}
""",
    ),
    "cpp": (
        "src/matrix.cpp",
        """\
#include <vector>
#include <stdexcept>

namespace linalg {

// Dense row-major matrix.
class Matrix {
public:
    Matrix(int rows, int cols) : rows_(rows), cols_(cols), data_(rows * cols) {}

    double& at(int r, int c) {
        return data_[r * cols_ + c];
    }

    Matrix multiply(const Matrix& other) const;

private:
    int rows_, cols_;
    std::vector<double> data_;
};

Matrix Matrix::multiply(const Matrix& other) const {
    if (cols_ != other.rows_) throw std::invalid_argument("shape");
    Matrix out(rows_, other.cols_);
    return out;
}

template <typename T>
T clamp(T v, T lo, T hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

}  // namespace linalg
""",
    ),
    "csharp": (
        "Billing/Invoice.cs",
        """\
using System;
using System.Collections.Generic;

namespace Billing
{
    /// <summary>An invoice with line items.</summary>
    public class Invoice
    {
        public string Number { get; set; }
        private readonly List<decimal> _lines = new();

        public Invoice(string number)
        {
            Number = number;
        }

        [Obsolete("use Total")]
        public decimal Sum() => Total();

        public decimal Total()
        {
            decimal t = 0;
            foreach (var l in _lines) t += l;
            return t;
        }
    }

    public interface IPayable
    {
        void Pay(decimal amount);
    }

    public enum Status { Open, Paid }
}
""",
    ),
    "ruby": (
        "lib/greeter.rb",
        """\
require "json"

# Greets people in several languages.
class Greeter
  attr_reader :lang

  GREETINGS = { en: "Hello", fr: "Bonjour" }.freeze

  def initialize(lang = :en)
    @lang = lang
  end

  # The greeting for a name.
  def greet(name)
    "#{GREETINGS.fetch(lang)}, #{name}!"
  end

  def self.languages
    GREETINGS.keys
  end
end

module Util
  def self.slug(text)
    text.downcase.gsub(/[^a-z0-9]+/, "-")
  end
end

puts Greeter.new.greet("Ada")
""",
    ),
    "php": (
        "src/Router.php",
        """\
<?php

namespace App;

use App\\Http\\Request;

/**
 * Maps paths to handlers.
 */
class Router
{
    private array $routes = [];

    public function add(string $path, callable $handler): void
    {
        $this->routes[$path] = $handler;
    }

    public function dispatch(Request $req)
    {
        $h = $this->routes[$req->path()] ?? null;
        return $h ? $h($req) : null;
    }
}

function route_name(string $path): string
{
    return trim($path, "/");
}
""",
    ),
    "kotlin": (
        "app/src/Inventory.kt",
        """\
package shop

import java.time.Instant

data class Item(val sku: String, val qty: Int)

/** Tracks stock levels. */
class Inventory(private val items: MutableMap<String, Item> = mutableMapOf()) {
    val size: Int
        get() = items.size

    fun add(item: Item) {
        items[item.sku] = item
    }

    fun remove(sku: String): Item? = items.remove(sku)
}

object Clock {
    fun now(): Instant = Instant.now()
}

fun lowStock(inv: Inventory, limit: Int): Boolean {
    return inv.size < limit
}
""",
    ),
    "swift": (
        "Sources/Temperature.swift",
        """\
import Foundation

/// A temperature in degrees Celsius.
struct Temperature {
    var celsius: Double

    var fahrenheit: Double {
        return celsius * 9 / 5 + 32
    }

    func isFreezing() -> Bool {
        return celsius <= 0
    }
}

protocol Sensor {
    func read() -> Temperature
}

class Thermostat {
    private var target: Double = 20

    init(target: Double) {
        self.target = target
    }

    func shouldHeat(_ t: Temperature) -> Bool {
        return t.celsius < target
    }
}

func average(_ ts: [Temperature]) -> Double {
    return ts.map { $0.celsius }.reduce(0, +) / Double(ts.count)
}
""",
    ),
    "scala": (
        "src/main/scala/Stats.scala",
        """\
package stats

import scala.math.sqrt

/** Running statistics over a stream of doubles. */
class Running {
  private var n = 0
  private var mean = 0.0

  def add(x: Double): Unit = {
    n += 1
    mean += (x - mean) / n
  }

  def count: Int = n
}

object Stats {
  def stddev(xs: Seq[Double]): Double = {
    val m = xs.sum / xs.size
    sqrt(xs.map(x => (x - m) * (x - m)).sum / xs.size)
  }
}

trait Summary {
  def describe(): String
}
""",
    ),
    "elixir": (
        "lib/counter.ex",
        '''\
defmodule Shop.Counter do
  @moduledoc """
  A counter process.
  """
  use GenServer

  @doc "Starts the counter."
  def start_link(initial) do
    GenServer.start_link(__MODULE__, initial, name: __MODULE__)
  end

  def increment(by \\\\ 1), do: GenServer.cast(__MODULE__, {:inc, by})

  @impl true
  def handle_cast({:inc, by}, n) do
    {:noreply, n + by}
  end

  defp clamp(n) when n < 0, do: 0
end
''',
    ),
    "lua": (
        "plugin/notes.lua",
        """\
local M = {}

local defaults = { dir = "~/notes", ext = ".md" }

-- Merge user options over the defaults.
function M.setup(opts)
  M.opts = vim.tbl_extend("force", defaults, opts or {})
end

local function slug(title)
  return title:lower():gsub("%s+", "-")
end

function M:open(title)
  local path = self.opts.dir .. "/" .. slug(title) .. self.opts.ext
  vim.cmd.edit(path)
end

return M
""",
    ),
    "bash": (
        "scripts/deploy.sh",
        """\
#!/usr/bin/env bash
set -euo pipefail

TARGET="${1:-staging}"

# Print a message with a timestamp.
log() {
  echo "[$(date +%T)] $*" >&2
}

function build {
  log "building"
  make -j4 all
}

build
log "deploying to $TARGET"
rsync -a dist/ "deploy@$TARGET:/srv/app/"
""",
    ),
    "markdown": (
        "docs/guide.md",
        """\
Intro text before any heading.

# Getting started

Install the tool with pip.

## Configuration

Settings live in a TOML file:

```toml
# not a heading
key = "value"
```

Usage
-----

Run `tool --help`.
""",
    ),
}

# (kind, symbol) pairs each sample must produce.
EXPECTED: dict[str, set[tuple[str, str | None]]] = {
    "python": {
        ("function", "load"),
        ("class", "Store"),
        ("method", "Store.__init__"),
        ("method", "Store.size"),
        ("method", "Store.flush"),
        ("block", None),
    },
    "javascript": {
        ("function", "cartTotal"),
        ("function", "describeCart"),
        ("class", "Cart"),
        ("method", "Cart.constructor"),
        ("method", "Cart.add"),
        ("method", "Cart.count"),
    },
    "typescript": {
        ("interface", "Job"),
        ("type", "Handler"),
        ("type", "State"),
        ("class", "JobQueue"),
        ("method", "JobQueue.push"),
        ("method", "JobQueue.drain"),
        ("function", "makeJob"),
    },
    "tsx": {("type", "Props"), ("function", "Counter"), ("function", "Badge")},
    "go": {
        ("type", "Cache"),
        ("type", "entry"),
        ("function", "NewCache"),
        ("method", "Cache.Get"),
        ("method", "Cache.Set"),
    },
    "rust": {
        ("type", "Ring"),
        ("interface", "Drain"),
        ("impl", "Ring"),
        ("method", "Ring.new"),
        ("method", "Ring.push"),
        ("method", "Ring.fmt"),
        ("function", "capacity_for"),
        ("module", "tests"),
        ("function", "tests.wraps"),
    },
    "java": {
        ("class", "Accounts"),
        ("method", "Accounts.Accounts"),
        ("method", "Accounts.toString"),
        ("method", "Accounts.deposit"),
        ("interface", "Accounts.Listener"),
    },
    "c": {("type", "IntVec"), ("type", "pair"), ("function", "grow"), ("function", "vec_push")},
    "cpp": {
        ("module", "linalg"),
        ("class", "Matrix"),
        ("method", "Matrix.at"),
        ("method", "Matrix.multiply"),
        ("function", "clamp"),
    },
    "csharp": {
        ("module", "Billing"),
        ("class", "Invoice"),
        ("method", "Invoice.Invoice"),
        ("method", "Invoice.Sum"),
        ("method", "Invoice.Total"),
        ("interface", "IPayable"),
        ("type", "Status"),
    },
    "ruby": {
        ("class", "Greeter"),
        ("method", "Greeter.initialize"),
        ("method", "Greeter.greet"),
        ("method", "Greeter.languages"),
        ("module", "Util"),
        ("function", "Util.slug"),
    },
    "php": {
        ("class", "Router"),
        ("method", "Router.add"),
        ("method", "Router.dispatch"),
        ("function", "route_name"),
    },
    "kotlin": {
        ("class", "Item"),
        ("class", "Inventory"),
        ("method", "Inventory.add"),
        ("method", "Inventory.remove"),
        ("class", "Clock"),
        ("method", "Clock.now"),
        ("function", "lowStock"),
    },
    "swift": {
        ("type", "Temperature"),
        ("method", "Temperature.isFreezing"),
        ("interface", "Sensor"),
        ("class", "Thermostat"),
        ("method", "Thermostat.init"),
        ("method", "Thermostat.shouldHeat"),
        ("function", "average"),
    },
    "scala": {
        ("class", "Running"),
        ("method", "Running.add"),
        ("method", "Running.count"),
        ("class", "Stats"),
        ("method", "Stats.stddev"),
        ("interface", "Summary"),
    },
    "elixir": {
        ("module", "Shop.Counter"),
        ("function", "Shop.Counter.start_link"),
        ("function", "Shop.Counter.increment"),
        ("function", "Shop.Counter.handle_cast"),
        ("function", "Shop.Counter.clamp"),
    },
    "lua": {("function", "M.setup"), ("function", "slug"), ("method", "M.open")},
    "bash": {("function", "log"), ("function", "build"), ("block", None)},
    "markdown": {
        ("section", None),
        ("section", "Getting started"),
        ("section", "Configuration"),
        ("section", "Usage"),
    },
}


@pytest.fixture
def whole_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """No joining of small pieces: for tests of how definitions are found and named."""
    monkeypatch.setattr(chunking, "MIN_CHUNK_LINES", 1)


def lines_of(text: str) -> list[str]:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def check_invariants(text: str, chunks: list[Chunk]) -> None:
    """Ordered, within the file, every non-blank line covered, digests right, and the
    text is the file's own lines (after a signature prefix, for split parts)."""
    lines = lines_of(text)
    covered: set[int] = set()
    previous_start = 0
    for c in chunks:
        assert 1 <= c.start_line <= c.end_line <= len(lines), c
        assert c.start_line >= previous_start, "chunks out of order"
        previous_start = c.start_line
        assert c.digest == digest_text(c.text)
        body = "\n".join(lines[c.start_line - 1 : c.end_line])
        assert c.text == body or c.text.endswith("\n" + body), c
        assert c.text.strip(), "blank chunk"
        assert lines[c.start_line - 1].strip() and lines[c.end_line - 1].strip(), "blank edge"
        covered.update(range(c.start_line, c.end_line + 1))
    missing = [i for i, line in enumerate(lines, 1) if line.strip() and i not in covered]
    assert not missing, f"lines not in any chunk: {missing}"


def by_symbol(chunks: list[Chunk], symbol: str) -> Chunk:
    found = [c for c in chunks if c.symbol == symbol]
    assert found, f"no chunk for {symbol}: {[c.symbol for c in chunks]}"
    return found[0]


def test_every_listed_language_is_structured() -> None:
    assert set(EXPECTED) - {"markdown"} == SUPPORTED_LANGUAGES
    assert set(SAMPLES) == set(EXPECTED)


@pytest.mark.usefixtures("whole_pieces")
@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_sample_symbols_and_invariants(language: str) -> None:
    path, text = SAMPLES[language]
    assert detect_language(path) == language
    chunks = chunk_text(path, text)
    got = {(c.kind, c.symbol) for c in chunks}
    assert EXPECTED[language] <= got, EXPECTED[language] - got
    assert all(c.path == path and c.language == language for c in chunks)
    assert "window" not in {c.kind for c in chunks}
    check_invariants(text, chunks)
    # Only a later part of a definition (class fields after its methods) carries its
    # signature as a prefix; nothing in these small samples overlaps.
    lines = lines_of(text)
    seen: set[tuple[str, str | None]] = set()
    for c in chunks:
        own = "\n".join(lines[c.start_line - 1 : c.end_line])
        if (c.kind, c.symbol) in seen and c.symbol is not None:
            assert c.text == own or c.text.endswith("\n" + own)
        else:
            assert c.text == own
        seen.add((c.kind, c.symbol))
    for a, b in itertools.pairwise(chunks):
        assert a.end_line < b.start_line


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_crlf_and_tabs_keep_structure(language: str) -> None:
    path, text = SAMPLES[language]
    plain = chunk_text(path, text)
    crlf_text = text.replace("\n", "\r\n")
    crlf = chunk_text(path, crlf_text)
    assert [(c.start_line, c.end_line, c.kind, c.symbol, c.digest) for c in crlf] == [
        (c.start_line, c.end_line, c.kind, c.symbol, c.digest) for c in plain
    ]
    check_invariants(crlf_text, crlf)


@pytest.mark.usefixtures("whole_pieces")
def test_python_definitions_under_a_condition_are_their_own_chunks() -> None:
    text = textwrap.dedent(
        """\
        import sys

        try:
            import ujson as json
        except ImportError:
            import json

            def dumps(obj):
                \"\"\"Fallback encoder.\"\"\"
                return json.dumps(obj, sort_keys=True)

        if sys.version_info >= (3, 11):
            def parse_toml(text):
                import tomllib
                return tomllib.loads(text)
        else:
            class Parser:
                def parse(self, text):
                    return text

        if __name__ == "__main__":
            print(dumps({}))
        """
    )
    chunks = chunk_text("compat.py", text)
    check_invariants(text, chunks)
    assert by_symbol(chunks, "dumps").kind == "function"
    assert "Fallback encoder" in by_symbol(chunks, "dumps").text
    assert by_symbol(chunks, "parse_toml").start_line == 13
    assert by_symbol(chunks, "Parser").kind == "class"
    assert by_symbol(chunks, "Parser.parse").kind == "method"
    assert 'if __name__ == "__main__":' in chunks[-1].text


@pytest.mark.usefixtures("whole_pieces")
def test_python_decorators_docstrings_and_leading_comments() -> None:
    path, text = SAMPLES["python"]
    chunks = chunk_text(path, text)
    load = by_symbol(chunks, "load")
    assert load.kind == "function"
    assert load.text.startswith("# Reads the whole store; small files only.\n@functools")
    assert '"""Load the store from disk."""' in load.text
    size = by_symbol(chunks, "Store.size")
    assert size.kind == "method" and size.text.lstrip().startswith("@property")
    store = by_symbol(chunks, "Store")
    # The class chunk is its header, docstring and fields; methods are their own chunks.
    assert store.kind == "class"
    assert '"""An in-memory view of the store file."""' in store.text
    assert "version = 2" in store.text
    assert "def " not in store.text
    flush = by_symbol(chunks, "Store.flush")
    assert flush.text.lstrip().startswith("async def flush")
    assert flush.end_line == lines_of(text).index("        os.replace(tmp, self.path)") + 1
    top = [c for c in chunks if c.kind == "block"]
    assert "import json" in top[0].text and "DEFAULT_PATH" in top[0].text
    assert 'if __name__ == "__main__":' in top[-1].text


@pytest.mark.usefixtures("whole_pieces")
def test_leading_doc_comments_and_attributes_belong_to_the_definition() -> None:
    rust = chunk_text(*SAMPLES["rust"])
    assert by_symbol(rust, "Ring").text.startswith("/// A fixed-capacity ring buffer.\n#[derive")
    assert by_symbol(rust, "Ring.new").text.lstrip().startswith("/// Create an empty ring.")
    assert by_symbol(rust, "tests.wraps").text.lstrip().startswith("#[test]")
    go = chunk_text(*SAMPLES["go"])
    assert by_symbol(go, "Cache.Get").text.startswith("// Get returns the value")
    java = chunk_text(*SAMPLES["java"])
    assert by_symbol(java, "Accounts").text.startswith("/**\n * Holds account balances.")
    assert by_symbol(java, "Accounts.toString").text.lstrip().startswith("@Override")
    elixir = chunk_text(*SAMPLES["elixir"])
    assert by_symbol(elixir, "Shop.Counter.start_link").text.lstrip().startswith("@doc")
    assert by_symbol(elixir, "Shop.Counter.handle_cast").text.lstrip().startswith("@impl true")
    # @moduledoc belongs to the module, not to the first function.
    assert "@moduledoc" in by_symbol(elixir, "Shop.Counter").text
    csharp = chunk_text(*SAMPLES["csharp"])
    assert by_symbol(csharp, "Invoice").text.lstrip().startswith("/// <summary>")


@pytest.mark.usefixtures("whole_pieces")
def test_a_comment_after_a_blank_line_is_not_attached() -> None:
    text = "x = 1\n\n# about nothing in particular\n\ndef f():\n    return 1\n"
    chunks = chunk_text("m.py", text)
    assert by_symbol(chunks, "f").start_line == 5
    check_invariants(text, chunks)


def test_markdown_split_by_headings() -> None:
    path, text = SAMPLES["markdown"]
    chunks = chunk_text(path, text)
    assert [(c.symbol, c.start_line) for c in chunks] == [
        (None, 1),
        ("Getting started", 3),
        ("Configuration", 7),
        ("Usage", 16),
    ]
    # The `#` line inside the fenced block is code, not a heading.
    assert "# not a heading" in by_symbol(chunks, "Configuration").text
    assert {c.kind for c in chunks} == {"section"}


def test_markdown_front_matter_and_large_sections() -> None:
    body = "\n".join(f"Paragraph line {i} with some words in it." for i in range(150))
    text = f"---\ntitle: Doc\n---\n\n# Big\n\n{body}\n\n## Small\n\nShort.\n"
    chunks = chunk_text("README.md", text)
    check_invariants(text, chunks)
    big = [c for c in chunks if c.symbol == "Big"]
    assert len(big) > 1
    assert big[0].text.startswith("# Big")
    assert all(c.text.startswith("# Big\n") for c in big[1:])
    assert all(c.end_line - c.start_line + 1 <= WINDOW_LINES for c in big)
    assert by_symbol(chunks, "Small").text == "## Small\n\nShort."
    assert not any(c.symbol == "title: Doc" for c in chunks)


def test_unknown_extension_falls_back_to_overlapping_windows() -> None:
    text = "\n".join(f"setting_{i} = {i}" for i in range(100)) + "\n"
    chunks = chunk_text("conf/app.weird", text)
    assert detect_language("conf/app.weird") == "text"
    assert {c.kind for c in chunks} == {"window"}
    assert all(c.symbol is None and c.language == "text" for c in chunks)
    assert all(c.end_line - c.start_line + 1 <= WINDOW_LINES for c in chunks)
    assert chunks[1].start_line <= chunks[0].end_line  # overlap
    check_invariants(text, chunks)


def test_windows_skip_blank_stretches() -> None:
    text = "alpha\n" + "\n" * 200 + "omega\n"
    chunks = chunk_text("notes.txt", text)
    assert [(c.start_line, c.end_line) for c in chunks] == [(1, 1), (202, 202)]


def test_mostly_broken_code_falls_back_to_windows() -> None:
    text = "\n".join(["def f(:", "  ]]] ))) class", "return return ((("] * 30) + "\n"
    chunks = chunk_text("broken.py", text)
    assert {c.kind for c in chunks} == {"window"}
    check_invariants(text, chunks)


def test_parser_failure_falls_back_to_windows(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(grammar: str) -> object:
        raise RuntimeError("grammar unavailable")

    monkeypatch.setattr(chunking, "_parser", boom)
    path, text = SAMPLES["go"]
    chunks = chunk_text(path, text)
    assert chunks and {c.kind for c in chunks} == {"window"}
    assert all(c.language == "go" for c in chunks)
    check_invariants(text, chunks)
    assert "chunking server/cache.go as go failed; using line windows" in caplog.text


def test_a_local_error_keeps_the_rest_of_the_structure() -> None:
    path, text = SAMPLES["python"]
    broken = text.replace("        return {}\n", "        return {\n", 1)
    chunks = chunk_text(path, broken)
    check_invariants(broken, chunks)
    assert ("method", "Store.flush") in {(c.kind, c.symbol) for c in chunks}


def long_function(n: int) -> str:
    body = "\n".join(f"    total += compute_step({i}, factor={i % 7})" for i in range(n))
    return f"import os\n\n\ndef accumulate(values, factor=2):\n    total = 0\n{body}\n    return total\n"


@pytest.mark.usefixtures("whole_pieces")
def test_oversized_function_is_split_with_its_signature() -> None:
    text = long_function(150)
    chunks = chunk_text("big.py", text)
    check_invariants(text, chunks)
    parts = [c for c in chunks if c.symbol == "accumulate"]
    assert len(parts) >= 3
    assert {c.kind for c in parts} == {"function"}
    assert parts[0].text.startswith("def accumulate(values, factor=2):")
    lines = lines_of(text)
    for part in parts[1:]:
        own = "\n".join(lines[part.start_line - 1 : part.end_line])
        assert part.text == "def accumulate(values, factor=2):\n" + own
        assert not own.startswith("def ")
    for part in parts:
        assert part.end_line - part.start_line + 1 <= MAX_UNIT_LINES
        assert len("\n".join(lines[part.start_line - 1 : part.end_line])) <= MAX_UNIT_CHARS
    # Parts tile the function: no gaps, no overlaps, and they end with the function.
    for a, b in itertools.pairwise(parts):
        assert b.start_line == a.end_line + 1
    assert parts[-1].text.endswith("    return total")


@pytest.mark.usefixtures("whole_pieces")
def test_oversized_method_in_brace_language_keeps_the_closer_inside() -> None:
    stmts = "\n".join(f"        sum += weights[{i}] * inputs[{i}];" for i in range(120))
    text = (
        "public class Net {\n    int bias = 1;\n\n    int forward(int[] inputs, int[] weights) {\n"
        f"        int sum = bias;\n{stmts}\n        return sum;\n    }}\n}}\n"
    )
    chunks = chunk_text("Net.java", text)
    check_invariants(text, chunks)
    parts = [c for c in chunks if c.symbol == "Net.forward"]
    assert len(parts) >= 2 and {c.kind for c in parts} == {"method"}
    assert all(p.text.startswith("    int forward(int[] inputs, int[] weights) {\n") for p in parts)
    assert parts[-1].end_line == len(lines_of(text))  # the class's `}` joins the last part


def test_oversized_top_level_statement_is_split() -> None:
    entries = "\n".join(f'    "key_{i}": "value number {i}",' for i in range(300))
    text = f"TABLE = {{\n{entries}\n}}\n"
    chunks = chunk_text("table.py", text)
    check_invariants(text, chunks)
    assert len(chunks) > 5
    assert all(c.kind == "block" for c in chunks)


def test_small_statements_are_grouped() -> None:
    text = (
        "\n".join(f"import mod{i}" for i in range(100)) + "\n\ndef f():\n    x = 1\n    return x\n"
    )
    chunks = chunk_text("many.py", text)
    check_invariants(text, chunks)
    blocks = [c for c in chunks if c.kind == "block"]
    assert len(blocks) == 3  # 100 imports in blocks of at most 40 lines
    assert all(c.end_line - c.start_line + 1 <= 40 for c in blocks)


def test_whitespace_only_edits_keep_digests() -> None:
    path, text = SAMPLES["python"]
    before = {c.symbol: c.digest for c in chunk_text(path, text) if c.symbol}
    edited = "\n\n" + "\n".join(line + "   " for line in text.split("\n"))
    edited = edited.replace("        self.path = path\n", "        self.path = path\n\n\n")
    edited = edited.replace("\n", "\r\n")
    after = {c.symbol: c.digest for c in chunk_text(path, edited) if c.symbol}
    assert after == before
    changed = text.replace("return len(self.data)", "return len(self.data) + 1")
    again = {c.symbol: c.digest for c in chunk_text(path, changed) if c.symbol}
    assert again["Store.size"] != before["Store.size"]
    assert again["Store.flush"] == before["Store.flush"]


def test_digest_text_normalises_whitespace_only() -> None:
    assert digest_text("a = 1\n\n  b = 2  \n") == digest_text("a = 1\r\n  b = 2\n")
    assert digest_text("a = 1\n  b = 2") != digest_text("a = 1\nb = 2")
    assert len(digest_text("x")) == 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("\n\n   \n\t\n", []),
        ("x = 1", [(1, 1, "block")]),
        ("# just a comment\n# and another\n", [(1, 2, "block")]),
    ],
)
def test_degenerate_files(text: str, expected: list[tuple[int, int, str]]) -> None:
    chunks = chunk_text("m.py", text)
    assert [(c.start_line, c.end_line, c.kind) for c in chunks] == expected


def test_one_giant_line() -> None:
    text = "var x = [" + ",".join(str(i) for i in range(50_000)) + "];"
    chunks = chunk_text("bundle.min.js", text)
    assert [(c.start_line, c.end_line) for c in chunks] == [(1, 1)]
    check_invariants(text, chunks)


def test_unicode_identifiers() -> None:
    text = 'def grüße(名前):\n    """Grüßt."""\n    return f"Hallo {名前}"\n\nclass Ĉambro:\n    def ŝlosi(self):\n        pass\n'
    chunks = chunk_text("uni.py", text)
    check_invariants(text, chunks)
    assert {("function", "grüße"), ("method", "Ĉambro.ŝlosi")} <= {
        (c.kind, c.symbol) for c in chunks
    }


def test_deeply_nested_code() -> None:
    depth = 300
    py = "def deep():\n" + "".join("    " * (i + 1) + f"if x{i}:\n" for i in range(depth))
    py += "    " * (depth + 1) + "pass\n"
    js = "function f() {\n" + "[" * 5000 + "]" * 5000 + ";\n}\n"
    for path, text in (("deep.py", py), ("deep.js", js)):
        chunks = chunk_text(path, text)
        check_invariants(text, chunks)


def test_nested_classes_and_namespaces() -> None:
    text = (
        "namespace Outer {\n  class Shell {\n    class Core {\n      void Run() {}\n    }\n"
        "    void Stop() {}\n  }\n}\n"
    )
    chunks = chunk_text("n.cs", text)
    check_invariants(text, chunks)
    got = {(c.kind, c.symbol) for c in chunks}
    assert {("method", "Shell.Core.Run"), ("method", "Shell.Stop")} <= got


def test_c_header_guards_do_not_hide_functions() -> None:
    text = (
        "#ifndef UTIL_H\n#define UTIL_H\n\nstatic inline int twice(int x) {\n  return 2 * x;\n}\n"
        '\n#ifdef __cplusplus\nextern "C" {\n#endif\nint thrice(int x) {\n  return 3 * x;\n}\n'
        "#ifdef __cplusplus\n}\n#endif\n#endif\n"
    )
    chunks = chunk_text("util.h", text)
    check_invariants(text, chunks)
    assert {("function", "twice"), ("function", "thrice")} <= {(c.kind, c.symbol) for c in chunks}


@pytest.mark.usefixtures("whole_pieces")
@pytest.mark.parametrize(
    ("path", "text", "expected"),
    [
        (
            "r.go",
            "package r\n\ntype Reader interface {\n\tRead(p []byte) int\n}\n",
            {("interface", "Reader")},
        ),
        (
            "s.kt",
            "interface Shape {\n  fun area(): Double\n}\n",
            {("interface", "Shape"), ("method", "Shape.area")},
        ),
        (
            "k.kt",
            "class K {\n  companion object {\n    fun make() = K()\n  }\n}\n",
            {("class", "K"), ("method", "K.make")},
        ),
        (
            "t.swift",
            "extension Temp: Codable {\n  func f() {}\n}\n",
            {("impl", "Temp"), ("method", "Temp.f")},
        ),
        (
            "n.ts",
            "namespace Geo {\n  export function area() {}\n}\ndeclare module 'x' {}\n",
            {("module", "Geo"), ("function", "Geo.area"), ("module", "x")},
        ),
        (
            "q.js",
            "const Queue = class {\n  push() {}\n};\n",
            {("class", "Queue"), ("method", "Queue.push")},
        ),
        ("b.rb", "class Foo::Bar < Base\n  def x; end\nend\n", {("method", "Foo.Bar.x")}),
        (
            "m.cpp",
            "S::~S() {}\nint& ref(int& x) { return x; }\n",
            {("method", "S.~S"), ("function", "ref")},
        ),
        (
            "g.ex",
            "defmodule A do\n  defmodule B do\n    def f(x) when x > 0, do: x\n  end\nend\n",
            {("module", "A"), ("module", "A.B"), ("function", "A.B.f")},
        ),
    ],
)
def test_more_definition_shapes(path: str, text: str, expected: set[tuple[str, str]]) -> None:
    chunks = chunk_text(path, text)
    check_invariants(text, chunks)
    got = {(c.kind, c.symbol) for c in chunks}
    assert expected <= got, expected - got


def test_cpp_in_a_dot_h_file_is_parsed_as_cpp() -> None:
    text = "#pragma once\nnamespace geo {\nclass Point {\npublic:\n  double norm() const { return 0; }\n};\n}\n"
    chunks = chunk_text("include/point.h", text)
    check_invariants(text, chunks)
    assert {c.language for c in chunks} == {"cpp"}
    assert ("method", "Point.norm") in {(c.kind, c.symbol) for c in chunks}
    plain_c = "struct point { double x; };\nint add(int a, int b) {\n  return a + b;\n}\n"
    assert {c.language for c in chunk_text("include/add.h", plain_c)} == {"c"}


def test_big_files_parse_under_a_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    path, text = SAMPLES["python"]
    big = "\n\n".join(text.replace("Store", f"Store{i}") for i in range(100))
    assert len(big.encode()) > chunking.PARSE_BUDGET_MIN_BYTES
    structured = chunk_text(path, big)
    check_invariants(big, structured)
    assert ("method", "Store99.flush") in {(c.kind, c.symbol) for c in structured}
    monkeypatch.setattr(chunking, "PARSE_BUDGET_S", 0.0)
    monkeypatch.setattr(chunking, "PARSE_BUDGET_S_PER_MB", 0.0)
    over_budget = chunk_text(path, big)
    check_invariants(big, over_budget)
    assert {c.kind for c in over_budget} == {"window"}


def test_c_preprocessor_breakage_keeps_structure() -> None:
    # Unbalanced braces across #ifdef branches: valid C that tree-sitter parses as
    # mostly ERROR. C and C++ walk through the error instead of falling back.
    text = (
        '#include "lock.h"\n\n#ifdef USE_MUTEX\nvoid lock_take(struct lock *l) {\n'
        "    pthread_mutex_lock(&l->m);\n#else\nvoid lock_take(struct spin *l) {\n"
        "    while (__sync_lock_test_and_set(&l->v, 1)) {}\n#endif\n"
        "    l->owner = current_thread();\n}\n\nint lock_held(const struct lock *l)\n{\n"
        "    return l->owner != 0;\n}\n\nvoid lock_drop(struct lock *l)\n{\n    l->owner = 0;\n}\n"
    )
    chunks = chunk_text("lock.c", text)
    check_invariants(text, chunks)
    got = {(c.kind, c.symbol) for c in chunks}
    assert {("function", "lock_held"), ("function", "lock_drop")} <= got
    assert "window" not in {c.kind for c in chunks}


def test_language_argument_overrides_detection() -> None:
    path, text = SAMPLES["python"]
    chunks = chunk_text("no_extension", text, language="python")
    assert ("method", "Store.flush") in {(c.kind, c.symbol) for c in chunks}
    plain = chunk_text(path, text, language="text")
    assert {c.kind for c in plain} == {"window"}


@pytest.mark.parametrize(
    ("path", "first_line", "expected"),
    [
        ("a/b/c.py", None, "python"),
        ("x.PYI", None, "python"),
        ("web/app.jsx", None, "javascript"),
        ("web/app.mts", None, "typescript"),
        ("web/App.tsx", None, "tsx"),
        ("include/v.hpp", None, "cpp"),
        ("lib/v.h", None, "c"),
        ("Program.cs", None, "csharp"),
        ("build.gradle.kts", None, "kotlin"),
        ("mix.exs", None, "elixir"),
        ("docs/README.md", None, "markdown"),
        ("Rakefile", None, "ruby"),
        ("Makefile", None, "makefile"),
        ("Dockerfile", None, "dockerfile"),
        ("cfg/app.yaml", None, "yaml"),
        ("pyproject.toml", None, "toml"),
        ("schema.sql", None, "sql"),
        ("LICENSE", None, "text"),
        ("notes", "#!/usr/bin/env python3", "python"),
        ("bin/run", "#!/bin/bash -e", "bash"),
        ("bin/tool", "#!/usr/bin/env -S node --no-warnings", "javascript"),
        ("bin/old", "#!/usr/bin/python3.11", "python"),
        ("script.py", "#!/bin/sh", "python"),  # the extension wins
        ("img/logo.png", None, None),
        ("dist/lib.so", None, None),
        ("font.woff2", None, None),
        (".bashrc", None, "bash"),
    ],
)
def test_detect_language(path: str, first_line: str | None, expected: str | None) -> None:
    assert detect_language(path, first_line) == expected


def test_shebang_is_used_by_chunk_text_when_the_name_says_nothing() -> None:
    text = "#!/usr/bin/env python3\ndef main():\n    print('hi')\n"
    chunks = chunk_text("bin/tool", text)
    assert chunks[-1].symbol == "main" and chunks[-1].language == "python"


def test_threads_get_their_own_parsers() -> None:
    inputs = [SAMPLES[lang] for lang in sorted(SAMPLES)] * 4
    expected = [chunk_text(p, t) for p, t in inputs]
    results: dict[int, list[list[Chunk]]] = {}

    def work(k: int) -> None:
        results[k] = [chunk_text(p, t) for p, t in inputs]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[k] == expected for k in range(4))


_FUZZ_ALPHABET = "abcdefghij_ (){}[]<>:;,.'\"`#/*\\-=+@$%\n\t\r   \n\ndef class fn end do if {\n}"


@pytest.mark.parametrize("language", sorted({*SAMPLES, "text"}))
def test_fuzz_never_raises_and_keeps_invariants(
    language: str, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(f"kenning-{language}")
    path = SAMPLES[language][0] if language in SAMPLES else "notes.txt"
    corpus_lines = [line for _, text in SAMPLES.values() for line in text.split("\n")]
    for _ in range(40):
        choice = rng.random()
        if choice < 0.3:
            raw = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 3000)))
            text = raw.decode("utf-8", errors="replace")
        elif choice < 0.6:
            text = "".join(rng.choice(_FUZZ_ALPHABET) for _ in range(rng.randrange(0, 3000)))
        else:
            # Real lines from every language, shuffled: plausible-looking nonsense.
            text = "\n".join(rng.choice(corpus_lines) for _ in range(rng.randrange(1, 300)))
        chunks = chunk_text(path, text, language)
        check_invariants(text, chunks)
    # Falling back is fine; crashing inside the structured path (then falling back) is a bug.
    assert "using line windows" not in caplog.text


@pytest.mark.parametrize("language", sorted(SUPPORTED_LANGUAGES))
def test_unterminated_constructs_at_end_of_file(
    language: str, caplog: pytest.LogCaptureFixture
) -> None:
    starts = [
        "def f(:\n",
        "class A {\n",
        "fn x() {\n",
        "func (",
        '"abc\n',
        "'''\n",
        "/*\n",
        "<<EOF\n",
        "do\n",
        "<?php\nclass A {\n",
        "x = 1\nfunction f() {\n  if (a) {",
    ]
    for start in starts:
        for text in (start, start + "\n\n", start.rstrip("\n")):
            check_invariants(text, chunk_text("x", text, language))
    assert "using line windows" not in caplog.text


def test_mutated_samples_keep_invariants() -> None:
    rng = random.Random(7)
    for _language, (path, text) in sorted(SAMPLES.items()):
        lines = text.split("\n")
        for _ in range(25):
            mutated = list(lines)
            for _ in range(rng.randrange(1, 6)):
                i = rng.randrange(len(mutated))
                op = rng.random()
                if op < 0.4:
                    del mutated[i]
                elif op < 0.7:
                    mutated.insert(i, rng.choice(lines))
                else:
                    mutated[i] = mutated[i][: rng.randrange(len(mutated[i]) + 1)]
            mutated_text = "\n".join(mutated)
            check_invariants(mutated_text, chunk_text(path, mutated_text))


@pytest.mark.usefixtures("whole_pieces")
@pytest.mark.parametrize("path", ["handler.js", "handler.ts"])
def test_an_anonymous_default_export_is_a_function_chunk(path: str) -> None:
    text = (
        'import render from "./render";\n\n'
        "export default function (req, res) {\n"
        "  const page = render(req.params.name, { user: req.user });\n"
        "  res.setHeader('Content-Type', 'text/html');\n"
        "  res.send(page);\n"
        "}\n"
    )
    chunks = chunk_text(path, text)
    check_invariants(text, chunks)
    handler = [c for c in chunks if c.kind == "function"]
    assert len(handler) == 1 and (handler[0].start_line, handler[0].end_line) == (3, 7)


# --- no fragments ------------------------------------------------------------------


@pytest.mark.parametrize("language", sorted(set(SAMPLES) - {"markdown"}))
def test_no_sample_chunk_is_under_three_lines(language: str) -> None:
    """A lone signature, an `impl X {` header or a one-line function is not a chunk
    of its own: it matches every query a little and answers none. Only a file's
    first statements (imports) may stay small: they are no part of the definition
    below them, and search leaves them out."""
    path, text = SAMPLES[language]
    chunks = chunk_text(path, text)
    check_invariants(text, chunks)
    small = [c for c in chunks if c.end_line - c.start_line + 1 < chunking.MIN_CHUNK_LINES]
    assert all(c.kind == "block" and c is chunks[0] for c in small), small


def test_a_header_joins_its_first_member_and_tiny_functions_keep_their_names() -> None:
    text = textwrap.dedent(
        """\
        pub struct Ring {
            items: Vec<u32>,
        }

        impl Ring {
            pub fn len(&self) -> usize { self.items.len() }
            pub fn is_empty(&self) -> bool { self.items.is_empty() }

            pub fn push(&mut self, item: u32) {
                self.items.push(item);
                self.items.rotate_left(1);
            }
        }
        """
    )
    chunks = chunk_text("ring.rs", text)
    check_invariants(text, chunks)
    assert all(c.end_line - c.start_line + 1 >= 3 for c in chunks)
    assert not any(c.kind == "impl" for c in chunks)
    (first,) = [c for c in chunks if c.start_line == 5]
    assert first.text.startswith("impl Ring {\n    pub fn len")
    assert first.symbol == "Ring.len" and "Ring.is_empty" in first.also
    assert by_symbol(chunks, "Ring.push").end_line == 13


def test_a_joined_small_definition_keeps_its_own_lines() -> None:
    text = textwrap.dedent(
        """\
        class Stack:
            def __init__(self):
                self._items = []
                self._count = 0

            def push(self, item):
                self._items.append(item)
                self._count += 1
                return item

            def is_empty(self):
                return not self._items
        """
    )
    chunks = chunk_text("stack.py", text)
    check_invariants(text, chunks)
    joined = by_symbol(chunks, "Stack.push")
    assert (joined.start_line, joined.end_line) == (6, 12)
    assert joined.parts == (("Stack.is_empty", 11, 12, "method"),)
    assert "Stack.is_empty" in joined.also
    # A class header joined to its first method is part of the class, not an answer.
    assert by_symbol(chunks, "Stack.__init__").parts == ()


def test_definitions_joined_one_after_another_all_keep_their_lines() -> None:
    text = textwrap.dedent(
        """\
        package main

        func one() int { return 1 }

        func main() {
        \tx := one()
        \tprintln(x)
        \tprintln(x + 1)
        }

        func two() int { return 2 }
        func three() int { return 3 }
        """
    )
    chunks = chunk_text("main.go", text)
    check_invariants(text, chunks)
    joined = by_symbol(chunks, "main")
    assert (joined.start_line, joined.end_line) == (5, 12)
    assert joined.parts == (("two", 11, 11, "function"), ("three", 12, 12, "function"))
    assert by_symbol(chunks, "one").parts == ()


def test_a_long_docstring_does_not_split_a_short_function() -> None:
    doc = "\n".join(f"    Explains step {i} of the algorithm in some detail." for i in range(80))
    text = f'def solve(grid):\n    """Solve the puzzle.\n\n{doc}\n    """\n    return search(grid, 0)\n'
    chunks = chunk_text("solve.py", text)
    check_invariants(text, chunks)
    assert [(c.symbol, c.start_line, c.end_line) for c in chunks] == [
        ("solve", 1, len(lines_of(text)))
    ]


def test_the_parts_of_a_split_function_name_its_whole_range() -> None:
    text = long_function(150)
    chunks = chunk_text("big.py", text)
    parts = [c for c in chunks if c.symbol == "accumulate"]
    assert len(parts) >= 3
    whole = (parts[0].start_line, parts[-1].end_line)
    assert all((p.unit_start, p.unit_end) == whole for p in parts)
    assert all(c.unit_start is None for c in chunks if c.symbol != "accumulate")


def test_javascript_assignments_define_functions_and_methods() -> None:
    text = textwrap.dedent(
        """\
        /**
         * Run the given suite.
         */

        Runner.prototype.runSuite = function (suite, fn) {
          this.emit('suite', suite);
          fn();
        };

        module.exports = {
          get fresh () {
            const s = this.status;
            return s >= 200 && s < 300;
          },

          accepts: function (...args) {
            const accept = this.accept;
            return accept.types(...args);
          },
        };
        """
    )
    chunks = chunk_text("lib/runner.js", text)
    check_invariants(text, chunks)
    run = by_symbol(chunks, "Runner.runSuite")
    assert run.kind == "method" and run.start_line == 1  # its doc comment, past the blank line
    assert by_symbol(chunks, "module.exports.fresh").start_line == 10  # with `module.exports = {`
    assert by_symbol(chunks, "module.exports.accepts").kind == "function"
