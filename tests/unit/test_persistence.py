"""The snapshot's pickler (what the standard one cannot carry) and where an interrupted execution resumes."""

from __future__ import annotations

import io
import json
import pickle
import threading
import weakref
from collections import defaultdict
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from mlcycle.local.persistence.pickling import _Pickler
from mlcycle.local.stepfunctions.resume import ResumePoint, resume_point


class _Holder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rlock = threading.RLock()
        self.aliases: defaultdict[str, dict[str, int]] = defaultdict(lambda: {})
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _round_trip(obj: Any) -> Any:
    buffer = io.BytesIO()
    _Pickler(buffer, {}).dump(obj)
    return pickle.loads(buffer.getvalue())


def test_locks_come_back_new_and_unlocked() -> None:
    holder = _Holder()
    holder.lock.acquire()
    copy = _round_trip(holder)
    assert copy.lock.acquire(blocking=False)
    assert copy.rlock.acquire(blocking=False)


def test_a_lambda_factory_defaultdict_keeps_its_items_and_its_factory() -> None:
    holder = _Holder()
    holder.aliases["fn"]["live"] = 3
    copy = _round_trip(holder)
    assert copy.aliases == {"fn": {"live": 3}}
    assert copy.aliases["other"] == {}


def test_private_keys_travel_as_pem_and_still_sign_the_same_key() -> None:
    holder = _Holder()
    copy = _round_trip(holder)
    assert copy.key.public_key().public_numbers() == holder.key.public_key().public_numbers()


class _Value:
    pass


def test_weak_value_dictionaries_keep_their_referenced_values() -> None:
    value = _Value()
    copy = _round_trip({"value": value, "index": weakref.WeakValueDictionary({"a": value})})
    assert copy["index"]["a"] is copy["value"]


_DEFINITION = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Task", "Next": "Ready?"},
        "Ready?": {"Type": "Choice", "Choices": [], "Default": "Train"},
        "Train": {"Type": "Parallel", "Branches": [], "Next": "Done"},
        "Done": {"Type": "Succeed"},
    },
}


def _entered(name: str, data: Any) -> dict[str, Any]:
    return {"stateEnteredEventDetails": {"name": name, "input": json.dumps(data)}}


def _exited(name: str, data: Any) -> dict[str, Any]:
    return {"stateExitedEventDetails": {"name": name, "output": json.dumps(data)}}


def test_an_execution_that_entered_no_state_starts_from_the_beginning() -> None:
    assert resume_point(_DEFINITION, [{"type": "ExecutionStarted"}], {"a": 1}) == ResumePoint(
        "Prepare", {"a": 1}
    )


def test_an_execution_resumes_in_the_state_it_was_in_with_that_states_input() -> None:
    history = [_entered("Prepare", {"a": 1}), _exited("Prepare", {"a": 2}), _entered("Ready?", {"a": 2})]
    assert resume_point(_DEFINITION, history, {}) == ResumePoint("Ready?", {"a": 2})


def test_after_a_state_that_exited_the_next_state_gets_its_output() -> None:
    history = [_entered("Prepare", {"a": 1}), _exited("Prepare", {"a": 2})]
    assert resume_point(_DEFINITION, history, {}) == ResumePoint("Ready?", {"a": 2})


def test_a_choice_that_exited_is_decided_again_from_its_input() -> None:
    history = [_entered("Ready?", {"a": 2}), _exited("Ready?", {"a": 2})]
    assert resume_point(_DEFINITION, history, {}) == ResumePoint("Ready?", {"a": 2})


def test_states_inside_a_branch_resume_with_the_top_level_state_around_them() -> None:
    history = [_entered("Train", {"t": 1}), _entered("Fit", {"f": 1}), _exited("Fit", {"f": 2})]
    assert resume_point(_DEFINITION, history, {}) == ResumePoint("Train", {"t": 1})


def test_a_snapshot_is_set_aside_while_loading_and_kept_if_the_start_fails(tmp_path: Path) -> None:
    from mlcycle.local import persistence
    from mlcycle.local.persistence.pickling import dump_backends

    dump_backends(persistence.state_file(tmp_path), {"lambda": {"queue": []}}, {})
    assert persistence.load(tmp_path) == {"lambda": {"queue": []}}
    assert not persistence.state_file(tmp_path).exists()  # a second start would not load it twice
    persistence.put_back(tmp_path)  # the start failed: the next one takes it
    assert persistence.load(tmp_path) == {"lambda": {"queue": []}}
    persistence.loaded(tmp_path)  # the start succeeded: the state lives in the running instance now
    assert list(tmp_path.iterdir()) == []
    assert persistence.load(tmp_path) is None
