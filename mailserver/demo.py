"""`serve --demo`: an idempotent demo organisation for newcomers."""

from __future__ import annotations

from auth.accounts import AccountService
from storage.types import AccountKind, Right

#: Demo logins are fixed so that the printed table stays true across restarts; the demo
#: is meant for loopback listeners only.
DEMO_USERS = (("alice", "Alice Example", "alice-demo-pw"), ("bob", "Bob Example", "bob-demo-pw"))


async def seed_demo(accounts: AccountService, domain: str) -> list[str]:
    """Create what is missing of the demo organisation; return the lines to print."""
    d = accounts.directory
    for local, name, password in DEMO_USERS:
        if await d.get_account(f"{local}@{domain}") is None:
            await accounts.add_user(f"{local}@{domain}", name, password, licensed=True)
    hr = f"hr@{domain}"
    if await d.get_account(hr) is None:
        await accounts.add_shared(hr, "Human Resources")
    await accounts.grant(hr, f"alice@{domain}", [Right.FULL_ACCESS, Right.SEND_AS])
    await accounts.grant(hr, f"bob@{domain}", [Right.FULL_ACCESS, Right.SEND_ON_BEHALF])
    team = f"team@{domain}"
    if await d.get_account(team) is None:
        await accounts.add_list(team, "Team")
    existing = set(await d.members(team))
    missing = [f"{u}@{domain}" for u, _, _ in DEMO_USERS if f"{u}@{domain}" not in existing]
    if missing:
        await accounts.add_members(team, missing)
    room = f"boardroom@{domain}"
    if await d.get_account(room) is None:
        await accounts.add_room(room, "Boardroom", capacity=12)
    rooms = [a.address for a in await d.list_accounts(AccountKind.ROOM)]
    return [
        "Demo organisation ready:",
        *(f"  user    {local}@{domain}  password: {pw}" for local, _, pw in DEMO_USERS),
        f"  shared  {hr}  (alice: Full Access + Send As; bob: Full Access + Send on Behalf)",
        f"  list    {team}  (alice, bob)",
        f"  room    {', '.join(rooms)}",
        f"  delegate login to the shared mailbox: alice@{domain}\\{hr}",
    ]
