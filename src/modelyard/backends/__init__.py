"""Storage back ends: one protocol per kind, an embedded default and a scale-out one."""
