"""The shared model's JSON: every field, and a round trip through ``from_json``."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from pullprint.model import (
    Job,
    JobState,
    PlanStep,
    StorageKind,
    Transaction,
    TransactionStatus,
    assemble,
)

TX = Transaction(
    7, "j-1", "alice", "printer-usage", Decimal("0.30"), "EUR", TransactionStatus.COMPLETED, 3,
    account="lab",
)  # fmt: skip
JOB = Job(
    "j-1", "alice", "report.pdf", 2, {"sides": "two-sided-long-edge"}, 3, 1024, "ab" * 32,
    "PullPrint", "node1", 42, "urn:uuid:x", "application/pdf", JobState.COMPLETED,
    state_reason="done", printer="printer1", impressions=6, created_at=1.5, updated_at=2.5,
    transaction=TX, release_options={"print-color-mode": "monochrome"}, released_by="alice",
    account="lab", storage=StorageKind.NODE, download_url="https://x/y",
    finishing=(PlanStep("sides", "two-sided-long-edge", "printer", "sides"),),
)  # fmt: skip


def test_to_json_has_every_field_and_round_trips() -> None:
    for model in (TX, JOB):
        data = model.to_json()
        assert list(data) == [f.name for f in dataclasses.fields(model)]
    assert Transaction.from_json(TX.to_json()) == TX
    assert Job.from_json(JOB.to_json()) == JOB


def test_to_json_hands_out_copies_of_the_mutable_values() -> None:
    data = JOB.to_json()
    data["options"]["sides"] = "one-sided"
    data["release_options"].clear()
    assert JOB.options == {"sides": "two-sided-long-edge"}
    assert JOB.release_options == {"print-color-mode": "monochrome"}


def test_assemble_equals_the_constructor_defaults_included() -> None:
    """``assemble`` (the cloud's rows to models, without the generated ``__init__``) gives what
    the constructor gives: with every field, and with the required ones only (the rest take
    their defaults; a default factory makes a new value each time)."""
    for model in (TX, JOB, JOB.finishing[0]):
        values = {f.name: getattr(model, f.name) for f in dataclasses.fields(model)}
        built = assemble(type(model), values)
        assert built == model and type(built) is type(model)
        assert built.__dict__ == model.__dict__
    required = {
        f.name: getattr(JOB, f.name)
        for f in dataclasses.fields(Job)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    first, second = assemble(Job, required), assemble(Job, required)
    assert first == Job(**required) and first.__dict__ == Job(**required).__dict__
    assert first.release_options == {} and first.release_options is not second.release_options
