"""The pytest plugin, exercised the way another project would use it (pytester)."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
"""


def test_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    """The installed package declares pytest11 "mailserver" -> mailserver.pytest_plugin."""
    found = [e.value for e in entry_points(group="pytest11") if e.name == "mailserver"]
    assert found == ["mailserver.pytest_plugin"]


def test_fixture_with_marker_spec_delivers_and_reads_back(pytester: pytest.Pytester) -> None:
    """Users, shared grants, lists, rooms and aliases from the marker work over real SMTP and IMAP."""
    pytester.makeini(INI)
    pytester.makepyfile(
        r'''
        import imaplib, smtplib
        from email.message import EmailMessage
        import pytest

        SPEC = dict(
            users={"alice@example.test": "alice-pw", "bob@example.test": "bob-pw"},
            shared={"support@example.test": {"alice@example.test": ["full_access", "send_as"]}},
            lists={"team@example.test": ["alice@example.test", "bob@example.test"]},
            rooms=["boardroom@example.test"],
            aliases={"a.smith@example.test": "alice@example.test"},
        )

        @pytest.mark.mailserver(**SPEC)
        def test_mail_flows(mailserver):
            msg = EmailMessage()
            msg["From"] = "alice@example.test"
            msg["To"] = "team@example.test"
            msg["Subject"] = "Hello team"
            msg.set_content("hi")
            with smtplib.SMTP(mailserver.submission.host, mailserver.submission.port) as s:
                s.starttls(context=mailserver.ssl_context())
                s.login("alice@example.test", "alice-pw")
                s.send_message(msg)
            [got] = mailserver.wait_for_messages("bob@example.test", 1, timeout=10)
            assert got["Subject"] == "Hello team" and got.get_content().strip() == "hi"

            with smtplib.SMTP(mailserver.smtp.host, mailserver.smtp.port) as s:
                s.sendmail("x@elsewhere.test", ["a.smith@example.test", "support@example.test"],
                           b"Subject: via alias\r\n\r\nx\r\n")
            assert [m["Subject"] for m in mailserver.wait_for_messages("alice@example.test", 2)] == [
                "Hello team", "via alias"]
            assert mailserver.wait_for_messages("support@example.test")[0]["Subject"] == "via alias"
            assert mailserver.messages("boardroom@example.test") == []

            with imaplib.IMAP4_SSL(mailserver.imaps.host, mailserver.imaps.port,
                                   ssl_context=mailserver.ssl_context()) as imap:
                imap.login("alice@example.test\\support@example.test", "alice-pw")
                assert imap.select("INBOX")[1] == [b"1"]
        '''
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_conftest_fixture_override_and_config_marker(pytester: pytest.Pytester) -> None:
    """mailserver_accounts can be overridden in conftest.py; config= changes config keys."""
    pytester.makeini(INI)
    pytester.makeconftest(
        '''
        import pytest
        from mailserver.testserver import AccountSpec

        @pytest.fixture
        def mailserver_accounts():
            return AccountSpec.of(users={"carol@shop.test": "pw"})
        '''
    )
    pytester.makepyfile(
        '''
        import smtplib
        import pytest

        @pytest.mark.mailserver(config={"limits.message_size": 2048})
        def test_limits(mailserver):
            assert mailserver.users == {"carol@shop.test": "pw"}
            with smtplib.SMTP(mailserver.smtp.host, mailserver.smtp.port) as s:
                s.sendmail("x@elsewhere.test", ["carol@shop.test"], b"Subject: small\\r\\n\\r\\nok\\r\\n")
                with pytest.raises(smtplib.SMTPException):
                    s.sendmail("x@elsewhere.test", ["carol@shop.test"], b"Subject: big\\r\\n\\r\\n" + b"x" * 4096)
            assert [m["Subject"] for m in mailserver.wait_for_messages("carol@shop.test")] == ["small"]
        '''
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_wait_for_messages_times_out_with_a_clear_message(pytester: pytest.Pytester) -> None:
    """Waiting for mail that never comes raises TimeoutError saying how many arrived."""
    pytester.makeini(INI)
    pytester.makepyfile(
        '''
        import time
        import pytest

        @pytest.mark.mailserver(users={"dave@example.test": "pw"})
        def test_timeout(mailserver):
            start = time.monotonic()
            with pytest.raises(TimeoutError, match=r"dave@example.test: 0 message\\(s\\) in INBOX after 0.3s, expected 1"):
                mailserver.wait_for_messages("dave@example.test", 1, timeout=0.3)
            assert time.monotonic() - start < 5
        '''
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_async_tests_use_the_async_helpers(pytester: pytest.Pytester) -> None:
    """An asyncio test sends with aiosmtplib and awaits wait_for_messages_async without blocking its loop."""
    pytester.makeini(INI)
    pytester.makepyfile(
        '''
        import aiosmtplib
        import pytest

        @pytest.mark.asyncio
        @pytest.mark.mailserver(users={"erin@example.test": "pw"})
        async def test_async(mailserver):
            async with aiosmtplib.SMTP(hostname=mailserver.smtp.host, port=mailserver.smtp.port,
                                       start_tls=False) as smtp:
                await smtp.sendmail("x@elsewhere.test", ["erin@example.test"], b"Subject: async\\r\\n\\r\\nx\\r\\n")
            [msg] = await mailserver.wait_for_messages_async("erin@example.test")
            assert msg["Subject"] == "async"
        '''
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_unknown_marker_argument_is_an_error(pytester: pytest.Pytester) -> None:
    """A misspelt marker argument fails the test instead of being ignored."""
    pytester.makeini(INI)
    pytester.makepyfile(
        '''
        import pytest

        @pytest.mark.mailserver(user={"a@example.test": "pw"})
        def test_typo(mailserver):
            pass
        '''
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*unknown argument(s) user*"])


def test_readme_example_test_passes(pytester: pytest.Pytester) -> None:
    """The complete example test in the README's "Using it in your test suite" section passes as written."""
    import re

    from tests.helpers import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Using it in your test suite", 1)[1].split("\n## ", 1)[0]
    [example] = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    pytester.makeini(INI)
    pytester.makepyfile(test_readme_example=example)
    pytester.runpytest().assert_outcomes(passed=1)
