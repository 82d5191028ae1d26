"""Drive a running service through its own OpenAPI document.

Three things every HTTP service's tests share:

- :func:`sample`: a minimal valid value for a schema of the document (a request body that passes
  validation, so a route's answer is about auth, not about the body);
- :func:`assert_auth_enforced`: every operation the document does not mark public (``security:
  []``) answers 401 to a request without a token and to one with a forged token;
- :func:`fuzz`: schemathesis generates valid and invalid requests for every operation from the
  document and checks the answers: never a 5xx (nor an unhandled exception); status, content
  type, headers and body as documented; invalid input refused with a 4xx.

The app runs in the test's event loop (its Mongo and Kafka clients belong to it). Hypothesis is
synchronous, so :func:`fuzz` runs in a worker thread and hands each request back to the loop.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@dataclass(frozen=True)
class Operation:
    """One operation of the document: ``POST /teams/{team_id}``."""

    method: str
    template: str
    definition: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.method.upper()} {self.template}"

    @property
    def path_names(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.template)


def operations(spec: Mapping[str, Any]) -> Iterator[Operation]:
    for template, item in spec["paths"].items():
        for method, definition in item.items():
            if method in METHODS:
                yield Operation(method, template, definition)


def prefix(spec: Mapping[str, Any]) -> str:
    """Where the document's paths live (a mounted FastAPI app names its mount in ``servers``)."""
    return str(spec.get("servers", [{"url": ""}])[0]["url"]).rstrip("/")


def is_public(operation: Operation) -> bool:
    """An operation documented as open to anyone: ``security: []`` (or an empty alternative).

    Saying nothing is not enough: a route that forgot its bearer dependency declares no security
    either, and must fail the checks below rather than be skipped.
    """
    security = operation.definition.get("security")
    return security is not None and (not security or {} in security)


