"""What the simulator says: plain answers, and JSON that validates against a request's JSON
Schema, with plausible content for the two shapes Bulwark asks for (a code review and a code
answer). Everything is a pure function of the request and a ``random.Random``, so the same
request always gets the same answer.

The schema generator covers what pydantic emits: ``type`` (or a list of types), ``object``
with ``properties``/``required``/``additionalProperties``, ``$ref`` into ``$defs``,
``allOf``/``anyOf``/``oneOf`` (with ``null``), ``enum``, ``const``, strings with
``minLength``/``maxLength`` and common ``format``s, integers and numbers with (exclusive)
bounds, booleans, arrays with ``items``/``prefixItems``/``minItems``/``maxItems``. It does not
honour ``pattern``, ``multipleOf`` or ``uniqueItems``. Optional properties are filled at the top
level only, and recursion stops at depth 8 (``null`` or empty arrays), so answers stay small.
"""

from __future__ import annotations

import ast
import keyword
import math
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from backend.llm.types import ProviderRequest

SIMULATED = "[simulated]"
_MISSING: Any = object()
_MAX_DEPTH = 8
_OPTIONAL_DEPTH = 1  # optional properties (not required, no hint) only at the top level
_LINE_LIMIT = 100
_WEIGHTS = {"info": 1, "minor": 4, "major": 12, "critical": 25}
_FENCE = re.compile(r"```([\w+#.-]*)[^\n]*\n(.*?)```", re.DOTALL)
_STOP_WORDS = (
    "a an the write create implement make build function method program script code that "
    "which to for in of and or with from by is it its please me my python javascript js "
    "returns return given small simple"
)
_STOP = frozenset(_STOP_WORDS.split())
#: Line checks: (Python only?, pattern, severity, category, message, suggestion). Python
#: checks look at the code before any ``#`` comment; the others at the whole line.
_LINE_CHECKS: tuple[tuple[bool, str, str, str, str, str], ...] = (
    (False, r"(#|//).*\b(TODO|FIXME|XXX)\b", "info", "maintainability",
     "Unresolved TODO comment.", "Resolve it or track it in an issue."),
    (False, r"(?i)\b(password|secret|api_?key|token)\s*=\s*['\"][^'\"]+['\"]", "critical",
     "security", "Hard-coded credential.", "Read it from the environment or a secret store."),
    (True, r"^\s*except\s*:", "major", "error-handling",
     "Bare `except:` also catches KeyboardInterrupt and SystemExit.",
     "Catch specific exceptions."),
    (True, r"(?<![\w.])print\(", "minor", "logging", "`print()` call left in the code.",
     "Use the logging module."),
    (True, r"(?<![\w.])(eval|exec)\(", "critical", "security",
     "`eval`/`exec` runs arbitrary code.", "Parse the input explicitly (`ast.literal_eval`)."),
)  # fmt: skip
_FORMATS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00",
    "email": "simulated@example.com",
    "uri": "https://example.com/simulated",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def last_user_text(request: ProviderRequest) -> str:
    """The last user message (what the answer is about), or the last message of any role."""
    for message in reversed(request.messages):
        if message.role == "user":
            return message.content
    return request.messages[-1].content if request.messages else ""


def plain_answer(request: ProviderRequest, *, target: str, rng: random.Random) -> str:
    asked = _one_line(last_user_text(request), 80) or "(nothing)"
    return (
        f"{SIMULATED} Offline answer from {target}, the Bulwark simulator; no model was "
        f'called. You asked: "{asked}". Reference {rng.getrandbits(32):08x}.'
    )


def structured_answer(
    request: ProviderRequest, schema: Mapping[str, Any], *, target: str, rng: random.Random
) -> Any:
    """A value valid against ``schema``, with review or code content when the shape fits."""
    faker = _Faker(schema, rng, {"model": target})
    properties = faker.resolve(schema).get("properties", {})
    text = last_user_text(request)
    hints: dict[str, Any]
    if "findings" in properties or {"summary", "score"} <= properties.keys():
        hints = review(text)
    elif "code" in properties:
        hints = code_answer(text)
    else:
        note = f"{SIMULATED} Generated offline by the Bulwark simulator; no model was called."
        hints = {"summary": note, "explanation": note, "answer": note}
    return faker.value(schema, hints)


