"""scripts/bench-coldstart-image without a builder: its argument checks, Docker's timestamps, its report.

The measurements themselves run on a real image in tests/container/test_images.py (WHISPER_IMAGE_TESTS=1).
"""

from pathlib import Path

import pytest

from bench.coldstart import ServedStart
from bench.coldstart_image import ContainerStart, ImageColdStartReport, _started_at, main, markdown
from bench.machine import describe


def test_docker_timestamps_keep_their_nanoseconds_to_the_microsecond() -> None:
    assert _started_at("2026-11-29T21:26:35.962196062Z") == pytest.approx(1795987595.962196, abs=1e-6)
    assert _started_at("2026-11-29T21:26:35Z") == 1795987595.0


def test_arguments_are_checked_before_anything_is_built(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--runs", "0"])
    with pytest.raises(SystemExit):
        main(["--audio", str(tmp_path / "absent.flac")])


def test_the_report_puts_the_container_beside_the_bare_process() -> None:
    served = {"http_s": 0.5, "ready_s": 0.6, "first_transcription_s": 1.1, "first_request_s": 0.5}
    served |= {"second_request_s": 0.45, "peak_rss_mib": 290.0}
    container = ContainerStart(running_s=0.09, cgroup_peak_mib=220.0, **served)
    steps = {"runtime": 0.06, "interpreter": 0.02, "import_app": 0.3, "import_engine": 0.0}
    steps |= {"load_model": 0.2, "warmup": 0.03, "total": 0.61}
    report = ImageColdStartReport(
        machine=describe(with_gpu=False),
        load_average_after=(1.0, 1.0, 1.0),
        image="whisper-api:cpu",
        image_id="sha256:0123456789abcdef",
        image_size_bytes=800_000_000,
        docker_version="20.10",
        clip="jfk.flac",
        starts=[container],
        medians={"running_s": 0.09, **{k: v for k, v in served.items()}, "cgroup_peak_mib": 220.0},
        steps_s=[steps],
        steps_median_s=steps,
        bare_starts=[ServedStart(**served)],
        bare_medians={"first_transcription_s": 1.02},
        bare_steps_median_s={"interpreter": 0.02},
    )
    text = markdown(report)
    assert "| **→ first transcription served** | 1.10 | 1.02 | 1.10 |" in text
    assert "| `docker run` issued → container running (the daemon's StartedAt) | 0.09 | - | 0.09 |" in text
    assert "| runtime | 0.060 | - |" in text and "| interpreter | 0.020 | 0.020 |" in text
