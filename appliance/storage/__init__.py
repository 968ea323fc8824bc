"""Storage adapters: each concern has an embedded default and a real server, chosen by configuration."""
