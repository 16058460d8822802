"""service/Dockerfile, read statically: the model is baked at build time, the image runs non-root and
offline, and the port, env names and health paths are the ones the infrastructure gives Cloud Run."""

import re
from pathlib import Path

import pytest

from tests.container.dockerfile_model import SERVICE, Dockerfile, copied_from_context
from whisper_api import contract

TARGETS = (contract.IMAGE_TARGET_GPU, contract.IMAGE_TARGET_CPU)
MODEL_STAGE = "model"


def test_the_gpu_target_is_the_default_and_the_cpu_target_exists(dockerfile: Dockerfile) -> None:
    names = [stage.name for stage in dockerfile.stages]
    assert contract.IMAGE_TARGET_CPU in names
    # `docker build` without --target (and pulumi-docker-build without `target`) builds the last stage.
    assert names[-1] == contract.IMAGE_TARGET_GPU


def test_build_args_have_the_contract_names_and_defaults(dockerfile: Dockerfile) -> None:
    assert dockerfile.global_args[contract.BUILD_ARG_ENGINE] == contract.DEFAULT_ENGINE
    assert dockerfile.global_args[contract.BUILD_ARG_MODEL] == contract.DEFAULT_IMAGE_MODEL
    assert contract.DEFAULT_ENGINE in contract.ENGINES


def test_every_base_image_is_the_pinned_base_image_arg(dockerfile: Dockerfile) -> None:
    stage_names = {stage.name for stage in dockerfile.stages}
    external = {stage.base for stage in dockerfile.stages if stage.base not in stage_names}
    # One base for every stage, a build arg so that tests can build on a stand-in...
    assert external == {"${BASE_IMAGE}"}
    # ...whose default, what users build on, is pinned by tag and digest.
    default = dockerfile.global_args["BASE_IMAGE"]
    assert default and re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", default), default


def test_the_model_is_fetched_in_a_build_stage_with_the_build_args(dockerfile: Dockerfile) -> None:
    stage = dockerfile.stage(MODEL_STAGE)
    declared = {arg.value.split("=")[0] for arg in stage.of("ARG")}
    assert {contract.BUILD_ARG_ENGINE, contract.BUILD_ARG_MODEL} <= declared
    fetches = [run.value for run in stage.of("RUN") if "fetch_model.py" in run.value]
    assert len(fetches) == 1
    command = fetches[0]
    assert f'--engine "${{{contract.BUILD_ARG_ENGINE}}}"' in command
    assert f'--model "${{{contract.BUILD_ARG_MODEL}}}"' in command
    assert f'--revision "${{{contract.BUILD_ARG_MODEL_REVISION}}}"' in command
    assert dockerfile.global_args[contract.BUILD_ARG_MODEL_REVISION] == ""  # fetch_model.py's pin
    assert f"--output {contract.MODEL_DIR}" in command


@pytest.mark.parametrize("target", TARGETS)
def test_targets_copy_the_baked_model_and_never_fetch_one(dockerfile: Dockerfile, target: str) -> None:
    copies = [c for c in dockerfile.effective(target, "COPY") if c.flags.get("from") == MODEL_STAGE]
    assert [c.value for c in copies] == [f"{contract.MODEL_DIR} {contract.MODEL_DIR}"]
    for stage in dockerfile.chain(target):
        for run in stage.of("RUN"):
            assert not re.search(r"fetch_model|snapshot_download|urlopen|curl|wget", run.value), run.value
    command = " ".join(dockerfile.last(target, "CMD").exec_form or [])
    assert "fetch_model" not in command


@pytest.mark.parametrize("target", TARGETS)
def test_targets_install_nothing_and_carry_no_build_tools(dockerfile: Dockerfile, target: str) -> None:
    # The final stages only copy a finished venv: no pip/apt there, and the base image's pip goes.
    for stage in dockerfile.chain(target)[1:]:
        for run in stage.of("RUN"):
            assert not re.search(r"pip install|apt-get install|apk add", run.value), run.value
    uninstalls = " ".join(run.value for run in dockerfile.effective(target, "RUN"))
    assert re.search(r"pip uninstall --yes .*\bpip\b", uninstalls)
    dependency_stage = {contract.IMAGE_TARGET_GPU: "deps-gpu", contract.IMAGE_TARGET_CPU: "deps-cpu"}[target]
    # setuptools too: `python -m venv` adds it on 3.11, and nothing in the service needs it at run time.
    assert "pip uninstall --yes pip setuptools" in " ".join(
        r.value for r in dockerfile.effective(dependency_stage, "RUN")
    )


