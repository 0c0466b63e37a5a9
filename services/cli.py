"""The `carehub` command: runs the services, the broker, migrations, the demo and file ingest.

Convention: a command meant for scripts prints its result as JSON on the last line of stdout;
text for people goes to stderr. Exit 0 when the command did its job (rejected records
included), non-zero on a configuration, I/O or verification failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import tempfile
from collections.abc import Callable, Coroutine
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from services import demo, ingest, notifier, portal, rules
from services.core.clock import write_clock_file
from services.core.db.engine import current_revision, make_engine, upgrade
from services.core.embedded_broker import EmbeddedBroker, free_port
from services.core.kafka import ensure_topics
from services.core.keys import configure_keys
from services.core.logs import configure_logging
from services.core.runner import remove_run_file, running_stack, write_run_file
from services.core.runtime import Service
from services.core.settings import ConfigurationError, Settings, load_settings
from services.rules import dispatcher

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

SERVICES: dict[str, Service] = {
    "ingest": ingest,
    "rules": rules,
    "dispatcher": dispatcher,
    "notifier": notifier,
    "portal": portal,
}


class Only(StrEnum):
    ingest = "ingest"
    rules = "rules"
    dispatcher = "dispatcher"
    notifier = "notifier"
    portal = "portal"


def err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def result(value: dict[str, Any]) -> None:
    print(json.dumps(value), flush=True)


def fail(message: str, code: int = 2) -> None:
    err(f"carehub: {message}")
    result({"error": message})
    raise typer.Exit(code)


def settings_or_exit(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigurationError as exc:
        fail(f"configuration error: {exc}")
        raise AssertionError from exc  # unreachable


def _run_async(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    try:
        asyncio.run(main())
    except ConfigurationError as exc:
        fail(f"configuration error: {exc}")


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


@app.command()
def run(
    only: Only | None = typer.Option(None, "--only", help="Run one service (PostgreSQL only)."),
    demo_data: bool = typer.Option(False, "--demo-data", help="Seed the demo team and case."),
) -> None:
    """Run every service in one process (or one with --only) until Ctrl-C."""
    settings = settings_or_exit()
    configure_logging(settings.log_level)
    if only is not None and settings.is_sqlite:
        fail(
            "--only needs PostgreSQL (set CAREHUB_DATABASE_URL): SQLite is single-process, "
            "so run every service together with `carehub run`"
        )
    names = [only.value] if only else list(SERVICES)

    async def main() -> None:
        async with running_stack(
            settings, [SERVICES[n] for n in names], own_broker=only is None
        ) as stack:
            if demo_data:
                async with stack.runtime.sessions.begin() as session:
                    await demo.seed(session, stack.runtime.clock.now())
            if only is None:
                write_run_file(stack)
            outbox = settings.resolved_outbox_dir.resolve()
            if demo_data and "portal" in names:
                err(demo.staff_banner(stack.url))
            print(f"carehub ready {stack.url} outbox={outbox}", flush=True)
            try:
                await _wait_for_signal()
            finally:
                remove_run_file(settings)

    _run_async(main)


@app.command()
def broker() -> None:
    """Run the embedded Kafka-protocol broker alone (for `run --only` processes)."""
    settings = settings_or_exit()
    configure_logging(settings.log_level)

    async def main() -> None:
        embedded = EmbeddedBroker(settings.embedded_broker_port)
        await embedded.astart()
        try:
            # The topics exist before anything publishes. Started again (empty) while services
            # run, tansu would take their records for topics it has no metadata for, then
            # create the topics over those records when a process starts (offsets from 0), and
            # refuse every record after that (UnknownError) until the offsets pass them.
            await ensure_topics(embedded.bootstrap)
            print(f"carehub broker ready {embedded.bootstrap}", flush=True)
            await _wait_for_signal()
        finally:
            await embedded.astop()

    _run_async(main)


@app.command()
def migrate(revision: str = typer.Option("head", help="Target revision.")) -> None:
    """Bring the database schema to a revision (default: the latest)."""
    settings = settings_or_exit()
    configure_logging(settings.log_level)

    async def main() -> None:
        configure_keys(settings)
        engine = make_engine(settings.resolved_database_url)
        try:
            await upgrade(engine, revision)
            result({"revision": await current_revision(engine)})
        finally:
            await engine.dispose()

    _run_async(main)


def _find_stack(settings: Settings) -> str:
    try:
        info = json.loads(settings.run_file.read_text())
        return str(info["http"])
    except (OSError, ValueError, KeyError):
        fail(
            f"no running carehub found ({settings.run_file} is missing): start one with "
            "`make run` or `carehub run`, or pass --url"
        )
        raise AssertionError from None


class Feed(StrEnum):
    police = "police"
    cps = "cps"
    court = "court"
    probation = "probation"


class FileFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


@app.command("ingest")
def ingest_file(
    file: Path = typer.Argument(..., help="A file drop: JSON lines, or CSV with --feed."),
    feed: Feed | None = typer.Option(
        None, "--feed", help="The upstream feed the file comes from (native formats, signed)."
    ),
    file_format: FileFormat | None = typer.Option(
        None, "--format", help="jsonl or csv (default: by the file's extension)."
    ),
    url: str | None = typer.Option(None, help="Base URL of ingest (default: from var/run.json)."),
    batch_size: int = typer.Option(100, min=1, max=500),
) -> None:
    """Send a file drop to the running stack; the JSON summary is the last line."""
    settings = settings_or_exit()
    base = url or _find_stack(settings)
    if not file.is_file():
        fail(f"cannot read {file}: no such file")
    secret: str | None = (
        settings.events_secret.get_secret_value() if settings.events_secret else None
    )
    if feed is not None:
        from services.ingest.feeds import feed_secret

        secret = feed_secret(settings, feed.value)
        if secret is None:
            fail(f"CAREHUB_FEED_SECRET_{feed.value.upper()} is not set: the feed signs its records")
    from services.ingest.client import Progress, send_file

    try:
        counts = asyncio.run(
            send_file(
                base,
                file,
                feed=feed.value if feed else None,
                secret=secret,
                file_format=file_format.value if file_format else None,
                batch_size=batch_size,
                progress=Progress(file.stat().st_size),
            )
        )
    except ValueError as exc:
        fail(str(exc))
        return
    except PermissionError as exc:
        fail(str(exc))
        return
    except OSError as exc:
        fail(f"cannot reach ingest at {base}: {type(exc).__name__}")
        return
    result(counts)


@app.command("demo")
def demo_command(timeout: float = typer.Option(60.0, help="Seconds to wait at each step.")) -> None:
    """A fresh embedded stack, one scripted case on its own clock, and a table of what happened
    (on stderr); the JSON summary is the last line of stdout."""
    with tempfile.TemporaryDirectory(prefix="carehub-demo-") as tmp:
        clock = Path(tmp) / "clock"
        steps = demo.script()
        write_clock_file(clock, steps[0].at)
        overrides: dict[str, Any] = {
            "var_dir": Path(tmp),
            "http_port": 0,
            "embedded_broker_port": free_port(),
            "kafka_bootstrap": None,
            "kafka_session_timeout_ms": 6000,
            "clock_file": clock,
            "dispatch_interval_ms": 50,
        }
        settings = settings_or_exit(**overrides)
        configure_logging("WARNING")

        async def main() -> None:
            from services.demo_report import report

            async with running_stack(settings, list(SERVICES.values()), own_broker=True) as stack:
                rt = stack.runtime
                async with rt.sessions.begin() as session:
                    await demo.seed(session, rt.clock.now())
                posted: list[tuple[str, int, str]] = []
                all_settled = True
                for step in steps:
                    write_clock_file(clock, step.at)
                    err(f"  {step.title}")
                    posted.extend(await demo.post_events(stack.url, step.events))
                    ok = await demo.wait_until_settled(rt.sessions, demo.DEMO_URN, step.at, timeout)
                    all_settled = all_settled and ok
                summary = await report(rt.sessions, demo.DEMO_URN, posted, err)
                summary["settled"] = all_settled
                result(summary)
                if not all_settled:
                    raise typer.Exit(1)

        _run_async(main)


rules_app = typer.Typer(help="Check and explain the rules data.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
sms_app = typer.Typer(help="SMS encoding.", no_args_is_help=True)
app.add_typer(sms_app, name="sms")


@rules_app.command("check")
def rules_check(
    file: Path | None = typer.Option(None, help="A rules file (default: the packaged one)."),
    markdown: bool = typer.Option(False, help="Print docs/rules.md instead of a table."),
) -> None:
    """Validate a rules file; show, per event type, who is told, how and by when."""
    from services.rules.describe import markdown as as_markdown
    from services.rules.describe import summary
    from services.rules.ruleset import RulesError, load_rules

    try:
        rules = load_rules(file)
    except RulesError as exc:
        fail(str(exc), code=1)
        return
    if markdown:
        print(as_markdown(rules), end="")
        return
    rows = summary(rules)
    for row in rows:
        told = ", ".join(f"{t['to']}:{t['template']}" for t in row["told"]) or "advocate task"
        wd = row["deadline_wd"]
        err(
            f"{row['type']:<42} {row['sensitivity']:<12} {wd['standard']}/{wd['enhanced']} WD "
            f"from {row['clock_from']:<8} {told}"
        )
    result({"version": rules.version, "event_types": len(rows), "rules": rows})


@rules_app.command("explain")
def rules_explain(
    context: Path = typer.Option(..., "--context", help="A case context (JSON)."),
    events: Path = typer.Option(..., "--events", help="Events to apply in order (JSON lines)."),
    now: str | None = typer.Option(None, help="Decide every event at this instant (ISO 8601)."),
    until: str | None = typer.Option(None, help="Advance the clock to here (ISO 8601)."),
) -> None:
    """A dry run: what the rules would decide for these events, one JSON object per line."""
    from datetime import datetime

    from services.core.calendar import load_calendar
    from services.rules.engine import Engine
    from services.rules.explain import ExplainError, explain, read_events
    from services.rules.ruleset import RulesError, load_rules

    settings = settings_or_exit()

    def instant(name: str, value: str | None) -> datetime | None:
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            fail(f"--{name} is not an ISO 8601 instant")
            raise AssertionError from None
        if parsed.utcoffset() is None:
            fail(f"--{name} needs a UTC offset (for example Z)")
        return parsed

    try:
        engine = Engine(load_rules(settings.rules_file), load_calendar(settings.holidays_file))
        context_obj = json.loads(context.read_text(encoding="utf-8"))
        rows = explain(
            engine,
            context_obj,
            read_events(events.read_text(encoding="utf-8")),
            instant("now", now),
            instant("until", until),
        )
    except (OSError, ValueError) as exc:  # RulesError, ExplainError, bad JSON: all name the problem
        kind = "rules" if isinstance(exc, RulesError) else "input"
        message = str(exc) if isinstance(exc, RulesError | ExplainError) else type(exc).__name__
        fail(f"{kind} error: {message}")
        return
    for row in rows:
        print(json.dumps(row, ensure_ascii=False), flush=True)


@sms_app.command("inspect")
def sms_inspect(text: str = typer.Argument(..., help="The message text.")) -> None:
    """How TEXT would be sent: encoding, characters, segments, the sanitised text."""
    from services.core.sms import as_json, inspect

    result(as_json(inspect(text)))


@app.command("twilio-standin")
def twilio_standin(
    port: int = typer.Option(0, help="Port on 127.0.0.1 (0 picks a free one)."),
    account_sid: str = typer.Option("AC" + "0" * 32, help="The account SID it accepts."),
    auth_token: str = typer.Option(
        "standin-token", help="The auth token it accepts and signs with."
    ),
) -> None:
    """Run the Twilio stand-in (the Messages API, signed status callbacks) until Ctrl-C."""
    from services.notifier.twilio_standin import running_standin

    async def main() -> None:
        async with running_standin(
            account_sid=account_sid, auth_token=auth_token, port=port
        ) as standin:
            print(f"carehub twilio-standin ready {standin.base_url}", flush=True)
            await _wait_for_signal()

    _run_async(main)


dlq_app = typer.Typer(help="Rejected records: list them, replay them.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


class ListFormat(StrEnum):
    table = "table"
    json = "json"


@dlq_app.command("list")
def dlq_list(
    output: ListFormat = typer.Option(ListFormat.table, "--format", help="table or json."),
    include_resolved: bool = typer.Option(False, "--all", help="Also those replayed since."),
    limit: int = typer.Option(1000, min=1),
) -> None:
    """Rejected records with their reasons (never their contents); JSON summary last."""
    from services.core.db.engine import session_factory
    from services.ingest.dlq import describe, list_rejected

    settings = settings_or_exit()
    rows: list[dict[str, Any]] = []

    async def main() -> None:
        configure_keys(settings)
        engine = make_engine(settings.resolved_database_url)
        try:
            async with session_factory(engine)() as session:
                found = await list_rejected(session, include_resolved=include_resolved, limit=limit)
                rows.extend(describe(r) for r in found)
        finally:
            await engine.dispose()

    _run_async(main)
    if output is ListFormat.json:
        result({"records": rows, "count": len(rows)})
        return
    err(f"{'id':>6}  {'received':20}  {'way in':7}  {'feed':9}  {'reason':24}  first error")
    for row in rows:
        first = row["errors"][0] if row["errors"] else {"pointer": "", "message": ""}
        err(
            f"{row['id']:>6}  {row['received_at'][:19]:20}  {row['way_in']:7}  "
            f"{(row['feed'] or '-'):9}  {row['reason'][:24]:24}  "
            f"{first['pointer'] or '/'} {first['message']}"
        )
    result({"count": len(rows)})


@dlq_app.command("replay")
def dlq_replay(
    record_id: int | None = typer.Argument(None, help="The rejected record to replay."),
    replay_all: bool = typer.Option(False, "--all", help="Every record not yet replayed."),
) -> None:
    """Validate rejected records again (after an upstream fix) and record what now passes."""
    from services.core.db.engine import session_factory
    from services.core.db.models import RejectedRecord
    from services.core.kafka import make_broker
    from services.core.records import CaseEventRef
    from services.core.topics import CASE_EVENTS
    from services.ingest.dlq import list_rejected, replay

    if (record_id is None) == (not replay_all):
        fail("give one record id, or --all")
    settings = settings_or_exit()
    summary = {"replayed": 0, "accepted": 0, "duplicates": 0, "still_rejected": 0}

    async def main() -> None:
        from datetime import timedelta

        from services.core.clock import clock_from_settings

        configure_keys(settings)
        engine = make_engine(settings.resolved_database_url)
        refs: list[CaseEventRef] = []
        try:
            async with session_factory(engine).begin() as session:
                if replay_all:
                    rows = await list_rejected(session)
                else:
                    one = await session.get(RejectedRecord, record_id)
                    if one is None:
                        fail(f"no rejected record {record_id}")
                        return
                    rows = [one]
                now = clock_from_settings(settings.clock_file).now()
                skew = timedelta(seconds=settings.event_time_skew_s)
                for row in rows:
                    outcomes = await replay(session, row, now=now, max_skew=skew)
                    summary["replayed"] += 1
                    for o in outcomes:
                        key = {"accepted": "accepted", "duplicate": "duplicates"}.get(
                            o.status, "still_rejected"
                        )
                        summary[key] += 1
                        if o.status == "accepted" and o.event and o.case_event_id:
                            refs.append(
                                CaseEventRef(
                                    o.case_event_id,
                                    o.event.source,
                                    o.event.id,
                                    o.event.type,
                                    o.event.subject,
                                )
                            )
        finally:
            await engine.dispose()
        if refs:
            # Straight to the rules; if the broker is not reachable, the re-drive publishes them.
            broker = make_broker(settings)
            try:
                await broker.connect()
                for ref in refs:
                    await broker.publish(ref.encode(), CASE_EVENTS.name, key=ref.subject.encode())
            except Exception as exc:  # noqa: BLE001
                err(f"carehub: not published now ({type(exc).__name__}); the re-drive will")
            finally:
                await broker.stop()

    _run_async(main)
    result(summary)


keys_app = typer.Typer(help="Field-encryption keys: generate, rotate.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("generate")
def keys_generate(
    add_to: Path | None = typer.Option(
        None, "--add-to", help="A keyring file: keep its keys, add a new one as the primary."
    ),
    key_id: str | None = typer.Option(None, "--key-id", help="Default: k<UTC timestamp>."),
) -> None:
    """Print a keyring (JSON, the last line) for CAREHUB_KEYS_FILE; store it with mode 0600."""
    from services.core.keys import new_keyring

    try:
        existing = add_to.read_text(encoding="utf-8") if add_to is not None else None
        result(new_keyring(existing, key_id))
    except OSError as exc:
        fail(f"cannot read {add_to}: {type(exc).__name__}")
    except ConfigurationError as exc:
        fail(str(exc))


@keys_app.command("rotate")
def keys_rotate(
    batch_size: int = typer.Option(500, min=1, max=10_000, help="Rows per transaction."),
) -> None:
    """Re-encrypt every protected value under the primary key, in batches.

    Safe to re-run: rows already under the primary are skipped, so an interrupted run goes on
    where it stopped. Progress on stderr, the JSON summary last."""
    from services.core.db.protected import UnreadableValue
    from services.core.rotation import rotate

    settings = settings_or_exit()
    summary: dict[str, Any] = {}

    async def main() -> None:
        configure_keys(settings)
        engine = make_engine(settings.resolved_database_url)
        try:
            summary.update(await rotate(engine, batch_size=batch_size, progress=err))
        except UnreadableValue as exc:
            fail(str(exc), code=1)
        finally:
            await engine.dispose()

    _run_async(main)
    result(summary)


audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
from services.portal.cli import staff_app  # noqa: E402  (mounted beside the others)

app.add_typer(staff_app, name="staff")
from services.core.asyncapi import asyncapi_command  # noqa: E402  (mounted beside the others)

app.command("asyncapi")(asyncapi_command(SERVICES))
from services.core.retention_cli import retention_app  # noqa: E402  (mounted beside the others)

app.add_typer(retention_app, name="retention")
from services.reports.cli import report_app  # noqa: E402  (mounted beside the others)

app.add_typer(report_app, name="report")


@audit_app.command("verify")
def audit_verify(
    seal_first: bool = typer.Option(
        True,
        help="Seal every committed row not yet sealed (looking from the start of the log) "
        "before checking.",
    ),
) -> None:
    """Walk the audit chain; exit 1 and name the first row or seal that does not fit."""
    from services.core.audit_seal import SealCursor, seal_pending, verify
    from services.core.clock import clock_from_settings
    from services.core.db.engine import session_factory

    settings = settings_or_exit()
    report: list[Any] = []

    async def main() -> None:
        configure_keys(settings)
        engine = make_engine(settings.resolved_database_url)
        try:
            sessions = session_factory(engine)
            now = clock_from_settings(settings.clock_file).now()
            if seal_first:
                # Every row, from seq 0 (the periodic sweeps go back an hour or two): a
                # backlog in one walk, then once more from the start for any that came late.
                cursor = SealCursor()
                while await seal_pending(sessions, now=now, cursor=cursor, from_start=True) >= 5000:
                    pass
                while await seal_pending(sessions, now=now, from_start=True) >= 5000:
                    pass
            report.append(await verify(sessions, now=now))
        finally:
            await engine.dispose()

    _run_async(main)
    outcome = report[0]
    if not outcome.ok:
        err(f"carehub: the audit chain does not verify: {outcome.first_problem}")
        print(outcome.as_json(), flush=True)
        raise typer.Exit(1)
    err(f"audit chain ok: {outcome.rows_checked} rows, {outcome.seals_checked} seals")
    print(outcome.as_json(), flush=True)


bench_app = typer.Typer(help="Benchmarks: figures as JSON on the last line.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("notifier")
def bench_notifier_command(
    messages: int = typer.Option(2000, "--messages", min=1, help="Text messages to send."),
    survivors: int = typer.Option(500, "--survivors", min=1, help="Distinct recipients."),
    callbacks: bool = typer.Option(True, help="Let the stand-in send status callbacks."),
    pg_admin: str = typer.Option(
        "postgresql://postgres@127.0.0.1:5432/postgres",
        "--pg-admin",
        help="A PostgreSQL server to create the throw-away database on.",
    ),
    timeout: float = typer.Option(600.0, help="Give up after this many seconds."),
) -> None:
    """Messages per second through the Twilio channel against the stand-in (no rate limit)."""
    from services.bench import bench_notifier

    configure_logging("WARNING")
    figures: dict[str, Any] = {}

    async def main() -> None:
        figures.update(await bench_notifier(messages, survivors, pg_admin, callbacks, timeout))

    _run_async(main)
    err(
        f"{figures['sent']} of {messages} messages in {figures['seconds']} s: "
        f"{figures['messages_per_s']} messages/s"
    )
    result(figures)


@bench_app.command("ingest")
def bench_ingest_command(
    events: int = typer.Option(5000, "--events", min=1, help="Records in each run."),
    concurrency: int = typer.Option(4, min=1, help="HTTP batches in flight at once."),
    pg_admin: str = typer.Option(
        "postgresql://postgres@127.0.0.1:5432/postgres",
        "--pg-admin",
        help="A PostgreSQL server to create the throw-away database on.",
    ),
) -> None:
    """Native records recorded and published per second: a file drop, then HTTP."""
    from services.bench import bench_ingest

    configure_logging("WARNING")
    figures: dict[str, Any] = {}

    async def main() -> None:
        figures.update(await bench_ingest(events, pg_admin, concurrency))

    _run_async(main)
    err(
        f"file: {figures['file']['events_per_s']} events/s; "
        f"HTTP: {figures['http']['events_per_s']} events/s"
    )
    result(figures)


@bench_app.command("pipeline")
def bench_pipeline_command(
    events: int = typer.Option(1000, "--events", min=1, help="Events to produce."),
    rate: float | None = typer.Option(
        None, "--rate", min=1, help="Offer this many events a second (default: flat out)."
    ),
    cases: int | None = typer.Option(
        None, "--cases", min=1, help="Distinct cases the events fall on (default: events/10)."
    ),
    split: bool = typer.Option(
        False, "--split", help="One `carehub run --only` process per service."
    ),
    notifiers: int = typer.Option(
        1,
        "--notifiers",
        min=1,
        max=4,
        help="With --split: this many notifier processes, sharing the 4 partitions.",
    ),
    log_level: str = typer.Option("INFO", "--log-level", help="The stack's log level."),
    setting: list[str] = typer.Option(
        [],
        "--setting",
        help="A carehub setting for the stack, NAME=VALUE (CAREHUB_KAFKA_FETCH_MIN_BYTES=16384);"
        " repeatable. The stack otherwise runs on the defaults, whatever this shell has set.",
    ),
    baseline: bool = typer.Option(True, help="Also measure the bare aiokafka baseline."),
    pg_admin: str = typer.Option(
        "postgresql://postgres@127.0.0.1:5432/postgres",
        "--pg-admin",
        help="A PostgreSQL server to create the throw-away databases on.",
    ),
    timeout: float = typer.Option(600.0, help="Give up after this many seconds."),
) -> None:
    """Events per second from `feeds.police` through the whole stack to the outbox channel."""
    from services.bench import BENCH_OWNS, bench_pipeline

    if notifiers > 1 and not split:
        raise typer.BadParameter("--notifiers needs --split (one process per service)")
    settings: dict[str, str] = {}
    for item in setting:
        name, sep, value = item.partition("=")
        name = name.strip().upper()
        if not sep or not name.startswith("CAREHUB_") or name == "CAREHUB_":
            raise typer.BadParameter(f"{item!r} is not CAREHUB_NAME=VALUE", param_hint="--setting")
        if name in BENCH_OWNS:
            raise typer.BadParameter(f"the bench sets {name} itself", param_hint="--setting")
        settings[name] = value

    configure_logging("WARNING")
    # Stopped from outside, it still stops its processes and drops its databases.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    figures: dict[str, Any] = {}

    async def main() -> None:
        figures.update(
            await bench_pipeline(
                events,
                pg_admin,
                rate=rate,
                cases=cases,
                split=split,
                notifiers=notifiers,
                log_level=log_level,
                stack_settings=settings,
                baseline=baseline,
                give_up_after_s=timeout,
            )
        )

    _run_async(main)
    line = (
        f"{figures['notifications']} notifications from {events} events in "
        f"{figures['seconds']} s: {figures['events_per_s']} events/s, "
        f"p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms"
    )
    if "baseline" in figures:
        line += (
            f"; baseline {figures['baseline']['events_per_s']} events/s "
            f"(ratio {figures['ratio_to_baseline']})"
        )
    err(line)
    result(figures)
    if not figures["complete"]:
        raise typer.Exit(1)


@bench_app.command("periodic")
def bench_periodic_command(
    history: int = typer.Option(
        100_000, "--history", min=1, help="Finished past events (about 1.5 notifications each)."
    ),
    cases: int = typer.Option(2000, "--cases", min=1, help="Open cases they fall on."),
    pg_admin: str = typer.Option(
        "postgresql://postgres@127.0.0.1:5432/postgres",
        "--pg-admin",
        help="A PostgreSQL server to create the throw-away database on.",
    ),
) -> None:
    """Milliseconds each of the dispatcher's periodic beats takes against a long history."""
    from services.bench_periodic import bench_periodic

    configure_logging("WARNING")
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    figures: dict[str, Any] = {}

    async def main() -> None:
        figures.update(await bench_periodic(history, cases, pg_admin))

    _run_async(main)
    slowest = max(figures["ms"].items(), key=lambda item: item[1])
    err(
        f"{figures['rows']['notifications']} notifications in the history: the beats cost "
        f"{figures['ms_per_minute']} ms a minute; slowest {slowest[0]} at {slowest[1]} ms"
    )
    result(figures)


@app.command("templates")
def templates_command(
    markdown: bool = typer.Option(True, "--markdown", help="Print docs/templates.md."),
) -> None:
    """Every message template in every language, as a recipient would see it (Markdown)."""
    from services.core.template_docs import markdown as render_markdown

    sys.stdout.write(render_markdown())


def main() -> None:
    # Ctrl-C during start-up should not print a traceback.
    with contextlib.suppress(KeyboardInterrupt):
        app()


if __name__ == "__main__":
    main()
