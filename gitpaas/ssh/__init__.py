"""The SSH server (paramiko): public-key auth for registered keys, exec only."""
