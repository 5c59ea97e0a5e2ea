"""Every ``CLAUDE_POOL_API_TOKENS`` example the documentation shows is one ``serve`` accepts.

An example is the value of any line that sets the variable (in a code block, a ``.env`` line or a
comment), and anything shaped like an entry (``x=y``) in that line's trailing comment ("# or:
tok1=*;tok2=acme"). A placeholder (``<a long random token>``) or a shell variable (``$TOKEN``)
stands for a token made as the documents say (``secrets.token_urlsafe(32)``); everything else is
parsed as written, literal tokens included.
"""

from __future__ import annotations

import re
import secrets
import shlex
from pathlib import Path

import pytest

from claude_pool.http.auth import ENV_VAR, ApiTokens

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = ("README.md", "docs/SETUP.md", ".env.example")
_PLACEHOLDER = re.compile(r"<[^<>]*>|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")


def _filled(value: str) -> str:
    return _PLACEHOLDER.sub(lambda _: secrets.token_urlsafe(32), value)


def _line_examples(line: str) -> list[str]:
    """The examples of one line that sets the variable: its value, and entries in its comment."""
    assignment = line[line.index(f"{ENV_VAR}=") :]
    words = shlex.split(assignment.rstrip("`"), comments=False)
    examples = [words[0].split("=", 1)[1]]
    if "#" in words:
        comment = words[words.index("#") + 1 :]
        examples += [w.rstrip("`,.") for w in comment if "=" in w]
    return examples


def token_examples(document: str) -> list[str]:
    text = (ROOT / document).read_text(encoding="utf-8")
    return [
        example for line in text.splitlines() if f"{ENV_VAR}=" in line for example in _line_examples(line)
    ]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_token_example_parses(document: str) -> None:
    examples = token_examples(document)
    assert examples, f"{document} shows no {ENV_VAR} example"
    for example in examples:
        ApiTokens.parse(_filled(example))  # raises SettingsError, naming the rule, for a bad one


def test_the_readme_shows_both_forms_and_they_grant_the_same() -> None:
    examples = [e for e in token_examples("README.md") if e.strip()]
    json_forms = [e for e in examples if e.lstrip().startswith("{")]
    plain_forms = [e for e in examples if not e.lstrip().startswith("{")]
    assert json_forms and plain_forms
    # The README calls the plain line "the same": each literal token is granted the same scope.
    for json_form, plain_form in zip(json_forms, plain_forms, strict=False):
        tokens = re.findall(r'"([^"]{16,})"', json_form)
        assert tokens
        json_tokens, plain_tokens = ApiTokens.parse(json_form), ApiTokens.parse(plain_form)
        for token in tokens:
            granted = json_tokens.authenticate(token)
            assert granted is not None
            assert plain_tokens.authenticate(token) == granted


def test_the_readme_states_the_rules() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### HTTP API", 1)[1].split("\n### ", 1)[0]
    assert "at least 16 characters" in section and "token_urlsafe" in section
    assert "`*`" in section and "`;`" in section


def test_a_short_token_is_refused_with_the_rule() -> None:
    with pytest.raises(Exception, match="at least 16"):
        ApiTokens.parse("tok1=*;tok2=acme,beta")
