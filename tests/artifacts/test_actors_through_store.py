"""Actors read and write datasets and models through the object store, not a shared folder.

Worker hosts in miniature: each worker has an artifact root, var folder and cache of its
own, and they share only Redis, PostgreSQL and a real SeaweedFS (``PFD_ARTIFACT_URL=s3://...``).
A dataset generated on the CPU worker is trained on by the training worker; the model
trained there is evaluated back on the CPU worker. A training worker killed mid-run is
replaced by another, which resumes from the last epoch the first published. No worker can
see another's files, so every step that succeeds read its input from the store.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from actors.platform.artifacts import ArtifactCache, ArtifactCorrupt, ArtifactMissing, open_store
from actors.store.datasets import claim_dataset, complete_dataset, get_dataset
from actors.store.db import Database, get_database, migrate
from actors.store.deployments import get_deployment
from actors.store.experiments import experiment_history, get_experiment
from actors.store.jobs import JobStore
from pipeline.artifacts import file_sha256
from tests.conftest import drop_pg_database, recreate_pg_database
from tests.records import NOISE_OFF, SEPARABLE
from tests.servers import RedisServer, SeaweedServer, send_messages
from tests.training.conftest import TINY_CNN
from tests.waiting import wait_until
from tests.workers import Workers


def torch_epoch(path: Path) -> int:
    """The last full epoch a ``last.pt`` holds."""
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=False)["epoch"])


DATABASE = f"pfd_test_store_{os.getpid()}"


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory, seaweed: SeaweedServer) -> Iterator[dict[str, str]]:
    """A Redis and a PostgreSQL database of this module's own; the settings every process gets."""
    redis = RedisServer(tmp_path_factory.mktemp("redis"), appendonly=False).start()
    url = recreate_pg_database(DATABASE)
    migrate(url)
    try:
        yield {"PFD_REDIS_URL": redis.url(), "PFD_DATABASE_URL": url, "PFD_WORKERS_RECORD_JOBS": "1",
               "PFD_ARTIFACT_URL": f"s3://{seaweed.bucket}/actors", "PFD_S3_ENDPOINT_URL": seaweed.endpoint,
               "PFD_S3_ACCESS_KEY_ID": seaweed.access_key, "PFD_S3_SECRET_ACCESS_KEY": seaweed.secret_key}
    finally:
        get_database(url).dispose()
        drop_pg_database(DATABASE)
        redis.stop()


def _host(root: Path) -> dict[str, str]:
    """A host's own folders: nothing under them is visible to the other worker."""
    return {"PFD_VAR_DIR": str(root / "var"), "PFD_ARTIFACT_ROOT": str(root / "artifacts"),
            "PFD_ARTIFACT_CACHE_DIR": str(root / "cache"), "TMPDIR": str(root / "tmp")}


def _jobs(services: dict[str, str]) -> JobStore:
    return JobStore(Redis.from_url(services["PFD_REDIS_URL"]), get_database(services["PFD_DATABASE_URL"]),
                    cache_ttl_s=3600)


