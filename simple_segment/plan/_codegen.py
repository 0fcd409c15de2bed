"""``simple-segment plan codegen``: a typed Python module from a tracking plan.

One function per TRACK rule (its latest version), named after the event in
snake_case, whose keyword-only arguments are the event's properties: required ones
required, ``Literal`` for enums, a ``TypedDict`` for each nested object (its optional
keys in a ``total=False`` part, which works on Python 3.10 without
``typing_extensions``).  ``identify``/``group`` helpers type the traits of the
IDENTIFY/GROUP rules.  The output depends only on the plan: regenerating an unchanged
plan gives the same bytes.
"""

from __future__ import annotations

import builtins
import json
import keyword
import re
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from ._plan import Rule, TrackingPlan

__all__ = ["generate"]

_WIDTH = 100
_RESERVED = frozenset({
    "user_id", "anonymous_id", "group_id", "client", "context", "timestamp", "integrations", "message_id",
    "properties", "traits", "simple_segment", "annotations", "send",
})
_DATES = {"date-time": "dt.datetime", "date": "dt.date"}
_SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}


def snake_case(text: str) -> str:
    """Return ``text`` as a snake_case name: ``"Order Completed"`` -> ``order_completed``."""
    text = re.sub(r"([a-z])([A-Z])|([0-9])([A-Z][a-z])", lambda m: "_".join(filter(None, m.groups())), text)
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", text)
    name = re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower()
    if not name:
        name = "unnamed"
    if name[0].isdigit():
        name = f"n_{name}"
    return name


def _camel(text: str) -> str:
    return "".join(part.capitalize() for part in snake_case(text).split("_"))


class _Names:
    """Hands out unique names; a clash gets a number."""

    def __init__(self, taken: Sequence[str] = ()) -> None:
        self._taken = set(taken)

    def claim(self, name: str) -> str:
        candidate, number = name, 2
        while candidate in self._taken:
            candidate = f"{name}_{number}"
            number += 1
        self._taken.add(candidate)
        return candidate


def _argument(name: str) -> str:
    arg = snake_case(name)
    if keyword.iskeyword(arg) or arg in _RESERVED or hasattr(builtins, arg):
        arg += "_"
    return arg


def _literal(value: object) -> str:
    return "None" if value is None else "True" if value is True else "False" if value is False else json.dumps(value)


def _doc_text(text: str) -> str:
    # Descriptions are the plan author's text: keep them from closing the docstring.
    return " ".join(text.split()).replace('"""', "'''")


def _sentence(text: str) -> str:
    # Ends with punctuation: pydocstyle wants it, and no quote or backslash can touch the closing quotes.
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _quoted(body: str) -> str:
    """Return the docstring literal of ``body`` (raw when it holds a backslash, so it reads as written)."""
    prefix = "r" if "\\" in body else ""
    return f'{prefix}"""{body}"""'


