"""Provider adapters: openai, anthropic, the offline simulator, and LangChain chat models."""
