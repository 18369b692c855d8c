"""Job trees: a job, every job it sent, and every job those sent, read as one piece of work.

A message sent from inside a job carries its sender as parent and its sender's root as
root (``actors.platform.context``). A tree is read from Redis while its jobs are live (the
root's tree set, written in each child's enqueue transaction) and from the ``jobs`` table
(``root_id``, indexed) once they are recorded, so it can be read at any time.

Any id names a tree: a message id (of the root or of any node), a fan-out id, or the id of
a domain record (dataset, experiment, campaign, deployment, analysis, explanation, ...),
whose ``job_id`` names the job that made it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, select

from actors.platform.errors import JobNotFound
from actors.store.fanouts import FanoutStore
from actors.store.jobs import JobStore, JobView, view_from_hash, view_from_row
from actors.store.listings import RECORD_KINDS
from actors.store.models import FINAL_JOB_STATES, Base, Job

__all__ = ["ANNOUNCEMENT_QUEUES", "JobTree", "find_root", "read_tree"]

# Jobs on these queues announce an outcome (e-mail, webhook); they are shown in their tree
# but neither hold it open nor fail it: a slow webhook is not the work the caller waits for.
ANNOUNCEMENT_QUEUES = frozenset({"notifications"})

_FAILED_STATES = ("failed", "timed_out")

# What a table's records are called ("explanation batch").
_KIND_OF_TABLE = {kind.model.__tablename__: kind.what for kind in RECORD_KINDS.values()}


@dataclass
class JobTree:
    """A root job and its descendants, with the tree's own state, progress and first failure."""

    root_id: str
    nodes: list[JobView]
    resolved_from: str = "job"
    subject_id: str | None = None
    state: str = "queued"
    progress: float = 0.0
    first_failure: JobView | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def root(self) -> JobView:
        """The root job's own record."""
        return next(node for node in self.nodes if node.message_id == self.root_id)

    @property
    def final(self) -> bool:
        """True once every job of the tree that the caller waits for is final."""
        return self.state in FINAL_JOB_STATES

    def children(self, message_id: str) -> list[JobView]:
        """The jobs that ``message_id`` sent, oldest first."""
        return [node for node in self.nodes if node.parent_id == message_id]

    def subtree(self, message_id: str) -> JobTree:
        """The part of this tree under ``message_id``: it, what it sent, and so on down."""
        keep, frontier = {message_id}, [message_id]
        while frontier:
            sent = [node.message_id for node in self.children(frontier.pop())]
            keep.update(sent)
            frontier.extend(sent)
        nodes = [node for node in self.nodes if node.message_id in keep]
        nodes.sort(key=lambda node: (node.message_id != message_id, node.enqueued_at or 0.0))
        return summarise(JobTree(root_id=message_id, nodes=nodes))

    def to_dict(self) -> dict[str, Any]:
        """The tree as JSON-safe data: its summary, then every node."""
        return {
            "root_id": self.root_id, "resolved_from": self.resolved_from, "subject_id": self.subject_id,
            "state": self.state, "progress": round(self.progress, 4), "counts": self.counts,
            "first_failure": self.first_failure.to_dict() if self.first_failure else None,
            "nodes": [node.to_dict() for node in self.nodes],
        }


def find_root(store: JobStore, fanouts: FanoutStore, any_id: str) -> tuple[str, str, str | None]:
    """Return ``(root message id, what the id named, the id if not a job's)``; raises ``JobNotFound``."""
    try:
        return _root_of(store.get(any_id)), "job", None
    except JobNotFound:
        pass
    fanout = fanouts.get(any_id)
    if fanout is not None:
        if fanout.root_id:
            return fanout.root_id, "fanout", any_id
        member = _any_member(store, any_id)
        if member is not None:
            return _root_of(member), "fanout", any_id
        owner = _domain_job(store, fanout.owner_id)
        if owner is not None:
            return _root_of(store.get(owner[1])), "fanout", any_id
    found = _domain_job(store, any_id)
    if found is not None:
        kind, job_id = found
        return _root_of(store.get(job_id)), kind, any_id
    raise JobNotFound(f"no job, fan-out or record with id {any_id!r}")