def review(text: str) -> dict[str, Any]:
    """A heuristic review of the code in ``text`` (its largest fenced block, else all of it):
    long lines, TODOs, secrets, and for Python bare ``except:``, ``print(``, ``eval``/``exec``
    and missing docstrings, each with its 1-based line number in that code."""
    language, code = extract_code(text)
    code, numbers = _unnumber(code)
    if language == "text":
        language = _guess_language(code)
    lines = code.splitlines()
    python = language == "python"
    findings: list[dict[str, Any]] = []

    def add(severity: str, line: int, category: str, message: str, fix: str | None) -> None:
        findings.append(
            {"severity": severity, "line": line, "category": category, "message": message}
            | {"suggestion": fix}
        )

    for number, line in enumerate(lines, start=1):
        if len(line) > _LINE_LIMIT:
            message = f"Line is {len(line)} characters long (limit {_LINE_LIMIT})."
            add("minor", number, "style", message, "Break it up or extract a variable.")
        code_part = line.split("#", 1)[0] if python else line
        for python_only, pattern, severity, category, message, fix in _LINE_CHECKS:
            if python_only and not python:
                continue
            if re.search(pattern, code_part if python_only else line):
                add(severity, number, category, message, fix)
    if python:
        try:
            tree = ast.parse(code)
        except SyntaxError as exc:
            where = min(max(exc.lineno or 1, 1), max(len(lines), 1))
            add("major", where, "correctness", f"The code does not parse: {exc.msg}.", None)
        else:
            for node in ast.walk(tree):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    continue
                if ast.get_docstring(node) is None and not node.name.startswith("_"):
                    message = f"`{node.name}` has no docstring."
                    add("minor", node.lineno, "documentation", message, "Add a docstring.")
    if numbers is not None:
        for finding in findings:
            finding["line"] = numbers[min(finding["line"], len(numbers)) - 1]
    findings = sorted(findings, key=lambda f: (f["line"], f["category"]))[:20]
    score = max(0, min(100, 100 - sum(_WEIGHTS[f["severity"]] for f in findings)))
    verdict = f"{len(findings)} finding(s)" if findings else "no issues found by its heuristics"
    summary = (
        f"{SIMULATED} Offline review by the Bulwark simulator (no model was called): {verdict} "
        f"in {len(lines)} line(s) of {language}; score {score}/100."
    )
    return {"summary": summary, "score": score, "findings": findings, "degraded": False}


def code_answer(instructions: str) -> dict[str, Any]:
    """A small valid program for ``instructions``: a documented placeholder function."""
    wants_js = re.search(r"(?i)\b(javascript|js|node(js)?|typescript)\b", instructions)
    words = [w for w in re.findall(r"[a-z][a-z0-9]*", instructions.lower()) if w not in _STOP]
    name = "_".join(words[:3]) or "solution"
    name = f"do_{name}" if keyword.iskeyword(name) else name
    task = _one_line(instructions, 80) or "Do what the instructions ask"
    note = f"{SIMULATED} Written offline by the Bulwark simulator; no model was called."
    if wants_js:
        language = "javascript"
        name = re.sub(r"_(\w)", lambda m: m.group(1).upper(), name)
        code = (
            f"/**\n * {task}\n *\n * {note}\n */\nfunction {name}(...args) {{\n"
            f"  return `simulated: ${{args.length}} argument(s)`;\n}}\n\n"
            f"module.exports = {{ {name} }};\n"
        )
    else:
        language = "python"
        code = (
            f'def {name}(*args: object) -> str:\n    """{task}\n\n    {note}\n    """\n'
            f'    return f"simulated: {{len(args)}} argument(s)"\n'
        )
    explanation = (
        f"{SIMULATED} The Bulwark simulator wrote a placeholder {language} function `{name}` "
        f"for: {task}. No model was called; route to a real provider for real code."
    )
    return {"language": language, "code": code, "explanation": explanation, "review": None}