def sample(schema: Mapping[str, Any], spec: Mapping[str, Any]) -> Any:
    """A minimal valid value for a JSON schema of the OpenAPI document."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return sample(spec["components"]["schemas"][name], spec)
    if "anyOf" in schema:
        return sample(next(s for s in schema["anyOf"] if s.get("type") != "null"), spec)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: sample(props[name], spec) for name in schema.get("required", [])}
    if kind == "string":
        return "x" * max(1, schema.get("minLength", 1))
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    return {}


def request_for(
    spec: Mapping[str, Any], operation: Operation, ids: Mapping[str, str]
) -> tuple[str, str, dict[str, str], Any]:
    """(method, url, headers, json body) of a minimal valid request; path values from ``ids``."""
    unknown = set(operation.path_names) - set(ids)
    assert not unknown, f"no test value for {unknown} in {operation.template}: add one to `ids`"
    url = prefix(spec) + operation.template.format(**ids)
    headers = {
        p["name"]: str(sample(p.get("schema", {}), spec))
        for p in operation.definition.get("parameters", [])
        if p["in"] == "header" and p.get("required")
    }
    content = operation.definition.get("requestBody", {}).get("content", {}).get("application/json", {})
    body = sample(content["schema"], spec) if "schema" in content else None
    return operation.method.upper(), url, headers, body


async def assert_auth_enforced(
    api: httpx.AsyncClient,
    spec: Mapping[str, Any],
    ids: Mapping[str, str],
    forged: Mapping[str, str],
) -> list[Operation]:
    """Every non-public operation answers 401 ``UNAUTHORIZED`` without a token and with ``forged``.

    ``forged`` is a well-formed bearer token signed with another key. Each request is otherwise
    valid (path values from ``ids``, required headers and a minimal body), so the 401 is about the
    token and nothing else. The document must say so too: a security requirement on each of them.
    Returns the operations that were checked.
    """
    checked = []
    for operation in operations(spec):
        if is_public(operation):
            continue
        assert operation.definition.get("security", spec.get("security")), (
            f"{operation.label}: the document does not say it needs a token"
        )
        method, url, headers, body = request_for(spec, operation, ids)
        for credentials in ({}, dict(forged)):
            response = await api.request(method, url, json=body, headers={**headers, **credentials})
            who = "forged token" if credentials else "no token"
            assert response.status_code == 401, (operation.label, who, response.status_code, response.text)
            assert response.json()["code"] == "UNAUTHORIZED", (operation.label, who, response.text)
            assert response.headers["www-authenticate"] == "Bearer", (operation.label, who)
        checked.append(operation)
    return checked


# --------------------------------------------------------------------------- schemathesis


@dataclass(frozen=True)
class FuzzRun:
    """What :func:`fuzz` did: requests per operation, answers per status, and what went wrong.

    ``accepted`` holds the JSON bodies of the 2xx answers by operation, for checks on what the
    service did with them. ``unsatisfiable`` lists the runs where no request of that kind exists
    (invalid input for an operation whose only input is a free-form string in the path, say).
    """

    calls: dict[str, int]
    statuses: dict[int, int]
    accepted: dict[str, list[Any]]
    failures: list[str]
    unsatisfiable: list[str]


async def fuzz(
    api: httpx.AsyncClient,
    spec: dict[str, Any],
    headers: Mapping[str, str],
    known: Mapping[str, str | Sequence[str]],
    *,
    max_examples: int = 15,
) -> FuzzRun:
    """Run schemathesis against every operation of ``spec``, answered by ``api`` in this loop.

    Each operation is tested in positive and negative mode, first with generated path values, then
    (when it has path parameters) with the values of objects that exist (``known``; a list of
    values: any of them), so generated bodies and query strings reach the code behind the lookup.
    Every request carries ``headers`` (a valid token): tokens are :func:`assert_auth_enforced`'s
    business, the examples here go to the data. Deletions run last, so the known objects exist
    for every other operation.
    """
    loop = asyncio.get_running_loop()
    return await asyncio.to_thread(_fuzz, loop, api, spec, dict(headers), dict(known), max_examples)


def _fuzz(
    loop: asyncio.AbstractEventLoop,
    api: httpx.AsyncClient,
    spec: dict[str, Any],
    headers: dict[str, str],
    known: dict[str, str | Sequence[str]],
    max_examples: int,
) -> FuzzRun:
    schema = schemathesis.openapi.from_dict(spec, config=schemathesis.Config())
    schema.config.generation.update(with_security_parameters=False)  # ours, never generated ones
    base_url = str(api.base_url).rstrip("/") + prefix(spec)
    calls: dict[str, int] = {}
    statuses: dict[int, int] = {}
    accepted: dict[str, list[Any]] = {}
    failures: list[str] = []
    unsatisfiable: list[str] = []

    def send(case: schemathesis.Case) -> None:
        kwargs = case.as_transport_kwargs(base_url=base_url, headers=headers)
        try:
            response = asyncio.run_coroutine_threadsafe(_send(api, kwargs), loop).result(timeout=60)
        except Exception as exc:
            # the app raised instead of answering: a server would have sent a 500
            curl = case.as_curl_command(headers=headers, base_url=base_url)
            raise AssertionError(f"unhandled {type(exc).__name__} (a 500): {exc}\n{curl}") from exc
        calls[case.operation.label] = calls.get(case.operation.label, 0) + 1
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if (
            response.is_success
            and response.content
            and response.headers.get("content-type") == "application/json"
        ):
            accepted.setdefault(case.operation.label, []).append(response.json())
        case.validate_response(response, checks=CHECKS, headers=headers, transport_kwargs=kwargs)

    every = [result.ok() for result in schema.get_all_operations()]
    for operation in sorted(every, key=lambda o: o.method.lower() == "delete"):
        names = [p.name for p in operation.path_parameters if p.name in known]
        choices = [[v] if isinstance(v, str) else list(v) for v in (known[name] for name in names)]
        fixed_values = [dict(zip(names, values, strict=True)) for values in itertools.product(*choices)]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for fixed in (None, fixed_values) if names else (None,):
                strategy = (
                    st.one_of([operation.as_strategy(generation_mode=mode, path_parameters=f) for f in fixed])
                    if fixed
                    else operation.as_strategy(generation_mode=mode)
                )

                @settings(
                    max_examples=max_examples,
                    derandomize=True,
                    database=None,
                    deadline=None,
                    suppress_health_check=list(HealthCheck),
                    phases=[Phase.explicit, Phase.generate, Phase.shrink],
                    report_multiple_bugs=False,
                )
                @given(case=strategy)
                def run(case: schemathesis.Case) -> None:
                    send(case)

                where = f"{operation.label} ({mode.value}, {'known' if fixed else 'generated'} ids)"
                try:
                    run()
                except Unsatisfiable:
                    unsatisfiable.append(where)
                except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup is a base group
                    failures.append(f"{where}:\n{_describe(exc)}")
    return FuzzRun(calls, statuses, accepted, failures, unsatisfiable)


def _describe(exc: BaseException) -> str:
    """A failure with what explains it: the app's traceback, or each failure of a group."""
    text = str(exc)
    if exc.__cause__ is not None:
        text += "\n" + "".join(traceback.format_exception(exc.__cause__)[-12:])
    if isinstance(exc, BaseExceptionGroup) and not str(exc).startswith("Schemathesis found"):
        text += "".join(f"\n- {_describe(e)}" for e in exc.exceptions)
    return text


async def _send(api: httpx.AsyncClient, kwargs: dict[str, Any]) -> httpx.Response:
    """A request serialized by schemathesis (``requests``' keyword arguments) sent with httpx."""
    data = kwargs.get("data")
    headers = dict(kwargs.get("headers") or {})
    if kwargs.get("cookies"):
        headers["cookie"] = "; ".join(f"{k}={v}" for k, v in kwargs["cookies"].items())
    return await api.request(
        kwargs["method"],
        kwargs["url"],
        params=kwargs.get("params"),
        headers=headers,
        json=kwargs.get("json"),
        content=data if isinstance(data, (bytes, str)) else None,
        data=data if isinstance(data, Mapping) else None,
        files=kwargs.get("files"),
    )
