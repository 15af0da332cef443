"""``labels send`` in parts (cli/labels.py), against a recording HTTP server (tests/recorder.py):
each request holds at most the part size, the answers add up, and a part that fails says how
many labels the server had already taken."""

from __future__ import annotations

import pytest

from modelserve.cli.labels import send_in_parts
from modelserve.cli.main import CommandError
from modelserve.client import Client, NotFoundError
from tests.recorder import recording_server

PATH = "/v2/models/iris/labels"
IDS = [f"r{i}" for i in range(5)]


def test_labels_go_in_parts_and_the_answers_add_up() -> None:
    with recording_server() as rec, Client(rec.url) as client:
        rec.answer(PATH, 200, {"accepted": 2, "unknown": 0})
        rec.answer(PATH, 200, {"accepted": 1, "unknown": 1})
        rec.answer(PATH, 200, {"accepted": 0, "unknown": 1})
        total = send_in_parts(client, "iris", IDS, [0, 1, 2, 0, 1], per_request=2)
    assert total == {"accepted": 3, "unknown": 2}
    bodies = [seen.json()["labels"] for seen in rec.seen]
    assert [[item["id"] for item in body] for body in bodies] == [
        ["r0", "r1"],
        ["r2", "r3"],
        ["r4"],
    ]


def test_a_failing_part_says_what_was_already_sent() -> None:
    with recording_server() as rec, Client(rec.url, retries=0) as client:
        rec.answer(PATH, 200, {"accepted": 2, "unknown": 0})
        rec.answer(PATH, 500, {"error": "the store is gone"})
        with pytest.raises(CommandError) as caught:
            send_in_parts(client, "iris", IDS, [0] * 5, per_request=2)
    assert caught.value.exit_code == 1
    assert str(caught.value) == (
        "labels iris: the store is gone (labels 3-4 of 5; the 2 before them were sent: "
        "2 accepted, 0 unknown)"
    )


def test_a_failing_first_part_is_the_clients_error() -> None:
    with recording_server() as rec, Client(rec.url, retries=0) as client:
        rec.answer(PATH, 404, {"error": "unknown model 'iris'"})
        with pytest.raises(NotFoundError, match="unknown model"):
            send_in_parts(client, "iris", IDS, [0] * 5, per_request=2)