def test_a_dataset_and_a_model_cross_workers_through_the_object_store(services: dict[str, str], seaweed: SeaweedServer,
                                                                       tmp_path: Path):
    cpu_root, training_root = tmp_path / "cpu-host", tmp_path / "training-host"
    for root in (cpu_root, training_root):
        (root / "tmp").mkdir(parents=True)
    cpu = Workers(tmp_path, extra_env={**services, **_host(cpu_root)})
    training = Workers(tmp_path, extra_env={**services, **_host(training_root)})
    database: Database = get_database(services["PFD_DATABASE_URL"])
    jobs = _jobs(services)

    def run(actor: str, **kwargs: object) -> dict:
        [message_id] = send_messages([{"actor": actor, "kwargs": kwargs}], services)
        job = wait_until(lambda: (j := jobs.get(message_id)) and j.final and j, timeout=180, what=f"{actor} to finish")
        logs = f"cpu: {cpu.log('cpu')[-2000:]}\ntraining: {training.log('training')[-2000:]}"
        assert job.state == "succeeded", (actor, job.error_type, job.error_message, logs)
        return job.result

    try:
        cpu.start("cpu_processing", tag="cpu", command=cpu.cpu_command(threads=1))
        training.start("gpu_training", tag="training")
        run("generate_dataset", dataset_id="ds-store", fault_types=SEPARABLE, records_per_class=4, noise=NOISE_OFF,
            seed=1)
        run("train_model", experiment_id="exp-store", dataset_id="ds-store", model_key=TINY_CNN["model_key"],
            model_args=TINY_CNN["model_args"], training=TINY_CNN["training"])
        roc = run("roc_analysis", experiment_id="exp-store", analysis_id="an-store-roc")
        compared = run("compare_architectures", experiment_ids=["exp-store"], analysis_id="an-store-compare",
                       latency_windows=4, repeats=1)
        explained = run("explain_signal", experiment_id="exp-store", method="gradcam",
                        signal={"dataset_id": "ds-store", "split": "test", "record": 0})
        exported = run("export_onnx", experiment_id="exp-store")
    finally:
        cpu.stop_all()
        training.stop_all()

    dataset, experiment = get_dataset(database, "ds-store"), get_experiment(database, "exp-store")
    # The records name store keys, never a host's path.
    assert dataset["path"] == "datasets/ds-store.h5"
    assert (experiment["model_path"], experiment["predictions_path"], experiment["metrics_path"]) == (
        "experiments/exp-store/best.pt", "experiments/exp-store/test_predictions.npz", "experiments/exp-store/metrics.json")
    # Each file was written on one host and read on the other from the store, through its cache.
    assert (cpu_root / "artifacts" / dataset["path"]).is_file() and not (training_root / "artifacts" / "datasets").exists()
    assert (training_root / "artifacts" / experiment["model_path"]).is_file()
    assert not (cpu_root / "artifacts" / "experiments" / "exp-store" / "best.pt").exists()
    cached = {p.name for p in (training_root / "cache").glob("??/*")} | {p.name for p in (cpu_root / "cache").glob("??/*")}
    assert f"{dataset['checksum']}.h5" in cached and f"{experiment['model_sha256']}.pt" in cached
    # The store holds them whole: what a third host would fetch is what training wrote.
    store = open_store(services["PFD_ARTIFACT_URL"], cache=ArtifactCache(tmp_path / "reader", 1 << 30),
                       endpoint_url=seaweed.endpoint, access_key_id=seaweed.access_key,
                       secret_access_key=seaweed.secret_key)
    assert file_sha256(store.fetch(experiment["model_path"])) == experiment["model_sha256"]
    assert roc["status"] == "completed" and roc["result"]
    assert compared["status"] == "completed" and len(compared["result"]["models"]) == 1
    # What the CPU host wrote from them is stored under keys too: plots, explanations, ONNX.
    variants = get_deployment(database, exported["deployment_id"])["variants"]
    onnx = next(v for v in variants if v["name"] == "onnx_fp32")
    assert variants[0]["path"] == experiment["model_path"]  # the original is the experiment's stored checkpoint
    written = [roc["plot_paths"]["roc"], explained["npz_path"], explained["png_path"], onnx["path"]]
    assert all(not Path(key).is_absolute() and (cpu_root / "artifacts" / key).is_file() for key in written), written
    assert file_sha256(store.fetch(onnx["path"])) == onnx["sha256"]
    assert {key: key in store.keys() for key in written} == dict.fromkeys(written, True)


