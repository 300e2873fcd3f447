"""Per-grammar naming for the chunker: which name (and kind) a definition node
has, where the grammar does not say it in one field.

A namer maps a node to ``(name, kind override)``; ``(None, "")`` means "not a
definition after all". A hook resolves definitions no node type names on its
own (``const f = () => {}`` in JavaScript, Elixir's ``def``). The chunker
(:mod:`kenning.engine.chunking`) looks both up by grammar and reads node text
through :func:`node_text`, from the source it set with :func:`set_source`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from kenning.engine.languages import Def

# The source of the file this thread is chunking (set by the chunker around a walk).
_local = threading.local()

Resolved = tuple[Def, str | None, Any]


def set_source(source: bytes) -> None:
    _local.source = source


def node_bytes(node: Any) -> bytes:
    """``node.text``, sliced from the source of the file this thread is chunking.

    A tree parsed through a read callback (files big enough for a parse budget)
    answers ``node.text`` by calling the callback again and copying up to 64 KiB
    each time: a third of a million instructions per name, more than the rest of
    the walk. A slice costs the same for every tree.
    """
    source: bytes = _local.source
    return source[node.start_byte : node.end_byte]


def node_text(node: Any | None) -> str | None:
    if node is None:
        return None
    return " ".join(node_bytes(node).decode("utf-8", "replace").split()) or None


# A namer returns (name, kind override); ("", ...) is not used; (None, "") means "not a
# definition after all".

Namer = Callable[[Any], tuple[str | None, str | None]]


def dotted(name: str | None) -> str | None:
    return name.replace("::", ".").replace(":", ".") if name else name


def _c_function(node: Any) -> tuple[str | None, str | None]:
    d = node.child_by_field_name("declarator")
    for _ in range(10):
        if d is None:
            return None, None
        if d.type in (
            "identifier",
            "field_identifier",
            "type_identifier",
            "destructor_name",
            "operator_name",
            "primitive_type",
        ):
            return node_text(d), None
        if d.type in ("qualified_identifier", "template_function"):
            name = node_text(d)
            return dotted(name), ("method" if name and "::" in name else None)
        nxt = d.child_by_field_name("declarator")
        d = nxt if nxt is not None else (d.named_children[-1] if d.named_child_count else None)
    return None, None


def _c_record(node: Any) -> tuple[str | None, str | None]:
    # `struct foo x;` uses a struct without defining one; only bodies make a unit.
    if node.child_by_field_name("body") is None:
        return None, ""
    return node_text(node.child_by_field_name("name")), None


def _go_method(node: Any) -> tuple[str | None, str | None]:
    name = node_text(node.child_by_field_name("name"))
    recv = node.child_by_field_name("receiver")
    rtype = None
    if recv is not None:
        for param in recv.named_children:
            rtype = node_text(param.child_by_field_name("type"))
            if rtype:
                rtype = rtype.lstrip("*").split("[", 1)[0].strip()
                break
    return (f"{rtype}.{name}" if rtype and name else name), None


def _go_type(node: Any) -> tuple[str | None, str | None]:
    for spec in node.named_children:
        if spec.type in ("type_spec", "type_alias"):
            typ = spec.child_by_field_name("type")
            kind = "interface" if typ is not None and typ.type == "interface_type" else None
            return node_text(spec.child_by_field_name("name")), kind
    return None, None


def _rust_impl(node: Any) -> tuple[str | None, str | None]:
    name = node_text(node.child_by_field_name("type"))
    return (name.split("<", 1)[0].strip() if name else None), None


def _lua_function(node: Any) -> tuple[str | None, str | None]:
    name = node_text(node.child_by_field_name("name"))
    return dotted(name), ("method" if name and ":" in name else None)


def _kotlin_class(node: Any) -> tuple[str | None, str | None]:
    kind = None
    name = None
    for child in node.children:
        if child.type == "interface":
            kind = "interface"
        elif child.type in ("type_identifier", "simple_identifier"):
            name = node_text(child)
            break
    return name, kind


def _swift_class(node: Any) -> tuple[str | None, str | None]:
    decl_kind = node.child_by_field_name("declaration_kind")
    word = decl_kind.type if decl_kind is not None else "class"
    kind = {"struct": "type", "enum": "type", "extension": "impl"}.get(word)
    return node_text(node.child_by_field_name("name")), kind


def _named(fixed: str) -> Namer:
    return lambda node: (fixed, None)


_CNAMERS: dict[str, Namer] = {
    "function_definition": _c_function,
    "type_definition": _c_function,
    "struct_specifier": _c_record,
    "union_specifier": _c_record,
    "enum_specifier": _c_record,
    "class_specifier": _c_record,
}
NAMERS: dict[str, dict[str, Namer]] = {
    "c": _CNAMERS,
    "cpp": _CNAMERS,
    "go": {"method_declaration": _go_method, "type_declaration": _go_type},
    "rust": {"impl_item": _rust_impl},
    "lua": {
        "function_declaration": _lua_function,
        "local_function": _lua_function,
        "function_definition_statement": _lua_function,
    },
    "kotlin": {"class_declaration": _kotlin_class, "secondary_constructor": _named("constructor")},
    "swift": {
        "class_declaration": _swift_class,
        "init_declaration": _named("init"),
        "deinit_declaration": _named("deinit"),
    },
    "csharp": {"operator_declaration": _named("operator")},
}

# Definitions no node type names on its own: `const f = () => {}`, Elixir's `def`.
_JS_FUNCTION_VALUES = frozenset(
    {"arrow_function", "function_expression", "function", "generator_function"}
)
_JS_FN = Def("function")
_JS_CLASS = Def("class", container=True)
_JS_METHOD = Def("method")
# An object literal of functions (`module.exports = { get(k) {...}, ... }`): its
# members are found like a module's.
_JS_OBJECT = Def("module", container=True)


def _js_hook(node: Any) -> Resolved | None:
    t = node.type
    if t == "expression_statement" and node.named_child_count == 1:
        node = node.named_children[0]
        t = node.type
    if t == "assignment_expression":
        # `Runner.prototype.run = function () {}`, `module.exports = { ... }`
        left = node.child_by_field_name("left")
        if left is None or left.type not in ("member_expression", "identifier"):
            return None
        name = node_text(left)
        if name and ".prototype." in name:
            name = name.replace(".prototype.", ".")
            return _js_value(node.child_by_field_name("right"), name, node, _JS_METHOD)
        return _js_value(node.child_by_field_name("right"), name, node)
    if t == "pair":  # `{ parse: function (s) {...} }`
        value = node.child_by_field_name("value")
        if value is None or value.type not in _JS_FUNCTION_VALUES:
            return None
        key = node_text(node.child_by_field_name("key"))
        return _JS_FN, key.strip("'\"") if key else key, value
    if t not in ("lexical_declaration", "variable_declaration"):
        return None
    declarators = [c for c in node.named_children if c.type == "variable_declarator"]
    if len(declarators) != 1:
        return None
    name = node_text(declarators[0].child_by_field_name("name"))
    return _js_value(declarators[0].child_by_field_name("value"), name, declarators[0])


def _js_value(
    value: Any | None, name: str | None, holder: Any, fn: Def | None = None
) -> Resolved | None:
    """What a value bound to ``name`` defines: a function, a class, or an object of
    methods (``holder``, the binding, is the container: its body is the object)."""
    if value is None:
        return None
    if value.type in _JS_FUNCTION_VALUES:
        return fn or _JS_FN, name, value
    if value.type == "class":
        # `module.exports = class Http {}`: the class's own name says more.
        return _JS_CLASS, node_text(value.child_by_field_name("name")) or name, value
    if value.type == "object" and any(
        c.type == "method_definition"
        or (
            c.type == "pair"
            and (v := c.child_by_field_name("value")) is not None
            and v.type in _JS_FUNCTION_VALUES
        )
        for c in value.named_children
    ):
        return _JS_OBJECT, name, holder
    return None


_EX_MODULES = frozenset({b"defmodule", b"defprotocol", b"defimpl"})
_EX_FUNCTIONS = frozenset(
    {
        b"def",
        b"defp",
        b"defmacro",
        b"defmacrop",
        b"defguard",
        b"defguardp",
        b"defdelegate",
        b"defn",
        b"defnp",
    }
)
_EX_MODULE = Def("module", container=True)
_EX_FUNCTION = Def("function")


def _elixir_hook(node: Any) -> Resolved | None:
    if node.type != "call":
        return None
    target = node.child_by_field_name("target")
    if target is None or target.type != "identifier":
        return None
    word = node_bytes(target)
    if word not in _EX_MODULES and word not in _EX_FUNCTIONS:
        return None
    first = None
    for child in node.named_children:
        if child.type == "arguments":
            first = child.named_children[0] if child.named_child_count else None
            break
    if word in _EX_MODULES:
        return _EX_MODULE, node_text(first), node
    if first is not None and first.type == "binary_operator":  # `def f(x) when x > 0`
        first = first.child_by_field_name("left")
    if first is not None and first.type == "call":
        first = first.child_by_field_name("target")
    return _EX_FUNCTION, node_text(first), node


HOOKS: dict[str, Callable[[Any], Resolved | None]] = {
    "javascript": _js_hook,
    "typescript": _js_hook,
    "tsx": _js_hook,
    "elixir": _elixir_hook,
}
