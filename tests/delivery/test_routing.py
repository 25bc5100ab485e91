"""Router unit tests: list expansion with cycles and depth, policies, relay decisions.

The SQLite directory refuses list cycles, so cycles (which can still appear when two
daemons or an old database race) are pinned here against a small in-memory directory
that implements only the read methods the router calls.
"""

from __future__ import annotations

from delivery import replies as R
from delivery.routing import ListExpansion, LocalMailbox, Rejection, Relay, Router, SenderContext
from storage.types import Account, AccountKind, Alias, Grant


class Dir:
    """The reads a directory snapshot loads (version, domains, accounts, aliases, members, grants) over dicts."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.aliases: dict[str, str] = {}
        self.lists: dict[str, list[str]] = {}

    def add(self, address: str, kind: AccountKind = AccountKind.USER, *, licensed: bool = True,
            enabled: bool = True, members: list[str] | None = None, settings: dict[str, object] | None = None) -> Account:
        acc = Account(len(self.accounts) + 1, address, kind, address.split("@")[0], enabled,
                      licensed and kind is AccountKind.USER, None, dict(settings or {}))
        self.accounts[address] = acc
        if kind is AccountKind.LIST:
            self.lists[address] = list(members or [])
        return acc

    async def version(self) -> int:
        return 1

    async def list_domains(self) -> list[str]:
        return ["example.test"]

    async def resolve(self, address: str) -> Account | None:
        return self.accounts.get(self.aliases.get(address, address))

    async def members(self, list_address: str) -> list[str]:
        return self.lists[list_address]

    async def list_accounts(self) -> list[Account]:
        return list(self.accounts.values())

    async def list_aliases(self) -> list[Alias]:
        return [Alias(a, t) for a, t in self.aliases.items()]

    async def grants_on(self, mailbox: str) -> list[Grant]:
        return []


ANON = SenderContext(None, "x@elsewhere.example")


async def test_cycle_expands_each_member_once_and_never_the_list_itself() -> None:
    """a = {b, alice}, b = {a, alice, bob}: alice and bob once each; the cycle ends."""
    d = Dir()
    alice, bob = d.add("alice@example.test"), d.add("bob@example.test")
    d.add("a@example.test", AccountKind.LIST, members=["b@example.test", "alice@example.test"],
          settings={"require_sender_authentication": False})
    d.add("b@example.test", AccountKind.LIST, members=["a@example.test", "ALICE@example.test", "bob@example.test"])
    res = await Router(d).resolve("a@example.test", ANON)  # type: ignore[arg-type]
    assert isinstance(res, ListExpansion)
    assert sorted(a.id for a in res.local) == sorted([alice.id, bob.id])


async def test_depth_limit_stops_expansion() -> None:
    """A chain of 12 nested lists expands to depth 10 only."""
    d = Dir()
    users = [d.add(f"u{i}@example.test") for i in range(12)]
    for i in reversed(range(12)):
        members = [f"u{i}@example.test"] + ([f"l{i + 1}@example.test"] if i < 11 else [])
        d.add(f"l{i}@example.test", AccountKind.LIST, members=members, settings={"require_sender_authentication": False})
    res = await Router(d, max_depth=10).resolve("l0@example.test", ANON)  # type: ignore[arg-type]
    assert isinstance(res, ListExpansion)
    assert [a.id for a in res.local] == [u.id for u in users[:10]]


async def test_alias_external_and_unavailable_members() -> None:
    """Aliases resolve, externals become remote (once), disabled/unlicensed/unknown members are skipped."""
    d = Dir()
    alice = d.add("alice@example.test")
    d.add("carol@example.test", licensed=False)
    d.add("dave@example.test", enabled=False)
    d.aliases["al@example.test"] = "alice@example.test"
    d.add("l@example.test", AccountKind.LIST, settings={"require_sender_authentication": False},
          members=["al@example.test", "alice@example.test", "carol@example.test", "dave@example.test",
                   "ghost@example.test", "x@far.example", "X@FAR.example"])
    res = await Router(d).resolve("l@example.test", ANON)  # type: ignore[arg-type]
    assert isinstance(res, ListExpansion)
    assert [a.id for a in res.local] == [alice.id]
    assert res.remote == ("x@far.example",)


async def test_direct_resolutions() -> None:
    """User, alias, unknown, unlicensed, relay with and without authentication."""
    d = Dir()
    alice = d.add("alice@example.test")
    d.add("carol@example.test", licensed=False)
    d.aliases["al@example.test"] = "alice@example.test"
    r = Router(d)  # type: ignore[arg-type]
    assert await r.resolve("AL@Example.Test", ANON) == LocalMailbox(alice)
    assert await r.resolve("nobody@example.test", ANON) == Rejection(R.R550_5_1_1_USER_UNKNOWN.format(address="nobody@example.test"))
    assert await r.resolve("carol@example.test", ANON) == Rejection(R.R550_5_2_1_MAILBOX_UNAVAILABLE)
    assert await r.resolve("x@far.example", ANON) == Rejection(R.R554_5_7_1_RELAY_DENIED)
    assert await r.resolve("x@far.example", SenderContext(alice, "alice@example.test")) == Relay("x@far.example")


async def test_tricks_never_become_a_relay() -> None:
    """Percent hacks, bang paths and quoted @ are unknown local users, for anonymous and authenticated senders alike."""
    d = Dir()
    alice = d.add("alice@example.test")
    d.add("user@example.test")
    r = Router(d)  # type: ignore[arg-type]
    for sender in (ANON, SenderContext(alice, "alice@example.test")):
        for address in ("user%elsewhere.example@example.test", "elsewhere.example!user@example.test",
                        '"user@elsewhere.example"@example.test'):
            res = await r.resolve(address, sender)
            assert isinstance(res, Rejection) and res.reply.enhanced == "5.1.1", (address, res)


async def test_malformed_and_over_long_addresses_are_refused_before_relaying() -> None:
    """Bad syntax is 553 5.1.3 and a passed length limit 501 5.1.3, even for an authenticated sender."""
    d = Dir()
    alice = d.add("alice@example.test")
    r = Router(d)  # type: ignore[arg-type]
    auth = SenderContext(alice, "alice@example.test")
    for address in ("alice@example.test.", "x@-far.example", "x@far.example%example.test", "x@[far.example]", "x"):
        assert await r.resolve(address, auth) == Rejection(R.R553_5_1_3_BAD_ADDRESS), address
    long_local = Rejection(R.R501_5_1_3_ADDRESS_TOO_LONG.format(detail="local part longer than 64 octets"))
    assert await r.resolve("x" * 65 + "@far.example", auth) == long_local
    assert await r.resolve("x" * 65 + "@example.test", ANON) == long_local
    res = await r.resolve("x@" + "l" * 64 + ".example", auth)
    assert isinstance(res, Rejection) and (res.reply.code, res.reply.enhanced) == (501, "5.1.3")


async def test_address_literals_are_never_routed() -> None:
    """user@[192.0.2.1] is relay-denied without AUTH and refused as a literal with AUTH: never a Relay."""
    d = Dir()
    alice = d.add("alice@example.test")
    r = Router(d)  # type: ignore[arg-type]
    for literal in ("user@[192.0.2.1]", "user@[127.0.0.1]", "user@[IPv6:::1]"):
        assert await r.resolve(literal, ANON) == Rejection(R.R554_5_7_1_RELAY_DENIED)
        assert await r.resolve(literal, SenderContext(alice, "alice@example.test")) == Rejection(
            R.R550_5_7_1_ADDRESS_LITERAL_DENIED
        )
