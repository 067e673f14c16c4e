"""Tool arguments checked the way a model can act on: an unknown argument is refused with its name, and a wrong
value is one line naming the argument and what it allows (never pydantic's multi-line report with a link).

`CheckedTool` is the SDK's `Tool` with that check in front of its own validation; its input schema says
`additionalProperties: false`, so clients learn the same before they call.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from pydantic import ValidationError


class CheckedTool(Tool):
    async def run(self, arguments: dict[str, Any], context: Any, convert_result: bool = False) -> Any:
        unknown = unknown_arguments(arguments, self.parameters)
        if unknown:
            allowed = ", ".join(self.parameters.get("properties", {})) or "none"
            plural = "s" if len(unknown) > 1 else ""
            raise ToolError(
                f"Error executing tool {self.name}: unknown argument{plural} {', '.join(unknown)}; "
                f"{self.name} takes: {allowed}"
            )
        try:
            return await super().run(arguments, context, convert_result)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                # The SDK's prefix, as every other tool error has it; then one line, not pydantic's report.
                message = f"Error executing tool {self.name}: invalid arguments: {one_line(exc.__cause__)}"
                raise ToolError(message) from None
            raise


def unknown_arguments(arguments: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Names in `arguments` (and in nested objects the schema describes) that the schema does not list."""
    if not isinstance(arguments, dict):
        return []
    schema = _resolved(schema, schema)
    return _unknown(arguments, schema, schema.get("$defs", {}), where)


def _resolved(schema: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return top.get("$defs", {}).get(ref.rsplit("/", 1)[1], schema)
    return schema


def _unknown(
    arguments: dict[str, Any], schema: dict[str, Any], defs: dict[str, Any], where: str
) -> list[str]:
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return []
    found = [f"{where}{name}" for name in arguments if name not in properties]
    for name, value in arguments.items():
        sub = properties.get(name)
        if isinstance(value, dict) and isinstance(sub, dict):
            for option in [sub, *sub.get("anyOf", [])]:
                target = _resolved(option, {"$defs": defs})
                if isinstance(target.get("properties"), dict):
                    found += _unknown(value, target, defs, f"{where}{name}.")
                    break
    return found


def one_line(error: ValidationError) -> str:
    """Each problem as `argument: what is wrong` (allowed values named), joined on one line."""
    parts = []
    for problem in error.errors(include_url=False):
        where = ".".join(str(p) for p in problem["loc"]) or "arguments"
        kind, context = problem["type"], problem.get("ctx") or {}
        if kind == "missing":
            parts.append(f"{where}: required")
        elif kind in ("literal_error", "enum") and "expected" in context:
            allowed = str(context["expected"]).replace("'", "").replace(" or ", ", ")
            parts.append(f"{where}: {problem['input']!r} is not one of: {allowed}")
        else:
            parts.append(f"{where}: {problem['msg'][0].lower()}{problem['msg'][1:]}")
    return "; ".join(parts)


def closed(schema: Any) -> None:
    """In place: every object with listed properties admits no others (`additionalProperties: false`)."""
    if isinstance(schema, dict):
        if isinstance(schema.get("properties"), dict):
            schema.setdefault("additionalProperties", False)
        for value in schema.values():
            closed(value)
    elif isinstance(schema, list):
        for value in schema:
            closed(value)
