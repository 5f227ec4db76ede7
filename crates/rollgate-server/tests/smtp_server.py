"""A real SMTP server for crates/rollgate-server/tests/notify.rs, built on aiosmtpd 1.4.6.

It listens on 127.0.0.1 (port 0: the system picks one), prints `PORT <n>` on stdout once it
accepts connections, and writes every message it receives to --out as `<n>.json`: the
envelope, the decoded subject and body, and the TLS state of the connection it came over.

Modes: `starttls` offers STARTTLS and refuses mail before it (require_starttls), `implicit`
speaks TLS from the first byte (smtps), `plain` offers no TLS at all. With --user and
--password the server also requires that login (AUTH is offered only over TLS).

It exits when its stdin closes, so it dies with the test even if the test is killed.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import ssl
import sys
import logging
import threading

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Recorder:
    """Writes each message as JSON; the file appears whole (written, then renamed)."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        ssl_object = server.transport.get_extra_info("ssl_object")
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(message["from"]),
            "to": str(message["to"]),
            "subject": str(message["subject"]),
            "content_type": message.get_content_type(),
            "body": message.get_content(),
            "tls_version": ssl_object.version() if ssl_object is not None else None,
            "starttls": session.ssl is not None,
            "login": login,
        }
        self.count += 1
        path = os.path.join(self.out_dir, f"{self.count}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 OK"


def server_context(cert, key):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data == (user.encode(), password.encode())
        return AuthResult(success=ok, auth_data=auth_data)
    return check


def exit_when_stdin_closes():
    sys.stdin.read()
    os._exit(0)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["starttls", "implicit", "plain"], required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--out", required=True)
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()

    context = server_context(args.cert, args.key) if args.mode != "plain" else None
    smtp_args = {"hostname": "localhost"}
    if args.mode == "starttls":
        smtp_args.update(tls_context=context, require_starttls=True)
    if args.user is not None:
        smtp_args.update(authenticator=authenticator(args.user, args.password), auth_required=True)
    recorder = Recorder(args.out)
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(recorder, **smtp_args),
        host="127.0.0.1",
        port=0,
        ssl=context if args.mode == "implicit" else None,
    )
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    # aiosmtpd logs a deprecation warning on every login (it sets Session.login_data itself).
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    asyncio.run(main())
