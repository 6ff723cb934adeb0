"""Who spoke (issue 19): a voice encoder, the enrolled voices and the check, in the ears alone."""
