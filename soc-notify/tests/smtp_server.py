#!/usr/bin/python3
"""A real SMTP server for owlet-soc-notify's tests and bench: Debian's
aiosmtpd with STARTTLS required (the given certificate) and AUTH (one
user, only after TLS). Each accepted mail is written to OUTDIR as one JSON
file: the time it was received (UTC us), the envelope, the raw message,
whether the session was TLS and who authenticated.

Usage: smtp_server.py PORT CERT KEY OUTDIR USER PASSWORD
Prints "ready" when listening; stops when its stdin closes.
"""
import json
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, cert, key, outdir, user, password = sys.argv[1:7]


class Handler:
    async def handle_DATA(self, server, session, envelope):
        received_us = time.time_ns() // 1000
        record = {
            "received_us": received_us,
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
            "tls": session.ssl is not None,
            "authenticated": bool(session.authenticated),
        }
        name = f"{received_us}-{os.getpid()}-{id(envelope)}.json"
        tmp = os.path.join(outdir, "." + name)
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(outdir, name))
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == user.encode()
        and auth_data.password == password.encode()
    )
    return AuthResult(success=ok)


context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
controller = Controller(
    Handler(),
    hostname="127.0.0.1",
    port=int(port),
    tls_context=context,
    require_starttls=True,
    authenticator=authenticator,
    auth_require_tls=True,
)
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
