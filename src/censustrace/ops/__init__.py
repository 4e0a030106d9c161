"""Operations on a running instance: backup and restore of both stores, re-keying pupil keys."""
