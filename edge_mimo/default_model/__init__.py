"""The default model shipped with edge-mimo."""