@pytest.mark.parametrize("target", TARGETS)
def test_layers_go_dependencies_then_model_then_code(dockerfile: Dockerfile, target: str) -> None:
    copies = dockerfile.stage(target).of("COPY")
    sources = [(c.flags.get("from"), c.value.split()[0]) for c in copies]
    # The gpu target adds its small build-time CUDA check right after the venv it checks.
    check = [(None, "check_cuda.py")] if target == contract.IMAGE_TARGET_GPU else []
    assert sources == [
        (f"deps-{target}", "/opt/venv"),
        *check,
        (MODEL_STAGE, contract.MODEL_DIR),
        (None, "whisper_api/"),
    ]
    code = copies[-1]
    assert code.value == "whisper_api/ /app/whisper_api/"


@pytest.mark.parametrize("target", TARGETS)
def test_the_code_is_compiled_in_the_image_after_it_is_copied(dockerfile: Dockerfile, target: str) -> None:
    # The service user cannot write /app and PYTHONDONTWRITEBYTECODE is set: without bytecode baked in,
    # every start compiles the service's modules again (test_images.py checks that none is).
    instructions = dockerfile.stage(target).instructions
    code = max(i for i, step in enumerate(instructions) if step.keyword == "COPY")
    compiles = [
        step.value for step in instructions[code:] if step.keyword == "RUN" and "compileall" in step.value
    ]
    assert compiles == ["python -m compileall -q --invalidation-mode unchecked-hash /app/whisper_api"]


@pytest.mark.parametrize("target", TARGETS)
def test_targets_run_as_a_non_root_user(dockerfile: Dockerfile, target: str) -> None:
    user = dockerfile.last(target, "USER").value
    name, _, group = user.partition(":")
    assert name not in {"root", "0"} and group not in {"root", "0"}
    # The last instruction that can change the user is the target's own, after every RUN and COPY.
    assert dockerfile.stage(target).instructions[-1].keyword == "USER"
    uid = re.search(r"--uid (\d+)", " ".join(r.value for r in dockerfile.effective(target, "RUN")))
    assert uid and uid.group(1) == name, "USER must be the uid that useradd created"


@pytest.mark.parametrize("target", TARGETS)
def test_the_command_is_exec_form_and_starts_the_service(dockerfile: Dockerfile, target: str) -> None:
    assert dockerfile.last(target, "CMD").exec_form == ["python", "-m", "whisper_api"]
    assert not dockerfile.effective(target, "ENTRYPOINT")


@pytest.mark.parametrize("target", TARGETS)
def test_env_matches_the_contract_and_runs_offline(dockerfile: Dockerfile, target: str) -> None:
    env = dockerfile.env(target)
    assert env[contract.ENV_MODEL_DIR] == contract.MODEL_DIR
    assert env[contract.ENV_ENGINE] == f"${{{contract.BUILD_ARG_ENGINE}}}"
    assert env[contract.ENV_MODEL] == f"${{{contract.BUILD_ARG_MODEL}}}"
    assert env["HOST"] == "0.0.0.0"
    assert env["PORT"] == str(contract.PORT)
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")
    # The ENV that turns build args into settings must see them: ARG redeclared in that stage.
    runtime_args = {a.value for stage in dockerfile.chain(target) for a in stage.of("ARG")}
    assert {contract.BUILD_ARG_ENGINE, contract.BUILD_ARG_MODEL} <= runtime_args


def test_diarization_is_exported_in_the_model_stage_and_baked_with_the_model(dockerfile: Dockerfile) -> None:
    # torch exports CAM++ in the model stage only; targets get the ONNX graph with /models.
    assert dockerfile.global_args["WHISPER_DIARIZATION"] == "true"
    stage = dockerfile.stage(MODEL_STAGE)
    assert "WHISPER_DIARIZATION" in {arg.value.split("=")[0] for arg in stage.of("ARG")}
    exports = [run.value for run in stage.of("RUN") if "whisper_api.diarization.export" in run.value]
    assert len(exports) == 1
    assert '[ "${WHISPER_DIARIZATION}" = true ]' in exports[0]
    assert "-r requirements-diarization.txt" in exports[0]
    assert f"--output {contract.MODEL_DIR}/diarization" in exports[0]
    for target in TARGETS:
        assert (
            dockerfile.env(target)["WHISPER_DIARIZATION_MODEL"]
            == f"{contract.MODEL_DIR}/diarization/campplus.onnx"
        )


def test_device_settings_are_valid_values(dockerfile: Dockerfile) -> None:
    from whisper_api.settings import Settings

    for target, device in ((contract.IMAGE_TARGET_GPU, "cuda"), (contract.IMAGE_TARGET_CPU, "cpu")):
        env = dockerfile.env(target)
        assert env[contract.ENV_DEVICE] == device
        assert Settings(device=env[contract.ENV_DEVICE]).device == device


