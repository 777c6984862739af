import os
import random
import time
import uuid

from webhook_mcp.core.ids import new_event_id


def test_event_ids_are_uuid7_in_the_evt_form_and_sort_by_time() -> None:
    ids = [new_event_id() for _ in range(5000)]
    assert all(i.startswith("evt_") and len(i) == 36 for i in ids)
    parsed = [uuid.UUID(i[4:]) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert len(set(ids)) == len(ids)
    milliseconds = [int(i[4:16], 16) for i in ids]
    assert milliseconds == sorted(milliseconds)
    assert abs(milliseconds[-1] - time.time() * 1000) < 5000


def test_event_ids_do_not_repeat_when_the_shared_generator_is_seeded() -> None:
    random.seed(0)
    first = new_event_id()
    random.seed(0)
    assert new_event_id()[16:] != first[16:]


def test_a_forked_child_draws_other_ids_than_its_parent() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_event_id().encode())
        os._exit(0)
    os.close(write)
    parent = new_event_id()
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert child[16:] != parent[16:]
