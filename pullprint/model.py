"""The typed job model shared by every part of pullprint.

One job has one identity from end to end: ``Job.uuid``, made by the backend when it first sees the
job. The CUPS job-id and job-uuid are kept only as references back into CUPS.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, TypeVar


class JobState(enum.StrEnum):
    """The life of a job: held -> released -> claimed -> printing -> an end state."""

    HELD = "held"
    RELEASED = "released"
    CLAIMED = "claimed"
    PRINTING = "printing"
    COMPLETED = "completed"
    CANCELED = "canceled"
    FAILED = "failed"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({JobState.COMPLETED, JobState.CANCELED, JobState.FAILED, JobState.EXPIRED})
MAX_JOBS_PAGE = 1000  # jobs in one page of a listing (GET /api/v1/jobs?limit=) at most


class TransactionStatus(enum.StrEnum):
    """Status of a shadow ledger transaction (PaperCut-style: pending until the printer is done)."""

    PENDING = "pending"
    COMPLETED = "completed"
    CANCELED = "canceled"


class ReleaseMode(enum.StrEnum):
    """How jobs of a queue, or jobs at a printer, are released (as SavaPage defines them)."""

    HOLD = "hold"  # held until released (default)
    DIRECT = "direct"  # printed at once where the owner authenticates within N s of printing
    FAST = "fast"  # authenticating at a printer releases all the owner's held jobs
    AUTOMATIC = "automatic"  # the queue releases every job to a fixed printer: no hold


class StorageKind(enum.StrEnum):
    """Where a job's document is kept while it waits."""

    CLOUD = "cloud"  # in the cloud's folder, encrypted with its own key
    NODE = "node"  # on the origin node only; the cloud keeps metadata


class EventKind(enum.StrEnum):
    """What the cloud tells a node through the long-poll."""

    RELEASED = "released"  # a job was released to one of the node's printers
    CANCELED = "canceled"  # a job submitted through the node's CUPS was canceled in the cloud
    FINISHED = "finished"  # a job submitted through the node's CUPS reached an end state


_T = TypeVar("_T")


def assemble(cls: type[_T], values: dict[str, Any]) -> _T:
    """``cls(**values)`` for a frozen dataclass (without slots), without its generated
    ``__init__`` (one ``object.__setattr__`` per field: a fifth of making a Job of a database
    row when the cloud lists 100 jobs). For values read back from the cloud's own database,
    already of their fields' types; a field not in ``values`` takes its default. The result is
    equal to ``cls(**values)`` (a test checks each model)."""
    obj = object.__new__(cls)
    state = obj.__dict__
    for name, default, made in _defaults(cls):
        state[name] = default() if made else default
    state.update(values)
    return obj


