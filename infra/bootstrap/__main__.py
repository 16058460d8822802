"""Run once by an admin (see docs/platform.md): keyless CI identities, runtime accounts, state backend."""

from keyless_ci import main

# The outputs are the values to paste into the repository's Actions variables, each stack's
# `whisper:serviceAccount`, and `pulumi login` / `pulumi stack init --secrets-provider`.
main()
