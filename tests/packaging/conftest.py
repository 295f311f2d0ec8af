"""The packaging tests' fixtures and summary hook; they live in pkgharness.py with the helpers they share."""

from pkgharness import dist, fake_dist, gateways, pytest_terminal_summary, serve_folder, timings, version  # noqa: F401
