"""The shared core under deep RL and LLM training. Import the modules themselves (``bellman.core.config``);
this package imports nothing, so loading one part does not load the others."""