class _Generator:
    def __init__(self) -> None:
        self.types: list[str] = []
        self.type_names = _Names(("Client", "Result", "Any", "Literal", "TypedDict"))
        self.uses_literal = False
        self.uses_datetime = False
        self.public: list[str] = []

    # -- types ------------------------------------------------------------------------

    def annotation(self, schema: object, hint: str) -> str:
        if not isinstance(schema, Mapping):
            return "Any"
        values = schema.get("enum")
        if "const" in schema:
            values = [schema["const"]]
        if isinstance(values, list) and values and all(
            value is None or isinstance(value, (str, int, bool)) for value in values
        ):
            self.uses_literal = True
            literals = [_literal(value) for value in values if value is not None]
            text = f"Literal[{', '.join(dict.fromkeys(literals))}]" if literals else ""
            return " | ".join(part for part in (text, "None" if None in values else "") if part)
        for combinator in ("anyOf", "oneOf"):
            options = schema.get(combinator)
            if isinstance(options, list) and options:
                return _union(self.annotation(option, hint) for option in options)
        kinds = schema.get("type")
        if isinstance(kinds, list):
            return _union(self._typed(kind, schema, hint) for kind in kinds)
        if isinstance(kinds, str):
            return self._typed(kinds, schema, hint)
        return "Any"

    def _typed(self, kind: object, schema: Mapping[str, Any], hint: str) -> str:
        if kind == "string" and schema.get("format") in _DATES:
            # The client sends a datetime (or date) as ISO-8601 text, which these formats accept.
            self.uses_datetime = True
            return f"str | {_DATES[schema['format']]}"
        if kind in _SCALARS:
            return _SCALARS[str(kind)]
        if kind == "array":
            items = schema.get("items")
            return f"list[{self.annotation(items, hint + ' Item') if isinstance(items, Mapping) else 'Any'}]"
        if kind == "object":
            properties = schema.get("properties")
            if isinstance(properties, Mapping) and properties:
                return self.typed_dict(schema, hint)
            return "dict[str, Any]"
        return "Any"

    def typed_dict(self, schema: Mapping[str, Any], hint: str) -> str:
        name = self.type_names.claim(_camel(hint))
        self.public.append(name)
        properties: Mapping[str, Any] = schema.get("properties") or {}
        required = _required(schema)
        fields = [(key, self.annotation(value, f"{hint} {key}")) for key, value in properties.items()]
        must = [(key, text) for key, text in fields if key in required]
        may = [(key, text) for key, text in fields if key not in required]
        doc = schema.get("description")
        text = doc if isinstance(doc, str) and doc.strip() else f"An object of the tracking plan: {hint}"
        body = [f"    {_quoted(_sentence(_doc_text(text)))}", ""]
        blocks: list[str] = []
        bases: list[str] = []
        if must and not may and _plain(must):
            self.types.append(_typed_dict(name, must, total=True, doc=body))
            return name
        if must:
            if may and _plain(must):
                blocks.append(_typed_dict(f"_{name}Required", must, total=True, doc=[]))
                bases.append(f"_{name}Required")
            else:
                bases.append(self._base(blocks, f"_{name}Required", must, total=True))
        if may:
            if _plain(may):
                blocks.append(_typed_dict(name, may, total=False, doc=body, bases=bases))
                self.types.extend(blocks)
                return name
            bases.append(self._base(blocks, f"_{name}Optional", may, total=False))
        blocks.append("\n".join([f"class {name}({', '.join(bases or ['TypedDict'])}):", body[0]]))
        self.types.extend(blocks)
        return name

    @staticmethod
    def _base(blocks: list[str], name: str, fields: list[tuple[str, str]], *, total: bool) -> str:
        if _plain(fields):
            blocks.append(_typed_dict(name, fields, total=total, doc=[]))
        else:
            entries = [f"        {json.dumps(key)}: {text}," for key, text in fields]
            tail = [] if total else ["    total=False,"]
            lines = [f"{name} = TypedDict(", f'    "{name}",', "    {", *entries, "    },", *tail, ")"]
            blocks.append("\n".join(lines))
        return name

    # -- functions --------------------------------------------------------------------

    def function(self, name: str, rule: Rule, call: str, versions: int) -> str:
        schema = rule.json_schema
        field = "properties" if call == "track" else "traits"
        part = _sub(schema, field)
        properties: Mapping[str, Any] = part.get("properties") or {}
        required = _required(part)
        hint = rule.key or rule.type.capitalize()
        arguments = _Names()
        params: list[tuple[str, str, str, bool, str]] = []  # (arg, key, annotation, required, description)
        for key, value in properties.items():
            arg = arguments.claim(_argument(key))
            text = self.annotation(value, f"{hint} {key}")
            text = "object" if text == "Any" else text  # any value: `object` for a parameter (ANN401)
            description = value.get("description") if isinstance(value, Mapping) else None
            params.append((arg, key, text, key in required, description if isinstance(description, str) else ""))
        signature = ["    *,"]
        if call == "group":
            signature.append("    group_id: str,")
        signature += ["    user_id: str | None = None,", "    anonymous_id: str | None = None,"]
        signature += [f"    {arg}: {text}," for arg, _, text, needed, _ in params if needed]
        signature += [
            f"    {arg}: {_optional(text)} = None," for arg, _, text, needed, _ in params if not needed
        ]
        signature += ["    context: dict[str, Any] | None = None,", "    client: Client | None = None,"]
        noqa = "  # noqa: PLR0913 - one keyword per property" if len(signature) - 1 > 5 else ""  # noqa: PLR2004
        lines = [f"def {name}({noqa}", *signature, ") -> Result:", self.docstring(rule, call, params)]
        given = [f"        {json.dumps(key)}: {arg}," for arg, key, _, needed, _ in params if needed]
        start = f"    {field}: dict[str, Any] = {{"
        lines += [start, *given, "    }"] if given else [start + "}"]
        for arg, key, _, needed, _ in params:
            if not needed:
                lines += [f"    if {arg} is not None:", f"        {field}[{json.dumps(key)}] = {arg}"]
        if versions > 1 and call == "track":
            # Name the version this function was generated from, so Protocols checks against it.
            lines.append(f'    context = {{**(context or {{}}), "protocols": {{"event_version": {rule.version}}}}}')
        lines.append(f"    send = simple_segment.{call} if client is None else client.{call}")
        if call == "track":
            lines.append(
                f"    return send(user_id, {json.dumps(rule.key)}, {field}, context, anonymous_id=anonymous_id)"
            )
        elif call == "identify":
            lines.append(f"    return send(user_id, {field}, context, anonymous_id=anonymous_id)")
        else:
            lines.append(f"    return send(user_id, group_id, {field}, context, anonymous_id=anonymous_id)")
        return "\n".join(lines)

    def docstring(self, rule: Rule, call: str, params: list[tuple[str, str, str, bool, str]]) -> str:
        what = {"track": f"the event {rule.key!r}", "identify": "an identify call", "group": "a group call"}[call]
        lines = [_doc_text(f"Send {what}, typed by the tracking plan (version {rule.version}).")]
        description = rule.json_schema.get("description")
        if isinstance(description, str) and description.strip():
            lines += ["", *textwrap.wrap(_sentence(_doc_text(description)), _WIDTH - 4)]
        if params:
            field = "properties" if call == "track" else "traits"
            lines += ["", f"Each keyword is one of its {field}; one left as None is not sent:", ""]
            for arg, key, _, needed, text in params:
                entry = f"- ``{arg}``" + (f" (``{key}``)" if arg != key else "") + (" (required)" if needed else "")
                entry += f": {_doc_text(text)}" if text.strip() else ""
                lines += textwrap.wrap(entry, _WIDTH - 4, subsequent_indent="  ")
        lines += [
            "",
            "``user_id`` or ``anonymous_id`` is required; ``client`` defaults to simple_segment's",
            "``default_client``.  Returns ``(ok, msg)`` as the call does.",
        ]
        body = "\n".join(f"    {line}" if line else "" for line in lines)
        return "    " + _quoted(f"{body[4:]}\n    ")


