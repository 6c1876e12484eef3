"""Workspace: a project folder with a ``modelyard.toml``, wired to its back ends.

Building a Workspace reads nothing; the config loads and the stores connect on first
use, so a Workspace is cheap to create and print.

Opening never creates a workspace: a mistyped folder that silently became a new, empty
workspace answered "0 models", which reads as lost data. ``Workspace.init(path)`` and
``Workspace(path, create=True)`` create one; see ``Workspace`` for what counts as one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from modelyard._files import atomic_write_text
from modelyard.config import CONFIG_FILE, SETTINGS, Config, load_config, render_template
from modelyard.errors import ConfigError, ModelyardError, WorkspaceNotFoundError

# Each back end and capability is imported where it is first used: a workspace that
# only serves a model never loads the feature store (DuckDB) or the tracking code.
if TYPE_CHECKING:
    from modelyard.backends.artifacts import ArtifactStore
    from modelyard.backends.executors import Executor
    from modelyard.backends.metadata import MetadataStore
    from modelyard.backends.online import OnlineStore
    from modelyard.backends.predictions import PredictionLog
    from modelyard.features import FeatureStore
    from modelyard.monitoring import Alerting
    from modelyard.registry import Registry
    from modelyard.remote import TeamClient
    from modelyard.tracking import Run, Tracking

__all__ = ["Workspace"]

STATE_DIR = ".modelyard"
MAX_DELAY_LIMIT_S = 3600  # a log that ships less often than hourly is not monitoring
_DEFAULT_METADATA_URL = next(s.default for s in SETTINGS if s.key == "metadata.url")
_DEFAULT_ONLINE_URL = next(s.default for s in SETTINGS if s.key == "online.url")


def _sqlite_path(url: str, root: Path) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL (relative to ``root``); None if not a file."""
    prefix = "sqlite:///"
    database = url[len(prefix) :] if url.startswith(prefix) else ""
    if database in ("", ":memory:"):
        return None
    path = Path(database)
    return path if path.is_absolute() else root / path


def _is_workspace(config: Config) -> bool:
    """The rule in ``Workspace``'s docstring."""
    root = config.root
    if not root.is_dir():
        return False
    if (root / CONFIG_FILE).exists() or (root / STATE_DIR).is_dir():
        return True
    if config.source("metadata.url") == "default":
        return False
    url = config.value("metadata.url")
    if not url.startswith("sqlite:"):
        return True  # a server database, configured by env or argument (a container)
    path = _sqlite_path(url, root)
    return path is None or path.is_file()  # in memory, or an existing database file


