"""The git side: bare repositories and the receive-pack / upload-pack handlers (dulwich)."""