def _defaults(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """The fields of ``cls`` that have a default: (name, value or factory, is a factory)."""
    found = _DEFAULTS.get(cls)
    if found is None:
        out: list[tuple[str, Any, bool]] = []
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out.append((f.name, f.default, False))
            elif f.default_factory is not dataclasses.MISSING:
                out.append((f.name, f.default_factory, True))
        found = _DEFAULTS[cls] = tuple(out)
    return found


_DEFAULTS: dict[type, tuple[tuple[str, Any, bool], ...]] = {}


def _fields_of(obj: Any) -> dict[str, Any]:
    """A dataclass's fields by name, values as they are (``asdict`` without its deep copy,
    which made ``Job.to_json`` the slowest part of listing 100 jobs): the caller converts the
    values that are not JSON as they stand and copies the mutable ones it hands out. The
    instance's ``__dict__`` holds exactly its fields (no slots, no other attributes; a test
    checks each model), and copying it is a third of the cost of reading them one by one."""
    return dict(obj.__dict__)


@dataclass(frozen=True)
class JobSubmission:
    """What the backend registers: the job as CUPS handed it over."""

    uuid: str
    owner: str
    title: str
    copies: int
    options: dict[str, str]
    pages: int
    size: int
    sha256: str
    queue: str
    origin: str  # the node whose CUPS took the job
    cups_job_id: int
    cups_job_uuid: str
    document_format: str = "application/pdf"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSubmission:
        return cls(
            uuid=str(data["uuid"]),
            owner=str(data["owner"]),
            title=str(data["title"]),
            copies=int(data["copies"]),
            options={str(k): str(v) for k, v in dict(data.get("options", {})).items()},
            pages=int(data["pages"]),
            size=int(data["size"]),
            sha256=str(data["sha256"]),
            queue=str(data["queue"]),
            origin=str(data["origin"]),
            cups_job_id=int(data["cups_job_id"]),
            cups_job_uuid=str(data["cups_job_uuid"]),
            document_format=str(data.get("document_format", "application/pdf")),
        )


@dataclass(frozen=True)
class Transaction:
    """A personal-account ledger entry ("Printer Usage") linked to one print-out."""

    id: int
    job_uuid: str
    user: str
    kind: str
    amount: Decimal  # in currency units; stored as integer minor units
    currency: str
    status: TransactionStatus
    pages: int
    account: str = ""  # the shared account charged; empty: the owner's personal account

    def summary(self) -> str:
        """The transaction summary shown with the print-out: cost data only once completed."""
        if self.status is TransactionStatus.COMPLETED:
            return f"Printer Usage: {self.pages} pages, {self.amount} {self.currency} (completed)"
        return f"Printer Usage ({self.status.value})"

    def to_json(self) -> dict[str, Any]:
        data = _fields_of(self)
        data["amount"] = str(self.amount)
        data["status"] = self.status.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Transaction:
        return cls(
            id=int(data["id"]),
            job_uuid=str(data["job_uuid"]),
            user=str(data["user"]),
            kind=str(data["kind"]),
            amount=Decimal(str(data["amount"])),
            currency=str(data["currency"]),
            status=TransactionStatus(data["status"]),
            pages=int(data["pages"]),
            account=str(data.get("account") or ""),
        )


@dataclass(frozen=True)
class Job:
    """A job as the cloud knows it."""

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
    state: JobState
    state_reason: str = ""
    printer: str | None = None
    impressions: int | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    transaction: Transaction | None = None
    release_options: dict[str, str] = field(default_factory=dict)  # changes made at release
    released_by: str = ""  # who released it: the owner, a delegate, an operator, a mode
    account: str = ""  # the shared account charged; empty: the owner's personal account
    storage: StorageKind = StorageKind.CLOUD
    download_url: str | None = None  # signed, single use; only in a claim's answer
    finishing: tuple[PlanStep, ...] = ()  # the finishing plan the node made for its printer

    def to_json(self) -> dict[str, Any]:
        data = _fields_of(self)
        data["options"] = dict(self.options)
        data["release_options"] = dict(self.release_options)
        data["state"] = self.state.value
        data["transaction"] = self.transaction.to_json() if self.transaction else None
        data["storage"] = self.storage.value
        data["finishing"] = [s.to_json() for s in self.finishing]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        sub = JobSubmission.from_json(data)
        tx = data.get("transaction")
        impressions = data.get("impressions")
        return cls(
            **asdict(sub),
            state=JobState(data["state"]),
            state_reason=str(data.get("state_reason") or ""),
            printer=data.get("printer"),
            impressions=int(impressions) if impressions is not None else None,
            created_at=float(data.get("created_at", 0.0)),
            updated_at=float(data.get("updated_at", 0.0)),
            transaction=Transaction.from_json(tx) if tx else None,
            release_options={
                str(k): str(v) for k, v in dict(data.get("release_options") or {}).items()
            },
            released_by=str(data.get("released_by") or ""),
            account=str(data.get("account") or ""),
            storage=StorageKind(data.get("storage") or StorageKind.CLOUD.value),
            download_url=data.get("download_url") or None,
            finishing=tuple(PlanStep.from_json(s) for s in data.get("finishing") or ()),
        )


@dataclass(frozen=True)
class PlanStep:
    """One option of a job's finishing plan as the user sees it: where it is carried out
    (``printer``, ``pdf``, ``pjl``, ``document``, ``skipped``) and how."""

    option: str
    value: str
    where: str
    how: str

    def to_json(self) -> dict[str, str]:
        return {"option": self.option, "value": self.value, "where": self.where, "how": self.how}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlanStep:
        return cls(str(data["option"]), str(data["value"]), str(data["where"]), str(data["how"]))


@dataclass(frozen=True)
class Discovered:
    """A printer announced with DNS-SD on a node's network, resolved to an address."""

    name: str
    uri: str
    host: str = ""
    address: str = ""
    port: int = 0
    service: str = ""
    make_and_model: str = ""
    location: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Discovered:
        return cls(
            name=str(data["name"]),
            uri=str(data["uri"]),
            host=str(data.get("host", "")),
            address=str(data.get("address", "")),
            port=int(data.get("port", 0)),
            service=str(data.get("service", "")),
            make_and_model=str(data.get("make_and_model", "")),
            location=str(data.get("location", "")),
        )


@dataclass(frozen=True)
class Printer:
    """A printer the cloud can release to, served by one node."""

    name: str
    uri: str
    node: str
    price_per_page: Decimal = Decimal("0")
    location: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["price_per_page"] = str(self.price_per_page)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Printer:
        return cls(
            name=str(data["name"]),
            uri=str(data["uri"]),
            node=str(data["node"]),
            price_per_page=Decimal(str(data.get("price_per_page", "0"))),
            location=str(data.get("location", "")),
        )


@dataclass(frozen=True)
class NodeEvent:
    """One entry of a node's event stream (long-poll), ordered by ``id``."""

    id: int
    kind: EventKind
    job_uuid: str
    printer: Printer | None = None
    options: dict[str, str] = field(default_factory=dict)
    cups_job_id: int = 0
    cups_job_uuid: str = ""
    state: JobState | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "job_uuid": self.job_uuid,
            "printer": self.printer.to_json() if self.printer else None,
            "options": dict(self.options),
            "cups_job_id": self.cups_job_id,
            "cups_job_uuid": self.cups_job_uuid,
            "state": self.state.value if self.state else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeEvent:
        printer = data.get("printer")
        state = data.get("state")
        return cls(
            id=int(data["id"]),
            kind=EventKind(data["kind"]),
            job_uuid=str(data["job_uuid"]),
            printer=Printer.from_json(printer) if printer else None,
            options={str(k): str(v) for k, v in dict(data.get("options") or {}).items()},
            cups_job_id=int(data.get("cups_job_id") or 0),
            cups_job_uuid=str(data.get("cups_job_uuid") or ""),
            state=JobState(state) if state else None,
        )


@dataclass(frozen=True)
class PrintResult:
    """How a delivery ended at the printer."""

    state: JobState  # COMPLETED, CANCELED or FAILED
    impressions: int | None
    sheets: int | None = None
    printer_job_id: int | None = None
    reason: str = ""