def extract_code(text: str) -> tuple[str, str]:
    """(language, code): the largest fenced block and its info string, else the whole text."""
    blocks = _FENCE.findall(text)
    language, code = max(blocks, key=lambda b: len(b[1])) if blocks else ("", text)
    language = language.lower() or _guess_language(code)
    return {"py": "python", "js": "javascript"}.get(language, language), code


_NUMBERED = re.compile(r"^\s*(\d+) (?:[+ ] )?\| ?(.*)$")


def _unnumber(code: str) -> tuple[str, list[int] | None]:
    """Code shown as a numbered listing (``  12 | text``, as agents show it to models) back to
    plain code, with the real line number of each line; other code unchanged (``None``)."""
    rows = [row for row in code.splitlines() if row.strip() != "..."]
    matches = [_NUMBERED.match(row) for row in rows]
    if not rows or any(match is None for match in matches):
        return code, None
    numbered = [m for m in matches if m is not None]
    return "\n".join(m.group(2) for m in numbered), [int(m.group(1)) for m in numbered]


def _guess_language(code: str) -> str:
    if re.search(r"^\s*(def |class |import |from \w+ import )", code, re.MULTILINE):
        return "python"
    if re.search(r"\b(function|const|let)\b.*[({=]", code):
        return "javascript"
    return "text"


def _one_line(text: str, limit: int) -> str:
    """A safe one-line excerpt: no quotes, backslashes or comment markers, at most ``limit``."""
    cleaned = " ".join(re.sub(r"[^\w .,;:!?()'-]", " ", text).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3].rstrip() + "..."


