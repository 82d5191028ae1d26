"""``parley``: the ops CLI.

Core commands live here; a service contributes more by exposing a ``register(subparsers)``
function in the ``parley.cli`` entry-point group (ingest adds ``replay``). Each command's
``run(settings, args)`` returns the exit code: 0 success, 1 the operation failed, 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from importlib.metadata import entry_points

from parley_shared import ops, storecopy
from parley_shared.admin import describe_topics, ensure_topics
from parley_shared.settings import ServiceSettings, load_settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


async def _create_with_wait(settings: ServiceSettings, args: argparse.Namespace) -> list[str]:
    deadline = time.monotonic() + args.wait
    while True:
        try:
            return await ensure_topics(
                settings.kafka_bootstrap_servers,
                settings.topic_namespace,
                replication_factor=args.replication_factor,
            )
        except Exception:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(1)


def _topics_create(settings: ServiceSettings, args: argparse.Namespace) -> int:
    created = asyncio.run(_create_with_wait(settings, args))
    for name in created:
        print(f"created {name}")
    print(f"{len(created)} topic(s) created; the rest already existed")
    return EXIT_OK


def _topics_describe(settings: ServiceSettings, _args: argparse.Namespace) -> int:
    states = asyncio.run(describe_topics(settings.kafka_bootstrap_servers, settings.topic_namespace))
    for state in states:
        print(f"{state.name}\tpartitions={state.partitions}")
    return EXIT_OK


def _dlq_list(settings: ServiceSettings, _args: argparse.Namespace) -> int:
    sizes = asyncio.run(ops.dlq_sizes(settings.kafka_bootstrap_servers, settings.topic_namespace))
    for topic, size in sorted(sizes.items()):
        print(f"{topic}\t{size}")
    return EXIT_OK


def _dlq_inspect(settings: ServiceSettings, args: argparse.Namespace) -> int:
    letters = asyncio.run(
        ops.read_dlq(settings.kafka_bootstrap_servers, _dlq(settings, args.topic), args.limit)
    )
    for letter in letters:
        print(f"{letter.origin}\tkey={letter.key}\tattempts={letter.attempts}\t{letter.error}")
    print(f"{len(letters)} record(s)")
    return EXIT_OK


def _dlq_redrive(settings: ServiceSettings, args: argparse.Namespace) -> int:
    sent = asyncio.run(ops.redrive(settings.kafka_bootstrap_servers, _dlq(settings, args.topic), args.limit))
    print(f"redrove {sent} record(s) to their original topic")
    return EXIT_OK


def _dlq(settings: ServiceSettings, topic: str) -> str:
    """Accept a primary topic or its DLQ, with or without the namespace."""
    name = topic if topic.endswith(".dlq") else f"{topic}.dlq"
    ns = settings.topic_namespace
    return name if not ns or name.startswith(f"{ns}.") else f"{ns}.{name}"


def _lag(settings: ServiceSettings, _args: argparse.Namespace) -> int:
    lags = asyncio.run(ops.consumer_lag(settings.kafka_bootstrap_servers, settings.consumer_group_prefix))
    for lag in lags:
        print(f"{lag.group}\t{lag.topic}\t{lag.lag}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parley",
        description="Operate a Parley deployment. Reads PARLEY_* settings from the environment.",
        epilog="Exit codes: 0 success, 1 the operation failed, 2 usage error.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    topics = commands.add_parser("topics", help="Kafka topics of the catalog")
    topic_commands = topics.add_subparsers(dest="action", required=True)
    create = topic_commands.add_parser("create", help="create missing topics (idempotent)")
    create.add_argument("--replication-factor", type=int, default=1)
    create.add_argument(
        "--wait", type=float, default=0, help="seconds to keep retrying while the broker starts"
    )
    create.set_defaults(run=_topics_create)
    describe = topic_commands.add_parser("describe", help="list the catalog's topics")
    describe.set_defaults(run=_topics_describe)
    dlq = commands.add_parser("dlq", help="dead-letter queues")
    dlq_commands = dlq.add_subparsers(dest="action", required=True)
    dlq_commands.add_parser("list", help="every DLQ and how many records it holds").set_defaults(
        run=_dlq_list
    )
    inspect = dlq_commands.add_parser("inspect", help="the records of one DLQ, with their errors")
    inspect.add_argument("topic", help="the topic (e.g. parley.messages.inbound.v1) or its .dlq")
    inspect.add_argument("--limit", type=int, default=100)
    inspect.set_defaults(run=_dlq_inspect)
    redrive = dlq_commands.add_parser(
        "redrive", help="send a DLQ's records back to their topic (after a fix)"
    )
    redrive.add_argument("topic", help="the topic (e.g. parley.messages.inbound.v1) or its .dlq")
    redrive.add_argument("--limit", type=int, default=1000)
    redrive.set_defaults(run=_dlq_redrive)
    lag = commands.add_parser("lag", help="consumer lag per group and topic")
    lag.set_defaults(run=_lag)
    storecopy.register(commands)
    # services add their own commands (replay, dlq, channels) through this entry-point group
    for plugin in sorted(entry_points(group="parley.cli"), key=lambda ep: ep.name):
        plugin.load()(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings(ServiceSettings)
    try:
        code: int = args.run(settings, args)
    except Exception as exc:
        print(f"parley {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return code


if __name__ == "__main__":
    raise SystemExit(main())
