"""Issue 10 §4, kill -9: the short CI version of bench/soak/kill9.py (3 cycles of mixed
SMTP, submission + outbound and IMAP load, each ended by SIGKILL, then restart, drain and
checks). The long run: ``python bench/soak/kill9.py --cycles 30``."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak.kill9 import Checker, sink_duplicates, soak
from bench.soak.kill9 import report as soak_report

#: Load time per cycle (the kill falls in its last 70%): with restart, drain and checks,
#: three cycles take about 15 s on the 2-core CI machine.
CYCLES, SECONDS_PER_CYCLE, SEED = 3, 2.0, 10


@pytest.mark.slow
async def test_kill_9_under_mixed_load_loses_nothing_duplicates_nothing_reuses_no_uid(tmp_path: Path) -> None:
    """After each of 3 kills: every 250/OK message is stored once, no UID is reused, outbound sends each recipient
    at most once outside the kill window, and integrity_check is ok."""
    summary = await soak(CYCLES, SECONDS_PER_CYCLE, SEED, workdir=tmp_path / "soak")
    print(soak_report(summary))  # the figures, shown with pytest -s or on failure
    assert summary.kills == CYCLES and len(summary.cycles) == CYCLES
    assert summary.problems == [], "\n".join(summary.problems[:20])
    assert all(c.integrity == "ok" for c in summary.cycles)
    rec = summary.record
    # The load really ran: each kind of client got acknowledgements before the kills.
    assert len(rec.acked_local) >= 30 and len(rec.acked_remote) >= 5 and len(rec.appended) >= 3, (
        len(rec.acked_local), len(rec.acked_remote), len(rec.appended))
    last = summary.cycles[-1]
    assert last.found_once == last.expected > 0
    assert last.dup_other == 0


def test_checker_flags_a_reused_uid_and_classifies_sink_duplicates() -> None:
    """The soak's own checks can fail: a UID naming a second message is reported; a duplicate without a kill between is not excused."""
    checker, problems = Checker(), list[str]()
    checker.see_uid("bob/INBOX", 7, 1, "<a@x>", problems)
    checker.see_uid("bob/INBOX", 7, 1, "<a@x>", problems)
    assert problems == []
    checker.see_uid("bob/INBOX", 7, 1, "<b@x>", problems)
    assert len(problems) == 1 and "UID reused" in problems[0]
    accepted = [("<m@x>", "r@remote.test", 1.0), ("<m@x>", "r@remote.test", 3.0), ("<n@x>", "r@remote.test", 4.0),
                ("<n@x>", "r@remote.test", 5.0)]
    with_kill, without, examples = sink_duplicates(accepted, kills=[2.0])
    assert (with_kill, without) == (1, 1) and "<n@x>" in examples[0]
