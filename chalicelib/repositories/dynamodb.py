"""DynamoDB backend: one table, two sparse indexes.

Items
  image      pk ``IMG#<id>``  sk ``IMG``     version, state (live|tombstone), seq,
                                              doc (the record as JSON), pending,
             live only:  list_status ``<status>``, list_folder ``<status>#<folder>``,
                         list_sort ``<uploaded_at>#<key>`` (the index keys)
             tombstone:  tomb (JSON), expires_at (TTL)
  folder     pk ``FOLDER``    sk ``<prefix>`` has_marker, created_at, touched
  token key  pk ``META``      sk ``token-key``  secret (32 random bytes)

Indexes (projection ALL, so a page is one Query)
  by_status  list_status / list_sort     GET /images, all folders
  by_folder  list_folder / list_sort     GET /images?folder=
Tombstones and the token key carry no index attributes, so no listing ever
reads them, and DynamoDB's TTL removes tombstones after ``TOMBSTONE_SECONDS``.
``GET /images/{id}`` and ``?key=`` are one GetItem (the id is a hash of bucket
and key).

boto3 resources (and the sessions that make them) are not thread-safe, so each
thread uses its own ``Table``.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, Key
from boto3.dynamodb.types import Binary
from botocore.exceptions import ClientError

from chalicelib.models import Folder, ImageRecord, Page, Status
from chalicelib.repositories import codec
from chalicelib.repositories.base import (
    TOKEN_KEY_BYTES,
    TOMBSTONE_SECONDS,
    Conflict,
    ImageQuery,
    Repository,
    StoredImage,
    Tombstone,
    checked_token_key,
)
from chalicelib.repositories.per_thread import PerThread

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

FOLDER_PK = "FOLDER"
TOKEN_KEY = {"pk": "META", "sk": "token-key"}
BY_STATUS = "by_status"
BY_FOLDER = "by_folder"


def table_definition(name: str) -> dict[str, Any]:
    """``create_table`` arguments for a table this backend can use."""
    string = "S"
    return {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": a, "AttributeType": string}
            for a in ("pk", "sk", "list_status", "list_folder", "list_sort")
        ],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": index,
                "KeySchema": [
                    {"AttributeName": hash_key, "KeyType": "HASH"},
                    {"AttributeName": "list_sort", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
            for index, hash_key in ((BY_STATUS, "list_status"), (BY_FOLDER, "list_folder"))
        ],
    }


TTL_ATTRIBUTE = "expires_at"


def _image_key(image_id: str) -> dict[str, str]:
    return {"pk": f"IMG#{image_id}", "sk": "IMG"}


def _sort_value(uploaded_at: str, key: str) -> str:
    return codec.sort_value(uploaded_at, key).decode("utf-8", errors="ignore")


def _conflict(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class DynamoRepository(Repository):
    """``table`` is a function that makes a ``Table``, called once per thread
    that uses the repository (see ``PerThread``). A ``Table`` itself is also
    taken, for callers that use the repository from one thread only."""

    def __init__(self, table: Table | Callable[[], Table]) -> None:
        self._tables: PerThread[Table] = PerThread(table if callable(table) else lambda: table)
        self._token_key: bytes | None = None

    @property
    def _table(self) -> Table:
        return self._tables.get()

    def token_key(self) -> bytes:
        """Read from the ``META`` item; the first caller anywhere puts it
        (condition: absent), and a caller that loses that race reads the winner's.

        The winner reads it back too rather than trust its own write: an
        emulator may check the condition and write in two steps, letting two
        racing writers both succeed, and then only the stored key is shared."""
        if self._token_key is None:
            stored = self._stored_token_key()
            if stored is None:
                try:
                    self._table.put_item(
                        Item={**TOKEN_KEY, "secret": secrets.token_bytes(TOKEN_KEY_BYTES)},
                        ConditionExpression=Attr("pk").not_exists(),
                    )
                except ClientError as exc:
                    if not _conflict(exc):
                        raise
                stored = self._stored_token_key()
            if stored is None:
                raise RuntimeError("the token key was neither stored nor readable")
            self._token_key = checked_token_key(stored)
        return self._token_key

    def _stored_token_key(self) -> bytes | None:
        item = self._table.get_item(Key=TOKEN_KEY, ConsistentRead=True).get("Item")
        if item is None:
            return None
        secret = item["secret"]
        if not isinstance(secret, Binary):
            raise TypeError("the stored token key is not binary")
        return bytes(secret)

    # -- images ---------------------------------------------------------------
    def load(self, image_id: str) -> StoredImage | None:
        item = self._table.get_item(Key=_image_key(image_id), ConsistentRead=True).get("Item")
        if item is None:
            return None
        pending = item.get("pending")
        pending_event = str(pending) if pending else None
        version = int(str(item["version"]))
        if item.get("state") == "live":
            record = codec.loads(str(item["doc"])).with_(pending_event=pending_event)
            return StoredImage(image_id, version, live=record)
        tomb = json.loads(str(item["tomb"]))
        previous = codec.record_from_doc(tomb["previous"]) if tomb.get("previous") else None
        return StoredImage(
            image_id,
            version,
            tombstone=Tombstone(
                sequencer=tomb["sequencer"],
                deleted_at=tomb["deleted_at"],
                previous=previous,
                pending_event=pending_event,
            ),
        )

    def save(self, record: ImageRecord, expected_version: int | None) -> int:
        item: dict[str, Any] = {
            **_image_key(record.id),
            "state": "live",
            "seq": record.sequencer,
            "bucket": record.bucket,
            "key": record.key,
            "doc": codec.dumps(record.with_(pending_event=None)),
            "list_status": str(record.status),
            "list_folder": f"{record.status}#{record.folder}",
            "list_sort": _sort_value(record.uploaded_at, record.key),
        }
        if record.pending_event:
            item["pending"] = record.pending_event
        return self._put(item, expected_version)

    def bury(
        self,
        image_id: str,
        bucket: str,
        key: str,
        tombstone: Tombstone,
        expected_version: int | None,
    ) -> int:
        tomb = {
            "sequencer": tombstone.sequencer,
            "deleted_at": tombstone.deleted_at,
            "previous": codec.record_to_doc(tombstone.previous) if tombstone.previous else None,
        }
        item: dict[str, Any] = {
            **_image_key(image_id),
            "state": "tombstone",
            "seq": tombstone.sequencer,
            "bucket": bucket,
            "key": key,
            "tomb": json.dumps(tomb, ensure_ascii=False),
            TTL_ATTRIBUTE: int(time.time()) + TOMBSTONE_SECONDS,
        }
        if tombstone.pending_event:
            item["pending"] = tombstone.pending_event
        return self._put(item, expected_version)

    def _put(self, item: dict[str, Any], expected_version: int | None) -> int:
        version = (expected_version or 0) + 1
        item["version"] = version
        condition = (
            Attr("pk").not_exists()
            if expected_version is None
            else Attr("version").eq(expected_version)
        )
        try:
            self._table.put_item(Item=item, ConditionExpression=condition)
        except ClientError as exc:
            if _conflict(exc):
                raise Conflict(item["pk"]) from exc
            raise
        return version

    def clear_pending(self, image_id: str, expected_version: int) -> None:
        try:
            self._table.update_item(
                Key=_image_key(image_id),
                UpdateExpression="REMOVE pending SET version = :next",
                ConditionExpression=Attr("version").eq(expected_version),
                ExpressionAttributeValues={":next": expected_version + 1},
            )
        except ClientError as exc:
            if _conflict(exc):
                raise Conflict(image_id) from exc
            raise

    def list_images(self, query: ImageQuery) -> Page[ImageRecord]:
        if query.folder is None:
            index, hash_attr, hash_value = BY_STATUS, "list_status", str(query.status)
        else:
            index, hash_attr = BY_FOLDER, "list_folder"
            hash_value = f"{query.status}#{query.folder}"
        args: dict[str, Any] = {
            "IndexName": index,
            "KeyConditionExpression": Key(hash_attr).eq(hash_value),
            "ScanIndexForward": False,
            "Limit": query.limit,
        }
        if query.after is not None:
            uploaded_at, key, image_id = query.after
            args["ExclusiveStartKey"] = {
                **_image_key(image_id),
                hash_attr: hash_value,
                "list_sort": _sort_value(uploaded_at, key),
            }
        response = self._table.query(**args)
        records = [self._record(item) for item in response.get("Items", [])]
        cursor = None
        if response.get("LastEvaluatedKey") and records:
            last = records[-1]
            cursor = (last.uploaded_at, last.key, last.id)
        return Page(records, cursor)

    @staticmethod
    def _record(item: dict[str, Any]) -> ImageRecord:
        pending = item.get("pending")
        return codec.loads(str(item["doc"])).with_(pending_event=str(pending) if pending else None)

    # -- folders --------------------------------------------------------------
    def get_folder(self, prefix: str) -> Folder | None:
        item = self._table.get_item(Key={"pk": FOLDER_PK, "sk": prefix}, ConsistentRead=True).get(
            "Item"
        )
        return _folder(item) if item else None

    def touch_folders(self, prefixes: list[str], now: str) -> None:
        for prefix in prefixes:
            # ``touched`` changes on every touch, so a concurrent clean-up that
            # read the folder before this image arrived fails its conditional delete.
            self._table.update_item(
                Key={"pk": FOLDER_PK, "sk": prefix},
                UpdateExpression=(
                    "SET created_at = if_not_exists(created_at, :now), "
                    "has_marker = if_not_exists(has_marker, :false), touched = :touch"
                ),
                ExpressionAttributeValues={
                    ":now": now,
                    ":false": False,
                    ":touch": uuid.uuid4().hex,
                },
            )

    def set_marker(
        self, prefix: str, has_marker: bool, now: str, pending_event: str | None = None
    ) -> Folder:
        values: dict[str, Any] = {":now": now, ":marker": has_marker, ":touch": uuid.uuid4().hex}
        update = (
            "SET created_at = if_not_exists(created_at, :now), has_marker = :marker, "
            "touched = :touch"
        )
        if pending_event:
            update += ", pending = :pending"
            values[":pending"] = pending_event
        else:
            update += " REMOVE pending"
        response = self._table.update_item(
            Key={"pk": FOLDER_PK, "sk": prefix},
            UpdateExpression=update,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
        return _folder(response["Attributes"])

    def clear_folder_pending(self, prefix: str) -> None:
        try:
            self._table.update_item(
                Key={"pk": FOLDER_PK, "sk": prefix},
                UpdateExpression="REMOVE pending",
                ConditionExpression=Attr("pk").exists(),
            )
        except ClientError as exc:
            if not _conflict(exc):
                raise

    def remove_folder_if_empty(self, prefix: str) -> bool:
        item = self._table.get_item(Key={"pk": FOLDER_PK, "sk": prefix}, ConsistentRead=True).get(
            "Item"
        )
        if item is None:
            return True
        if item.get("has_marker") or self._holds_anything(prefix):
            return False
        try:
            self._table.delete_item(
                Key={"pk": FOLDER_PK, "sk": prefix},
                ConditionExpression=Attr("touched").eq(item.get("touched"))
                & Attr("has_marker").eq(False),
            )
        except ClientError as exc:
            if _conflict(exc):
                return False
            raise
        return True

    def _holds_anything(self, prefix: str) -> bool:
        for status in Status:
            found = self._table.query(
                IndexName=BY_FOLDER,
                KeyConditionExpression=Key("list_folder").eq(f"{status}#{prefix}"),
                Limit=1,
            )
            if found.get("Items"):
                return True
        children = self._table.query(
            KeyConditionExpression=Key("pk").eq(FOLDER_PK) & Key("sk").begins_with(prefix),
            Limit=2,
            ConsistentRead=True,
        )
        return any(item["sk"] != prefix for item in children.get("Items", []))

    def images_under(self, prefix: str) -> list[ImageRecord]:
        folders = [prefix] + [
            str(item["sk"])
            for item in self._all(
                KeyConditionExpression=Key("pk").eq(FOLDER_PK) & Key("sk").begins_with(prefix)
            )
            if item["sk"] != prefix
        ]
        return [
            self._record(item)
            for folder in folders
            for status in Status
            for item in self._all(
                IndexName=BY_FOLDER,
                KeyConditionExpression=Key("list_folder").eq(f"{status}#{folder}"),
            )
        ]

    def list_folders(self, limit: int, after: str | None) -> Page[Folder]:
        args: dict[str, Any] = {
            "KeyConditionExpression": Key("pk").eq(FOLDER_PK),
            "Limit": limit,
        }
        if after is not None:
            args["ExclusiveStartKey"] = {"pk": FOLDER_PK, "sk": after}
        response = self._table.query(**args)
        folders = [_folder(item) for item in response.get("Items", [])]
        cursor = (folders[-1].prefix,) if response.get("LastEvaluatedKey") and folders else None
        return Page(folders, cursor)

    def _all(self, **args: Any) -> Iterator[dict[str, Any]]:
        while True:
            response = self._table.query(**args)
            yield from response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return
            args["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _folder(item: dict[str, Any]) -> Folder:
    return Folder(
        prefix=str(item["sk"]),
        has_marker=bool(item.get("has_marker")),
        created_at=str(item["created_at"]),
        pending_event=str(item["pending"]) if item.get("pending") else None,
    )
