"""Job trees through real workers: one handle for a launcher and all it launched.

A launcher (a batch, a deployment, a campaign) returns at once; the work it sent goes on.
Its tree holds it all: waiting on the launcher waits for the tree, any id of the tree (or
of the fan-out, or of a domain record it made) reads the same tree, and following it ends
with the first failure's error or the result.
"""

from __future__ import annotations

import json
import uuid

from typer.testing import CliRunner

from actors.cli import app as cli
from actors.datasets import generate_dataset
from actors.platform.jobs import get_job, get_tree, wait_for_job
from tests.probe_actors import launch_squares

runner = CliRunner()


def _key() -> str:
    return f"test:{uuid.uuid4().hex}"


def test_waiting_on_a_launcher_waits_for_everything_it_launched(workers):
    message = launch_squares.send(key=_key(), members=3, seconds=1.5)
    launcher = wait_for_job(message.message_id, timeout_s=60)
    assert launcher.state == "succeeded"
    members = [get_job(m) for m in launcher.result["members"]]
    # The launcher ended long before its members; the wait ended only after all of them.
    assert all(m.state == "succeeded" for m in members)
    assert all(m.finished_at > launcher.finished_at for m in members)
    tree = get_tree(message.message_id)
    assert tree.final and tree.state == "succeeded" and tree.progress == 1.0
    actors = sorted(node.actor for node in tree.nodes)
    assert actors == ["collect", "launch_squares", "square", "square", "square"]
    assert {node.root_id for node in tree.nodes} == {message.message_id}
    # Members and the finalize are the launcher's children, not the last member's.
    assert {node.parent_id for node in tree.nodes if node.message_id != message.message_id} == {message.message_id}


def test_any_id_of_the_tree_reads_the_same_tree(workers):
    message = launch_squares.send(key=_key(), members=2)
    launcher = wait_for_job(message.message_id, timeout_s=60)
    member_id = launcher.result["members"][1]
    by_member = get_tree(member_id)
    by_fanout = get_tree(launcher.result["fanout_id"])
    assert by_member.root_id == by_fanout.root_id == message.message_id
    assert by_fanout.resolved_from == "fanout"
    assert {n.message_id for n in by_member.nodes} == {n.message_id for n in by_fanout.nodes}


def test_a_domain_record_id_names_the_tree_of_the_job_that_made_it(workers):
    message = generate_dataset.send(name="tree-probe", fault_types=["sain", "oilwhirl"], records_per_class=1, seed=3)
    job = wait_for_job(message.message_id, timeout_s=120)
    assert job.state == "succeeded", job.error_message
    dataset_id = job.result["dataset_id"]
    tree = get_tree(dataset_id)
    assert (tree.root_id, tree.resolved_from, tree.subject_id) == (message.message_id, "dataset", dataset_id)
    status = json.loads(runner.invoke(cli, ["status", dataset_id, "--json"]).output)
    assert status["tree"]["root_id"] == message.message_id and status["job"]["actor"] == "generate_dataset"
    shown = runner.invoke(cli, ["datasets", "show", dataset_id])
    assert shown.exit_code == 0 and dataset_id in shown.output and "generate_dataset" in shown.output
    listed = json.loads(runner.invoke(cli, ["datasets", "--json"]).output)
    assert dataset_id in [record["dataset_id"] for record in listed]


def test_following_a_tree_ends_on_the_members_failure_and_prints_it(workers):
    message = launch_squares.send(key=_key(), members=3, seconds=1.0, fail=1)
    result = runner.invoke(cli, ["follow", message.message_id, "--timeout", "60"])
    assert result.exit_code == 1, result.output
    assert "InvalidInput: member 1 refused its input" in result.output
    tree = get_tree(message.message_id)
    assert tree.final and tree.state == "failed" and tree.first_failure.actor == "square"
    # Every member had ended when follow returned: it waited for the whole tree.
    assert all(node.final for node in tree.nodes)


def test_send_wait_follows_the_tree_and_prints_the_result(workers):
    result = runner.invoke(cli, ["send", "launch_squares", "--json", json.dumps({"key": _key(), "members": 2}),
                                 "--wait", "--timeout", "60"])
    assert result.exit_code == 0, result.output
    assert "fanout_id:" in result.output  # the launcher's result, as readable fields
    assert "collect (last to finish):" in result.output and "done: 2" in result.output


def test_status_shows_a_tree_with_every_node(workers):
    message = launch_squares.send(key=_key(), members=2)
    wait_for_job(message.message_id, timeout_s=60)
    shown = runner.invoke(cli, ["status", message.message_id])
    assert shown.exit_code == 0
    for actor in ("launch_squares", "square", "collect"):
        assert actor in shown.output
    assert "succeeded" in shown.output
    # Then the job asked about, in words: when, how many tries, and its result as fields.
    assert "ago" in shown.output and "attempts 1, deliveries 1" in shown.output
    assert "fanout_id:" in shown.output and "{'" not in shown.output
