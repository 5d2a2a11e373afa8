"""Process entry points: worker, CLI, client API, settings, and the dev-stack launcher."""
