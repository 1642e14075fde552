"""Who is who: card numbers, user-name mapping, directories, single sign-on (library parts of
the identity work; the lockout is the cloud's, :mod:`pullprint.cloud.lockout`)."""
