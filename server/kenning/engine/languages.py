"""Which language a file is in, and how each tree-sitter grammar spells a definition.

Language ids are short lowercase names ("python", "tsx", "csharp", "yaml", "text").
The ids in ``SUPPORTED_LANGUAGES`` are chunked by their syntax tree; "markdown" is
split by headings; every other id is chunked by line windows.
"""

from __future__ import annotations

import difflib
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from kenning.engine.scan import BINARY_EXTENSIONS
from kenning.errors import UsageError

__all__ = [
    "KNOWN_LANGUAGES",
    "LANGUAGE_ALIASES",
    "STRUCTURED_LANGUAGES",
    "SUPPORTED_LANGUAGES",
    "Def",
    "LanguageSpec",
    "detect_language",
    "language_filter",
]

_EXTENSIONS: dict[str, str] = {
    # Languages chunked by their syntax tree.
    ".py": "python",
    ".pyi": "python",
    ".pyw": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".c++": "cpp",
    ".hh": "cpp",
    ".hpp": "cpp",
    ".hxx": "cpp",
    ".h++": "cpp",
    ".ipp": "cpp",
    ".tpp": "cpp",
    ".inl": "cpp",
    ".cu": "cpp",
    ".cuh": "cpp",
    ".cs": "csharp",
    ".rb": "ruby",
    ".rake": "ruby",
    ".gemspec": "ruby",
    ".ru": "ruby",
    ".php": "php",
    ".kt": "kotlin",
    ".kts": "kotlin",
    ".swift": "swift",
    ".scala": "scala",
    ".sc": "scala",
    ".ex": "elixir",
    ".exs": "elixir",
    ".lua": "lua",
    ".sh": "bash",
    ".bash": "bash",
    ".zsh": "bash",
    ".ksh": "bash",
    ".bats": "bash",
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdown": "markdown",
    ".mkd": "markdown",
    ".mdx": "markdown",
    # Text chunked by line windows; the id still feeds `--lang` filters.
    ".txt": "text",
    ".text": "text",
    ".log": "text",
    ".rst": "rst",
    ".adoc": "asciidoc",
    ".org": "org",
    ".tex": "latex",
    ".yml": "yaml",
    ".yaml": "yaml",
    ".toml": "toml",
    ".json": "json",
    ".jsonc": "json",
    ".json5": "json",
    ".jsonl": "json",
    ".ipynb": "json",
    ".ini": "ini",
    ".cfg": "ini",
    ".conf": "ini",
    ".properties": "ini",
    ".xml": "xml",
    ".xsd": "xml",
    ".xsl": "xml",
    ".svg": "xml",
    ".plist": "xml",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".css": "css",
    ".scss": "css",
    ".sass": "css",
    ".less": "css",
    ".sql": "sql",
    ".graphql": "graphql",
    ".gql": "graphql",
    ".proto": "protobuf",
    ".tf": "hcl",
    ".hcl": "hcl",
    ".nix": "nix",
    ".vue": "vue",
    ".svelte": "svelte",
    ".dart": "dart",
    ".hs": "haskell",
    ".ml": "ocaml",
    ".mli": "ocaml",
    ".clj": "clojure",
    ".cljs": "clojure",
    ".edn": "clojure",
    ".erl": "erlang",
    ".hrl": "erlang",
    ".zig": "zig",
    ".jl": "julia",
    ".r": "r",
    ".pl": "perl",
    ".pm": "perl",
    ".groovy": "groovy",
    ".gradle": "groovy",
    ".vim": "vim",
    ".ps1": "powershell",
    ".bat": "batch",
    ".cmd": "batch",
    ".cmake": "cmake",
    ".mk": "makefile",
    ".bzl": "starlark",
    ".csv": "csv",
    ".tsv": "csv",
}

_FILENAMES: dict[str, str] = {
    "makefile": "makefile",
    "gnumakefile": "makefile",
    "dockerfile": "dockerfile",
    "containerfile": "dockerfile",
    "cmakelists.txt": "cmake",
    "rakefile": "ruby",
    "gemfile": "ruby",
    "podfile": "ruby",
    "vagrantfile": "ruby",
    "brewfile": "ruby",
    "guardfile": "ruby",
    "jenkinsfile": "groovy",
    "build": "starlark",
    "workspace": "starlark",
    "build.bazel": "starlark",
    ".bashrc": "bash",
    ".bash_profile": "bash",
    ".zshrc": "bash",
    ".profile": "bash",
    "go.mod": "text",
    "go.sum": "text",
    ".editorconfig": "ini",
    ".gitignore": "text",
    ".dockerignore": "text",
}

