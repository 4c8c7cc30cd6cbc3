"""Response caches: exact (the whole request) and semantic (the last question by meaning)."""