class Workspace:
    """Open a project folder: ``ws = Workspace("path")``; settings may be overridden by keyword
    (``metadata_url="postgresql://…"``), which beats the environment and the file.

    Opening never creates one. On first use (the config is read), a folder is a workspace
    if it holds ``modelyard.toml`` or ``.modelyard/``, or if ``metadata.url`` is set by the
    environment or an argument to a server database (``postgresql://…``, as in a container
    configured by environment alone) or to an existing SQLite file; anything else raises
    ``WorkspaceNotFoundError``. Likewise a SQLite ``metadata.url`` naming a file that does
    not exist is refused (``ConfigError``), except the default one inside the workspace.
    ``create=True`` (or ``Workspace.init``) writes ``modelyard.toml`` and creates the
    database on first use instead.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] = ".",
        *,
        create: bool = False,
        environ: Mapping[str, str] | None = None,
        **settings: Any,
    ) -> None:
        self.root = Path(root)
        self.create = create
        self._environ = environ
        self._settings = settings
        self._config: Config | None = None
        self._metadata: MetadataStore | None = None
        self._artifacts: ArtifactStore | None = None
        self._online: OnlineStore | None = None
        self._predictions: PredictionLog | None = None
        self._executor: Executor | None = None
        self._alerting: Alerting | None = None
        self._keys: dict[str, bytes] = {}
        self._remote: TeamClient | None = None

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    @property
    def environ(self) -> Mapping[str, str] | None:
        """The environment given to ``Workspace(environ=…)``; None means ``os.environ``."""
        return self._environ

    @classmethod
    def init(
        cls,
        root: str | os.PathLike[str] = ".",
        *,
        environ: Mapping[str, str] | None = None,
        **settings: Any,
    ) -> Workspace:
        """Create ``root`` with a commented ``modelyard.toml`` (kept if it already exists)."""
        _write_config_file(Path(root))
        return cls(root, create=True, environ=environ, **settings)

    # -- wiring --------------------------------------------------------------------------
    @property
    def config(self) -> Config:
        """The settings; reading them first checks that the folder is a workspace."""
        if self._config is None:
            if self.create:
                _write_config_file(self.root)
            config = load_config(self.root, environ=self._environ, **self._settings)
            if not self.create and not _is_workspace(config):
                where = str(self.root)
                full = "" if where == str(config.root) else f" ({config.root})"
                raise WorkspaceNotFoundError(
                    f"no modelyard workspace at {where!r}{full}; "
                    f"run 'modelyard init {where}' (in Python: Workspace.init({where!r}))"
                )
            self._config = config
        return self._config

    @property
    def alerting(self) -> Alerting:
        """The alert rules and sinks declared in ``modelyard.toml`` (``[alerts]``)."""
        if self._alerting is None:
            self._alerting = cast("Alerting", self.config.table("alerts"))
        return self._alerting

    @property
    def state_dir(self) -> Path:
        return self.config.root / STATE_DIR

    def _resolve_sqlite(self, url: str) -> str:
        path = _sqlite_path(url, self.config.root)
        return url if path is None else f"sqlite:///{path}"

    @property
    def remote(self) -> TeamClient | None:
        """The team server's client when metadata.url is ``https://HOST:PORT`` (or http to
        a loopback address); None when the workspace reaches its stores directly."""
        url = self.config.value("metadata.url")
        if not url.startswith(("http://", "https://")):
            return None
        if self._remote is None:
            from modelyard.remote import TeamClient, check_server_url

            checked = self._with_source("metadata.url", lambda: check_server_url(url))
            self._remote = TeamClient(checked, self.config.value("server.api_key"))
        return self._remote

    def _direct(self, what: str) -> None:
        if self.remote is not None:
            raise ConfigError(
                f"{what} needs the metadata database, and this workspace reaches the team "
                f"server at {self.remote.url} instead (metadata.url); run it where "
                "metadata.url names the database, or on the server's host"
            )

    @property
    def metadata(self) -> MetadataStore:
        if self._metadata is None:
            from modelyard.backends.metadata import open_metadata

            self._direct("this command")
            # Only the default database inside the workspace appears by itself (a fresh
            # clone of a project); a configured one that is missing is a wrong path.
            create = self.create or self.config["metadata.url"] == _DEFAULT_METADATA_URL
            store = self._build(
                "metadata.url", lambda v: open_metadata(self._resolve_sqlite(v), create=create)
            )
            self._with_source("metadata.url", store.open)
            self._metadata = store
        return self._metadata

    @property
    def artifacts(self) -> ArtifactStore:
        if self._artifacts is None:
            from modelyard.backends.artifacts import open_artifacts

            def make(url: str) -> ArtifactStore:
                remote = self.remote
                if remote is not None and self.config.source("artifacts.url") == "default":
                    from modelyard.remote import HttpArtifactStore

                    return HttpArtifactStore(remote)  # through the server, no bucket keys
                if "://" not in url and not Path(url).is_absolute():
                    url = str(self.config.root / url)
                endpoint = self.config.value("artifacts.endpoint_url")
                if endpoint and url.startswith("s3://"):
                    return open_artifacts(url, client_kwargs={"endpoint_url": endpoint})
                return open_artifacts(url)

            self._artifacts = self._build("artifacts.url", make)
        return self._artifacts

    @property
    def predictions(self) -> PredictionLog:
        """The prediction log: this host's spool, shipped to ``predictions.url``."""
        if self._predictions is None:
            delay = self.config["predictions.max_delay_s"]
            if not 0 < delay <= MAX_DELAY_LIMIT_S:  # also refuses nan and inf
                raise ConfigError(
                    f"{self.config.describe('predictions.max_delay_s')}: expected seconds above "
                    f"0 and at most {MAX_DELAY_LIMIT_S}; fix the value"
                )

            from modelyard.backends.predictions import open_prediction_log

            def make(url: str) -> PredictionLog:
                if "://" not in url and not Path(url).is_absolute():
                    url = str(self.config.root / url)
                options: dict[str, Any] = {}
                endpoint = self.config.value("predictions.endpoint_url") or self.config.value(
                    "artifacts.endpoint_url"
                )
                if url.startswith("s3://"):
                    # A store that hangs must not hang a command: bounded waits, few retries.
                    options = {
                        "config_kwargs": {
                            "connect_timeout": 5,
                            "read_timeout": 30,
                            "retries": {"max_attempts": 3},
                        }
                    }
                    if endpoint:
                        options["client_kwargs"] = {"endpoint_url": endpoint}
                return open_prediction_log(
                    url,
                    spool=self.state_dir / "predictions",
                    max_delay_s=delay,
                    on_failure=self.config["predictions.on_failure"],
                    storage_options=options,
                    pii_key=self.secret_key("pii"),
                )

            self._predictions = self._build("predictions.url", make)
        return self._predictions

    def _build(self, key: str, factory: Any) -> Any:
        # The value, a secret reference read here: only the back end holds it.
        return self._with_source(key, lambda: factory(self.config.value(key)))

    def _with_source(self, key: str, action: Any) -> Any:
        """Run ``action``; a modelyard error gets the setting's source appended."""
        try:
            return action()
        except ModelyardError as exc:
            if f"{key} (" in exc.message:  # the message names the setting already
                raise
            exc.message = f"{exc.message} (from {key}, {self.config.source(key)})"
            exc.args = (exc.message,)
            raise

    @property
    def online(self) -> OnlineStore:
        if self._online is None:
            from modelyard.backends.online import open_online

            # As for metadata: only the default file appears by itself; a configured one
            # that is missing is created by the first write, never by a read.
            create = self.create or self.config["online.url"] == _DEFAULT_ONLINE_URL
            store = self._build(
                "online.url", lambda url: open_online(self._resolve_sqlite(url), create=create)
            )
            self._with_source("online.url", store.open)
            self._online = store
        return self._online

    @property
    def executor(self) -> Executor:
        """Where jobs, batch scoring and backfills run (``executor.url``); built here, its
        workers (or Ray) start on first use and stop with ``close()``."""
        if self._executor is None:
            from modelyard.backends.executors import open_executor

            self._executor = self._build("executor.url", open_executor)
        return self._executor

    @property
    def features(self) -> FeatureStore:
        from modelyard.features import FeatureStore

        path = Path(self.config["offline.path"])
        root = path if path.is_absolute() else self.config.root / path
        return FeatureStore(
            self.metadata, root, online=lambda: self.online, executor=lambda: self.executor
        )

    @property
    def runs(self) -> Tracking:
        from modelyard.tracking import Tracking

        if self.remote is not None:
            from modelyard.remote import RemoteTracking

            return cast("Tracking", RemoteTracking(self.remote))
        return Tracking(self.metadata)

    @property
    def registry(self) -> Registry:
        from modelyard.registry import Registry

        if self.remote is not None:
            from modelyard.remote import RemoteRegistry

            return RemoteRegistry(self.remote, self.artifacts, self.state_dir / "cache" / "models")
        return Registry(
            self.metadata,
            self.artifacts,
            self.state_dir / "cache" / "models",
            signing_key=lambda: self.secret_key("signing"),
        )

    def secret_key(self, name: Literal["signing", "pii"]) -> bytes:
        """The workspace's ``signing`` (model seals) or ``pii`` (keyed hash) key: the
        ``security.NAME_key`` setting, else a key file in ``.modelyard/secrets``."""
        found = self._keys.get(name)
        if found is None:
            from modelyard.security import workspace_secret

            key = f"security.{name}_key"
            found = workspace_secret(
                self.state_dir, name, self.config.value(key), self.config.describe(key)
            )
            self._keys[name] = found
        return found

    def start_run(
        self,
        name: str = "run",
        *,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        experiment: str | None = None,
        seed: int | None = None,
    ) -> Run:
        """Start a run: ``with ws.start_run("train", params={...}) as run: ...``."""
        from modelyard.tracking import Run

        store: Any = self.metadata if self.remote is None else None
        if store is None:
            from modelyard.remote import RemoteRunStore

            store = RemoteRunStore(cast("TeamClient", self.remote))
        run = Run(
            store,
            self.artifacts,
            name=name,
            experiment=experiment or self.config["tracking.experiment"],
            params=params,
            tags=tags,
            seed=seed,
            code_folder=Path.cwd(),
            lease_s=self.config["tracking.lease_s"],
        )
        return run.start()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.close()
            self._executor = None
        if self._online is not None:
            self._online.close()
            self._online = None
        if self._metadata is not None:
            self._metadata.close()
            self._metadata = None
        if self._remote is not None:
            self._remote.close()
            self._remote = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_config_file(folder: Path) -> None:
    """Create ``folder`` and its commented ``modelyard.toml`` unless they exist."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CONFIG_FILE
    if not path.exists():
        atomic_write_text(path, render_template())
