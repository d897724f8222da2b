"""The models in service now, as the registry says, kept loaded between rounds.

The scoring service asks `ServingModels.lineup(conn)` before each ward round, and the web app
before it explains or answers a what-if. The answer is cached by the registry's `generation`
(one single-row read per call), so a promotion or rollback committed by another process — the
CLI, another server — takes effect at the next round: for the next observation, without a
restart.

Each model runs with the alert policy of its active site configuration (`site.registry`), if
it has one: thresholds a hospital set from its own data apply from the next round too.

A model that fails to load (a corrupted artifact, files deleted under a running server) never
takes the place of the one serving: the previous lineup stays in service, the failure is kept
in `problem` and reported once through `on_problem`, and every later call retries, so fixing
the files or rolling back recovers by itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine

from wardwatch.alerts.policy import PolicyBook, load_policy_book
from wardwatch.model import registry
from wardwatch.model.artifact import ArtifactError
from wardwatch.model.risk import RiskModel
from wardwatch.site.config import site_policy_book
from wardwatch.site.registry import active_site_configs


@dataclass(frozen=True)
class Lineup:
    """Who scores: the active model per scope (`hospital`, `unit:<name>`) and the shadows."""

    active: dict[str, RiskModel]
    shadows: dict[str, list[RiskModel]] = field(default_factory=dict)
    books: dict[str, PolicyBook] = field(default_factory=dict)  # version → site's policy

    def policy(self, model: RiskModel, default: PolicyBook) -> PolicyBook:
        """The alert policy `model` runs with: its site configuration's, else `default`."""
        return self.books.get(model.version, default)

    @property
    def hospital(self) -> RiskModel:
        return self.active[registry.HOSPITAL]

    def for_unit(self, unit: str | None) -> RiskModel:
        """The model that scores a stay on `unit`: the unit's own, else the hospital's."""
        return self.active.get(f"unit:{unit}", self.hospital) if unit else self.hospital

    def scope_of(self, unit: str | None) -> str:
        scope = f"unit:{unit}"
        return scope if unit and scope in self.active else registry.HOSPITAL

    @classmethod
    def only(cls, model: RiskModel) -> Lineup:
        """A fixed lineup: one model for everything, no shadows (tests, offline replays)."""
        return cls({registry.HOSPITAL: model})


def lineup_of(conn: Connection, models: RiskModel | ServingModels) -> Lineup:
    """The lineup of either a fixed model or the registry's models in service."""
    return Lineup.only(models) if isinstance(models, RiskModel) else models.lineup(conn)


class ServingModels:
    """The registry's current lineup, reloaded when its generation changes."""

    def __init__(self, on_problem: Callable[[str], None] | None = None) -> None:
        self._generation = -1
        self._lineup: Lineup | None = None
        self._loaded: dict[str, RiskModel] = {}
        self._lock = threading.Lock()
        self.problem: str | None = None
        self.on_problem = on_problem

    @classmethod
    def of(cls, engine: Engine) -> ServingModels:
        """Serving models for `engine`'s registry, the shipped model made active on first use."""
        with engine.begin() as conn:
            registry.ensure_shipped_active(conn)
        serving = cls()
        with engine.connect() as conn:
            serving.lineup(conn)
        return serving

    def lineup(self, conn: Connection) -> Lineup:
        generation = registry.generation(conn)
        with self._lock:
            if generation != self._generation or self._lineup is None:
                self._reload(conn, generation)
            if self._lineup is None:
                raise ArtifactError(self.problem or "no active model: run `wardwatch models list`")
            return self._lineup

    def current(self, engine: Engine) -> Lineup:
        """`lineup` on a connection of its own (for callers outside a transaction)."""
        with engine.connect() as conn:
            return self.lineup(conn)

    def _reload(self, conn: Connection, generation: int) -> None:
        try:
            lineup = self._read(conn)
        except (ArtifactError, registry.RegistryError, OSError) as error:
            message = f"model registry generation {generation} not taken into service: {error}"
            if message != self.problem and self.on_problem is not None:
                self.on_problem(message)
            self.problem = message  # the previous lineup (if any) stays in service
            return
        self._lineup, self._generation, self.problem = lineup, generation, None

    def _read(self, conn: Connection) -> Lineup:
        active: dict[str, RiskModel] = {}
        shadows: dict[str, list[RiskModel]] = {}
        for scope, role, version, _ in registry.slots(conn):
            model = self._model(conn, version)
            if role == registry.ACTIVE:
                active[scope] = model
            else:
                shadows.setdefault(scope, []).append(model)
        if registry.HOSPITAL not in active:
            raise registry.RegistryError("the registry has no active hospital model")
        books = {version: site_policy_book(config, base=load_policy_book())
                 for version, config in active_site_configs(conn).items()}  # fmt: skip
        serving = [*active.values(), *(m for ms in shadows.values() for m in ms)]
        self._loaded = {m.version: m for m in serving}
        return Lineup(active, shadows, books)

    def _model(self, conn: Connection, version: str) -> RiskModel:
        if version in self._loaded:  # a version is immutable: loaded once is loaded for good
            return self._loaded[version]
        return registry.load_entry(registry.get_model(conn, version))
