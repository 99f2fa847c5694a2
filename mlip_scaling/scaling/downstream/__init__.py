"""Downstream tasks: relaxations and molecular dynamics against an oracle."""
