"""The Pulumi program that puts the Whisper API on a Cloud Run L4 GPU (see docs/deploy.md)."""
