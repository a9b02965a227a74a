"""Deployment target profiles (TOML), one per target."""
