"""The REST and gRPC references of the documentation, rendered as Markdown from the server's
own OpenAPI document and from the ``.proto`` files, so the docs cannot drift from either.

Nothing is started: the REST app is built in-process over an empty service (models load in
a lifespan that never runs) and asked for ``openapi()``; the protos are compiled with
``grpc_tools.protoc`` into a descriptor set that keeps their comments. ``make docs`` runs
``python tools/api_reference.py docs/reference`` before building the site; the pages are
committed (readable without building) and tests/docs fails when they are stale.
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
PROTO_FILES = ("latentserve/v1/generative.proto", "latentserve/inference/grpc_predict_v2.proto")
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


# ---------------------------------------------------------------- REST (OpenAPI) --------


def http_app() -> Any:
    """The FastAPI app the HTTP port serves, over a service with no models loaded."""
    from latentserve.server.engine.service import GenerativeService
    from latentserve.server.http_app import create_http_app
    from latentserve.server.metrics import ServerMetrics
    from latentserve.server.security.admin import AdminTokens
    from latentserve.server.settings import Settings
    from prometheus_client import CollectorRegistry

    settings = Settings(repository=Path("models"))
    service = GenerativeService(settings, ServerMetrics(CollectorRegistry()))
    return create_http_app(service, AdminTokens())


def app_routes(app: Any) -> list[tuple[str, str, Any]]:
    """(METHOD, path, endpoint) of every route the app answers, including routers that
    FastAPI keeps nested and routes left out of the OpenAPI document."""
    found: list[tuple[str, str, Any]] = []

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            nested = getattr(route, "original_router", None)
            if nested is not None:
                context = getattr(route, "include_context", None)
                walk(nested.routes, prefix + (getattr(context, "prefix", "") or ""))
                continue
            for method in sorted(getattr(route, "methods", None) or ()):
                if method != "HEAD":
                    found.append((method, prefix + route.path, getattr(route, "endpoint", None)))

    walk(app.routes, "")
    # a lean route (server/frontends/rest/lean.py) is ahead of FastAPI's for the same path:
    # list each once, where FastAPI's stands
    last = {(method, path): i for i, (method, path, _) in enumerate(found)}
    return [route for i, route in enumerate(found) if last[route[:2]] == i]


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _anchor(name: str) -> str:
    return name.lower()


def schema_type(schema: dict[str, Any]) -> str:
    """A short type for a JSON schema: ``integer ≥ 1``, ``array of string``, a link."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{_anchor(name)})"
    if "anyOf" in schema:
        kinds = [schema_type(s) for s in schema["anyOf"] if s.get("type") != "null"]
        nullable = any(s.get("type") == "null" for s in schema["anyOf"])
        return " or ".join(kinds) + (" (or null)" if nullable else "")
    kind = schema.get("type", "any")
    if kind == "array":
        kind = f"array of {schema_type(schema.get('items', {}))}"
    bounds = []
    for key, sign in (
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
        ("exclusiveMaximum", "<"),
        ("minLength", "length ≥"),
        ("maxLength", "length ≤"),
        ("minItems", "items ≥"),
        ("maxItems", "items ≤"),
    ):
        if key in schema:
            bounds.append(f"{sign} {schema[key]}")
    if "enum" in schema:
        bounds.append("one of " + ", ".join(f"`{v}`" for v in schema["enum"]))
    if "pattern" in schema:
        bounds.append(f"matching `{schema['pattern']}`")
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def properties_table(schema: dict[str, Any]) -> list[str]:
    """A Markdown table of an object schema's fields."""
    properties = schema.get("properties", {})
    if not properties:
        return []
    required = set(schema.get("required", ()))
    lines = [
        "| field | type | required | default | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, prop in properties.items():
        default = f"`{prop['default']}`" if "default" in prop else ""
        lines.append(
            f"| `{name}` | {_cell(schema_type(prop))} | {'yes' if name in required else ''} "
            f"| {_cell(default)} | {_cell(prop.get('description', ''))} |"
        )
    return lines


def _body_lines(body: dict[str, Any]) -> Iterator[str]:
    for media, content in body.get("content", {}).items():
        schema = content.get("schema", {})
        yield f"Request body (`{media}`): {schema_type(schema) if '$ref' in schema else ''}"
        yield ""
        if "$ref" in schema:
            continue
        if schema.get("description"):
            yield _cell(schema["description"])
            yield ""
        for alternative in schema.get("anyOf", [schema]):
            if "anyOf" in schema:
                title = alternative.get("title", "one of")
                yield f"*{title}*: {_cell(alternative.get('description', ''))}"
                yield ""
            yield from properties_table(alternative)
            yield ""


# The error answers every route declares (the app's default responses): stated once.
_ERROR_CODES = {"400", "401", "403", "404", "413", "422", "429", "503", "504"}


def _operation_lines(method: str, path: str, op: dict[str, Any], common: set[str]) -> Iterator[str]:
    yield f"### `{method.upper()} {path}`"
    yield ""
    description = f" {_cell(op['description'])}" if op.get("description") else ""
    yield f"**{op.get('summary', '')}**.{description}"
    yield ""
    parameters = [p for p in op.get("parameters", []) if p["name"] not in common]
    if parameters:
        yield "| parameter | in | type | required | description |"
        yield "| --- | --- | --- | --- | --- |"
        for p in parameters:
            yield (
                f"| `{p['name']}` | {p['in']} | {_cell(schema_type(p.get('schema', {})))} "
                f"| {'yes' if p.get('required') else ''} | {_cell(p.get('description', ''))} |"
            )
        yield ""
    if "requestBody" in op:
        yield from _body_lines(op["requestBody"])
    answers = []
    for code, response in op.get("responses", {}).items():
        schemas = [c.get("schema", {}) for c in response.get("content", {}).values()]
        shape = next((schema_type(s) for s in schemas if s), "")
        if code not in _ERROR_CODES:
            answers.append(f"{code} {shape}".strip())
    yield "Answers: " + "; ".join(answers) + "."
    yield ""


def _common_parameters(operations: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The parameters every operation takes (app-wide dependencies such as a header)."""
    named = [{p["name"]: p for p in op.get("parameters", [])} for op in operations]
    if not named:
        return {}
    shared = set(named[0]).intersection(*named[1:])
    return {name: named[0][name] for name in sorted(shared)}


def rest_reference(app: Any | None = None) -> str:
    """The REST reference page: every route, grouped by tag, then every schema."""
    app = app if app is not None else http_app()
    document = app.openapi()
    lines = [
        "# REST reference",
        "",
        f"Generated from the server's OpenAPI document ({document['info']['title']} "
        f"{document['info']['version']}) by `tools/api_reference.py` (`make docs`); "
        "a running server serves the same document at `GET /openapi.json` and Swagger UI at "
        "`/docs`. Examples: [REST API by example](../rest.md).",
        "",
    ]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    documented: set[tuple[str, str]] = set()
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            if method in HTTP_METHODS:
                by_tag.setdefault((op.get("tags") or ["other"])[0], []).append((method, path, op))
                documented.add((method.upper(), path))
    common = _common_parameters([op for ops in by_tag.values() for _, _, op in ops])
    for name, p in common.items():
        kind = schema_type(p.get("schema", {}))
        description = _cell(p.get("description", ""))
        lines += [f"Every route takes the {p['in']} `{name}` ({kind}): {description}.", ""]
    lines += [
        "Every route answers its errors as [ErrorBody](#errorbody), with the status codes",
        "[Errors](../errors.md) lists.",
        "",
    ]
    for tag, operations in by_tag.items():
        lines += [f"## {tag[:1].upper()}{tag[1:]}", ""]
        for method, path, op in operations:
            lines += list(_operation_lines(method, path, op, set(common)))
    others = [(m, p, e) for m, p, e in app_routes(app) if (m, p) not in documented]
    if others:
        lines += [
            "## Routes outside the OpenAPI document",
            "",
            "The Open Inference Protocol's routes ([its page](../v2.md)) and the docs pages.",
            "",
            "| route | what it does |",
            "| --- | --- |",
        ]
        for method, path, endpoint in others:
            doc = (getattr(endpoint, "__doc__", None) or "").strip().split("\n\n")[0]
            lines.append(f"| `{method} {path}` | {_cell(doc)} |")
        lines.append("")
    lines += ["## Schemas", ""]
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        lines += [f"### {name}", ""]
        if schema.get("description"):
            lines += [_cell(schema["description"]), ""]
        lines += properties_table(schema) or [f"Type: {schema_type(schema)}"]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------- gRPC (protos) ---------


def descriptor_set() -> Any:
    """The protos compiled to a ``FileDescriptorSet`` with their comments."""
    import grpc_tools
    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            *PROTO_FILES,
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {', '.join(PROTO_FILES)}")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _comments(file: Any) -> dict[tuple[int, ...], str]:
    """Leading (else trailing) comments by source path."""
    found = {}
    for location in file.source_code_info.location:
        text = location.leading_comments or location.trailing_comments
        if text.strip():
            found[tuple(location.path)] = " ".join(text.split())
    return found


# Field numbers in descriptor.proto: FileDescriptorProto.message_type = 4, .enum_type = 5,
# .service = 6; DescriptorProto.field = 2, .nested_type = 3; ServiceDescriptorProto.method = 2.
_MESSAGE, _ENUM, _SERVICE, _FIELD, _NESTED, _METHOD = 4, 5, 6, 2, 3, 2
_LABELS = {3: "repeated "}


def _field_type(field: Any) -> str:
    from google.protobuf import descriptor_pb2

    if field.type_name:
        name = field.type_name.lstrip(".")
        return f"[{name.rsplit('.', 1)[-1]}](#{_anchor(name.replace('.', ''))})"
    kind = descriptor_pb2.FieldDescriptorProto.Type.Name(field.type)
    return kind.removeprefix("TYPE_").lower()


def _message_lines(
    message: Any, package: str, path: tuple[int, ...], comments: dict, prefix: str = ""
) -> Iterator[str]:
    full = f"{package}.{prefix}{message.name}"
    yield f"### {prefix}{message.name} {{#{_anchor(full.replace('.', ''))}}}"
    yield ""
    if comments.get(path):
        yield comments[path]
        yield ""
    if message.options.map_entry:
        return
    if message.field:
        maps = {
            f"{full}.{nested.name}": nested
            for nested in message.nested_type
            if nested.options.map_entry
        }
        yield "| field | number | type | description |"
        yield "| --- | --- | --- | --- |"
        for i, field in enumerate(message.field):
            entry = maps.get(field.type_name.lstrip("."))
            if entry is not None:
                kind = f"map {_field_type(entry.field[0])} → {_field_type(entry.field[1])}"
            else:
                label = "optional " if field.proto3_optional else _LABELS.get(field.label, "")
                kind = f"{label}{_field_type(field)}"
            note = comments.get((*path, _FIELD, i), "")
            if field.HasField("oneof_index") and not field.proto3_optional:
                note = f"one of `{message.oneof_decl[field.oneof_index].name}`. {note}".strip()
            yield f"| `{field.name}` | {field.number} | {kind} | {_cell(note)} |"
        yield ""
    else:
        yield "No fields."
        yield ""
    for j, nested in enumerate(message.nested_type):
        if not nested.options.map_entry:
            yield from _message_lines(
                nested, package, (*path, _NESTED, j), comments, f"{prefix}{message.name}."
            )


def _enum_lines(enum: Any, package: str, path: tuple[int, ...], comments: dict) -> Iterator[str]:
    yield f"### {enum.name} {{#{_anchor(f'{package}{enum.name}')}}}"
    yield ""
    if comments.get(path):
        yield comments[path]
        yield ""
    yield "| value | number |"
    yield "| --- | --- |"
    for value in enum.value:
        yield f"| `{value.name}` | {value.number} |"
    yield ""


def grpc_reference(files: Any | None = None) -> str:
    """The gRPC reference page: each service's rpcs, then each message, from the protos."""
    files = files if files is not None else descriptor_set()
    lines = [
        "# gRPC reference",
        "",
        "Generated from the `.proto` files under `proto/` by `tools/api_reference.py` "
        "(`make docs`); the server also answers gRPC reflection. Examples: "
        "[gRPC from Python](../grpc.md).",
        "",
    ]
    for file in files.file:
        if file.name not in PROTO_FILES:
            continue
        comments = _comments(file)
        lines += [f"## `{file.package}` (`proto/{file.name}`)", ""]
        for s, service in enumerate(file.service):
            lines += [f"### Service {file.package}.{service.name}", ""]
            if comments.get((_SERVICE, s)):
                lines += [comments[(_SERVICE, s)], ""]
            lines += ["| rpc | request | response | description |", "| --- | --- | --- | --- |"]
            for m, rpc in enumerate(service.method):
                request = ("stream " if rpc.client_streaming else "") + _type_link(rpc.input_type)
                response = ("stream " if rpc.server_streaming else "") + _type_link(rpc.output_type)
                note = comments.get((_SERVICE, s, _METHOD, m), "")
                lines.append(f"| `{rpc.name}` | {request} | {response} | {_cell(note)} |")
            lines.append("")
        for i, message in enumerate(file.message_type):
            lines += list(_message_lines(message, file.package, (_MESSAGE, i), comments))
        for k, enum in enumerate(file.enum_type):
            lines += list(_enum_lines(enum, file.package, (_ENUM, k), comments))
    return "\n".join(lines).rstrip() + "\n"


def _type_link(type_name: str) -> str:
    name = type_name.lstrip(".")
    return f"[{name.rsplit('.', 1)[-1]}](#{_anchor(name.replace('.', ''))})"


def rpc_names_in_protos() -> set[str]:
    """Every rpc the proto files declare, read from their text (for checks)."""
    names: set[str] = set()
    for name in PROTO_FILES:
        names |= set(re.findall(r"^\s*rpc\s+(\w+)\s*\(", (PROTO_ROOT / name).read_text(), re.M))
    return names


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "docs" / "reference"
    out.mkdir(parents=True, exist_ok=True)
    (out / "rest.md").write_text(rest_reference())
    (out / "grpc.md").write_text(grpc_reference())
    print(f"wrote {out / 'rest.md'} and {out / 'grpc.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
