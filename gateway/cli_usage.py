"""`gateway usage` (usage reports as a terminal table, CSV or JSON) and `gateway limits …` (show, set, remove
limits; top up prepaid balances): the same operations as the admin API, straight on the store."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from gateway.audit import Actor
from gateway.config import Settings
from gateway.errors import BadRequest
from gateway.keys import KeyService
from gateway.limits import Budget, Limits, LimitsService
from gateway.store import Store
from gateway.usage import UsageQuery, UsageReports, parse_groups, report_csv
from gateway.usage.reports import MEASURES

OnStore = Callable[[Settings, Callable[[Store], Awaitable[Any]]], Any]
"""Runs an operation over the configured (or running embedded) Redis and returns its result."""
Instant = Callable[[str | None, str], float | None]


def add_commands(commands: Any, on_store: OnStore, instant: Instant) -> None:
    """Register `usage` and `limits` on the CLI's subcommands."""
    usage = commands.add_parser("usage", help="usage per tenant, key and model (like GET /admin/v1/usage)")
    for flag in ("--tenant", "--key-id", "--model"):
        usage.add_argument(flag)
    usage.add_argument("--since", help="ISO 8601 time (default: 30 days before --until)")
    usage.add_argument("--until", help="ISO 8601 time, exclusive (default: now)")
    usage.add_argument("--group-by", default="day", help="comma-separated: hour or day, tenant, key, model, version, provider")
    usage.add_argument("--format", choices=("table", "csv", "json"), default="table")
    usage.set_defaults(run=lambda settings, args: _usage(settings, args, on_store, instant))

    limits = commands.add_parser("limits", help="limits of tenants and keys").add_subparsers(required=True, metavar="ACTION")
    show = limits.add_parser("show", help="limits and their state (running, balance, spending)")
    show.add_argument("--tenant")
    show.set_defaults(run=lambda settings, args: _print(on_store(settings, lambda store: _show(store, args))))
    change = limits.add_parser("set", help="replace the limits of a tenant or a key")
    _scope(change)
    change.add_argument("--creates-per-minute", type=int)
    change.add_argument("--reads-per-minute", type=int)
    change.add_argument("--concurrent", type=int, help="unfinished predictions at a time")
    change.add_argument("--budget", help="money per --budget-period, e.g. 25.00")
    change.add_argument("--budget-period", choices=("day", "month"), default="month")
    change.add_argument("--prepaid", action="store_true", help="creates draw on a prepaid balance (see top-up)")
    change.set_defaults(run=lambda settings, args: _print(on_store(settings, lambda store: _set(store, args))))
    remove = limits.add_parser("remove", help="remove the limits of a tenant or a key")
    _scope(remove)
    remove.set_defaults(run=lambda settings, args: _print(on_store(settings, lambda store: _set(store, args, remove=True))))
    top_up = limits.add_parser("top-up", help="add to (negative: take from) a prepaid balance")
    _scope(top_up)
    top_up.add_argument("amount", help="e.g. 10.00")
    top_up.set_defaults(run=lambda settings, args: _print(on_store(settings, lambda store: _top_up(store, args))))


def _scope(command: argparse.ArgumentParser) -> None:
    scope = command.add_mutually_exclusive_group(required=True)
    scope.add_argument("--tenant")
    scope.add_argument("--key-id")


def _print(result: Any) -> None:
    print(json.dumps(result, indent=2))


def _usage(settings: Settings, args: argparse.Namespace, on_store: OnStore, instant: Instant) -> None:
    query = UsageQuery(
        tenants=[args.tenant] if args.tenant else None,
        key_id=args.key_id,
        model=args.model,
        since=instant(args.since, "--since"),
        until=instant(args.until, "--until"),
        group_by=parse_groups(args.group_by),
    )
    report = on_store(settings, lambda store: UsageReports(store.usage, settings.currency).report(query))
    if args.format == "json":
        _print(report)
    elif args.format == "csv":
        sys.stdout.write(report_csv(report))
    else:
        print(table(report))


def table(report: dict[str, Any]) -> str:
    """A report as an aligned text table: a row per group, then the totals; numbers right-aligned."""
    dims = [("period" if g in ("hour", "day") else "key_id" if g == "key" else g) for g in report["group_by"]]
    header = [*dims, *MEASURES]
    rows = [[str(row[name]) for name in header] for row in report["results"]]
    rows.append(["total", *([""] * (len(dims) - 1)), *(str(report["totals"][m]) for m in MEASURES)])
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i < len(dims) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    caption = f"usage from {report['since']} until {report['until']} ({report['currency']})"
    return "\n".join([caption, line(header), rule, *(line(r) for r in rows[:-1]), rule, line(rows[-1])])


async def _tenant_of(store: Store, args: argparse.Namespace) -> tuple[str, str | None]:
    if args.tenant:
        return args.tenant, None
    key = await KeyService(store.keys).get(args.key_id)
    return key.tenant, key.key_id


def _limits(store: Store) -> LimitsService:
    return LimitsService(store.limits, 0, 0)


async def _show(store: Store, args: argparse.Namespace) -> Any:
    return await _limits(store).report_keys(await KeyService(store.keys).list(args.tenant), args.tenant)


async def _set(store: Store, args: argparse.Namespace, *, remove: bool = False) -> Any:
    tenant, key_id = await _tenant_of(store, args)
    limits = None
    if not remove:
        limits = Limits(
            creates_per_minute=args.creates_per_minute,
            reads_per_minute=args.reads_per_minute,
            concurrent_predictions=args.concurrent,
            budget=None if args.budget is None else Budget(amount=_amount(args.budget), period=args.budget_period),
            prepaid=args.prepaid,
        )
    await _limits(store).set_limits(tenant, key_id, limits, actor=Actor.cli())
    return (await _limits(store).report(tenant, [key_id] if key_id else []))[-1]


async def _top_up(store: Store, args: argparse.Namespace) -> Any:
    tenant, key_id = await _tenant_of(store, args)
    await _limits(store).add_balance(tenant, key_id, _amount(args.amount), actor=Actor.cli())
    return (await _limits(store).report(tenant, [key_id] if key_id else []))[-1]


def _amount(text: str) -> Decimal:
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise BadRequest(f"{text!r} is not an amount, e.g. 10.00") from None
    if not amount.is_finite() or amount.as_tuple().exponent < -9:  # type: ignore[operator]
        raise BadRequest(f"{text!r}: amounts have at most nine decimal places")
    return amount
