"""Stack files read as the pulumi CLI hands them to a program: every config value a string."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.mockrun import load_stack_config, project_name, stack_file, to_pulumi_config


def test_values_take_pulumis_wire_format() -> None:
    values = {"w:name": "api", "w:public": True, "w:off": False, "w:count": 3, "w:invokers": ["a", "b"]}
    assert to_pulumi_config(values) == {
        "w:name": "api",
        "w:public": "true",
        "w:off": "false",
        "w:count": "3",
        "w:invokers": '["a", "b"]',
    }


def test_an_encrypted_secret_is_refused_with_its_key() -> None:
    with pytest.raises(ValueError, match="w:key is an encrypted secret; the mock runtime cannot decrypt it"):
        to_pulumi_config({"w:key": {"secure": "v1:abc"}})


def test_the_project_and_stack_files_are_read_from_the_root(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: harness\nruntime: python\n")
    (tmp_path / "Pulumi.qa.yaml").write_text("config:\n  w:public: true\n  w:count: 2\n")
    (tmp_path / "Pulumi.empty.yaml").write_text("")
    assert project_name(tmp_path) == "harness"
    assert stack_file("qa", tmp_path) == tmp_path / "Pulumi.qa.yaml"
    assert load_stack_config("qa", tmp_path) == {"w:public": "true", "w:count": "2"}
    assert load_stack_config("empty", tmp_path) == {}
