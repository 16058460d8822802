"""The two example stacks, evaluated once per test module on Pulumi's mock runtime."""

import pytest

from infra.mockrun import Plan, load_stack_config, run_program


@pytest.fixture(scope="module")
def dev() -> Plan:
    return run_program(load_stack_config("dev"), stack="dev")


@pytest.fixture(scope="module")
def prod() -> Plan:
    return run_program(load_stack_config("prod"), stack="prod")