# Clearly not text source: the caller need not even read these. One list,
# shared with the scanner's path rules.
_BINARY_EXTENSIONS = BINARY_EXTENSIONS

_SHEBANGS: dict[str, str] = {
    "python": "python",
    "python2": "python",
    "python3": "python",
    "pypy": "python",
    "pypy3": "python",
    "node": "javascript",
    "nodejs": "javascript",
    "deno": "typescript",
    "bun": "javascript",
    "ts-node": "typescript",
    "tsx": "typescript",
    "ruby": "ruby",
    "php": "php",
    "lua": "lua",
    "luajit": "lua",
    "sh": "bash",
    "bash": "bash",
    "zsh": "bash",
    "dash": "bash",
    "ksh": "bash",
    "elixir": "elixir",
    "perl": "perl",
    "rscript": "r",
}


def _from_shebang(first_line: str) -> str | None:
    if not first_line.startswith("#!"):
        return None
    words = first_line[2:].split()
    if not words:
        return None
    prog = posixpath.basename(words[0])
    if prog == "env":
        # `#!/usr/bin/env -S python3 -u`: the interpreter is the first non-flag word.
        rest = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        if not rest:
            return None
        prog = posixpath.basename(rest[0])
    prog = prog.lower()
    if prog in _SHEBANGS:
        return _SHEBANGS[prog]
    # python3.12, ruby2.7 and friends.
    stem = prog.rstrip("0123456789.")
    return _SHEBANGS.get(stem)


def detect_language(path: str, first_line: str | None = None) -> str | None:
    """The language id of ``path``, from its name, else its shebang line.

    Returns None only for files that are clearly not text (images, archives,
    compiled objects); an unknown extension is "text", and the caller decides
    on binaries by looking at the content.
    """
    name = posixpath.basename(path.replace("\\", "/")).lower()
    lang = _FILENAMES.get(name)
    if lang is not None:
        return lang
    if name.startswith("dockerfile.") or name.endswith(".dockerfile"):
        return "dockerfile"
    dot = name.rfind(".")
    if dot > 0 or (dot == 0 and name.count(".") > 1):
        ext = name[dot:]
        lang = _EXTENSIONS.get(ext)
        if lang is not None:
            return lang
        if ext in _BINARY_EXTENSIONS:
            return None
    if first_line:
        lang = _from_shebang(first_line.strip())
        if lang is not None:
            return lang
    return "text"


@dataclass(frozen=True, slots=True)
class Def:
    """How one node type maps to a chunk.

    ``container`` nodes have their body walked for nested definitions (a class's
    methods); ``scoped`` says whether the container's name prefixes theirs.
    """

    kind: str
    container: bool = False
    scoped: bool = True


_FN = Def("function")
_CLASS = Def("class", container=True)
_IFACE = Def("interface", container=True)
_TYPE = Def("type")
_TYPE_C = Def("type", container=True)
_IMPL = Def("impl", container=True)
_MODULE = Def("module", container=True)
_NAMESPACE = Def("module", container=True, scoped=False)


@dataclass(frozen=True, slots=True)
class LanguageSpec:
    """The node types of one grammar that matter for chunking.

    defs: definitions that become chunks. wrappers: nodes that wrap one definition
    (decorators, ``export``, ``template<>``) and lend it their start. attach: comments
    and attributes that belong to the definition right below them. transparent:
    nodes whose children are walked as if they were siblings (``#ifdef`` blocks).
    body_types / name_types: where to look when a grammar has no ``body`` or
    ``name`` field.
    """

    grammar: str
    defs: dict[str, Def]
    wrappers: frozenset[str] = frozenset()
    attach: frozenset[str] = frozenset({"comment"})
    transparent: frozenset[str] = frozenset()
    body_types: frozenset[str] = frozenset()
    name_types: frozenset[str] = frozenset()
    # Text prefixes an attach node must start with (Elixir's `@doc`, not `@moduledoc`).
    attach_prefixes: tuple[bytes, ...] = ()
    # Parse errors say little about the code: C's preprocessor (`extern "C" {` between
    # `#ifdef`s, macros in declarations) defeats the grammar in valid headers. ERROR
    # nodes are walked like any other, and never cause the line-window fallback.
    tolerate_errors: bool = False


_JS_DEFS = {
    "function_declaration": _FN,
    "generator_function_declaration": _FN,
    # Reached only through a wrapper: `export default function () {}`.
    "function_expression": _FN,
    "class_declaration": _CLASS,
    "class": _CLASS,
    "method_definition": _FN,
}
_TS_DEFS = {
    **_JS_DEFS,
    "abstract_class_declaration": _CLASS,
    "interface_declaration": _IFACE,
    "type_alias_declaration": _TYPE,
    "enum_declaration": _TYPE,
    "internal_module": _MODULE,
    "module": _MODULE,
}
_C_TRANSPARENT = frozenset(
    {
        "ERROR",
        "preproc_if",
        "preproc_ifdef",
        "preproc_else",
        "preproc_elif",
        "preproc_elifdef",
        "linkage_specification",
        "declaration_list",
    }
)

