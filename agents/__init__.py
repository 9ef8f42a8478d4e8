"""Bulwark agents: BaseAgent and the built-in agents."""
