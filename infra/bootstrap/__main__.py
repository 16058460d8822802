"""Run once by an admin (see docs/platform.md): keyless CI access and the Pulumi state backend."""

import pulumi
from keyless_ci import KeylessCi, load_config

config = load_config()
ci = KeylessCi("whisper-ci", config)

# The values to paste into the repository's Actions variables, and into `pulumi login` / `stack init`.
pulumi.export("workloadIdentityProvider", ci.workload_identity_provider)
pulumi.export("deployerServiceAccount", ci.deployer_email)
pulumi.export("backendUrl", ci.backend_url)
pulumi.export("secretsProvider", ci.secrets_provider)
pulumi.export("githubRepository", config.github_repository)
