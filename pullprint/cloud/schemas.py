"""The request and answer bodies of the API as pydantic models, for its OpenAPI document only.

The handlers read raw JSON and check it with ``validate`` (strict, with messages naming each
limit); these models describe the same bodies so ``/openapi.json`` is true to them and tools
(schemathesis) can generate requests. ``request_body(Model)`` is the ``openapi_extra`` of an
endpoint; ``install(app)`` adds the models to the document's components.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

_NAME = Field(min_length=1, max_length=64, pattern=r"^[^/]+$")
_PIN = Field(pattern=r"^[0-9]{4,8}$")
_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_PRICE = r"^[0-9]+(\.[0-9]{1,6})?$"
Mode = Literal["hold", "direct", "fast", "automatic"]
State = Literal[
    "held", "released", "claimed", "printing", "completed", "canceled", "failed", "expired"
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Error(BaseModel):
    detail: str


class Health(BaseModel):
    status: str


Role = Literal["user", "operator", "admin"]
_PASSWORD = Field(min_length=8, max_length=256)
_CARD = Field(min_length=1, max_length=100, pattern=r"^(0x)?[0-9A-Fa-f:\- ]+$")


class UserIn(_Body):
    name: str = _NAME
    pin: str | None = _PIN
    password: str | None = _PASSWORD
    role: Role = "user"
    display_name: str = Field("", max_length=255)
    email: str = Field("", max_length=255)


class UserPutIn(_Body):
    role: Role | None = None
    pin: str | None = _PIN
    password: str | None = _PASSWORD
    display_name: str = Field("", max_length=255)
    email: str = Field("", max_length=255)
    disabled: bool = False


class PlanStepIn(_Body):
    option: str = Field(min_length=1, max_length=128)
    value: str = Field(max_length=1024)
    where: Literal["printer", "pdf", "pjl", "document", "skipped"]
    how: str = Field(max_length=1024)


class PlanIn(_Body):
    steps: list[PlanStepIn] = Field(max_length=64)


class DiscoveredIn(_Body):
    name: str = Field(min_length=1, max_length=255)
    uri: str = Field(max_length=1024, pattern=r"^ipps?://\S+$")
    host: str = Field("", max_length=255)
    address: str = Field("", max_length=64)
    port: int = Field(0, ge=0, le=65535)
    service: str = Field("", max_length=32)
    make_and_model: str = Field("", max_length=255)
    location: str = Field("", max_length=255)


class DiscoveredReportIn(_Body):
    printers: list[DiscoveredIn] = Field(max_length=500)


class SignInIn(_Body):
    name: str = _NAME
    password: str = Field(min_length=1, max_length=256)


class SessionOut(BaseModel):
    token: str
    user: str
    role: str
    expires_at: float


class PinIn(_Body):
    pin: str = _PIN


class PasswordChangeIn(_Body):
    current: str = Field(min_length=1, max_length=256)
    new: str = _PASSWORD


class CardIn(_Body):
    card: str = _CARD


class TerminalIn(_Body):
    name: str = _NAME
    printer: str = _NAME
    methods: list[Literal["card", "pin", "username"]] = Field(min_length=1, max_length=3)


class TerminalSignInIn(_Body):
    card: str | None = _CARD
    user: str | None = _NAME
    pin: str | None = _PIN


class UserOut(BaseModel):
    name: str


class PrinterBody(_Body):
    name: str = _NAME
    uri: str = Field(max_length=1024, pattern=r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$")
    node: str = _NAME
    price_per_page: str = Field("0", pattern=_PRICE)
    location: str = Field("", max_length=255)


class Printers(BaseModel):
    printers: list[PrinterBody]


class JobSubmissionIn(_Body):
    uuid: str = Field(pattern=_UUID)
    owner: str = _NAME
    title: str = Field("", max_length=1024)
    copies: int = Field(ge=1, le=9999)
    options: dict[str, str] = Field(default_factory=dict, max_length=100)
    pages: int = Field(ge=0, le=1_000_000)
    size: int = Field(ge=0, le=2 * 1024**3)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    queue: str = Field(min_length=1, max_length=127)
    origin: str = _NAME
    cups_job_id: int = Field(ge=0, le=2**31 - 1)
    cups_job_uuid: str = Field("", max_length=128)
    document_format: str = Field("application/pdf", max_length=127)


class TransactionOut(BaseModel):
    id: int
    job_uuid: str
    user: str
    kind: str
    amount: str = Field(description="decimal string in currency units, never a float")
    currency: str
    status: Literal["pending", "completed", "canceled"]
    pages: int
    account: str = Field("", description="shared account charged; empty: the owner's own")


class JobOut(BaseModel):
    uuid: str
    owner: str
    title: str
    copies: int
    options: dict[str, str]
    pages: int
    size: int
    sha256: str
    queue: str
    origin: str
    cups_job_id: int
    cups_job_uuid: str
    document_format: str
    state: State
    state_reason: str
    printer: str | None
    impressions: int | None
    created_at: float
    updated_at: float
    transaction: TransactionOut | None
    release_options: dict[str, str]
    released_by: str
    account: str
    storage: Literal["cloud", "node"]
    download_url: str | None = Field(None, description="signed, single use; only when claimed")
    finishing: list[PlanStepIn] = Field(
        default_factory=list, description="the plan the node made for its printer"
    )


class Jobs(BaseModel):
    jobs: list[JobOut]
    next: str | None = Field(
        description="null on the last page, else the `after` that asks for the next page"
    )


class ReleaseOptions(_Body):
    """Release changes; anything else is refused with 422."""

    copies: str | None = Field(None, pattern=r"^[0-9]{1,3}$")
    sides: Literal["one-sided", "two-sided-long-edge", "two-sided-short-edge"] | None = None
    print_color_mode: Literal["monochrome", "color", "auto"] | None = Field(
        None, alias="print-color-mode"
    )
    number_up: Literal["1", "2", "4", "6", "9", "16"] | None = Field(None, alias="number-up")
    media_source: str | None = Field(None, alias="media-source", max_length=32)
    media: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class ReleaseIn(_Body):
    user: str = _NAME
    pin: str = _PIN
    printer: str = _NAME
    options: ReleaseOptions | None = None
    account: str | None = Field(None, max_length=64, description="owner's shared account")


class OperatorReleaseIn(_Body):
    printer: str = _NAME
    operator: str = _NAME


class CancelIn(_Body):
    user: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[^/]+$")
    reason: str = Field("", max_length=1024)


class AssignIn(_Body):
    owner: str = Field(min_length=1, max_length=64, pattern=r"^[^/]+$")


class ProgressIn(_Body):
    state: Literal["printing", "completed", "canceled", "failed"]
    impressions: int | None = Field(None, ge=0, le=100_000_000)
    sheets: int | None = Field(None, ge=0, le=100_000_000)
    reason: str = Field("", max_length=1024)


class EmptyIn(_Body):
    pass


class EventOut(BaseModel):
    id: int
    kind: Literal["released", "canceled", "finished"]
    job_uuid: str
    printer: PrinterBody | None
    options: dict[str, str]
    cups_job_id: int
    cups_job_uuid: str
    state: State | None


class Events(BaseModel):
    events: list[EventOut]
    cursor: int


class DownloadUrl(BaseModel):
    download_url: str
    expires_in: int


class AuthenticateIn(_Body):
    user: str = _NAME
    pin: str = _PIN


class AuthenticationOut(BaseModel):
    user: str
    printer: str
    mode: Mode
    released: list[JobOut]
    held: list[JobOut]


class ReleaseModeIn(_Body):
    mode: Mode
    printer: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[^/]+$")
    direct_seconds: int = Field(30, ge=1, le=3600)


class ReleasePolicyOut(BaseModel):
    scope: Literal["queue", "printer"]
    name: str
    mode: Mode
    printer: str | None
    direct_seconds: int


class ReleasePolicies(BaseModel):
    policies: list[ReleasePolicyOut]


class GroupIn(_Body):
    members: list[str] = Field(max_length=1000)


class GroupOut(BaseModel):
    name: str
    members: list[str]


class DelegationIn(_Body):
    kind: Literal["user", "group"]
    delegate: str = _NAME
    account: str = Field("", max_length=64, description="empty: the owner's personal account")


class DelegationOut(BaseModel):
    owner: str
    kind: Literal["user", "group"]
    delegate: str
    account: str


class Delegations(BaseModel):
    delegations: list[DelegationOut]


class SweepOut(BaseModel):
    expired: int
    documents_deleted: int
    nonces_pruned: int


_REQUEST_MODELS: list[type[BaseModel]] = []


def request_body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """The ``openapi_extra`` saying an endpoint takes ``model`` as its JSON body."""
    if model not in _REQUEST_MODELS:
        _REQUEST_MODELS.append(model)
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": ref}}}}


def query(*params: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """The ``openapi_extra`` for query parameters the handler reads itself."""
    return {
        "parameters": [
            {"name": n, "in": "query", "required": False, "schema": s} for n, s in params
        ]
    }


def answers(model: type[BaseModel] | None, status: int = 200) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of an endpoint: ``model`` at ``status``, errors as ``Error``."""
    out: dict[int | str, dict[str, Any]] = {
        code: {"model": Error} for code in (400, 401, 403, 404, 409, 413, 422)
    }
    if model is not None:
        out[status] = {"model": model}
    return out


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` add the request models, the bearer scheme and global security."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {})
        found = components.setdefault("schemas", {})
        for model in _REQUEST_MODELS:
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in body.pop("$defs", {}).items():
                found.setdefault(name, sub)
            found[model.__name__] = body
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        schema["security"] = [{"bearer": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
