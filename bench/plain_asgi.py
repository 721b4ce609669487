"""The floor under the contacts API: a plain ASGI app on the same server, answering
`POST /contacts` with 201 and a small JSON body without doing anything (`python -m
bench.plain_asgi --port N`). B1 runs its clients against it to show what HTTP costs alone."""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any

from shared.http import serve


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Read the request body, answer 201 (200 for anything but a POST)."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    created = scope["method"] == "POST"
    body = json.dumps({"contact_id": str(uuid.uuid4()), "version": 1}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 201 if created else 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    """Serve the plain app."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve(app, "127.0.0.1", args.port, log_level="warning")


if __name__ == "__main__":
    main()
