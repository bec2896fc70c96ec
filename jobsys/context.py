"""The collaborators every service function works with, bundled once per process."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from jobsys.broker.events import EventBus, NullEventBus
from jobsys.config import Settings
from jobsys.signing import Signer
from jobsys.store.db import SessionFactory

if TYPE_CHECKING:
    from jobsys.broker.dispatch import Dispatcher


@dataclass(frozen=True)
class Context:
    """Settings, the database and the broker, handed to service functions.

    Tests build one with SQLite and an in-memory dispatcher; processes build
    the real one with ``jobsys.runtime``.
    """

    settings: Settings
    sessions: SessionFactory
    dispatcher: Dispatcher
    events: EventBus = field(default_factory=NullEventBus)

    @cached_property
    def signer(self) -> Signer:
        return Signer.from_secret(self.settings.secret_key)
