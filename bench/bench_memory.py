"""Memory: worker RSS over 1,000 jobs of each kind, and Redis back to its baseline after the TTLs.

Real worker processes (the Procfile's ``high_priority`` and ``notifications`` lines, and
the recorder) run 1,000 jobs of each kind: succeed, report progress, store a result, fail
on bad input (dead-lettered), retry once, be cancelled before starting, fan out (groups of
10 with a finalize callback), and deliver a notification to the inbox. The worker's RSS is
read after the first 100 and after all 1,000 of a kind (goal: within 20 %). Then, with
the dead letters purged (they are kept on purpose), Redis's memory once the result and
job-cache TTLs have passed is compared with its memory before the first job.
Run ``python -m bench.bench_memory``; figures in ``bench/results/memory.json``.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redis import Redis

from bench.common import write_result
from bench.processes import BIN, bench_env, migrate, procfile, produce, running, wait_for

__all__ = ["run"]

EXTRA = ("bench.memory_actors",)
TTL_S = 10
KINDS = ("succeed", "progress", "result", "fail", "retry", "cancelled", "fanout", "notify")

_PRODUCE = """
import json, time, uuid
import bench.memory_actors as m
from actors.platform.fanout import fan_out
from actors.platform.jobs import request_cancel
from actors.notifications import notify
from redis import Redis
from config.settings import get_settings

kind, count = {kind!r}, {count}
redis = Redis.from_url(get_settings().redis_url)
ids = []
if kind == "fanout":
    for _ in range(count // 10):
        members = [m.mem_member.message(n=i) for i in range(10)]
        fanout_id = str(uuid.uuid4())
        finalize = m.mem_finalize.message(fanout_id=fanout_id)
        fan_out(members, kind="bench", owner_id="bench", finalize=finalize, fanout_id=fanout_id)
        ids += [member.message_id for member in members] + [finalize.message_id]
else:
    for i in range(count):
        if kind == "notify":
            message = notify.send(event="job.failed", event_id=f"bench:{{uuid.uuid4().hex}}", payload={{
                "message_id": uuid.uuid4().hex, "actor": "bench", "queue": "high_priority",
                "error_type": "InvalidInput", "error_message": "refused", "attempts": 1}})
        elif kind == "retry":
            message = m.mem_retry.send(n=i)
        elif kind == "cancelled":
            message = m.mem_succeed.send_with_options(delay=2_000)
            request_cancel(message.message_id)
        else:
            message = getattr(m, "mem_" + kind).send()
        ids.append(message.message_id)
final = {{b"succeeded", b"failed", b"timed_out", b"cancelled"}}
deadline = time.monotonic() + 600
while True:
    pipe = redis.pipeline(transaction=False)
    for message_id in ids:
        pipe.hget("pfd:job:" + message_id, "state")
    states = pipe.execute()
    if all(s in final for s in states):
        break
    if time.monotonic() > deadline:
        raise SystemExit("jobs still not final: " + str(sum(s not in final for s in states)))
    time.sleep(0.05)
print(json.dumps({{"jobs": len(ids)}}))
"""


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            child = int(stat.parent.name)
            found += [child, *_children(child)]
    return found


def _worker_rss_kib(root_pid: int) -> int:
    """RSS of the worker process under ``root_pid`` (the dramatiq child that runs the jobs)."""
    rss = {}
    for pid in _children(root_pid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"dramatiq" in cmdline:
            rss[pid] = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
    return max(rss.values())  # the main process only forwards logs; the worker holds the jobs


def _key_patterns(redis: Redis) -> dict[str, int]:
    """What is left in Redis, as key patterns (ids replaced by ``*``) with their counts."""
    patterns: dict[str, int] = {}
    for key in redis.scan_iter(count=1000):
        pattern = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|[0-9a-f]{32}", "*", key.decode())
        patterns[pattern] = patterns.get(pattern, 0) + 1
    return dict(sorted(patterns.items()))


def _settled(redis: Redis) -> None:
    wait_for(lambda: redis.zcard("pfd:jobs:dirty:final") + redis.zcard("pfd:jobs:dirty") == 0, timeout=120,
             what="the recorder to write every job", interval=0.1)


def run(jobs_per_kind: int = 1000, redis_url: str = "redis://127.0.0.1:6379/12") -> dict[str, Any]:
    """Measure RSS per kind and Redis memory; write ``bench/results/memory.json``."""
    env = bench_env(redis_url, PFD_RESULT_TTL_S=str(TTL_S), PFD_JOB_CACHE_TTL_S=str(TTL_S),
                    PFD_JOB_RECORD_SETTLE_S="0.5")
    migrate(env)
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    figures: dict[str, Any] = {"jobs_per_kind": jobs_per_kind, "ttl_s": TTL_S, "kinds": {}}
    with running(procfile("high_priority", extra_modules=EXTRA), env, log_name="high") as high, \
         running(procfile("notifications", extra_modules=EXTRA), env, log_name="notify") as notify, \
         running([str(BIN / "pfd"), "record-jobs"], env, log_name="recorder"):
        for kind in KINDS:  # warm-up: every code path and connection once
            produce(_PRODUCE.format(kind=kind, count=10), env)
        _settled(redis)
        redis.delete("dramatiq:high_priority.XQ", "dramatiq:high_priority.XQ.msgs")
        baseline = redis.info("memory")["used_memory"]
        for kind in KINDS:
            worker = notify if kind == "notify" else high
            produce(_PRODUCE.format(kind=kind, count=100), env)
            after_100 = _worker_rss_kib(worker.pid)
            produce(_PRODUCE.format(kind=kind, count=jobs_per_kind - 100), env)
            after_all = _worker_rss_kib(worker.pid)
            figures["kinds"][kind] = {"rss_after_100_kib": after_100, f"rss_after_{jobs_per_kind}_kib": after_all,
                                      "growth": round(after_all / after_100 - 1, 4)}
        _settled(redis)
        redis.delete("dramatiq:high_priority.XQ", "dramatiq:high_priority.XQ.msgs")  # kept on purpose, 7 days
        time.sleep(TTL_S + 2)  # the TTLs being measured, not a wait for a condition
        deadline = time.monotonic() + 60  # Redis frees expired keys lazily and in cycles
        while redis.info("memory")["used_memory"] > baseline + 512 * 1024 and time.monotonic() < deadline:
            time.sleep(0.5)
        after = redis.info("memory")["used_memory"]
    figures.update(
        redis_used_memory_baseline=baseline, redis_used_memory_after_ttl=after,
        redis_delta_kib=round((after - baseline) / 1024, 1),
        redis_keys_left=_key_patterns(redis),
        worst_growth=max(k["growth"] for k in figures["kinds"].values()), goal_growth=0.2,
    )
    figures["meets_goal"] = figures["worst_growth"] <= 0.2
    write_result("memory", figures)
    redis.flushdb()
    return figures


if __name__ == "__main__":
    print(run())
