"""Using a finished run: load it, generate, chat, predict and serve, with the training templates."""
