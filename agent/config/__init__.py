"""The configuration file (a package from here on: agent/config/loader.py holds what agent/config.py held)."""

from agent.config.loader import *  # noqa: F401,F403
