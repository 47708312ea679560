"""Which translation keys the integration's code uses, read from its syntax tree.

Nothing here lists keys by hand: the code is parsed (core/ is skipped, it never speaks to
Home Assistant's UI) and each place Home Assistant takes a translation key from is found:

- exceptions: `translation_domain=..., translation_key=K` -> exceptions.K.message
- config and options flows (classes based on ConfigFlow / OptionsFlow): `step_id=`,
  `menu_options=`, `async_abort(reason=)`, `errors[...] = ` / `errors={...}`, the reasons
  Home Assistant's helpers abort with, `title_placeholders` (flow_title), and the fields of
  every `vol.Required/Optional` in config_flow.py (step data)
- selectors: `SelectSelectorConfig(translation_key=K, options=[...])` -> selector.K.options.*
- repairs: `async_create_issue(..., translation_key=K)` -> issues.K
- actions: services.yaml (and the names registered in code) -> services.*
- entity descriptions: `translation_key=K` / `_attr_translation_key = K`

A key's value is followed through module constants, local assignments (also tuple
unpacking and `:=`), helper functions' return values and the arguments of a helper's
callers; an f-string becomes a pattern. What cannot be followed is reported, so a new
dynamic key is noticed instead of silently skipped. Sections this module does not model
(device_automation, entity, issues without a code site, ...) count a key as used when its
name appears as a string anywhere in the code.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

Key = str | re.Pattern[str]
Path_ = tuple[Key, ...]

# What Home Assistant's flow helpers abort with, by the helper's name.
IMPLIED_ABORTS = {
    "_abort_if_unique_id_configured": ("already_configured",),
    "async_set_unique_id": ("already_in_progress",),
}


class Unresolved(Exception):
    """An expression whose string values cannot be followed."""


@dataclass
class Usage:
    """Key paths the code uses, and what could not be followed."""

    paths: set[Path_] = field(default_factory=set)
    flow_fields: set[str] = field(default_factory=set)
    strings: set[str] = field(default_factory=set)
    unresolved: set[str] = field(default_factory=set)
    services: set[str] = field(default_factory=set)
    entity_keys: set[str] = field(default_factory=set)


class _Code:
    def __init__(self, sources: dict[str, str]) -> None:
        self.trees = {name: ast.parse(source) for name, source in sources.items()}
        self.functions: dict[str, list[ast.FunctionDef | ast.AsyncFunctionDef]] = {}
        self.constants: dict[str, ast.expr] = {}
        self.calls: list[ast.Call] = []
        self.parent: dict[ast.AST, ast.AST] = {}
        # Names imported from outside the integration (Home Assistant's constants).
        self.imported: dict[str, str] = {}
        for tree in self.trees.values():
            for node in ast.walk(tree):
                for child in ast.iter_child_nodes(node):
                    self.parent[child] = node
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    self.functions.setdefault(node.name, []).append(node)
                elif isinstance(node, ast.Call):
                    self.calls.append(node)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    self.imported |= {
                        alias.asname or alias.name: node.module for alias in node.names
                    }
            for statement in tree.body:
                target, value = _single_assignment(statement)
                if target is not None and value is not None:
                    self.constants.setdefault(target, value)

    def enclosing(self, node: ast.AST, kind: type | tuple[type, ...]) -> Any:
        while node in self.parent:
            node = self.parent[node]
            if isinstance(node, kind):
                return node
        return None

    # -- following values ------------------------------------------------------------------

    def values(self, node: ast.expr, depth: int = 0) -> set[Key]:
        """Every string the expression can be (patterns for f-strings)."""
        if depth > 12:
            raise Unresolved(ast.unparse(node))
        match node:
            case ast.Constant(value=str() as value):
                return {value}
            case ast.Constant():
                return set()
            case ast.JoinedStr():
                return {_pattern(node)}
            case ast.Await(value=inner):
                return self.values(inner, depth + 1)
            case ast.BoolOp(values=operands):
                return set().union(*(self.values(o, depth + 1) for o in operands))
            case ast.IfExp(body=body, orelse=orelse):
                return self.values(body, depth + 1) | self.values(orelse, depth + 1)
            case ast.Call(func=ast.Name(id="str"), args=[inner]):
                return self.values(inner, depth + 1)
            case ast.Call(func=ast.Attribute(attr="get", value=ast.Name(id=table)), args=args):
                found: set[Key] = set()
                mapping = self.constants.get(table)
                if not isinstance(mapping, ast.Dict):
                    raise Unresolved(ast.unparse(node))
                for value in mapping.values:
                    found |= self.values(value, depth + 1)
                for default in args[1:]:
                    found |= self.values(default, depth + 1)
                return found
            case ast.Call():
                return self.returns(_called_name(node), None, depth + 1, node)
            case ast.Name(id=name):
                return self.name_values(node, name, depth + 1)
        raise Unresolved(ast.unparse(node))

    def returns(self, name: str | None, index: int | None, depth: int, node: ast.AST) -> set[Key]:
        """What a helper of the integration returns (element `index` of returned tuples)."""
        if name is None or name not in self.functions:
            raise Unresolved(ast.unparse(node))
        found: set[Key] = set()
        for function in self.functions[name]:
            for ret in ast.walk(function):
                if not isinstance(ret, ast.Return) or ret.value is None:
                    continue
                if self.enclosing(ret, (ast.FunctionDef, ast.AsyncFunctionDef)) is not function:
                    continue
                value = ret.value
                if index is not None:
                    if not isinstance(value, ast.Tuple):
                        raise Unresolved(ast.unparse(value))
                    value = value.elts[index]
                found |= self.values(value, depth + 1)
        return found

    def name_values(self, node: ast.Name, name: str, depth: int) -> set[Key]:
        function = self.enclosing(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        if function is not None:
            assigned = list(self._assignments(function, name))
            if assigned:
                found: set[Key] = set()
                for value, index in assigned:
                    if index is None:
                        found |= self.values(value, depth)
                    else:
                        call = value.value if isinstance(value, ast.Await) else value
                        found |= self.returns(_called_name(call), index, depth, value)
                return found
            parameters = [a.arg for a in function.args.args]
            if name in parameters:
                return self.argument_values(function, parameters.index(name), name, depth)
        if name in self.constants:
            return self.values(self.constants[name], depth)
        if name in self.imported:
            value = getattr(importlib.import_module(self.imported[name]), name, None)
            if isinstance(value, str):
                return {value}
        raise Unresolved(name)

    def argument_values(
        self, function: ast.FunctionDef | ast.AsyncFunctionDef, position: int, name: str, depth: int
    ) -> set[Key]:
        """A parameter's values: what every caller of the function passes for it."""
        is_method = bool(function.args.args) and function.args.args[0].arg == "self"
        found: set[Key] = set()
        callers = [c for c in self.calls if _called_name(c) == function.name]
        if not callers:
            raise Unresolved(f"{function.name}({name})")
        for call in callers:
            offset = 1 if is_method and isinstance(call.func, ast.Attribute) else 0
            passed = [k.value for k in call.keywords if k.arg == name]
            if position - offset < len(call.args):
                passed.append(call.args[position - offset])
            for value in passed:
                found |= self.values(value, depth)
        return found

    @staticmethod
    def _assignments(function: ast.AST, name: str) -> Iterator[tuple[ast.expr, int | None]]:
        for node in ast.walk(function):
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name) and target.id == name:
                        yield node.value, None
                    elif isinstance(target, ast.Tuple):
                        for index, element in enumerate(target.elts):
                            if isinstance(element, ast.Name) and element.id == name:
                                yield node.value, index
            elif isinstance(node, ast.NamedExpr) and node.target.id == name:
                yield node.value, None


