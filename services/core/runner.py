"""Running a carehub process: broker, database, consumers, background loops and HTTP, in order.

`running_stack` is an async context manager used by `carehub run` (until a signal) and by
`carehub demo` (until its script is done). Every process serves /healthz, /readyz and /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.core import consumer_lag, metrics
from services.core.calendar import load_calendar
from services.core.clock import clock_from_settings
from services.core.db.engine import make_engine, ping, session_factory, upgrade
from services.core.embedded_broker import EmbeddedBroker
from services.core.kafka import ensure_topics, make_broker
from services.core.keys import configure_keys
from services.core.logs import get_logger
from services.core.runtime import BackgroundTask, Runtime, Service
from services.core.settings import Settings

log = get_logger("runner")


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: whoever drives the stack (`carehub run`, the
    demo) decides when to stop, and stops the broker and consumers too, not only HTTP."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class RunningStack:
    runtime: Runtime
    url: str
    server: uvicorn.Server
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    embedded: EmbeddedBroker | None = None

    @property
    def bootstrap(self) -> str:
        return (
            self.runtime.settings.bootstrap_servers
            if self.embedded is None
            else (self.embedded.bootstrap)
        )


def base_app(rt: Runtime, names: Sequence[str]) -> FastAPI:
    app = FastAPI(title="carehub", version="0.1.0", docs_url=None, redoc_url=None)
    app.state.runtime = rt

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Name the field and the problem, never the value: a refused value can be a phone
        # number, an address or a note (FastAPI's own answer echoes it back as `input`).
        problems = [
            {"loc": list(error.get("loc", ())), "msg": error.get("msg"), "type": error.get("type")}
            for error in exc.errors()
        ]
        return JSONResponse({"detail": problems}, status_code=422)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "services": list(names)}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(ping(rt.engine), timeout=2)
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks["database"] = type(exc).__name__
        try:
            ok = await rt.broker.ping(timeout=2)
            checks["broker"] = "ok" if ok else "unreachable"
        except Exception as exc:  # noqa: BLE001
            checks["broker"] = type(exc).__name__
        ready = all(v == "ok" for v in checks.values()) and rt.extras.get("started", False)
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


async def _supervise(name: str, rt: Runtime, loop: Any) -> None:
    """Keep a background loop alive: log and restart it after an unexpected error."""
    while True:
        try:
            await loop()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background.crashed", task=name)
            await asyncio.sleep(1)


@contextlib.asynccontextmanager
async def running_stack(
    settings: Settings,
    services: Sequence[Service],
    *,
    own_broker: bool,
) -> AsyncIterator[RunningStack]:
    """Start everything `services` need, yield once HTTP is listening, then stop it all."""
    settings.check_channels()
    configure_keys(settings)
    embedded: EmbeddedBroker | None = None
    if own_broker and settings.embedded_broker:
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        embedded = EmbeddedBroker(settings.embedded_broker_port, settings.var_dir / "broker.log")
        await embedded.astart()
        log.info("broker.started", bootstrap=embedded.bootstrap)
    engine = make_engine(settings.resolved_database_url)
    server: uvicorn.Server | None = None
    tasks: list[asyncio.Task[None]] = []
    rt_closers: list[BackgroundTask] = []
    broker = make_broker(settings)
    try:
        if settings.migrate_on_start:
            await upgrade(engine)
        await ensure_topics(settings.bootstrap_servers)
        rt = Runtime(
            settings=settings,
            engine=engine,
            sessions=session_factory(engine),
            clock=clock_from_settings(settings.clock_file),
            calendar=load_calendar(settings.holidays_file),
            broker=broker,
        )
        rt_closers = rt.closers
        app = base_app(rt, [s.NAME for s in services])
        for service in services:
            service.mount(rt, app)
        # A process that consumes Kafka samples its consumer groups' lag for /metrics.
        lag = consumer_lag.sampler_for(rt)
        if lag is not None:
            rt.background.append((consumer_lag.NAME, lag.run))
        await broker.start()
        for name, loop in rt.background:
            tasks.append(asyncio.create_task(_supervise(name, rt, loop), name=name))
        config = uvicorn.Config(
            app,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            lifespan="off",
            limit_concurrency=512,
        )
        server = _QuietServer(config)
        tasks.append(asyncio.create_task(server.serve(), name="http"))
        while not server.started:
            if tasks[-1].done():
                tasks[-1].result()  # raises the bind error
                raise RuntimeError("the HTTP server stopped before it started")
            await asyncio.sleep(0.02)
        sock = server.servers[0].sockets[0].getsockname()
        url = f"http://{sock[0]}:{sock[1]}"
        rt.extras["started"] = True
        metrics.READY.set(1)
        log.info("service.ready", url=url, services=[s.NAME for s in services])
        yield RunningStack(rt, url, server, tasks, embedded)
    finally:
        metrics.READY.set(0)
        if server is not None:
            server.should_exit = True
        for task in reversed(tasks):
            if task.get_name() != "http":
                task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=5)
        with contextlib.suppress(Exception):
            # Stops fetching, lets each handler finish what it holds (up to the broker's
            # graceful timeout); offsets of what did not finish stay uncommitted, so those
            # records go to whichever process takes the partitions next.
            await broker.stop()
        for close in rt_closers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(close(), timeout=5)
        await engine.dispose()
        if embedded is not None:
            await embedded.astop()
        log.info("service.stopped")


def write_run_file(stack: RunningStack) -> None:
    """`./var/run.json`: how other commands (`carehub ingest`, …) find this running stack."""
    settings = stack.runtime.settings
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "pid": os.getpid(),
        "http": stack.url,
        "broker": stack.bootstrap,
        "database": "sqlite" if settings.is_sqlite else "postgresql",
        "outbox": str(settings.resolved_outbox_dir.resolve()),
    }
    tmp = settings.run_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, settings.run_file)


def remove_run_file(settings: Settings) -> None:
    with contextlib.suppress(FileNotFoundError):
        info = json.loads(settings.run_file.read_text())
        if info.get("pid") == os.getpid():
            settings.run_file.unlink()
