from __future__ import annotations

import secrets
import string

import pytest

from cml_nb.secrets import MASK, Scrubber, looks_secret, mask_parameters


def _random(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


ALNUM = string.ascii_letters + string.digits
FAKE_TOKENS = [
    "ghp_" + _random(ALNUM, 36),
    "github_pat_" + _random(ALNUM + "_", 60),
    "glpat-" + _random(ALNUM, 20),
    "AKIA" + _random(string.ascii_uppercase + string.digits, 16),
    "xoxb-" + _random(string.digits, 12) + "-" + _random(ALNUM, 24),
    "-----BEGIN RSA PRIVATE KEY-----\nMIIE"
    + _random(ALNUM, 64)
    + "\n-----END RSA PRIVATE KEY-----",
]


@pytest.mark.parametrize("token", FAKE_TOKENS)
def test_token_formats_masked(token: str) -> None:
    text = f"log line: {token} done"
    assert Scrubber(include_env=False).scrub(text) == f"log line: {MASK} done"


def test_aws_secret_keeps_the_key_name() -> None:
    secret = _random(ALNUM + "/+", 40)
    scrubbed = Scrubber(include_env=False).scrub(f"aws_secret_access_key = {secret}\n")
    assert scrubbed == f"aws_secret_access_key = {MASK}\n"


def test_known_values_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    value = _random(ALNUM, 24)
    monkeypatch.setenv("MY_SERVICE_PASSWORD", value)
    scrubber = Scrubber(["plainvalue123"])
    assert scrubber.scrub(f"{value} plainvalue123 ok") == f"{MASK} {MASK} ok"
    assert scrubber.scrub_data({"a": [value, 1]}) == {"a": [MASK, 1]}


def test_names() -> None:
    assert all(map(looks_secret, ["token", "GITHUB_TOKEN", "db_password", "api_key", "secret"]))
    assert not any(map(looks_secret, ["lr", "epochs", "monkey", "keyboard_layout"]))
    assert mask_parameters({"token": "x", "lr": 1}) == {"token": MASK, "lr": 1}


@pytest.mark.parametrize("prefix", ["ghp_", "gho_", "github_pat_", "glpat-", "AKIA", "xoxb-"])
@pytest.mark.parametrize("cut", ["\u2026", "...", ""])
def test_truncated_token_keeps_no_prefix(prefix: str, cut: str) -> None:
    # pandas cuts long cells to "ghp_AbCdEfGh…": the part it keeps is still a secret.
    kept = prefix + _random(string.ascii_uppercase + string.digits, 9)
    scrubbed = Scrubber(include_env=False).scrub(f"| {kept}{cut} |")
    assert kept not in scrubbed and MASK in scrubbed


def test_short_prefixes_are_ordinary_words() -> None:
    text = "ghp_ is GitHub's prefix; AKIA1234 too short; glpat-abc"
    assert Scrubber(include_env=False).scrub(text) == text


@pytest.mark.parametrize("cut", ["\u2026", "...", ""])
def test_secret_value_cut_short_is_masked(cut: str) -> None:
    value = _random(string.ascii_lowercase, 30)
    scrubber = Scrubber([value], include_env=False)
    scrubbed = scrubber.scrub(f"'{value[:12]}{cut}")
    assert value[:8] not in scrubbed, scrubbed
    # The same letters going on differently are another word, left alone.
    assert scrubber.scrub(value[:10] + "ZZ") == value[:10] + "ZZ"


def test_scrub_data_masks_keys_too() -> None:
    token = "ghp_" + _random(ALNUM, 36)
    assert Scrubber(include_env=False).scrub_data({token: {"v": [token]}}) == {MASK: {"v": [MASK]}}
