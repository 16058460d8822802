"""Invariants of .github/workflows: keyless auth, pinned actions, least privilege, one run per stack."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from infra.bootstrap import keyless_ci

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
STACKS = {"dev", "prod"}
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"uses:\s*(\S+)\s+#\s*v\d+\.\d+\.\d+\s*$")


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def triggers(workflow: dict) -> dict:
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1).
    return workflow.get("on", workflow.get(True))


def all_workflows() -> dict[str, dict]:
    return {path.name: load(path.name) for path in sorted(WORKFLOWS.glob("*.yml"))}


def steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def uses(job: dict, action: str) -> list[dict]:
    return [step for step in steps(job) if step.get("uses", "").startswith(action + "@")]


def pulumi_jobs() -> list[tuple[str, str, dict]]:
    return [
        (name, job_id, job)
        for name, workflow in all_workflows().items()
        for job_id, job in workflow["jobs"].items()
        if uses(job, "pulumi/actions")
    ]


def test_the_expected_workflows_exist():
    assert set(all_workflows()) >= {
        "preview.yml",
        "deploy-dev.yml",
        "deploy-prod.yml",
        "destroy.yml",
        "drift.yml",
    }


def test_every_action_is_pinned_by_full_sha_with_a_version_comment():
    for path in WORKFLOWS.glob("*.yml"):
        for line in path.read_text().splitlines():
            if "uses:" not in line or line.strip().startswith("#"):
                continue
            match = VERSION_COMMENT.search(line)
            assert match, f"{path.name}: {line.strip()!r} needs a '# vX.Y.Z' comment"
            assert PINNED.match(match.group(1)), f"{path.name}: {match.group(1)} is not pinned by commit SHA"


def test_same_action_is_pinned_to_the_same_sha_everywhere():
    pins: dict[str, set[str]] = {}
    for workflow in all_workflows().values():
        for job in workflow["jobs"].values():
            for step in steps(job):
                if "uses" in step:
                    action, sha = step["uses"].split("@")
                    pins.setdefault(action, set()).add(sha)
    assert all(len(shas) == 1 for shas in pins.values()), pins


def test_default_permissions_are_empty_and_jobs_ask_for_the_minimum():
    allowed = {"contents": "read", "id-token": "write", "pull-requests": "write"}
    for name, workflow in all_workflows().items():
        assert workflow.get("permissions") == {}, f"{name}: top-level permissions must be {{}}"
        for job_id, job in workflow["jobs"].items():
            permissions = job.get("permissions", {})
            assert permissions.items() <= allowed.items(), f"{name}:{job_id} asks for {permissions}"
            needs_token = bool(uses(job, "google-github-actions/auth"))
            assert (permissions.get("id-token") == "write") == needs_token, f"{name}:{job_id} id-token"
            comments = any(step.get("with", {}).get("comment-on-pr") for step in steps(job))
            assert ("pull-requests" in permissions) == comments, f"{name}:{job_id} pull-requests"


def test_pull_requests_write_only_on_preview():
    for name, workflow in all_workflows().items():
        for job in workflow["jobs"].values():
            if "pull-requests" in job.get("permissions", {}):
                assert name == "preview.yml"


def test_auth_is_workload_identity_federation_and_never_a_json_key():
    text = "\n".join(path.read_text() for path in WORKFLOWS.glob("*.yml"))
    assert "credentials_json" not in text
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in text
    assert "secrets." not in text, "the workflows need no secrets at all"
    for name, job_id, job in pulumi_jobs():
        [auth] = uses(job, "google-github-actions/auth")
        assert set(auth["with"]) == {"workload_identity_provider", "service_account"}, f"{name}:{job_id}"
        auth_index = steps(job).index(auth)
        first_pulumi = steps(job).index(uses(job, "pulumi/actions")[0])
        assert auth_index < first_pulumi, f"{name}:{job_id}: authenticate before running pulumi"


def test_checkout_never_persists_credentials():
    for name, workflow in all_workflows().items():
        for job_id, job in workflow["jobs"].items():
            for step in uses(job, "actions/checkout"):
                assert step.get("with", {}).get("persist-credentials") is False, f"{name}:{job_id}"


MUTATING = {"deploy-dev.yml", "deploy-prod.yml", "destroy.yml"}


def test_every_pulumi_job_has_a_concurrency_group_per_stack():
    for name, job_id, job in pulumi_jobs():
        concurrency = job.get("concurrency")
        assert concurrency, f"{name}:{job_id} has no concurrency group"
        group = concurrency["group"]
        assert any(token in group for token in ("matrix.stack", "inputs.stack", "-dev", "-prod")), group
        if name in MUTATING:
            # A running `pulumi up`/`destroy` must never be cancelled half-way; mutating jobs share one group.
            assert concurrency["cancel-in-progress"] is False
            assert re.fullmatch(r"pulumi-(dev|prod|\$\{\{ inputs\.stack \}\})", group), group
        else:
            # GitHub keeps one pending run per group and cancels the older one: a queued preview or
            # drift check in the deploy group would cancel a pending deploy.
            assert not group.startswith("pulumi-"), f"{name}:{job_id} shares the deploy group"


# Each identity and the only workflows that may name it (the bootstrap's bindings enforce the rest).
IDENTITY_VARS = {
    "vars.GCP_PREVIEWER_SERVICE_ACCOUNT": {"preview.yml", "drift.yml"},
    "vars.GCP_PROD_PREVIEWER_SERVICE_ACCOUNT": {"drift.yml"},
    "vars.GCP_DEV_DEPLOYER_SERVICE_ACCOUNT": {"deploy-dev.yml", "destroy.yml"},
    "vars.GCP_PROD_DEPLOYER_SERVICE_ACCOUNT": {"deploy-prod.yml", "destroy.yml"},
}
# The identities bound to exact workflow runs in the bootstrap, and those runs.
BOUND_IDENTITIES = {
    "vars.GCP_DEV_DEPLOYER_SERVICE_ACCOUNT": keyless_ci.DEPLOYER_RUNS["dev"],
    "vars.GCP_PROD_DEPLOYER_SERVICE_ACCOUNT": keyless_ci.DEPLOYER_RUNS["prod"],
    "vars.GCP_PROD_PREVIEWER_SERVICE_ACCOUNT": keyless_ci.PROD_PREVIEWER_RUNS,
}
_BY_STACK = re.compile(r"^\$\{\{ (?:inputs|matrix)\.stack == 'prod' && (vars\.\w+) \|\| (vars\.\w+) \}\}$")
_ONE = re.compile(r"^\$\{\{ (vars\.\w+) \}\}$")


def resolve(expression: str, stack: str) -> str:
    """The value of a workflow expression of the two forms these workflows use, for one stack."""
    if match := _ONE.match(expression):
        return match.group(1)
    match = _BY_STACK.match(expression)
    assert match, f"unmodelled expression {expression!r}"
    return match.group(1) if stack == "prod" else match.group(2)


def stacks_of(workflow: dict, job: dict) -> list[str]:
    if "matrix" in job.get("strategy", {}):
        return list(job["strategy"]["matrix"]["stack"])
    dispatch = triggers(workflow).get("workflow_dispatch") or {}
    if "stack" in dispatch.get("inputs", {}):
        return list(dispatch["inputs"]["stack"]["options"])
    [pulumi] = uses(job, "pulumi/actions")
    return [pulumi["with"]["stack-name"]]


def runs_only_on_main(workflow: dict, job: dict) -> bool:
    on = triggers(workflow)
    push_on_main = set(on) == {"push"} and on["push"] == {"branches": ["main"]}
    return push_on_main or job.get("if") == "github.ref == 'refs/heads/main'"


def workflow_runs() -> dict[str, set[keyless_ci.WorkflowRun]]:
    """Each identity variable and the (workflow, event, environment, ref) of every job that names it."""
    found: dict[str, set[keyless_ci.WorkflowRun]] = {}
    for name, workflow in all_workflows().items():
        for job in workflow["jobs"].values():
            if not uses(job, "google-github-actions/auth"):
                continue
            [auth] = uses(job, "google-github-actions/auth")
            for stack in stacks_of(workflow, job):
                identity = resolve(auth["with"]["service_account"], stack)
                environment = job.get("environment", "").replace("${{ inputs.stack }}", stack)
                ref = keyless_ci.MAIN_REF if runs_only_on_main(workflow, job) else "any"
                found.setdefault(identity, set()).update(
                    keyless_ci.WorkflowRun(name, event, environment, ref) for event in triggers(workflow)
                )
    return found


def test_each_workflow_uses_the_identity_meant_for_it():
    for name, job_id, job in pulumi_jobs():
        [auth] = uses(job, "google-github-actions/auth")
        account = auth["with"]["service_account"]
        named = {var for var in IDENTITY_VARS if re.search(rf"\b{re.escape(var)}\b", account)}
        assert named, f"{name}:{job_id} uses {account}"
        assert all(name in IDENTITY_VARS[var] for var in named), f"{name}:{job_id} may not use {named}"
    assert "GCP_DEPLOYER_SERVICE_ACCOUNT" not in "".join(p.read_text() for p in WORKFLOWS.glob("*.yml"))


def test_the_bootstraps_workload_identity_bindings_are_exactly_the_workflows_jobs():
    """Each bound identity is impersonable by the very jobs that name it, and by nothing else."""
    found = workflow_runs()
    for identity, bound in BOUND_IDENTITIES.items():
        assert found[identity] == set(bound), identity


def test_a_new_trigger_on_a_deploy_workflow_breaks_the_binding_check(monkeypatch):
    original = load

    def with_pull_request_target(name: str) -> dict:
        workflow = original(name)
        if name == "deploy-dev.yml":
            triggers(workflow)["pull_request_target"] = {}
        return workflow

    monkeypatch.setitem(globals(), "load", with_pull_request_target)
    runs = workflow_runs()["vars.GCP_DEV_DEPLOYER_SERVICE_ACCOUNT"]
    assert runs != set(keyless_ci.DEPLOYER_RUNS["dev"])


def test_pull_requests_run_with_the_read_only_previewer_only():
    for name, workflow in all_workflows().items():
        if "pull_request" in triggers(workflow) or "pull_request_target" in triggers(workflow):
            text = (WORKFLOWS / name).read_text()
            assert "DEPLOYER" not in text, name
            assert "PROD" not in text, f"{name}: a pull request's code must not reach prod's identities"


def test_prod_deployer_is_named_only_in_jobs_of_the_prod_environment():
    for name, job_id, job in pulumi_jobs():
        [auth] = uses(job, "google-github-actions/auth")
        if "PROD_DEPLOYER" not in auth["with"]["service_account"]:
            continue
        assert job["environment"] in {"prod", "${{ inputs.stack }}"}, f"{name}:{job_id}"
        if job["environment"] != "prod":
            assert auth["with"]["service_account"].startswith("${{ inputs.stack == 'prod' && ")


def test_deploys_and_destroys_run_only_from_main():
    for name in MUTATING - {"deploy-dev.yml"}:
        job = next(iter(load(name)["jobs"].values()))
        assert job["if"] == "github.ref == 'refs/heads/main'", name


def test_buildx_is_v4_on_node_24():
    for name, workflow in all_workflows().items():
        for job in workflow["jobs"].values():
            for step in uses(job, "docker/setup-buildx-action"):
                lines = (WORKFLOWS / name).read_text().splitlines()
                [line] = [text for text in lines if step["uses"] in text]
                version = re.search(r"# v(\d+)\.", line)
                assert version and int(version.group(1)) >= 4, line


def test_jobs_that_build_the_image_free_disk_space_first():
    for name, job_id, job in pulumi_jobs():
        [pulumi] = uses(job, "pulumi/actions")
        if pulumi.get("with", {}).get("command") != "up":
            continue
        names = [step.get("name", "") for step in steps(job)]
        free = next(i for i, step_name in enumerate(names) if step_name.startswith("Free disk space"))
        assert free < steps(job).index(pulumi), f"{name}:{job_id}"
        assert "/usr/share/dotnet" in steps(job)[free]["run"]


def test_every_preview_and_up_applies_the_policy_pack_with_the_stacks_config():
    for name, job_id, job in pulumi_jobs():
        for step in uses(job, "pulumi/actions"):
            command = step.get("with", {}).get("command")
            if command in {"preview", "up"}:
                assert step["with"]["policyPacks"] == "infra/policy", f"{name}:{job_id}"
                config = step["with"]["policyPackConfigs"]
                assert config.startswith("infra/policy/config/") and config.endswith(".json")
    drift_run = " ".join(step.get("run", "") for step in steps(load("drift.yml")["jobs"]["drift"]))
    assert "--policy-pack infra/policy" in drift_run and "--policy-pack-config" in drift_run


def test_preview_runs_on_pull_requests_for_dev_only_and_comments():
    workflow = load("preview.yml")
    assert set(triggers(workflow)) == {"pull_request"}
    job = workflow["jobs"]["preview"]
    # The dev previewer cannot decrypt prod's secrets; prod's plan shows in its golden file.
    assert set(job["strategy"]["matrix"]["stack"]) == {"dev"}
    [pulumi] = uses(job, "pulumi/actions")
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["comment-on-pr"] is True
    assert pulumi["with"]["stack-name"] == "${{ matrix.stack }}"
    assert "environment" not in job, "previews must not wait for prod's reviewers"


def test_dev_deploys_on_push_to_main():
    workflow = load("deploy-dev.yml")
    assert triggers(workflow) == {"push": {"branches": ["main"]}}
    job = workflow["jobs"]["deploy"]
    [pulumi] = uses(job, "pulumi/actions")
    assert (pulumi["with"]["command"], pulumi["with"]["stack-name"]) == ("up", "dev")
    assert pulumi["with"]["policyPackConfigs"] == "infra/policy/config/dev.json"


def test_prod_deploys_only_by_hand_from_main_behind_the_prod_environment():
    workflow = load("deploy-prod.yml")
    assert set(triggers(workflow)) == {"workflow_dispatch"}
    job = workflow["jobs"]["deploy"]
    assert job["environment"] == "prod"
    assert job["if"] == "github.ref == 'refs/heads/main'"
    [pulumi] = uses(job, "pulumi/actions")
    assert (pulumi["with"]["command"], pulumi["with"]["stack-name"]) == ("up", "prod")
    assert pulumi["with"]["policyPackConfigs"] == "infra/policy/config/prod.json"


def test_destroy_requires_typing_the_stack_name_before_anything_else():
    workflow = load("destroy.yml")
    dispatch = triggers(workflow)["workflow_dispatch"]
    assert set(dispatch["inputs"]["stack"]["options"]) == STACKS
    assert dispatch["inputs"]["confirm"]["required"] is True
    job = workflow["jobs"]["destroy"]
    assert job["environment"] == "${{ inputs.stack }}", "destroying prod also waits for prod's reviewers"
    guard = steps(job)[0]
    assert guard["env"] == {"STACK": "${{ inputs.stack }}", "CONFIRM": "${{ inputs.confirm }}"}
    assert "${{" not in guard["run"], "inputs reach the shell only through env (no template injection)"
    [pulumi] = uses(job, "pulumi/actions")
    assert pulumi["with"]["command"] == "destroy"


@pytest.mark.parametrize(
    ("confirm", "succeeds"), [("dev", True), ("prod", False), ("", False), ("dev ", False)]
)
def test_destroy_guard_script_rejects_anything_but_the_stack_name(confirm, succeeds):
    guard = steps(load("destroy.yml")["jobs"]["destroy"])[0]
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", guard["run"]],
        env={"STACK": "dev", "CONFIRM": confirm, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode == 0) == succeeds
    if not succeeds:
        assert "nothing was destroyed" in result.stdout


def test_drift_check_is_scheduled_and_expects_no_changes():
    workflow = load("drift.yml")
    assert "schedule" in triggers(workflow)
    job = workflow["jobs"]["drift"]
    assert set(job["strategy"]["matrix"]["stack"]) == STACKS
    run = " ".join(step.get("run", "") for step in steps(job))
    assert "--expect-no-changes" in run and "--refresh" in run


def _drift_script() -> dict:
    [step] = [s for s in steps(load("drift.yml")["jobs"]["drift"]) if "pulumi login" in s.get("run", "")]
    return step


def _run_drift(tmp_path: Path, backend: str) -> subprocess.CompletedProcess[str]:
    """The drift step's script with a `pulumi` that records its arguments."""
    fake = tmp_path / "bin" / "pulumi"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/calls\n')
    fake.chmod(0o755)
    return subprocess.run(
        ["bash", "-e", "-c", _drift_script()["run"]],
        env={
            "STACK": "prod",
            "BACKEND_VARIABLE": "PULUMI_PROD_BACKEND_URL",
            "PULUMI_BACKEND_URL": backend,
            "PATH": f"{fake.parent}:/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        check=False,
    )


def test_drift_with_an_empty_backend_variable_fails_naming_it_and_never_logs_in(tmp_path):
    result = _run_drift(tmp_path, "")
    assert result.returncode == 1
    assert "PULUMI_PROD_BACKEND_URL is empty" in result.stdout and "prodBackendUrl" in result.stdout
    assert not (tmp_path / "calls").exists(), "pulumi must not run with an empty backend"


def test_drift_logs_in_to_the_stacks_backend(tmp_path):
    result = _run_drift(tmp_path, "gs://my-project-pulumi-state-prod")
    assert result.returncode == 0, result.stdout + result.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0] == "login gs://my-project-pulumi-state-prod"
    assert calls[1].startswith("preview --stack prod --refresh --expect-no-changes")