def _root_of(job: JobView) -> str:
    # Jobs recorded before trees existed are their own roots.
    return job.root_id or job.message_id


def _any_member(store: JobStore, fanout_id: str) -> JobView | None:
    with store.database.session() as session:
        row = session.scalars(select(Job).where(Job.fanout_id == fanout_id).limit(1)).first()
        return view_from_row(row) if row is not None else None


def _domain_job(store: JobStore, record_id: str) -> tuple[str, str] | None:
    """Find a domain record by id in every table that names its job; return (kind, job id)."""
    with store.database.session() as session:
        for mapper in Base.registry.mappers:
            table = mapper.local_table
            columns = set(table.columns.keys())
            # Records named by a string id (rows numbered within a parent are not named alone).
            if table.name == "jobs" or not {"id", "job_id"} <= columns or not isinstance(table.c.id.type, String):
                continue
            job_id = session.execute(select(table.c.job_id).where(table.c.id == record_id)).scalar()
            if job_id:
                return _KIND_OF_TABLE.get(table.name, table.name), job_id
    return None


def read_tree(store: JobStore, root_id: str) -> JobTree:
    """Read a tree by its root's message id: every node, live ones from Redis, the rest from the database.

    A job's children join the tree set before the job is final, so a snapshot is
    consistent when the set is read after the states: every child of a node seen final is
    then in the set. The set is read again after each read of states until it holds no
    job whose state was not read with it.
    """
    with store.database.session() as session:
        rows = {row.message_id: row for row in session.scalars(select(Job).where(Job.root_id == root_id))}
    ids = {root_id, *rows}
    raws: dict[str, dict[bytes, bytes]] = {}
    while True:
        ordered = sorted(ids)
        pipe = store.redis.pipeline(transaction=False)
        for message_id in ordered:
            pipe.hgetall(store.key(message_id))
        pipe.smembers(store.tree_key(root_id))
        *states, members = pipe.execute()
        raws = dict(zip(ordered, states))
        joined = {member.decode() for member in members} - ids
        if not joined:
            break
        ids |= joined
    nodes = []
    for message_id, raw in raws.items():
        if raw.get(b"actor"):
            nodes.append(view_from_hash(raw))
        elif message_id in rows:
            nodes.append(view_from_row(rows[message_id]))
        elif message_id == root_id:
            nodes.append(store.get(root_id))  # raises JobNotFound for an unknown root
    nodes.sort(key=lambda node: (node.message_id != root_id, node.enqueued_at or 0.0))
    return summarise(JobTree(root_id=root_id, nodes=nodes))


def summarise(tree: JobTree) -> JobTree:
    """Fill in a tree's state, progress, counts and first failure from its nodes."""
    counted = [node for node in tree.nodes if node.queue not in ANNOUNCEMENT_QUEUES or node.message_id == tree.root_id]
    tree.counts = {}
    for node in counted:
        tree.counts[node.state] = tree.counts.get(node.state, 0) + 1
    failures = sorted((n for n in counted if n.state in _FAILED_STATES), key=lambda n: n.finished_at or 0.0)
    tree.first_failure = failures[0] if failures else None
    tree.progress = sum(1.0 if n.state in FINAL_JOB_STATES else n.progress for n in counted) / len(counted)
    if any(n.state not in FINAL_JOB_STATES for n in counted):
        tree.state = "running" if any(n.state in ("running", "retrying") for n in counted) else "queued"
    elif failures:
        tree.state = failures[0].state
    elif any(n.state == "cancelled" for n in counted):
        tree.state = "cancelled"
    else:
        tree.state = "succeeded"
    return tree