def _single_assignment(statement: ast.stmt) -> tuple[str | None, ast.expr | None]:
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        target = statement.targets[0]
        if isinstance(target, ast.Name):
            return target.id, statement.value
    if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
        return statement.target.id, statement.value
    return None, None


def _called_name(call: ast.AST) -> str | None:
    if not isinstance(call, ast.Call):
        return None
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _pattern(node: ast.JoinedStr) -> re.Pattern[str]:
    parts = [
        re.escape(part.value) if isinstance(part, ast.Constant) else "[a-z0-9_]+"
        for part in node.values
    ]
    return re.compile("".join(parts))


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def collect(sources: dict[str, str], services_yaml: str) -> Usage:
    """Every translation key path the code uses."""
    code = _Code(sources)
    usage = Usage()

    def values(node: ast.expr) -> set[Key]:
        try:
            return code.values(node)
        except Unresolved as err:
            usage.unresolved.add(str(err))
            return set()

    for tree in code.trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                usage.strings.add(node.value)

    for call in code.calls:
        called = _called_name(call)
        key = _keyword(call, "translation_key")
        flow = code.enclosing(call, ast.ClassDef)
        section = _flow_section(flow)
        if key is not None and _keyword(call, "translation_domain") is not None:
            usage.paths |= {("exceptions", k, "message") for k in values(key)}
        elif key is not None and called == "SelectSelectorConfig":
            options = _keyword(call, "options")
            for k in values(key):
                for option in options.elts if isinstance(options, ast.List) else []:
                    usage.paths |= {("selector", k, "options", o) for o in values(option)}
        elif key is not None and called == "async_create_issue":
            usage.paths |= {("issues", k) for k in values(key)}
        elif key is not None:
            usage.entity_keys |= {k for k in values(key) if isinstance(k, str)}
        if called in ("Required", "Optional") and call.args and _in_file(code, call, sources):
            usage.flow_fields |= {k for k in values(call.args[0]) if isinstance(k, str)}
        if called == "async_register" and len(call.args) >= 2:
            usage.services |= {k for k in values(call.args[1]) if isinstance(k, str)}
        if section is None:
            continue
        step = _keyword(call, "step_id")
        if step is not None:
            steps = values(step)
            usage.paths |= {(section, "step", s) for s in steps}
            menu = _keyword(call, "menu_options")
            if isinstance(menu, ast.List):
                for option in menu.elts:
                    usage.paths |= {
                        (section, "step", s, "menu_options", o)
                        for s in steps
                        for o in values(option)
                    }
        if called in ("async_abort", "_abort_if_unique_id_mismatch"):
            reason = _keyword(call, "reason")
            if reason is not None:
                usage.paths |= {(section, "abort", r) for r in values(reason)}
            elif called == "_abort_if_unique_id_mismatch":
                usage.paths.add((section, "abort", "unique_id_mismatch"))
        for reason in IMPLIED_ABORTS.get(called or "", ()):
            usage.paths.add((section, "abort", reason))
        if called == "async_update_reload_and_abort":
            function = code.enclosing(call, (ast.FunctionDef, ast.AsyncFunctionDef))
            kind = "reauth" if "reauth" in function.name else "reconfigure"
            usage.paths.add((section, "abort", f"{kind}_successful"))
        errors = _keyword(call, "errors")
        if isinstance(errors, ast.Dict):
            for value in errors.values:
                usage.paths |= {(section, "error", e) for e in values(value)}

    for node in (n for tree in code.trees.values() for n in ast.walk(tree)):
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(ast.unparse(t).endswith("_attr_translation_key") for t in targets):
                usage.entity_keys |= {k for k in values(node.value) if isinstance(k, str)}
        flow = code.enclosing(node, ast.ClassDef)
        section = _flow_section(flow)
        if (
            section is not None
            and isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Subscript)
            and isinstance(node.targets[0].value, ast.Name)
            and node.targets[0].value.id == "errors"
        ):
            usage.paths |= {(section, "error", e) for e in values(node.value)}
        if (
            section == "config"
            and isinstance(node, ast.Subscript)
            and isinstance(node.slice, ast.Constant)
            and node.slice.value == "title_placeholders"
        ):
            usage.paths.add(("config", "flow_title"))

    for service, spec in (yaml.safe_load(services_yaml) or {}).items():
        usage.paths |= {("services", service, "name"), ("services", service, "description")}
        for field_name in (spec or {}).get("fields", {}):
            usage.paths |= {
                ("services", service, "fields", field_name, "name"),
                ("services", service, "fields", field_name, "description"),
            }
    usage.strings |= usage.entity_keys
    return usage


