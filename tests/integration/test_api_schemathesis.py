"""Schemathesis against the portal API's OpenAPI document (`/api/v1/openapi.json`).

Every operation is called with generated requests, valid and invalid (schemathesis' coverage and
fuzzing phases), with the API token of an advocate, a supervisor and an operations account on
PostgreSQL, and of the advocate on SQLite. The world is the one `test_portal_api.py` builds (the
demo case with its held message, another ISVA's survivor), and most generated ids are turned
into ones that exist, so the bodies reach the code behind the 404. No answer may be a server
error; every answer must be one the document declares, in the shape it declares. The real
requests of each role (`test_real_requests_are_answered_as_documented`, on both databases) are
held to the same, and must also be refused without their token.

The document is served by the portal over ASGI, in-process. It is loaded when the module is
collected, from an app with the portal mounted and no database (`schemathesis.pytest.from_fixture`
would load it from the world's app, but it sets pytest's `Node._nodeid`, which pytest 9.2 no
longer has); every request goes to the world's app, whose own document is checked to be the
same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from services import portal
from services.core.db import models as m
from services.core.db.engine import make_engine
from services.core.keys import DEV_KEYRING, configure_keys, use_keyring
from services.core.settings import load_settings
from services.portal.auth import issue_api_token
from tests.conftest import fresh_pg_database
from tests.integration.test_portal_api import NOW, Portal, build_site

ADVOCATE, SUPERVISOR, OPERATIONS = "demo-isva", "demo-supervisor", "demo-ops"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    # Not positive_data_acceptance: a request can fit the document and still be refused with a
    # 422 (a phone number that does not exist, a safe window shorter than an hour).
]
# Where a token got a 2xx, the same request without it, and with a made-up one (a bearer token,
# a session cookie), must get a 401: asked of the real requests below, once each.
WITH_AUTH = [*CHECKS, ignored_auth]
# Schemathesis makes its coverage cases when it collects the test, before any fixture has run:
# they carry this stand-in for the token, and the test sends the role's real one instead.
STAND_IN = "Bearer role-token"


def _document_app() -> FastAPI:
    app = FastAPI()
    portal.mount(None, app)  # type: ignore[arg-type]  # serving the document needs no runtime
    return app


schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", _document_app())


@schema.auth(refresh_interval=None, retry_on=[])
class RoleToken:
    """Credentials schemathesis knows about: it leaves them out only where it means to (and
    then wants a 401), and drops the session cookie it would otherwise make up."""

    def get(self, case: Any, context: Any) -> str:
        return STAND_IN

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": data}


@dataclass
class World:
    site: Portal
    tokens: dict[str, str]
    messages: list[str]  # every notification, the held one first

    def survivor(self, generated: int | str) -> int | str:
        """Most generated survivor ids become a real one: Riley (the advocate's and the
        supervisor's) most of all, or the other ISVA's survivor."""
        own, other = self.site.survivor_id, self.site.other_survivor_id
        if isinstance(generated, bool) or not str(generated).lstrip("-").isdigit():
            return generated  # not an id at all: the 422 is the point
        if int(generated) in (own, other):
            return generated
        choice = [own, own, other, None][int(generated) % 4]
        return generated if choice is None else type(generated)(choice)

    def message(self, generated: str) -> str:
        """Most generated message ids become a real one, the held message most of all."""
        if generated in self.messages:
            return generated
        held, *others = self.messages
        choices = [held, held, *others, generated]
        return choices[(len(generated) - 1) % len(choices)]


@pytest.fixture(scope="module", autouse=True)
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One keyring for the module's world (the conftest's own is made anew for each test)."""
    var = tmp_path_factory.mktemp("schemathesis") / "var"
    configure_keys(load_settings(var_dir=var, env="test"), lazy=True)
    try:
        yield var / DEV_KEYRING
    finally:
        use_keyring(None)


@contextmanager
def _database(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'carehub.db'}"
    else:
        with fresh_pg_database() as url:
            yield url


@contextmanager
def _world(kind: str, keyring: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The portal's world on one database, with an API token for each role.

    Schemathesis calls the app on an event loop of its own, in another thread, so on
    PostgreSQL the engine keeps no connection between requests (an asyncpg connection belongs
    to the loop that opened it; aiosqlite's answer whichever loop asks)."""
    with _database(kind, tmp_path_factory) as url:
        settings_ = load_settings(var_dir=keyring.parent, database_url=url, log_level="WARNING")
        engine = (
            make_engine(url)
            if kind == "sqlite"
            else create_async_engine(url, poolclass=NullPool, hide_parameters=True)
        )

        async def build() -> World:
            site = await build_site(settings_, engine)
            async with site.rt.sessions.begin() as session:
                tokens = {}
                for username in (ADVOCATE, SUPERVISOR, OPERATIONS):
                    account = await session.scalar(
                        select(m.StaffAccount).where(m.StaffAccount.username == username)
                    )
                    assert account is not None
                    tokens[username] = await issue_api_token(
                        session, account, "schemathesis", datetime.now(UTC)
                    )
                others = await session.scalars(
                    select(m.Notification.id)
                    .where(m.Notification.id != site.held_id)
                    .order_by(m.Notification.id)
                )
                return World(site, tokens, [site.held_id, *others])

        built = asyncio.run(build())
        try:
            yield built
        finally:
            asyncio.run(engine.dispose())


# One world for each database, seeded once for the module: the tests below ask for the one
# their `database` parameter names (a parametrised module fixture would be set up again for
# every pairing of database and role).
@pytest.fixture(scope="module")
def sqlite_world(keyring: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with _world("sqlite", keyring, tmp_path_factory) as built:
        yield built


@pytest.fixture(scope="module")
def postgresql_world(keyring: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with _world("postgresql", keyring, tmp_path_factory) as built:
        yield built


@pytest.fixture
def world(request: pytest.FixtureRequest, database: str) -> World:
    built: World = request.getfixturevalue(f"{database}_world")
    return built


def _bearer(world: World, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.tokens[role]}"}


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    # `world` hands out the module's world, which every example shares on purpose.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@pytest.mark.parametrize(
    ("database", "role"),
    # Every role on PostgreSQL, the stricter; the embedded default once, to keep the run short.
    [
        ("postgresql", ADVOCATE),
        ("postgresql", SUPERVISOR),
        ("postgresql", OPERATIONS),
        ("sqlite", ADVOCATE),
    ],
)
def test_the_api_answers_every_request_as_documented(case: Any, world: World, role: str) -> None:
    ids = case.path_parameters or {}
    # The coverage phase's cases are shared by every role and database: the mappings leave a
    # real id as it is, so a case changed once is the same case everywhere after.
    if "survivor_id" in ids:
        case.path_parameters = {"survivor_id": world.survivor(ids["survivor_id"])}
    if "notification_id" in ids and isinstance(ids["notification_id"], str):
        case.path_parameters = {"notification_id": world.message(ids["notification_id"])}
    # Without the stand-in, schemathesis left the token out, or put a wrong one in, on purpose.
    with_token = (case.headers or {}).get("Authorization") == STAND_IN
    case.call_and_validate(
        app=world.site.app, headers=_bearer(world, role) if with_token else None, checks=CHECKS
    )


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
@pytest.mark.parametrize(
    ("role", "own", "theirs", "held"),
    [
        pytest.param(ADVOCATE, 200, 404, 200, id="advocate"),
        pytest.param(SUPERVISOR, 200, 404, 200, id="supervisor"),
        pytest.param(OPERATIONS, 403, 403, 403, id="operations"),
    ],
)
def test_real_requests_are_answered_as_documented(
    world: World, role: str, own: int, theirs: int, held: int
) -> None:
    site = world.site
    action = 202 if held == 200 else held
    review = (NOW + timedelta(days=90)).date().isoformat()
    told = (NOW - timedelta(minutes=30)).isoformat()
    requests: list[tuple[str, str, dict[str, Any], Any, int]] = [
        ("GET", "/api/v1/caseload", {}, None, own),
        ("GET", "/api/v1/survivors/{survivor_id}", {"survivor_id": site.survivor_id}, None, own),
        (
            "GET",
            "/api/v1/survivors/{survivor_id}",
            {"survivor_id": site.other_survivor_id},
            None,
            theirs,
        ),
        (
            "PUT",
            "/api/v1/survivors/{survivor_id}/preferences",
            {"survivor_id": site.survivor_id},
            {
                "phone": "07700 900 456",
                "sms_safe": True,
                "sms_safe_review_by": review,
                "email": "riley.new@example.org",
                "email_safe": True,
                "email_safe_review_by": review,
                "letter_safe": True,
                "letter_safe_review_by": review,
                "postal_address": "1 Example Road\nZZ99 9ZZ",
                "language": "cy",
                "safe_window_start": "10:00",
                "safe_window_end": "19:00",
                "frequency": "key_stages",
                "detail": "detailed",
                "feedback_opt_in": True,
                "consent_to_referral": True,
                "reason_code": "survivor_asked",
                "reason_note": "Asked on the phone",
            },
            own,
        ),
        (
            "GET",
            "/api/v1/messages/{notification_id}",
            {"notification_id": site.held_id},
            None,
            held,
        ),
        (
            "POST",
            "/api/v1/messages/{notification_id}/actions",
            {"notification_id": site.held_id},
            {"action": "told_in_person", "told_at": told, "note": "At the centre"},
            action,
        ),
        (
            "POST",
            "/api/v1/messages/{notification_id}/actions",
            {"notification_id": site.held_id},
            {"action": "release", "personal_line": "Call me when you can."},
            action,
        ),
        # The survivor's page once more: a new version of the preferences, actions recorded.
        ("GET", "/api/v1/survivors/{survivor_id}", {"survivor_id": site.survivor_id}, None, own),
        (
            "GET",
            "/api/v1/messages/{notification_id}",
            {"notification_id": site.held_id},
            None,
            held,
        ),
    ]
    for method, path, parameters, body, status in requests:
        operation = schema[path][method]
        case = (
            operation.Case(path_parameters=parameters)
            if body is None
            else operation.Case(
                path_parameters=parameters, body=body, media_type="application/json"
            )
        )
        response = case.call_and_validate(
            app=site.app, headers=_bearer(world, role), checks=WITH_AUTH
        )
        assert response.status_code == status, (method, path, response.text[:300])
    if held == 200:
        actions = {a["action"] for a in response.json()["actions"]}
        assert actions >= {"told_in_person", "release"}


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_world_serves_the_document_the_cases_come_from(world: World) -> None:
    served = schemathesis.openapi.from_asgi("/api/v1/openapi.json", world.site.app)
    assert served.raw_schema == schema.raw_schema
