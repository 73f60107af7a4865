"""The edge: nginx serves app traffic; gitpaas configures it and gets its certificates."""