def test_each_stack_uses_its_own_backend_variable():
    for name, job_id, job in pulumi_jobs():
        workflow = load(name)
        for step in uses(job, "pulumi/actions"):
            url = step.get("with", {}).get("cloud-url")
            if url is None:
                continue
            for stack in stacks_of(workflow, job):
                assert resolve(url, stack) == f"vars.PULUMI_{stack.upper()}_BACKEND_URL", f"{name}:{job_id}"
    # drift.yml looks the variable up by name from the matrix: no fallback to dev's when prod's is empty.
    drift = load("drift.yml")["jobs"]["drift"]
    assert _drift_script()["env"]["PULUMI_BACKEND_URL"] == "${{ vars[matrix.backend] }}"
    assert _drift_script()["env"]["BACKEND_VARIABLE"] == "${{ matrix.backend }}"
    assert {row["stack"]: row["backend"] for row in drift["strategy"]["matrix"]["include"]} == {
        "dev": "PULUMI_DEV_BACKEND_URL",
        "prod": "PULUMI_PROD_BACKEND_URL",
    }
    text = "\n".join(path.read_text() for path in WORKFLOWS.glob("*.yml"))
    assert "vars.PULUMI_BACKEND_URL" not in text


# --- scripts/lint-platform -----------------------------------------------------------------------

