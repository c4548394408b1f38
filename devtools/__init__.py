"""Tools that run on a developer's machine or in CI, never in Lambda:
provisioning and stage configuration (Chalice does not package this folder)."""