def test_a_training_redelivered_to_another_host_resumes_from_the_epoch_the_first_published(
        services: dict[str, str], seaweed: SeaweedServer, tmp_path: Path):
    from pipeline.datasets.generate import generate_dataset
    from pipeline.signals.config import GeneratorConfig

    database, jobs = get_database(services["PFD_DATABASE_URL"]), _jobs(services)
    store = open_store(services["PFD_ARTIFACT_URL"], cache=ArtifactCache(tmp_path / "producer-cache", 1 << 30),
                       endpoint_url=seaweed.endpoint, access_key_id=seaweed.access_key,
                       secret_access_key=seaweed.secret_key)
    # A dataset another host published: in the store only.
    config = GeneratorConfig.from_dict({"fault_types": SEPARABLE, "records_per_class": 6, "noise": NOISE_OFF, "seed": 3})
    produced = generate_dataset(config, tmp_path / "producer", "ds-resume", workers=1)
    stored = store.put("datasets/ds-resume.h5", Path(produced.hdf5_path))
    claim_dataset(database, "ds-resume", "test-setup", source="generator", name="ds-resume")
    complete_dataset(database, "ds-resume", "test-setup", path=stored.key, checksum=stored.sha256,
                     n_records=produced.n_records, class_counts=produced.class_counts,
                     split_counts=produced.split_counts, config_hash=produced.config_hash)
    first, second = tmp_path / "first-host", tmp_path / "second-host"
    for root in (first, second):
        (root / "tmp").mkdir(parents=True)
    hosts = {tag: Workers(tmp_path, extra_env={**services, **_host(root)}) for tag, root in
             (("first", first), ("second", second))}
    training = {**TINY_CNN["training"], "epochs": 40, "early_stopping_patience": 40}

    def published_epoch() -> int:
        try:
            return torch_epoch(store.fetch("experiments/exp-resume/last.pt"))
        except ArtifactMissing:
            return 0
        except ArtifactCorrupt:  # last.pt is replaced every epoch: this read straddled two uploads
            return 0

    try:
        hosts["first"].start("gpu_training", tag="first")
        [message_id] = send_messages([{"actor": "train_model", "kwargs": {
            "experiment_id": "exp-resume", "dataset_id": "ds-resume", "model_key": TINY_CNN["model_key"],
            "model_args": TINY_CNN["model_args"], "training": training}}], services)
        # Epochs are published from a thread of their own, after they are recorded.
        wait_until(lambda: published_epoch() >= 2, timeout=120, what="two epochs published by the first host")
        hosts["first"].signal("first", signal.SIGKILL)  # the host is gone: its published epochs stay
        published = published_epoch()  # an upload cut off by the kill never shows
        hosts["second"].start("gpu_training", tag="second")
        job = wait_until(lambda: (j := jobs.get(message_id)) and j.final and j, timeout=180,
                         what="the training to finish on the second host")
        assert job.state == "succeeded", (job.error_message, hosts["second"].log("second")[-3000:])
    finally:
        for running in hosts.values():
            running.stop_all()
    experiment = get_experiment(database, "exp-resume")
    run = json.loads(store.fetch(experiment["metrics_path"]).read_text())
    assert published >= 2 and run["resumed_from_epoch"] == published, (published, run["resumed_from_epoch"])
    assert len(experiment_history(database, "exp-resume")) == 40
    assert experiment["epochs_run"] == 40 and job.deliveries == 2
    assert not (second / "artifacts" / "datasets").exists()  # read from the store through its cache


