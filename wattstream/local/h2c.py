"""An HTTP/2 (cleartext) front for moto server, for the KCL daemon's Kinesis client.

The KCL builds its Kinesis client with HTTP/2 forced (``KinesisClientUtil`` sets
``Protocol.HTTP2`` on the Netty client; no property turns it off), and over plain
``http://`` that means h2c with prior knowledge. moto server speaks HTTP/1.1 only, so the
daemon's first call fails with::

    Unable to execute HTTP request: First received frame was not SETTINGS.
    Hex dump for first 5 bytes: 3c21444f43

(``<!DOC``: moto's HTTP/1.1 error page read as an HTTP/2 frame). This front accepts
HTTP/2 and HTTP/1.1 (hypercorn) and forwards every request unchanged to moto
(``httpx``), so the daemon talks to the same backends as everything else. On AWS none of
this exists: the properties name no endpoint there.

moto's ``ListShards`` also ignores ``ShardFilter`` and returns every shard, parents and
children together. The KCL lists ``AT_TRIM_HORIZON`` shards to create its first leases and
checks that their hash ranges tile the key space; after a reshard the overlap fails it::

    Incomplete hash range found between Shard(ShardId=shardId-000000000000, ...) and
    Shard(ShardId=shardId-000000000001, ParentShardId=shardId-000000000000, ...)
    KinesisClientLibIOException: Hash range of shards returned for <stream> was
    incomplete after 3 retries.

so this front applies the filter to moto's answer as Kinesis documents it
(:func:`filter_shards`; moto never trims a stream, so the trim horizon is its start).

And moto's ``GetRecords`` never ends a closed (split or merged) shard: it always returns a
``NextShardIterator`` and no ``ChildShards``, so the KCL never sees ``SHARD_END`` and a
parent's children would never start. At the end of a closed shard this front answers as
Kinesis does: no ``NextShardIterator`` and the ``ChildShards`` (:func:`end_of_shard`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import threading
from typing import Any

from wattstream.local.net import free_port

#: Hop-by-hop and HTTP/2 pseudo headers that must not be forwarded.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host",
               "http2-settings", "te", "content-length"}  # fmt: skip


def filter_shards(
    shards: list[dict[str, Any]], shard_filter: dict[str, Any]
) -> list[dict[str, Any]]:
    """``ListShards``' ``ShardFilter`` on a full shard list (of a stream never trimmed).

    ``AT_TRIM_HORIZON``: the shards open at the start (no parent in the list);
    ``AT_LATEST``: the open shards; ``FROM_TRIM_HORIZON`` and the rest: every shard.
    """
    kind = shard_filter.get("Type")
    if kind == "AT_TRIM_HORIZON":
        ids = {shard["ShardId"] for shard in shards}
        return [
            shard
            for shard in shards
            if shard.get("ParentShardId") not in ids
            and shard.get("AdjacentParentShardId") not in ids
        ]
    if kind == "AT_LATEST":
        return [s for s in shards if "EndingSequenceNumber" not in s.get("SequenceNumberRange", {})]
    return shards


def end_of_shard(
    reply: dict[str, Any], shard_id: str, last_sequence: int, shards: list[dict[str, Any]]
) -> dict[str, Any]:
    """A ``GetRecords`` reply as Kinesis gives it at the end of a closed shard.

    ``last_sequence`` is where the reply's iterator points; past the shard's
    ``EndingSequenceNumber`` with no records left, the shard is over: no
    ``NextShardIterator``, and ``ChildShards`` naming the shards that continue it.
    """
    (shard,) = [s for s in shards if s["ShardId"] == shard_id] or [{}]
    ending = shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
    if ending is None or reply.get("Records") or last_sequence < int(ending):
        return reply
    children = [
        {
            "ShardId": child["ShardId"],
            "ParentShards": [
                p for p in (child.get("ParentShardId"), child.get("AdjacentParentShardId")) if p
            ],
            "HashKeyRange": child["HashKeyRange"],
        }
        for child in shards
        if shard_id in (child.get("ParentShardId"), child.get("AdjacentParentShardId"))
    ]
    return {**{k: v for k, v in reply.items() if k != "NextShardIterator"}, "ChildShards": children}


class H2cFront:
    """``with H2cFront("http://127.0.0.1:5000") as front: front.endpoint_url``."""

    def __init__(self, target_url: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.target_url = target_url.rstrip("/")
        self.host = host
        self.port = port or free_port(host)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in scope["headers"]
            if name.decode("latin-1").lower() not in _HOP_BY_HOP
        ]
        query = scope.get("query_string", b"").decode("latin-1")
        url = f"{self.target_url}{scope['raw_path'].decode('latin-1').split('?')[0]}"
        response = await self._client.request(
            scope["method"], url + (f"?{query}" if query else ""), headers=headers, content=body
        )
        await send({
            "type": "http.response.start",
            "status": response.status_code,
            "headers": [
                (name.encode("latin-1"), value.encode("latin-1"))
                for name, value in response.headers.multi_items()
                if name.lower() not in _HOP_BY_HOP
            ],
        })  # fmt: skip
        content = response.content
        target = dict(headers).get("x-amz-target") or dict(headers).get("X-Amz-Target", "")
        if target.endswith(".ListShards") and response.status_code == 200:
            content = self._filtered(body, content)
        if target.endswith(".GetRecords") and response.status_code == 200:
            content = await self._ended(headers, body, content)
        await send({"type": "http.response.body", "body": content})

    async def _ended(
        self, headers: list[tuple[str, str]], request: bytes, response: bytes
    ) -> bytes:
        """moto's GetRecords answer, ended as Kinesis ends a closed shard."""
        reply = json.loads(response)
        iterator = reply.get("NextShardIterator")
        if not iterator or reply.get("Records"):
            return response
        name, shard_id, last = base64.b64decode(iterator).decode().rsplit(":", 2)
        arn = json.loads(request or b"{}").get("StreamARN")  # moto's iterator may say "None"
        stream = {"StreamARN": arn} if arn else {"StreamName": name}
        listing = await self._client.post(
            f"{self.target_url}/",
            headers={**dict(headers), "x-amz-target": "Kinesis_20131202.ListShards"},
            content=json.dumps(stream).encode(),
        )
        shards = json.loads(listing.content).get("Shards", [])
        return json.dumps(end_of_shard(reply, shard_id, int(last), shards)).encode()

    @staticmethod
    def _filtered(request: bytes, response: bytes) -> bytes:
        """moto's ListShards answer with the request's ``ShardFilter`` applied."""
        shard_filter = json.loads(request or b"{}").get("ShardFilter")
        if not shard_filter:
            return response
        document = json.loads(response)
        document["Shards"] = filter_shards(document.get("Shards", []), shard_filter)
        return json.dumps(document).encode()

    async def _serve(self) -> None:
        import httpx
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"{self.host}:{self.port}"]
        config.accesslog = None
        config.errorlog = None
        config.keep_alive_timeout = 3600
        self._stop = asyncio.Event()
        async with httpx.AsyncClient(timeout=60, headers={}) as self._client:
            task = asyncio.ensure_future(
                serve(self._app, config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]
            )
            while not task.done():
                try:
                    with socket.create_connection((self.host, self.port), timeout=1):
                        break
                except OSError:
                    await asyncio.sleep(0.05)
            self._ready.set()
            await task

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as error:  # reported by start()
            self._error = error
        finally:
            self._ready.set()
            self._loop.close()

    def start(self) -> str:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
        self._thread = threading.Thread(target=self._run, name="h2c-front", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._error is not None or not self._ready.is_set():
            raise RuntimeError(
                f"the HTTP/2 front for {self.target_url} did not start: {self._error!r}"
            )
        return self.endpoint_url

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> H2cFront:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