LINT = ROOT / "scripts" / "lint-platform"
VENV_BIN = ROOT / ".venv" / "bin"


def _tools_missing() -> bool:
    return not all((VENV_BIN / tool).exists() or shutil.which(tool) for tool in ("zizmor", "shellcheck"))


@pytest.mark.skipif(_tools_missing(), reason="zizmor/shellcheck not installed (make test installs them)")
def test_lint_platform_passes_on_this_repository():
    result = subprocess.run([str(LINT)], capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ".ci/run" in result.stdout and "scripts/lint-platform" in result.stdout


@pytest.mark.skipif(_tools_missing(), reason="zizmor/shellcheck not installed (make test installs them)")
@pytest.mark.parametrize("broken", ["workflow", "shell"])
def test_lint_platform_fails_on_a_bad_workflow_or_script(tmp_path, broken):
    (tmp_path / "scripts").mkdir()
    shutil.copy(LINT, tmp_path / "scripts" / "lint-platform")
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    good_workflow = (WORKFLOWS / "deploy-dev.yml").read_text()
    bad_workflow = (
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n      - uses: actions/checkout@v5\n"
    )
    (tmp_path / ".github" / "workflows" / "ci.yml").write_text(
        bad_workflow if broken == "workflow" else good_workflow
    )
    script = tmp_path / "scripts" / "hello"
    script.write_text("#!/bin/sh\necho $1\n" if broken == "shell" else '#!/bin/sh\necho "$1"\n')
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    path = f"{VENV_BIN}:/usr/bin:/bin"
    result = subprocess.run(
        [str(tmp_path / "scripts" / "lint-platform")],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={"PATH": path, "HOME": str(tmp_path)},
    )
    assert result.returncode != 0, result.stdout + result.stderr
    assert ("SC2086" in result.stdout) == (broken == "shell")
