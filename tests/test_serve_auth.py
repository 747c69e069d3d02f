"""`serve`'s token: 401 without it or with a wrong one (with `WWW-Authenticate: Bearer`), 200 with
it; /healthz and the page open; /metrics behind it; confirms refused without a token unless
allowed; a reachable address refused without a token; where the token may come from."""
import os

import pytest

for _module in ("fastapi", "uvicorn", "multipart", "prometheus_client"):
    pytest.importorskip(_module, reason="the serve extra is not installed (pip install 'noveltykit[serve]')")

from noveltykit.apply.serve import create_app
from noveltykit.apply.serve_auth import TOKEN_ENV, check_bind, is_loopback, read_token
from noveltykit.cli import EXIT_USAGE, main

from serve_helpers import TOKEN, call, fitted_knn, images, png, request, running


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return fitted_knn(tmp_path_factory, "serve-auth")


def test_every_v1_request_needs_the_token(model, tmp_path):
    upload = [("a.png", png(images(1, True, 1)[0]))]
    with running(create_app(model, token=TOKEN, memory_dir=tmp_path / "bank")) as url:
        for path, files in (("/v1/model", None), ("/v1/score", upload), ("/v1/memory/confirm", upload),
                            ("/metrics", None), ("/v1/no-such-endpoint", None)):
            status, headers, body = call(url + path, files)
            assert status == 401 and headers["www-authenticate"] == 'Bearer realm="noveltykit"', path
            assert "Authorization: Bearer <token>" in body["detail"]
            status, headers, body = call(url + path, files, token=TOKEN[:-1] + "x")  # one character off
            assert status == 401 and body["detail"] == "wrong token", path
            assert headers["www-authenticate"] == 'Bearer realm="noveltykit", error="invalid_token"'
        assert call(f"{url}/v1/memory/confirm", upload, headers={"Authorization": f"Basic {TOKEN}"})[0] == 401
        assert request(f"{url}/v1/model", token=TOKEN)[1]["memory"]["bank_size"] == 0  # nothing got through

        status, card = request(f"{url}/v1/model", token=TOKEN)
        assert status == 200 and card["detector"] == "knn" and card["auth"] == {"token": True, "writes": "token"}
        status, body = request(f"{url}/v1/score", upload, token=TOKEN)
        assert status == 200 and body["results"][0]["score"] is not None
        assert request(f"{url}/v1/memory/confirm", upload, token=TOKEN)[1]["bank_size"] == 1
        status, text = request(f"{url}/metrics", token=TOKEN)
        assert status == 200 and "noveltykit_requests_total" in text
        assert 'noveltykit_requests_total{endpoint="/v1/score",status="401"} 2.0' in text  # counted, refused
        # open: the health check, the page (it asks for the token), the API docs
        assert request(f"{url}/healthz") == (200, {"status": "ok"})
        assert request(f"{url}/")[0] == 200 and request(f"{url}/openapi.json")[0] == 200


def test_without_a_token_confirms_are_refused_unless_allowed(model, tmp_path):
    upload = [("a.png", png(images(1, False, 2)[0]))]
    with running(create_app(model, memory_dir=tmp_path / "bank")) as url:
        status, body = request(f"{url}/v1/memory/confirm", upload)
        assert status == 403 and "needs a token" in body["detail"]
        assert "--allow-unauthenticated-writes" in body["detail"]
        card = request(f"{url}/v1/model")[1]  # reading stays open on loopback without a token
        assert card["memory"]["bank_size"] == 0 and card["auth"] == {"token": False, "writes": "refused"}
        assert request(f"{url}/v1/score", upload)[0] == 200
    with running(create_app(model, memory_dir=tmp_path / "bank", allow_unauthenticated_writes=True)) as url:
        assert request(f"{url}/v1/model")[1]["auth"] == {"token": False, "writes": "open"}
        assert request(f"{url}/v1/memory/confirm", upload) == (200, {"confirmed": 1, "bank_size": 1,
                                                                      "files": ["a.png"]})


def test_a_reachable_address_needs_a_token(model, capsys, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    for host in ("127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(host), host
        check_bind(host, None)
    for host in ("0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "example.org", "localhost.example.org"):
        assert not is_loopback(host), host
        with pytest.raises(ValueError, match="no token is set"):
            check_bind(host, None)
        check_bind(host, TOKEN)
    # the CLI: refused before the model is even loaded, with how to make a token; exit status 2
    assert main(["serve", str(model), "--host", "0.0.0.0", "--port", "1"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--host 0.0.0.0 can be reached from other machines, and no token is set" in err
    assert 'python -c "import secrets; print(secrets.token_urlsafe(32))" > token.txt; chmod 600 token.txt' in err
    assert "--token-file token.txt" in err


def test_where_the_token_comes_from(tmp_path, capsys):
    good = tmp_path / "token.txt"
    good.write_text(TOKEN + "\n")
    os.chmod(good, 0o600)
    assert read_token(good, {}) == TOKEN and capsys.readouterr().err == ""  # the newline is not the token's
    assert read_token(None, {TOKEN_ENV: f"  {TOKEN} "}) == TOKEN
    assert read_token(good, {TOKEN_ENV: "other-token-0123456789"}) == TOKEN  # the file given wins
    assert read_token(None, {}) is None
    os.chmod(good, 0o644)
    assert read_token(good, {}) == TOKEN and "can be read by other users; chmod 600" in capsys.readouterr().err
    for text, message in (("", "is empty"), ("  \n\t\n", "is empty"), ("short", "too short"),
                          ("two words here and more", "one word of printable ASCII")):
        bad = tmp_path / "bad.txt"
        bad.write_text(text)
        with pytest.raises(ValueError, match=message) as caught:
            read_token(bad, {})
        assert "secrets.token_urlsafe(32)" in str(caught.value)
    with pytest.raises(ValueError, match=f"the environment variable {TOKEN_ENV} is empty"):
        read_token(None, {TOKEN_ENV: " "})
    with pytest.raises(ValueError, match="no such file"):
        read_token(tmp_path / "missing.txt", {})
    # the CLI: an empty token file stops serve before it listens, exit status 2
    (tmp_path / "empty.txt").write_text("\n")
    assert main(["serve", str(tmp_path), "--token-file", str(tmp_path / "empty.txt"), "--port", "1"]) == EXIT_USAGE
    assert "empty.txt is empty" in capsys.readouterr().err


def test_the_token_is_never_a_command_line_value():
    from noveltykit.cli import build_parser
    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and a.choices and "serve" in a.choices)
    options = {o for a in sub.choices["serve"]._actions for o in a.option_strings}
    assert "--token-file" in options and not {o for o in options if o.startswith("--token") and o != "--token-file"}
