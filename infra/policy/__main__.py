"""Entry point the Pulumi CLI runs for `--policy-pack infra/policy`."""

from guardrails import POLICIES
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(
    name="whisper-guardrails",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
)
