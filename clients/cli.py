"""Subcommands of this part (placeholder until the part lands)."""

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    return None