def test_recordings_in_the_object_store_are_imported_by_their_keys(services: dict[str, str], seaweed: SeaweedServer,
                                                                   tmp_path: Path):
    from tests.recordings.rig import FOLDERS, write_rig_mat_files

    store = open_store(services["PFD_ARTIFACT_URL"], cache=ArtifactCache(tmp_path / "uploader", 1 << 30),
                       endpoint_url=seaweed.endpoint, access_key_id=seaweed.access_key,
                       secret_access_key=seaweed.secret_key)
    # A rig's recordings uploaded to the store by someone else (never on the importing host).
    files = write_rig_mat_files(tmp_path / "upload", recordings_per_class=3, seconds=1.0, seed=5)
    for written in files:
        store.put(f"imports/rig/{written['path']}", tmp_path / "upload" / written["path"])
    (tmp_path / "cpu-host" / "tmp").mkdir(parents=True)
    cpu = Workers(tmp_path, extra_env={**services, **_host(tmp_path / "cpu-host")})
    try:
        cpu.start("cpu_processing", tag="cpu", command=cpu.cpu_command(threads=1))
        [message_id] = send_messages([{"actor": "import_mat_dataset", "kwargs": {
            "paths": ["imports/rig/"], "from_store": True, "dataset_id": "ds-from-store",
            "labels": {"patterns": {f"**/{folder}/*": kind for kind, folder in FOLDERS.items()}},
            "channels": ["*_DE_time"], "sampling_rate": "native", "source_fs": 12_000, "record_seconds": 0.5,
            "window_seconds": 0.25}}],
            services)
        job = wait_until(lambda: (j := _jobs(services).get(message_id)) and j.final and j, timeout=120,
                         what="the import to finish")
    finally:
        cpu.stop_all()
    assert job.state == "succeeded", (job.error_message, cpu.log("cpu")[-3000:])
    dataset = get_dataset(get_database(services["PFD_DATABASE_URL"]), "ds-from-store")
    assert job.result["n_files"] == len(files) and not job.result["failures"]
    assert dataset["path"] == "datasets/ds-from-store.h5" and set(dataset["class_counts"]) == set(FOLDERS)
    assert file_sha256(store.fetch(dataset["path"])) == dataset["checksum"]
    assert not list((tmp_path / "cpu-host" / "var").glob("import-*"))  # the fetched copies are gone
    # A key with nothing under it is the job's clear error, not a retry.
    [missing] = send_messages([{"actor": "import_mat_dataset", "kwargs": {
        "paths": ["imports/nothing-here"], "from_store": True, "dataset_id": "ds-none"}}], services)
    cpu.start("cpu_processing", tag="cpu-2", command=cpu.cpu_command(threads=1))
    try:
        refused = wait_until(lambda: (j := _jobs(services).get(missing)) and j.final and j, timeout=60,
                             what="the import of nothing to fail")
    finally:
        cpu.stop_all()
    assert (refused.state, refused.attempts, refused.error_type) == ("failed", 1, "InvalidInput")
    assert "nothing in the artifact store" in refused.error_message and "imports/nothing-here" in refused.error_message


def test_cleanup_deletes_the_objects_of_deleted_records_from_the_store(services: dict[str, str],
                                                                      seaweed: SeaweedServer, tmp_path: Path):
    store = open_store(services["PFD_ARTIFACT_URL"], cache=ArtifactCache(tmp_path / "writer", 1 << 30),
                       endpoint_url=seaweed.endpoint, access_key_id=seaweed.access_key,
                       secret_access_key=seaweed.secret_key)
    (tmp_path / "f").write_bytes(b"x" * 1000)
    claim_dataset(get_database(services["PFD_DATABASE_URL"]), "ds-kept", "test-setup", source="generator",
                  name="kept")
    orphans = {"datasets/ds-gone.h5", "experiments/exp-gone/best.pt", "experiments/exp-gone/last.pt"}
    kept = {"datasets/ds-kept.h5", "deployments/dep-1/model.onnx"}  # a record's; not a record-named folder
    for key in orphans | kept:
        store.put(key, tmp_path / "f")
    (tmp_path / "host" / "tmp").mkdir(parents=True)
    # No minimum age here: every orphan is old enough.
    host = Workers(tmp_path, extra_env={**services, **_host(tmp_path / "host"), "PFD_TEMP_FILE_MAX_AGE_S": "0"})

    def clean(**kwargs: object) -> dict:
        [message_id] = send_messages([{"actor": "clean_artifacts", "kwargs": kwargs}], services)
        job = wait_until(lambda: (j := _jobs(services).get(message_id)) and j.final and j, timeout=60,
                         what="the cleanup to finish")
        assert job.state == "succeeded", (job.error_message, host.log("maintenance")[-3000:])
        return job.result

    try:
        host.start("high_priority", tag="maintenance")
        dry = clean(dry_run=True)
        listed = {c["path"] for c in dry["objects_deleted"]}
        assert orphans <= listed and not kept & listed and dry["store"].startswith(services["PFD_ARTIFACT_URL"])
        assert orphans | kept <= set(store.keys())  # a dry run deletes nothing
        real = clean()
    finally:
        host.stop_all()
    assert {c["path"] for c in real["objects_deleted"]} == listed and real["object_bytes"] >= 3000
    assert not orphans & set(store.keys()) and kept <= set(store.keys())
