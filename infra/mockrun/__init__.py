"""Evaluate the program on Pulumi's mock runtime: no cloud credentials, no pulumi CLI, no Docker.

Shared by the tests (tests/infra/) and `scripts/plan`, so that what reviewers read is what is tested.
Only the cloud is mocked: the program, its config validation and every resource's inputs are real.

- mocks: the provider stand-ins (ids, computed outputs, data sources).
- recorder: runs a program on the mocks and records a queryable Plan (`run_program`).
- stack_files: the project and stack files, read as the pulumi CLI reads them.
- renderer: the plan as `make plan` prints it.
- sdk_private: the Pulumi SDK internals the recorder needs, kept in one place.
"""

from infra.mockrun.mocks import (
    GET_CLIENT_CONFIG,
    GET_PROJECT,
    MOCK_ACCESS_TOKEN,
    MOCK_PROJECT_NUMBER,
    CloudMocks,
)
from infra.mockrun.recorder import Plan, RecordedResource, run_program
from infra.mockrun.renderer import KEY_SETTINGS, lookup, render_plan
from infra.mockrun.stack_files import load_stack_config, project_name, stack_file, to_pulumi_config

__all__ = [
    "GET_CLIENT_CONFIG",
    "GET_PROJECT",
    "KEY_SETTINGS",
    "MOCK_ACCESS_TOKEN",
    "MOCK_PROJECT_NUMBER",
    "CloudMocks",
    "Plan",
    "RecordedResource",
    "load_stack_config",
    "lookup",
    "project_name",
    "render_plan",
    "run_program",
    "stack_file",
    "to_pulumi_config",
]
