"""``parley channels register``: create an active channel without OAuth (migrations, test set-up).

It goes through the same domain rules and publishes the same events as a connect flow.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from typing import Any

from parley_events import Provider
from parley_shared.kafka import EventPublisher, make_broker
from parley_shared.progress import Progress
from parley_shared.runtime import Runtime
from parley_shared.settings import ServiceSettings, load_settings
from parley_shared.store import open_store
from parley_shared.vault import (
    TokenVault,
    count_sealed_documents,
    count_sealed_rows,
    parse_keys,
    rotate_sealed,
    rotate_sealed_postgres,
)

from parley_onboarding.adapters.stores import SEALED_FIELDS
from parley_onboarding.bootstrap import build_service, production_adapters
from parley_onboarding.entrypoints.subscribers import onboarding_router
from parley_onboarding.settings import OnboardingSettings


async def register_channel(settings: OnboardingSettings, args: argparse.Namespace) -> str:
    broker = make_broker(settings, client_id="parley-cli")
    store = await open_store(settings.store)
    runtime = Runtime(
        settings=settings,
        service="cli",
        broker=broker,
        publisher=EventPublisher(
            broker,
            source="/parley/onboarding",
            namespace=settings.topic_namespace,
            ack_timeout_s=settings.kafka_ack_timeout_s,
        ),
        retry=None,  # type: ignore[arg-type]  # the CLI consumes nothing
        readiness=None,  # type: ignore[arg-type]
        store=store,
    )
    await broker.connect()
    try:
        async with production_adapters(settings, runtime) as adapters:
            service = build_service(settings, adapters, lambda: datetime.now(UTC))
            # it publishes as onboarding does: what onboarding's router declares
            runtime.publisher.declare(onboarding_router(settings, service))
            await service.stores.ensure_indexes()
            channel = await service.register(
                tenant_id=args.tenant,
                provider=Provider(args.provider),
                account_id=args.account_id,
                display_name=args.display_name,
                business_account_id=args.business_account_id,
                access_token=args.access_token,
                actor_id="parley-cli",
            )
            return channel.id
    finally:
        await broker.stop()
        await store.close()


def _run(_settings: ServiceSettings, args: argparse.Namespace) -> int:
    settings = load_settings(OnboardingSettings)
    channel_id = asyncio.run(register_channel(settings, args))
    print(channel_id)
    return 0


async def rotate_credentials(settings: OnboardingSettings) -> tuple[int, int]:
    """Re-encrypt every secret onboarding keeps (SEALED_FIELDS) with the first key; (secrets,
    documents) re-encrypted."""
    vault = TokenVault(parse_keys(settings.encryption_keys.get_secret_value()))
    store = await open_store(settings.store)
    try:
        # on a terminal: documents done, the rate and the time left
        if store.kind == "postgresql":
            total = await count_sealed_rows(store.postgres, SEALED_FIELDS)
            with Progress("rotate", total=total, unit="documents") as progress:
                return await rotate_sealed_postgres(store.postgres, vault, SEALED_FIELDS, progress.advance)
        total = await count_sealed_documents(store.db, SEALED_FIELDS)
        with Progress("rotate", total=total, unit="documents") as progress:
            return await rotate_sealed(store.db, vault, SEALED_FIELDS, progress.advance)
    finally:
        await store.close()


def _rotate(_settings: ServiceSettings, _args: argparse.Namespace) -> int:
    settings = load_settings(OnboardingSettings)
    secrets, documents = asyncio.run(rotate_credentials(settings))
    current = settings.encryption_keys.get_secret_value().split(":", 1)[0]  # the key id, not the key
    print(f"re-encrypted {secrets} secret(s) in {documents} document(s) with key {current}")
    return 0


def register(commands: Any) -> None:
    """Add ``parley channels register`` and ``parley credentials rotate`` to the ops CLI."""
    credentials = commands.add_parser("credentials", help="channel credentials (onboarding)")
    credential_actions = credentials.add_subparsers(dest="action", required=True)
    rotate = credential_actions.add_parser(
        "rotate", help="re-encrypt every channel credential with the first key of PARLEY_ENCRYPTION_KEYS"
    )
    rotate.set_defaults(run=_rotate)
    channels = commands.add_parser("channels", help="channels (onboarding)")
    actions = channels.add_subparsers(dest="action", required=True)
    reg = actions.add_parser("register", help="create an active channel without OAuth", description=__doc__)
    reg.add_argument("--tenant", required=True)
    reg.add_argument("--provider", required=True, choices=[p.value for p in Provider])
    reg.add_argument(
        "--account-id", required=True, help="page id, IG account id, phone_number_id or X user id"
    )
    reg.add_argument("--display-name", default=None)
    reg.add_argument("--business-account-id", default=None, help="WhatsApp WABA id / Instagram's page id")
    reg.add_argument("--access-token", default=None, help="stored encrypted; never printed")
    reg.set_defaults(run=_run)
