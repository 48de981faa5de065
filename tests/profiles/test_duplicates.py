"""The duplicates audit: FreeAgent contacts sharing an e-mail or an exact name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from profiles.freeagent_contact_export.duplicates import (
    WIDTH,
    audit,
    group_duplicates,
    hide_unlinked,
    render,
)
from profiles.freeagent_contact_export.resolve import ContactIndex
from simulators.magento import MagentoState
from simulators.stack import Stack
from tests.clirun import fa_sync


def _c(n: int, email: str | None = None, status: str = "Active", **names: str) -> dict[str, Any]:
    names = names or {"first_name": "P", "last_name": str(n)}
    return {"url": f"https://x/v2/contacts/{n}", "email": email, "status": status, **names}


@pytest.mark.parametrize(
    ("contacts", "links", "groups", "hide"),
    [
        # one e-mail in two cases: one group; the unlinked Active copy is the one to hide
        ([_c(1, "a@b.c"), _c(2, "A@B.C"), _c(3, "z@b.c")], {"https://x/v2/contacts/1": 9},
         [("email", "a@b.c", 2)], [2]),
        # nobody linked: nothing says which is right, nothing is hidden
        ([_c(1, "a@b.c"), _c(2, "a@b.c")], {}, [("email", "a@b.c", 2)], []),
        # an already Hidden copy is not hidden again
        ([_c(1, "a@b.c"), _c(2, "a@b.c", "Hidden")], {"https://x/v2/contacts/1": 9},
         [("email", "a@b.c", 2)], []),
        # same exact name, different e-mails: listed, never hidden (a name is not an identity)
        ([_c(1, "x@b.c", first_name="Ann", last_name="Lee"),
          _c(2, "y@b.c", first_name="Ann", last_name="Lee")], {"https://x/v2/contacts/1": 9},
         [("name", "Ann Lee", 2)], []),
        # e-mail and name groups with the same members are listed once
        ([_c(1, "a@b.c", organisation_name="Acme"), _c(2, "a@b.c", organisation_name="Acme")],
         {}, [("email", "a@b.c", 2)], []),
        # names are exact: case differs, no group
        ([_c(1, organisation_name="Acme"), _c(2, organisation_name="ACME")], {}, [], []),
    ],
)  # fmt: skip
def test_group_duplicates(contacts: Any, links: Any, groups: Any, hide: list[int]) -> None:
    """Grouping by e-mail (any case) and exact name, and which copies hide_unlinked hides."""
    found = group_duplicates(contacts, links)
    assert [(g.by, g.value, len(g.members)) for g in found] == groups
    to_hide = [m.url for g in found for m in g.to_hide()]
    assert to_hide == [f"https://x/v2/contacts/{n}" for n in hide]


def test_render_fits_80_columns() -> None:
    """Long names and e-mails are cut, not wrapped; the link is shown per contact."""
    long = "Wolfeschlegelsteinhausenbergerdorff " * 3
    contacts = [
        _c(1, "x" * 90 + "@example.com", organisation_name=long),
        _c(22222222, "x" * 90 + "@example.com", organisation_name=long),
    ]
    lines = render(group_duplicates(contacts, {"https://x/v2/contacts/1": 7}))
    assert max(len(line) for line in lines) <= WIDTH
    assert "ledger row 7" in lines[1] and "unlinked" in lines[2]


@pytest.fixture
def magento_state() -> MagentoState:
    return MagentoState.seeded(customers=2, guest_orders=0)


async def _seed(pool: asyncpg.Pool, stack: Stack) -> dict[str, str]:
    fa = stack.freeagent
    urls = {
        "linked": fa.add_contact({"first_name": "Ann", "last_name": "Lee", "email": "ann@x.io"}),
        "copy": fa.add_contact({"first_name": "Ann", "last_name": "Lee", "email": "ANN@x.io"}),
        "hidden": fa.add_contact(
            {"first_name": "A", "last_name": "Lee", "email": "ann@x.io", "status": "Hidden"}
        ),
        "bob1": fa.add_contact({"organisation_name": "Bob Ltd", "email": "one@bob.io"}),
        "bob2": fa.add_contact({"organisation_name": "Bob Ltd", "email": "two@bob.io"}),
        "solo": fa.add_contact({"first_name": "Solo", "last_name": "One", "email": "s@x.io"}),
    }
    await pool.execute(
        "INSERT INTO contact_entity (profile_id, source_key, email, freeagent_url, status)"
        " VALUES ($1, 'customer:500', 'ann@x.io', $2, 'created')",
        stack.profile_id,
        urls["linked"],
    )
    return urls


async def _status(stack: Stack, url: str) -> str:
    return next(c["status"] for c in stack.freeagent.contacts_list() if c["url"] == url)


async def test_audit_of_a_seeded_freeagent_hides_only_the_unlinked_copy(
    pool: asyncpg.Pool, stack: Stack, factory
) -> None:
    """Hidden contacts are included; the one Active unlinked e-mail copy is hidden, no other."""
    urls = await _seed(pool, stack)
    fa = await factory.freeagent(stack.client_id, profile_name="demo")
    index = ContactIndex(pool=pool, client_id=stack.client_id, freeagent=fa)
    groups = await audit(pool, index, stack.client_id)
    assert [(g.by, g.value, len(g.members)) for g in groups] == [
        ("email", "ann@x.io", 3),
        ("name", "Bob Ltd", 2),
    ]
    ann = groups[0]
    assert {m.url: m.ledger_row for m in ann.members}[urls["linked"]] is not None
    stack.freeagent.reset_counters()
    preview = await hide_unlinked(fa, groups, dry_run=True)
    assert [m.url for _, m in preview] == [urls["copy"]]
    assert stack.freeagent.write_count() == 0
    await hide_unlinked(fa, groups, dry_run=False)
    assert stack.freeagent.write_count() == 1
    assert await _status(stack, urls["copy"]) == "Hidden"
    for name in ("linked", "bob1", "bob2", "solo"):
        assert await _status(stack, urls[name]) == "Active"


async def test_audit_drops_contacts_freeagent_no_longer_has(
    pool: asyncpg.Pool, stack: Stack, factory
) -> None:
    """A contact deleted in FreeAgent since it was indexed is no longer reported."""
    urls = await _seed(pool, stack)
    fa = await factory.freeagent(stack.client_id, profile_name="demo")
    index = ContactIndex(pool=pool, client_id=stack.client_id, freeagent=fa)
    await index.refresh(full=True)
    del stack.freeagent.contacts[int(urls["bob2"].rsplit("/", 1)[1])]
    groups = await audit(pool, index, stack.client_id)
    assert [g.value for g in groups] == ["ann@x.io"]


async def test_cli_lists_and_hides_in_json(
    pool: asyncpg.Pool, stack: Stack, database_dsn: str, tmp_path: Path
) -> None:
    """`fa-sync contact duplicates --hide-unlinked --json` reports groups and what it hid."""
    urls = await _seed(pool, stack)
    code, out, err = await fa_sync(
        "contact", "duplicates", "--profile", "demo", "--hide-unlinked", "--json",
        dsn=database_dsn, cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    body = json.loads(out)
    assert [g["value"] for g in body["groups"]] == ["ann@x.io", "Bob Ltd"]
    assert [h["url"] for h in body["hidden"]] == [urls["copy"]]
    assert await _status(stack, urls["copy"]) == "Hidden"