SPECS: dict[str, LanguageSpec] = {
    "python": LanguageSpec(
        "python",
        {"function_definition": _FN, "class_definition": _CLASS},
        wrappers=frozenset({"decorated_definition"}),
        # Definitions made under a condition (`if sys.version_info...`,
        # `if TYPE_CHECKING:`, `try: import x except ImportError: def ...`)
        # are still the file's functions and classes.
        transparent=frozenset(
            {
                "if_statement",
                "elif_clause",
                "else_clause",
                "try_statement",
                "except_clause",
                "finally_clause",
                "block",
            }
        ),
    ),
    "javascript": LanguageSpec(
        "javascript",
        _JS_DEFS,
        wrappers=frozenset({"export_statement"}),
        # The object of `module.exports = {...}`, walked for its methods.
        body_types=frozenset({"object"}),
    ),
    "typescript": LanguageSpec(
        "typescript",
        _TS_DEFS,
        wrappers=frozenset({"export_statement", "ambient_declaration", "expression_statement"}),
        body_types=frozenset({"object"}),
    ),
    "tsx": LanguageSpec(
        "tsx",
        _TS_DEFS,
        wrappers=frozenset({"export_statement", "ambient_declaration", "expression_statement"}),
        body_types=frozenset({"object"}),
    ),
    "go": LanguageSpec(
        "go",
        {
            "function_declaration": _FN,
            "method_declaration": Def("method"),
            "type_declaration": _TYPE,
        },
    ),
    "rust": LanguageSpec(
        "rust",
        {
            "function_item": _FN,
            "struct_item": _TYPE,
            "enum_item": _TYPE,
            "union_item": _TYPE,
            "type_item": _TYPE,
            "trait_item": _IFACE,
            "impl_item": _IMPL,
            "mod_item": _MODULE,
            "macro_definition": _FN,
        },
        attach=frozenset({"line_comment", "block_comment", "attribute_item"}),
    ),
    "java": LanguageSpec(
        "java",
        {
            "class_declaration": _CLASS,
            "interface_declaration": _IFACE,
            "enum_declaration": _TYPE_C,
            "record_declaration": _CLASS,
            "annotation_type_declaration": _IFACE,
            "method_declaration": _FN,
            "constructor_declaration": _FN,
            "compact_constructor_declaration": _FN,
        },
        attach=frozenset({"line_comment", "block_comment"}),
        transparent=frozenset({"enum_body_declarations"}),
    ),
    "c": LanguageSpec(
        "c",
        {
            "function_definition": _FN,
            "struct_specifier": _TYPE,
            "union_specifier": _TYPE,
            "enum_specifier": _TYPE,
            "type_definition": _TYPE,
        },
        transparent=_C_TRANSPARENT,
        tolerate_errors=True,
    ),
    "cpp": LanguageSpec(
        "cpp",
        {
            "function_definition": _FN,
            "class_specifier": _CLASS,
            "struct_specifier": _TYPE_C,
            "union_specifier": _TYPE,
            "enum_specifier": _TYPE,
            "type_definition": _TYPE,
            "namespace_definition": _NAMESPACE,
            "alias_declaration": _TYPE,
        },
        wrappers=frozenset({"template_declaration"}),
        transparent=_C_TRANSPARENT,
        tolerate_errors=True,
    ),
    "csharp": LanguageSpec(
        "csharp",
        {
            "namespace_declaration": _NAMESPACE,
            "file_scoped_namespace_declaration": _NAMESPACE,
            "class_declaration": _CLASS,
            "struct_declaration": _TYPE_C,
            "interface_declaration": _IFACE,
            "record_declaration": _CLASS,
            "enum_declaration": _TYPE,
            "method_declaration": _FN,
            "constructor_declaration": _FN,
            "destructor_declaration": _FN,
            "operator_declaration": _FN,
            "local_function_statement": _FN,
        },
    ),
    "ruby": LanguageSpec(
        "ruby",
        {"method": _FN, "singleton_method": _FN, "class": _CLASS, "module": _MODULE},
    ),
    "php": LanguageSpec(
        "php",
        {
            "function_definition": _FN,
            "method_declaration": _FN,
            "class_declaration": _CLASS,
            "interface_declaration": _IFACE,
            "trait_declaration": _CLASS,
            "enum_declaration": _TYPE_C,
            "namespace_definition": _NAMESPACE,
        },
    ),
    "kotlin": LanguageSpec(
        "kotlin",
        {
            "function_declaration": _FN,
            "class_declaration": _CLASS,
            "object_declaration": _CLASS,
            "companion_object": Def("class", container=True, scoped=False),
            "secondary_constructor": _FN,
            "type_alias": _TYPE,
        },
        attach=frozenset({"line_comment", "multiline_comment"}),
        body_types=frozenset({"class_body", "enum_class_body", "function_body"}),
        name_types=frozenset({"type_identifier", "simple_identifier"}),
    ),
    "swift": LanguageSpec(
        "swift",
        {
            "function_declaration": _FN,
            "class_declaration": _CLASS,
            "protocol_declaration": _IFACE,
            "init_declaration": _FN,
            "deinit_declaration": _FN,
            "typealias_declaration": _TYPE,
        },
        attach=frozenset({"comment", "multiline_comment"}),
        body_types=frozenset({"class_body", "protocol_body", "enum_class_body", "function_body"}),
    ),
    "scala": LanguageSpec(
        "scala",
        {
            "function_definition": _FN,
            "class_definition": _CLASS,
            "object_definition": _CLASS,
            "trait_definition": _IFACE,
            "enum_definition": _TYPE_C,
            "type_definition": _TYPE,
        },
        attach=frozenset({"comment", "block_comment"}),
    ),
    "elixir": LanguageSpec(
        "elixir",
        {},  # every definition is a `call`; chunking resolves them by their target
        attach=frozenset({"comment", "unary_operator"}),
        attach_prefixes=(b"@doc", b"@spec", b"@impl", b"@decorate", b"@deprecated"),
        body_types=frozenset({"do_block"}),
    ),
    "lua": LanguageSpec(
        "lua",
        {"function_declaration": _FN, "local_function": _FN, "function_definition_statement": _FN},
    ),
    "bash": LanguageSpec("bash", {"function_definition": _FN}),
}

