"""The request engine every server-facing stage uses: client, rate limiter, resumable runner, store, endpoint configs."""