def _flow_section(flow: ast.ClassDef | None) -> str | None:
    if flow is None:
        return None
    bases = {ast.unparse(base) for base in flow.bases}
    if any(base.endswith("OptionsFlow") for base in bases):
        return "options"
    if any(base.endswith("ConfigFlow") for base in bases):
        return "config"
    return None


def _in_file(code: _Code, node: ast.AST, sources: dict[str, str]) -> bool:
    """Whether a node is in config_flow.py (whose vol keys are form fields)."""
    root = node
    while root in code.parent:
        root = code.parent[root]
    return root is code.trees.get("config_flow.py")


# -- comparing with en.json --------------------------------------------------------------------


def leaf_paths(strings: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every key path to a text in a translations file."""
    for key, value in strings.items():
        if isinstance(value, dict):
            yield from leaf_paths(value, (*prefix, key))
        else:
            yield (*prefix, key)


def _matches(pattern: Path_, path: tuple[str, ...]) -> bool:
    """Whether a used path (possibly with patterns) covers a text's path (or its parent)."""
    if len(pattern) > len(path):
        return False
    return all(
        part.fullmatch(actual) if isinstance(part, re.Pattern) else part == actual
        for part, actual in zip(pattern, path, strict=False)
    )


MODELLED = {"config", "options", "exceptions", "services", "selector"}
# Texts of a step or field that belong to it without a code site of their own.
_STEP_TEXTS = {"title", "description", "data", "data_description", "sections"}


def compare(usage: Usage, strings: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(used but missing, present but unused), as dotted paths."""
    leaves = list(leaf_paths(strings))
    missing = sorted(
        ".".join(p.pattern if isinstance(p, re.Pattern) else p for p in path)
        for path in usage.paths
        if not any(_matches(path, leaf) for leaf in leaves)
    )
    fields_in_steps: set[str] = set()
    unused: list[str] = []
    for leaf in leaves:
        if leaf[0] in MODELLED:
            if leaf[0] in ("config", "options") and len(leaf) >= 5 and leaf[3] in ("data",):
                fields_in_steps.add(leaf[4])
            in_flow = _used_in_flow(leaf, usage)
            if in_flow is None:
                in_flow = any(_matches(path, leaf) for path in usage.paths)
            if not in_flow:
                unused.append(".".join(leaf))
        elif not _named_in_code(leaf, usage.strings):
            unused.append(".".join(leaf))
    missing += sorted(f"<a step's data>.{f}" for f in usage.flow_fields - fields_in_steps)
    return missing, unused


def _used_in_flow(leaf: tuple[str, ...], usage: Usage) -> bool | None:
    """A step's texts and its form fields' texts are used when the step and field are
    (None: not such a text; its own code site decides)."""
    if leaf[0] not in ("config", "options") or len(leaf) < 4 or leaf[1] != "step":
        return None
    if leaf[3] == "menu_options":
        return None
    step_used = any(_matches(path, leaf[:3]) for path in usage.paths)
    if leaf[3] in ("data", "data_description"):
        return step_used and len(leaf) == 5 and leaf[4] in usage.flow_fields
    return step_used and leaf[3] in _STEP_TEXTS


# Where the key that names the thing sits in other sections' paths (default: right below).
_IDENTIFYING = {"entity": 2, "device_automation": 2}


def _named_in_code(leaf: tuple[str, ...], strings: Iterable[str]) -> bool:
    """A key of a section without a modelled code site: its name is a string in the code."""
    position = _IDENTIFYING.get(leaf[0], 1)
    return len(leaf) > position and leaf[position] in set(strings)
