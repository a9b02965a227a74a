"""A MIMOFormer shipped with edge-mimo (`--model mimoformer`)."""