def _plain(fields: list[tuple[str, str]]) -> bool:
    return all(key.isidentifier() and not keyword.iskeyword(key) for key, _ in fields)


def _typed_dict(
    name: str, fields: list[tuple[str, str]], *, total: bool, doc: list[str], bases: Sequence[str] = ()
) -> str:
    parents = ", ".join([*bases] or ["TypedDict"]) + ("" if total else ", total=False")
    return "\n".join([f"class {name}({parents}):", *doc, *(f"    {key}: {text}" for key, text in fields)])


def _optional(text: str) -> str:
    return text if text == "object" or "None" in text.split(" | ") else f"{text} | None"


def _sub(schema: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    properties = schema.get("properties")
    part = properties.get(field) if isinstance(properties, Mapping) else None
    return part if isinstance(part, Mapping) else {}


def _required(schema: Mapping[str, Any]) -> set[str]:
    required = schema.get("required")
    return {name for name in required if isinstance(name, str)} if isinstance(required, list) else set()


def _union(parts: Any) -> str:  # noqa: ANN401 - an iterable of annotation texts
    # A Literal's quoted values may hold " | ": only unquoted annotations are split into members.
    unique = list(dict.fromkeys(part for text in parts for part in ([text] if '"' in text else text.split(" | "))))
    return "Any" if "Any" in unique else " | ".join(unique)


def generate(plan: TrackingPlan, *, source: str = "tracking_plan.json") -> str:
    """Return the Python module for ``plan``; ``source`` is the plan path named in its header."""
    generator = _Generator()
    functions = _Names(("send", "simple_segment", "dt", "TYPE_CHECKING"))
    latest: dict[tuple[str, str | None], Rule] = {}
    counts: dict[tuple[str, str | None], int] = {}
    for rule in plan.rules:
        ident = (rule.type, rule.key)
        counts[ident] = counts.get(ident, 0) + 1
        if ident not in latest or latest[ident].version < rule.version:
            latest[ident] = rule
    bodies: list[str] = []
    public: list[str] = []
    for ident, rule in latest.items():
        if rule.type == "TRACK":
            public.append(functions.claim(snake_case(rule.key or "")))
            bodies.append(generator.function(public[-1], rule, "track", counts[ident]))
        elif rule.type in ("IDENTIFY", "GROUP"):
            call = rule.type.lower()
            public.append(functions.claim(call))
            bodies.append(generator.function(public[-1], rule, call, counts[ident]))
    typing_names = [
        *(["TYPE_CHECKING"] if generator.uses_datetime else []),
        "Any",
        *(["Literal"] if generator.uses_literal else []),
        "TypedDict",
    ]
    if not generator.types:
        typing_names.remove("TypedDict")
    header = [
        f'"""Typed tracking calls for the plan in {source}: generated by simple-segment; do not edit.',
        "",
        f"Regenerate with ``simple-segment plan codegen --plan {source} -o <this file>``.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        f"from typing import {', '.join(typing_names)}",
        "",
        "import simple_segment",
        "from simple_segment import Client, Result",
        *(["", "if TYPE_CHECKING:", "    import datetime as dt"] if generator.uses_datetime else []),
        "",
        "__all__ = [",
        *(f"    {json.dumps(name)}," for name in sorted([*generator.public, *public])),
        "]",
    ]
    sections = ["\n".join(header), *generator.types, *bodies]
    return "\n\n\n".join(sections) + "\n"
