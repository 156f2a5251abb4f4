"""aiohttp's reports of malformed requests: one rate-limited INFO line, no traceback; its
other reports untouched (relay/server/http_errors_log.py)."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, ContentEncodingError, LineTooLong

from relay.server.http_errors_log import MalformedRequestLog, client_fault


def test_http_errors_log_malformed_requests_rate_limited_without_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    now = [0.0]
    log = MalformedRequestLog(logging.getLogger("aiohttp.server"), interval=10.0,
                              clock=lambda: now[0])
    for at in (0.0, 1.0, 2.0, 11.0):
        now[0] = at
        log.exception("Error handling request from %s", "192.0.2.1",
                      exc_info=LineTooLong(b"aaaa" * 100, 8190))
    info = [r for r in caplog.records if r.levelno == logging.INFO]
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(info) == 2 and len(debug) == 2
    assert not [r for r in caplog.records if r.exc_info]
    assert "from 192.0.2.1" in info[0].getMessage()
    assert "2 more since the last such line" in info[1].getMessage()
    assert all(len(r.getMessage()) < 300 for r in caplog.records)


def test_http_errors_log_a_bug_keeps_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    log = MalformedRequestLog(logging.getLogger("aiohttp.server"))
    try:
        raise KeyError("ours")
    except KeyError:
        log.exception("Error handling request from %s", "192.0.2.1")
    [record] = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is not None


def test_http_errors_log_client_faults_are_aiohttps_request_errors() -> None:
    payload = web.RequestPayloadError("Can not decode content-encoding: gzip")
    payload.__cause__ = ContentEncodingError("gzip")
    assert client_fault(payload) and client_fault(BadHttpMessage("bad"))
    assert not client_fault(RuntimeError("bug")) and not client_fault(ValueError())