@pytest.mark.parametrize("target", TARGETS)
def test_port_and_health_check_agree_with_the_contract(dockerfile: Dockerfile, target: str) -> None:
    assert [e.value for e in dockerfile.effective(target, "EXPOSE")] == [str(contract.PORT)]
    check = dockerfile.last(target, "HEALTHCHECK")
    keyword, _, command = check.value.partition(" ")
    assert keyword == "CMD"
    assert check.flags["start-period"]
    exec_form = check.__class__(keyword, {}, command, check.line).exec_form
    assert exec_form is not None and exec_form[:2] == ["python", "-c"]
    probe = exec_form[2]
    assert f"'{contract.HEALTH_PATH}'" in probe
    assert "os.environ['PORT']" in probe  # follows PORT when Cloud Run or `docker run -e` changes it
    compile(probe, "<healthcheck>", "exec")


def test_the_gpu_target_registers_cublas_and_checks_the_cuda_libraries(dockerfile: Dockerfile) -> None:
    gpu_env = dockerfile.env(contract.IMAGE_TARGET_GPU)
    assert gpu_env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert "compute" in gpu_env["NVIDIA_DRIVER_CAPABILITIES"].split(",")
    assert "/usr/local/nvidia/lib64" in gpu_env["LD_LIBRARY_PATH"].split(":")
    checks = " ".join(run.value for run in dockerfile.stage(contract.IMAGE_TARGET_GPU).of("RUN"))
    assert "ldconfig" in checks and "python /opt/check_cuda.py" in checks


def test_the_cuda_check_agrees_with_the_pinned_builds() -> None:
    import check_cuda

    # openai-whisper: torch's CUDA build, a 12.x that Cloud Run's 535 driver runs through minor-version
    # compatibility (no CUDA 13).
    tag = "cu" + check_cuda.TORCH_CUDA.replace(".", "")
    torch_gpu = (SERVICE / "requirements-image-openai-whisper-gpu.txt").read_text()
    assert re.search(rf"^torch==[\d.]+\+{tag}$", torch_gpu, re.M)
    assert re.search(rf"^--extra-index-url https://download.pytorch.org/whl/{tag}$", torch_gpu, re.M)
    assert check_cuda.TORCH_CUDA.startswith("12.")
    # faster-whisper: the cuBLAS 12 wheel that provides the libraries the check loads.
    cuda = (SERVICE / "requirements-image-faster-whisper-gpu.txt").read_text()
    assert re.search(r"^nvidia-cublas-cu12==12\.[\d.]+$", cuda, re.M)
    assert all(library.endswith(".so.12") for library in check_cuda.CUBLAS)


def test_ctranslate2_opens_no_cuda_library_but_cublas() -> None:
    """The check covers every CUDA toolkit library CTranslate2 opens; a new one (cuDNN) fails here."""
    import ctranslate2

    package = Path(ctranslate2.__file__).parent
    binaries = [*package.parent.glob("ctranslate2.libs/libctranslate2*.so*"), *package.glob("*.so")]
    assert binaries
    names = set()
    for binary in binaries:
        names |= set(re.findall(rb"lib(?:cu|nccl|nv)[A-Za-z]*\.so(?:\.\d+)?", binary.read_bytes()))
    # libcuda.so.1 is the driver (Cloud Run mounts it); NCCL serves multi-GPU tensor parallelism only.
    assert {n.decode() for n in names} - {"libcuda.so.1", "libnccl.so.2"} == {"libcublas.so.12"}


def test_the_openai_whisper_cpu_target_installs_the_cpu_build_of_torch() -> None:
    cpu_requirements = (SERVICE / "requirements-image-openai-whisper-cpu.txt").read_text()
    assert re.search(r"^torch==[\d.]+\+cpu$", cpu_requirements, re.M)
    assert re.search(r"^--extra-index-url https://download.pytorch.org/whl/cpu$", cpu_requirements, re.M)


def test_copy_sources_from_the_context_exist(dockerfile: Dockerfile) -> None:
    for source in copied_from_context(dockerfile):
        assert (SERVICE / source).exists(), f"COPY {source}: not in the build context"


def test_the_only_sdist_builds_against_the_locked_setuptools_without_isolation(
    dockerfile: Dockerfile,
) -> None:
    """pip's default builds an sdist in an isolated environment with whatever setuptools PyPI serves."""
    [install] = [run.value for run in dockerfile.stage("deps-common").of("RUN") if "pip install" in run.value]
    build_tools, dependencies = install.split("&&")
    assert "-r requirements-image-build.txt" in build_tools and "--only-binary=:all:" in build_tools
    for flag in ("--no-build-isolation", "--only-binary=:all:", "--no-binary=openai-whisper", "--no-deps"):
        assert flag in dependencies, flag
    assert (SERVICE / "requirements-image-build.txt").read_text().count("\nsetuptools==") == 1
    # The target stages install wheels only (torch's builds, cuBLAS): nothing there builds from source.
    for stage in ("deps-gpu", "deps-cpu"):
        assert "--no-binary" not in " ".join(run.value for run in dockerfile.stage(stage).of("RUN"))