class _Faker:
    """Walks a JSON Schema producing a valid value; ``hints`` (values by property name) are
    used wherever they fit the schema, ``globals`` at any depth."""

    def __init__(self, root: Mapping[str, Any], rng: random.Random, globals_: dict[str, Any]):
        self.root, self.rng, self.globals = root, rng, globals_

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        for _ in range(32):
            if "$ref" in schema:
                target: Any = self.root
                for part in str(schema["$ref"]).lstrip("#").strip("/").split("/"):
                    if part:
                        target = target[part.replace("~1", "/").replace("~0", "~")]
                rest = {k: v for k, v in schema.items() if k != "$ref"}
                schema = {**target, **rest}
            elif "allOf" in schema:
                merged = {k: v for k, v in schema.items() if k != "allOf"}
                for part in schema["allOf"]:
                    sub = self.resolve(part)
                    props = {**merged.get("properties", {}), **sub.get("properties", {})}
                    required = [*merged.get("required", []), *sub.get("required", [])]
                    merged = {**merged, **sub, "properties": props, "required": required}
                schema = merged
            else:
                return schema
        raise ValueError("JSON Schema $ref chain too deep")

    def value(self, schema: Mapping[str, Any], hint: Any = _MISSING, depth: int = 0) -> Any:
        schema = self.resolve(schema)
        if hint is not _MISSING:
            fitted = self._fit(schema, hint, depth)
            if fitted is not _MISSING:
                return fitted
        return self._fake(schema, depth)

    def _fit(self, schema: Mapping[str, Any], hint: Any, depth: int) -> Any:
        for option in schema.get("anyOf", schema.get("oneOf", ())):
            fitted = self._fit(self.resolve(option), hint, depth)
            if fitted is not _MISSING:
                return fitted
        if "anyOf" in schema or "oneOf" in schema:
            return _MISSING
        kind = _kind(schema)
        if isinstance(hint, Mapping) and kind == "object":
            return self._object(schema, hint, depth)
        if isinstance(hint, list) and kind == "array":
            items = [self.value(schema.get("items", {}), h, depth + 1) for h in hint]
            return self._sized(schema, items, depth, fill=False)
        return hint if _accepts(schema, hint) else _MISSING

    def _fake(self, schema: Mapping[str, Any], depth: int) -> Any:
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.rng.choice(list(schema["enum"]))
        options = [self.resolve(o) for o in schema.get("anyOf", schema.get("oneOf", ()))]
        if options:
            concrete = [o for o in options if _kind(o) != "null"]
            shallow = depth < _MAX_DEPTH or len(concrete) == len(options)
            return self._fake(concrete[0] if concrete and shallow else {"type": "null"}, depth)
        kind = _kind(schema)
        if kind == "object":
            return self._object(schema, {}, depth)
        if kind == "array":
            return self._sized(schema, [], depth, fill=depth < _MAX_DEPTH)
        if kind in ("integer", "number"):
            return _number(schema, self.rng, integer=kind == "integer")
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        text = _FORMATS.get(str(schema.get("format")), f"simulated {schema.get('title', 'text')}")
        text = text.ljust(int(schema.get("minLength", 0)), "x")
        return text[: int(schema["maxLength"])] if "maxLength" in schema else text

    def _object(self, schema: Mapping[str, Any], hints: Mapping[str, Any], depth: int) -> Any:
        properties: Mapping[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", ()))
        out: dict[str, Any] = {}
        for name, sub in properties.items():
            hint = hints.get(name, self.globals.get(name, _MISSING))
            if name in required or hint is not _MISSING or depth < _OPTIONAL_DEPTH:
                out[name] = self.value(sub, hint, depth + 1)
        extra = schema.get("additionalProperties", True)
        if not properties and extra is not False:
            for name, hint in hints.items():
                out[name] = self.value(extra, hint, depth + 1) if isinstance(extra, dict) else hint
            for i in range(len(out), int(schema.get("minProperties", 0))):
                sub = extra if isinstance(extra, dict) else {}
                out[f"key_{i}"] = self.value(sub, _MISSING, depth + 1)
        return out

    def _sized(
        self, schema: Mapping[str, Any], items: list[Any], depth: int, *, fill: bool
    ) -> list[Any]:
        """``items`` padded to ``minItems`` (and to one item when ``fill``), cut to
        ``maxItems``."""
        prefix: Sequence[Any] = schema.get("prefixItems", ())
        want = max(int(schema.get("minItems", 0)), len(prefix), int(fill))
        while len(items) < want:
            i = len(items)
            sub = prefix[i] if i < len(prefix) else schema.get("items", {})
            items.append(self.value(sub, _MISSING, depth + 1))
        return items[: int(schema["maxItems"])] if "maxItems" in schema else items


def _kind(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else ""
    return str(kind)


def _accepts(schema: Mapping[str, Any], value: Any) -> bool:
    """Whether a scalar hint is valid for a (resolved, non-union) schema."""
    if "const" in schema:
        return bool(value == schema["const"])
    if "enum" in schema and value not in schema["enum"]:
        return False
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds or []
    checks = {
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "null": value is None,
    }
    if kinds and not any(checks.get(k, False) for k in kinds):
        return False
    if isinstance(value, str):
        return int(schema.get("minLength", 0)) <= len(value) <= int(schema.get("maxLength", 1e9))
    if isinstance(value, int | float) and not isinstance(value, bool):
        inf = math.inf
        return bool(
            schema.get("minimum", -inf) <= value <= schema.get("maximum", inf)
            and schema.get("exclusiveMinimum", -inf) < value < schema.get("exclusiveMaximum", inf)
        )
    return True


def _number(schema: Mapping[str, Any], rng: random.Random, *, integer: bool) -> float | int:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    if low is None and high is None:
        low, high = 0, 100
    elif low is None:
        low = high - 100
    elif high is None:
        high = low + 100
    if integer:
        low = int(low) + 1 if "exclusiveMinimum" in schema and "minimum" not in schema else low
        high = int(high) - 1 if "exclusiveMaximum" in schema and "maximum" not in schema else high
        return rng.randint(int(-(-low // 1)), int(high // 1))
    if low == high:
        return float(low)
    exact = float(low + (high - low) * rng.uniform(0.25, 0.75))
    rounded = round(exact, 2)
    return rounded if low < rounded < high else exact


__all__ = [
    "SIMULATED",
    "code_answer",
    "extract_code",
    "last_user_text",
    "plain_answer",
    "review",
    "structured_answer",
]
