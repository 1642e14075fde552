"""Who is who: card numbers, user-name mapping, lockouts (library parts of the identity work)."""
