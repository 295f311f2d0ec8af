"""Fixtures for the real-client tests (see harness.py for the processes themselves).

- `stack` (session): fake-codex with one account whose auth.json is the gateway's CODEX_HOME (linked mode),
  and codex-gateway in front of it. Shared by the tests that leave no state behind.
- `fresh_stack` (per test): the same, private to one test (for tests that put an account in cooldown etc.).
- `gateway`, `fake`: parts of `stack`; `fake` clears the recorded requests before each test.
On a failure, the gateway's stderr written during that test is attached to the report.

This file is loaded by every venv (.venv, .venv-litellm, .venv-agents): import nothing but pytest and harness here.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

import harness

harness.scrub_env(os.environ)



def _have_litellm() -> bool:
    # tests/clients/litellm itself looks like a namespace package named "litellm": ignore that one.
    spec = importlib.util.find_spec("litellm")
    return spec is not None and spec.origin is not None


def _have_agent_frameworks() -> bool:
    return importlib.util.find_spec("agno") is not None


# The litellm and agent-framework tests run from their own venvs (scripts/test runs them separately).
collect_ignore = ([] if _have_litellm() else ["litellm"]) + ([] if _have_agent_frameworks() else ["agent_frameworks"])

_LIVE: list[harness.Stack] = []


def _start(path) -> harness.Stack:
    try:
        stack = harness.Stack.start(path)
    except RuntimeError as e:
        pytest.fail(f"could not start fake-codex + codex-gateway:\n{e}", pytrace=False)
    _LIVE.append(stack)
    return stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    s = _start(tmp_path_factory.mktemp("stack"))
    yield s
    s.stop()
    _LIVE.remove(s)


@pytest.fixture
def fresh_stack(tmp_path):
    s = _start(tmp_path / "stack")
    yield s
    s.stop()
    _LIVE.remove(s)


@pytest.fixture
def gateway(stack) -> harness.Gateway:
    if not stack.gateway.proc.alive():
        pytest.fail(f"codex-gateway died earlier in the session:\n{stack.describe()}", pytrace=False)
    return stack.gateway


@pytest.fixture
def fake(stack) -> harness.Fake:
    stack.fake.reset_requests()
    return stack.fake


@pytest.fixture(autouse=True)
def _log_marks(request):
    """Remember where each live gateway log stood when the test began."""
    request.node._gw_log_marks = {id(s): len(s.gateway.log_text()) for s in _LIVE}
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed or rep.when == "teardown":
        return
    marks = getattr(item, "_gw_log_marks", {})
    for i, s in enumerate(_LIVE):
        text = s.gateway.log_text()[marks.get(id(s), 0):]
        lines = text.splitlines()[-150:]
        rep.sections.append((f"codex-gateway stderr #{i} during this test ({s.gateway.proc.log_path})",
                             "\n".join(lines) or "(empty)"))
        if not s.gateway.proc.alive():
            rep.sections.append((f"codex-gateway #{i} exited", f"exit code {s.gateway.proc.popen.returncode}"))
