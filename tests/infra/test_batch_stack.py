"""`whisper:batch` on Pulumi's mock runtime: buckets, the GPU job, its identity, its runners;
and the key's validation (infra/config/batch.py), each mistake naming the key and the fix."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.batch import JOB_INPUT_ROLE, JOB_OUTPUT_ROLE, RUNNER_JOB_ROLES, WORKER_COMMAND
from infra.config import ConfigError, parse_config
from infra.mockrun import Plan, load_stack_config, run_program

JOB = "gcp:cloudrunv2/job:Job"
SERVICE = "gcp:cloudrunv2/service:Service"
BUCKET = "gcp:storage/bucket:Bucket"
BUCKET_IAM = "gcp:storage/bucketIAMMember:BucketIAMMember"
JOB_IAM = "gcp:cloudrunv2/jobIamMember:JobIamMember"
ACCOUNT = "gcp:serviceaccount/account:Account"
PROJECT_IAM = "gcp:projects/iAMMember:IAMMember"
API = "gcp:projects/service:Service"
RUNNER = "group:transcribers@example.com"


def plan_with(stack: str, batch: dict[str, Any] | None, **keys: str) -> Plan:
    config = load_stack_config(stack)
    if batch is not None:
        config["whisper:batch"] = json.dumps(batch)
        if batch.get("enabled", True) and "serviceAccount" not in batch:
            # The stack creates the job's account: a project owner deploys it, not the CI deployer
            # that the example stacks' bootstrap runtime account implies (refused: see below).
            config.pop("whisper:serviceAccount", None)
    config.update({f"whisper:{key}": value for key, value in keys.items()})
    return run_program(config, stack=stack)


@pytest.fixture(scope="module")
def dev() -> Plan:
    return plan_with("dev", {"taskCount": 8, "maxRetries": 2, "runners": [RUNNER]}, maxInstances="3")


@pytest.fixture(scope="module")
def prod() -> Plan:
    return plan_with("prod", {"inputBucket": "acme-call-archive", "outputRetentionDays": 90})


def buckets(plan: Plan) -> dict[str, dict[str, Any]]:
    return {bucket.inputs["name"]: dict(bucket.inputs) for bucket in plan.of_type(BUCKET)}


def grants(plan: Plan, member: str) -> set[tuple[str, str]]:
    return {
        (g.inputs["bucket"], g.inputs["role"])
        for g in plan.of_type(BUCKET_IAM)
        if g.inputs["member"] == member
    }


@pytest.mark.parametrize("stack", ["dev", "prod"])
@pytest.mark.parametrize("batch", [None, {"enabled": False, "taskCount": 4}])
def test_batch_is_off_unless_the_stack_turns_it_on(stack: str, batch: dict[str, Any] | None) -> None:
    plan = plan_with(stack, batch)
    assert plan.of_type(JOB) == plan.of_type(BUCKET) == []
    assert not any(key.startswith("batch") for key in plan.outputs)


def test_buckets_are_private_uniform_and_expire_transcripts(dev: Plan) -> None:
    found = buckets(dev)
    assert set(found) == {"my-whisper-dev-whisper-batch-in", "my-whisper-dev-whisper-batch-out"}
    for bucket in found.values():
        assert bucket["uniformBucketLevelAccess"] is True
        assert bucket["publicAccessPrevention"] == "enforced"
        assert bucket["location"] == "us-central1"
        assert {"type": "AbortIncompleteMultipartUpload"} in [
            rule["action"] for rule in bucket["lifecycleRules"]
        ]
    output = found["my-whisper-dev-whisper-batch-out"]
    assert {"action": {"type": "Delete"}, "condition": {"age": 30}} in output["lifecycleRules"]
    recordings = found["my-whisper-dev-whisper-batch-in"]
    assert all(rule["action"]["type"] != "Delete" for rule in recordings["lifecycleRules"])  # kept by default
    # dev (deletionProtection false) may empty its transcripts on destroy; recordings never go that way.
    assert (output["forceDestroy"], recordings["forceDestroy"]) == (True, False)


def test_the_job_runs_the_worker_on_an_l4_from_the_services_image(dev: Plan) -> None:
    job = dev.one(JOB).inputs
    service = dev.one(SERVICE).inputs
    container = job["template"]["template"]["containers"][0]
    assert container["image"] == service["template"]["containers"][0]["image"]  # same digest
    assert "@sha256:" in container["image"]
    assert container["commands"] == list(WORKER_COMMAND)
    assert container["args"] == [
        "gs://my-whisper-dev-whisper-batch-in",
        "gs://my-whisper-dev-whisper-batch-out",
    ]
    assert container["resources"]["limits"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    envs = {env["name"]: env["value"] for env in container["envs"]}
    assert envs == {
        "WHISPER_ENGINE": "faster-whisper",
        "WHISPER_MODEL": "tiny.en",
        "WHISPER_MODEL_DIR": "/models",
        "WHISPER_DEVICE": "cuda",
    }
    template = job["template"]
    assert (template["taskCount"], template["parallelism"]) == (8, 3)  # parallelism: maxInstances GPUs
    task = template["template"]
    assert task["nodeSelector"] == {"accelerator": "nvidia-l4"}
    assert task["gpuZonalRedundancyDisabled"] is True
    assert (task["maxRetries"], task["timeout"]) == (2, "3600s")
    assert (job["name"], job["location"], job["deletionProtection"]) == (
        "whisper-batch",
        "us-central1",
        False,
    )
    assert dev.outputs["batch_job"] == "projects/my-whisper-dev/locations/us-central1/jobs/whisper-batch"


def test_the_job_account_reads_the_input_writes_the_output_and_nothing_else(dev: Plan) -> None:
    account = next(a for a in dev.of_type(ACCOUNT) if a.name == "batch-account")
    email = f"{account.inputs['accountId']}@my-whisper-dev.iam.gserviceaccount.com"
    assert dev.one(JOB).inputs["template"]["template"]["serviceAccount"] == email
    member = f"serviceAccount:{email}"
    assert grants(dev, member) == {
        ("my-whisper-dev-whisper-batch-in", JOB_INPUT_ROLE),
        ("my-whisper-dev-whisper-batch-out", JOB_OUTPUT_ROLE),
    }
    assert not [b for b in dev.of_type(PROJECT_IAM) if b.inputs["member"] == member]
    assert not [b for b in dev.of_type(JOB_IAM) if b.inputs["member"] == member]
    # A run started right after `pulumi up` finds the roles in place and the APIs on.
    job = dev.one(JOB)
    assert dev.not_waited_for(job, [g for g in dev.of_type(BUCKET_IAM) if g.inputs["member"] == member]) == []
    assert dev.not_waited_for(job, dev.of_type(API)) == []
    for bucket in dev.of_type(BUCKET):
        assert dev.waits_for(bucket, dev.named("apis-storage"))


def test_only_the_listed_runners_may_start_runs_and_read_results(dev: Plan) -> None:
    runners = {(b.inputs["member"], b.inputs["role"]) for b in dev.of_type(JOB_IAM)}
    assert runners == {(RUNNER, role) for role in RUNNER_JOB_ROLES}
    assert all(b.inputs["name"] == "whisper-batch" for b in dev.of_type(JOB_IAM))
    assert grants(dev, RUNNER) == {
        ("my-whisper-dev-whisper-batch-in", "roles/storage.objectUser"),
        ("my-whisper-dev-whisper-batch-out", "roles/storage.objectViewer"),
    }
    public = {"allUsers", "allAuthenticatedUsers"}
    assert not [b for b in [*dev.of_type(JOB_IAM), *dev.of_type(BUCKET_IAM)] if b.inputs["member"] in public]


def test_an_existing_input_bucket_is_read_not_created_and_prod_is_protected(prod: Plan) -> None:
    assert set(buckets(prod)) == {"my-whisper-prod-whisper-batch-out"}
    output = buckets(prod)["my-whisper-prod-whisper-batch-out"]
    assert {"action": {"type": "Delete"}, "condition": {"age": 90}} in output["lifecycleRules"]
    assert output["forceDestroy"] is False
    job = prod.one(JOB)
    assert job.inputs["template"]["template"]["containers"][0]["args"][0] == "gs://acme-call-archive"
    # The job holds no state: protected, it would make `whisper:batch.enabled: false` fail in prod.
    assert job.inputs["deletionProtection"] is False
    batch = prod.named("batch")
    protected = {resource.type for resource in prod.children(batch) if resource.protect}
    assert protected == {"gcp:storage/bucket:Bucket"}, "only the buckets hold state worth protecting"
    assert ("acme-call-archive", JOB_INPUT_ROLE) in {
        (g.inputs["bucket"], g.inputs["role"]) for g in prod.of_type(BUCKET_IAM)
    }
    assert (job.inputs["template"]["taskCount"], job.inputs["template"]["parallelism"]) == (1, 1)


def test_a_bootstrap_job_account_is_used_instead_of_a_new_one() -> None:
    email = "whisper-job-dev@my-whisper-dev.iam.gserviceaccount.com"
    plan = plan_with("dev", {"serviceAccount": email})
    assert "batch-account" not in {account.name for account in plan.of_type(ACCOUNT)}
    assert plan.one(JOB).inputs["template"]["template"]["serviceAccount"] == email
    assert len(grants(plan, f"serviceAccount:{email}")) == 2


# --- validation -------------------------------------------------------------------------------------


def batch_problems(batch: Any, **keys: str) -> list[str]:
    raw = {"gcp:project": "my-whisper-dev", "whisper:batch": json.dumps(batch)}
    raw.update({f"whisper:{key}": value for key, value in keys.items()})
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    return caught.value.problems


@pytest.mark.parametrize(
    ("batch", "keys", "named", "fix"),
    [
        ({"taskCount": 0}, {}, "whisper:batch.taskCount 0", "--path 'whisper:batch.taskCount' 1"),
        ({"taskCount": "many"}, {}, "whisper:batch.taskCount 'many'", "--path 'whisper:batch.taskCount'"),
        ({"parallelism": 4}, {"maxInstances": "2"}, "exceeds whisper:maxInstances 2", "batch.parallelism' 2"),
        ({"maxRetries": 11}, {}, "whisper:batch.maxRetries 11", "--path 'whisper:batch.maxRetries' 1"),
        ({"taskTimeoutSeconds": 7200}, {}, "GPU tasks: 1 h at most", "batch.taskTimeoutSeconds' 3600"),
        ({"outputRetentionDays": -1}, {}, "whisper:batch.outputRetentionDays -1", "outputRetentionDays' 30"),
        ({"bucketPrefix": "x" * 60}, {}, "whisper:batch.bucketPrefix", "batch.bucketPrefix' acme-whisper"),
        ({"inputBucket": "Bad_Bucket!"}, {}, "whisper:batch.inputBucket 'Bad_Bucket!'", "batch.inputBucket'"),
        ({"inputBucket": "archive", "inputRetentionDays": 7}, {}, "inputRetentionDays applies", "config rm"),
        ({"runners": ["allUsers"]}, {}, "never run by everyone", "batch.runners[0]' user:"),
        ({"runners": ["bob@example.com"]}, {}, "entry 'bob@example.com' is not an IAM member", "runners[0]"),
        ({"serviceAccount": "job@other.iam.gserviceaccount.com"}, {}, "in my-whisper-dev", "serviceAccount'"),
        # The same check as whisper:serviceAccount's: an account ID has 6 to 30 characters.
        ({"serviceAccount": "x@my-whisper-dev.iam.gserviceaccount.com"}, {}, "e-mail in", "serviceAccount'"),
        ({"taskcount": 4}, {}, "whisper:batch.taskcount is not a known key", "config rm --path"),
        ({"enabled": "maybe"}, {}, "whisper:batch.enabled 'maybe'", "batch.enabled' true"),
        ({"diarize": "yes"}, {}, "whisper:batch.diarize 'yes'", "batch.diarize' true"),
    ],
)
def test_each_batch_mistake_names_its_key_and_fix(
    batch: Any, keys: dict[str, str], named: str, fix: str
) -> None:
    found = batch_problems(batch, **keys)
    assert len(found) == 1, found
    assert named in found[0] and fix in found[0], found[0]


def test_diarize_tells_the_worker_through_its_environment() -> None:
    plan = plan_with("dev", {"diarize": True})
    container = plan.one(JOB).inputs["template"]["template"]["containers"][0]
    envs = {env["name"]: env["value"] for env in container["envs"]}
    assert envs["WHISPER_BATCH_DIARIZE"] == "true"
    # In the environment, not the args: a run's overrides replace the args (other prefixes).
    assert container["args"] == [
        "gs://my-whisper-dev-whisper-batch-in",
        "gs://my-whisper-dev-whisper-batch-out",
    ]


def test_batch_must_be_an_object() -> None:
    [problem] = batch_problems([1, 2])
    assert "whisper:batch" in problem and "a dict" in problem


def test_batch_defaults() -> None:
    cfg = parse_config({"gcp:project": "my-whisper-dev", "whisper:batch": "{}"}).batch
    assert cfg is not None
    assert (cfg.task_count, cfg.parallelism, cfg.max_retries, cfg.task_timeout_seconds) == (1, 1, 1, 3600)
    assert (cfg.input_retention_days, cfg.output_retention_days, cfg.runners) == (0, 30, ())
    assert cfg.create_input_bucket and cfg.service_account is None and not cfg.diarize