SUPPORTED_LANGUAGES: frozenset[str] = frozenset(SPECS)
"""Languages chunked along their tree-sitter syntax tree."""

STRUCTURED_LANGUAGES: frozenset[str] = SUPPORTED_LANGUAGES | {"markdown"}
"""Languages chunked by structure (markdown by headings); the rest get line windows."""

KNOWN_LANGUAGES: frozenset[str] = (
    frozenset(_EXTENSIONS.values())
    | frozenset(_FILENAMES.values())
    | frozenset(_SHEBANGS.values())
    | STRUCTURED_LANGUAGES
    | {"text"}
)
"""Every language id the index can give a chunk: what a ``--lang`` filter may name."""

# Editors (LSP languageId), tree-sitter and people spell languages differently.
LANGUAGE_ALIASES: dict[str, str] = {
    "py": "python",
    "python3": "python",
    "ts": "typescript",
    "tsx": "typescript",
    "typescriptreact": "typescript",
    "js": "javascript",
    "jsx": "javascript",
    "javascriptreact": "javascript",
    "mjs": "javascript",
    "cjs": "javascript",
    "golang": "go",
    "rs": "rust",
    "ex": "elixir",
    "exs": "elixir",
    "sh": "bash",
    "shell": "bash",
    "shellscript": "bash",
    "zsh": "bash",
    "c_sharp": "csharp",
    "cs": "csharp",
    "c#": "csharp",
    "c++": "cpp",
    "rb": "ruby",
    "kt": "kotlin",
    "md": "markdown",
    "yml": "yaml",
    "txt": "text",
    "plaintext": "text",
}

# A filter on a language also takes its dialects that the index names apart:
# someone asking for TypeScript means their .tsx files too.
_FAMILIES: dict[str, tuple[str, ...]] = {"typescript": ("typescript", "tsx")}


def language_filter(names: Sequence[str]) -> list[str]:
    """The language ids a ``--lang``/``lang`` filter selects; a UsageError for an unknown name.

    A name is a language id ("python", "tsx") or an alias users type ("py",
    "ts", "golang", "rs"); matching ignores case.
    """
    out: list[str] = []
    for name in names:
        lang = name.strip().lower()
        if lang not in KNOWN_LANGUAGES:
            lang = LANGUAGE_ALIASES.get(lang, lang)
        if lang not in KNOWN_LANGUAGES:
            close = difflib.get_close_matches(lang, sorted(KNOWN_LANGUAGES), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise UsageError(
                f"unknown language {name!r}: {hint}known languages are "
                f"{', '.join(sorted(KNOWN_LANGUAGES))}"
            )
        for member in _FAMILIES.get(lang, (lang,)):
            if member not in out:
                out.append(member)
    return out
